/*
 * Subscriptions: the webhooks of every dialect (native endpoints, OBP,
 * application webhooks, Banksocket, acquirer) in one model. Each kind says
 * which events it wants (match) and what goes on the wire (render); the
 * worker holds all enabled subscriptions in memory and reloads them when
 * subscriptions_version changes. SQL on the subscriptions table lives here.
 */
#ifndef BH_COMMON_SUBSCRIPTION_H
#define BH_COMMON_SUBSCRIPTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "event.h"
#include "util.h"

struct bh_sub {
	char *id;
	char *client_id;
	char *kind;
	char *url;
	char *http_method;
	char *secret;
	char *previous_secret; /* NULL unless still within its 24 hours */
	/*
	 * When previous_secret stops signing (epoch ms; 0 without one). Its
	 * expiry bumps no subscriptions_version, so a long-lived copy must
	 * compare this with the clock rather than trust previous_secret.
	 */
	int64_t previous_secret_expires_ms;
	char **event_types; /* empty: every type */
	int n_event_types;
	char *bank_id;	  /* NULL: any */
	char *account_id; /* NULL: any */
	json_t *headers;  /* extra request headers {name: value} */
	json_t *options;  /* the dialect's own fields */
	char *client_api_secret;
	bool enabled;
	bool ordered;	      /* one delivery in flight; the next waits for its outcome */
	int rate_limit_per_s; /* requests per second to this subscription; 0: no limit */
};

/* What one attempt sends: body and the headers the kind adds. */
struct bh_rendered {
	char *body;
	size_t len;
	char *content_type;
	char *extra_headers[8]; /* "Name: value", malloc'ed */
	int n_extra_headers;
};

struct bh_kind_ops {
	const char *name;
	bool (*match)(const struct bh_sub *sub, const struct bh_event *ev);
	/* 0 or -1; on -1 the delivery fails with the reason in errbuf. */
	int (*render)(const struct bh_sub *sub, const struct bh_event *ev, struct bh_rendered *out,
		      char *errbuf, size_t errlen);
};

/* The kind registered under name, or NULL. */
const struct bh_kind_ops *bh_kind_find(const char *name);

bool bh_sub_match(const struct bh_sub *sub, const struct bh_event *ev);
int bh_sub_render(const struct bh_sub *sub, const struct bh_event *ev, struct bh_rendered *out,
		  char *errbuf, size_t errlen) BH_MUSTCHECK;
void bh_rendered_free(struct bh_rendered *r);
/* A kind's render step for a JSON body: json, compact, as application/json. */
int bh_rendered_set_json(struct bh_rendered *out, const json_t *json, const struct bh_event *ev,
			 char *errbuf, size_t errlen) BH_MUSTCHECK;
void bh_rendered_add_header(struct bh_rendered *r, const char *name, const char *value);

/* The generic filter every kind starts from: event types, bank, account. */
bool bh_sub_match_filter(const struct bh_sub *sub, const struct bh_event *ev);

/* A set of subscriptions loaded from the database. */
struct bh_sub_set {
	struct bh_sub *subs;
	int n;
	long long version;
};

/* The current subscriptions_version; -1 on error. */
long long bh_sub_version(struct bh_db *db);
/* Loads every enabled subscription; 0 or -1. Replaces set's contents. */
int bh_sub_load_enabled(struct bh_db *db, struct bh_sub_set *set) BH_MUSTCHECK;
/* Loads one subscription by id, enabled or not; 0, or -1 (absent or error). */
int bh_sub_load_one(struct bh_db *db, const char *id, struct bh_sub *out) BH_MUSTCHECK;
void bh_sub_set_free(struct bh_sub_set *set);
void bh_sub_free(struct bh_sub *sub);

/* Fields of a new subscription; NULL strings take the column default. */
struct bh_sub_new {
	const char *client_id;
	const char *kind;
	const char *url;
	const char *description;
	json_t *event_types; /* array of strings or NULL */
	const char *bank_id;
	const char *account_id;
	json_t *headers;
	const char *http_method;
	json_t *options;
	bool enabled;
	bool ordered;
	int rate_limit_per_s; /* 0: no limit */
	const char *created_by_user_id;
};

/*
 * Inserts a subscription with a fresh id and signing secret. Returns the
 * new row as JSON in the native shape (see bh_sub_row_json) plus its
 * "secret" (the creator is its owner), or NULL: then bh_db_errmsg() and
 * bh_db_sqlstate() say why (23503: no such client).
 */
json_t *bh_sub_insert(struct bh_db *db, const struct bh_sub_new *n) BH_MUSTCHECK;

#define BH_SUB_LIMIT 2
/*
 * bh_sub_insert, unless n->client_id already has max subscriptions (of
 * every kind): then BH_SUB_LIMIT and nothing written. Concurrent calls for
 * one client are serialised, so the cap holds under races. 0 with *out
 * as bh_sub_insert returns it, BH_SUB_LIMIT, or -1 (bh_db_sqlstate() says
 * why, as for bh_sub_insert). Not within a caller's transaction.
 */
int bh_sub_insert_capped(struct bh_db *db, const struct bh_sub_new *n, int max,
			 json_t **out) BH_MUSTCHECK;

/* The SELECT list bh_sub_row_json() reads, for queries elsewhere. */
#define BH_SUB_COLUMNS                                                                      \
	"s.id, s.client_id, s.kind, s.url, s.description, s.event_types::text, s.bank_id, " \
	"s.account_id, s.headers::text, s.http_method, s.options::text, s.enabled, "        \
	"s.disabled_reason, s.created_at, s.updated_at, s.seq, s.created_by_user_id, "      \
	"s.ordered, s.rate_limit_per_s"
/* One row of BH_SUB_COLUMNS as the native endpoint JSON (without secret). */
json_t *bh_sub_row_json(const PGresult *res, int row);

/*
 * Native API access to subscriptions (GET/PATCH/DELETE /v1/endpoints). Every
 * function takes the caller's client_id and only touches that client's
 * rows; NULL (role admin) means any client. Lookups by id return 0 when
 * found, BH_SUB_NOT_FOUND when absent or another client's, -1 on a
 * database error (bh_db_errmsg() says why).
 */
#define BH_SUB_NOT_FOUND 1

/*
 * One page, newest first: {"data":[...],"next_cursor":"..." or null}.
 * cursor is a previous page's next_cursor or NULL. NULL on failure with
 * "cursor: ..." in errbuf for a bad cursor, "database: ..." otherwise.
 */
json_t *bh_sub_list_json(struct bh_db *db, const char *client_id, int limit, const char *cursor,
			 char *errbuf, size_t errlen);
/* One subscription in the native shape plus its "secret"; *out is the caller's. */
int bh_sub_get_json(struct bh_db *db, const char *client_id, const char *id,
		    json_t **out) BH_MUSTCHECK;

/* A partial update; a NULL pointer or a false set_ flag leaves the field as it is. */
struct bh_sub_patch {
	const char *url;
	const char *description;
	json_t *event_types; /* array of strings */
	bool set_bank_id;
	const char *bank_id; /* NULL with set_bank_id: any bank */
	bool set_account_id;
	const char *account_id;
	json_t *headers; /* object, replaces the whole set */
	bool set_enabled;
	bool enabled; /* re-enabling a disabled one also clears disabled_reason, failing_since */
	bool set_ordered;
	bool ordered;
	bool set_rate_limit;
	int rate_limit_per_s; /* 0 with set_rate_limit: no limit */
};

/* Applies p; on 0 *out is the updated row in the native shape (without secret). */
int bh_sub_update(struct bh_db *db, const char *client_id, const char *id,
		  const struct bh_sub_patch *p, json_t **out) BH_MUSTCHECK;
/* Deletes one subscription (its deliveries go with it); 0, BH_SUB_NOT_FOUND or -1. */
int bh_sub_delete(struct bh_db *db, const char *client_id, const char *id) BH_MUSTCHECK;

/*
 * The application webhook of a client (kind "psd2", at most one): sets
 * enabled, and url and the Authorization header when not NULL (header ""
 * removes it). Enabling clears disabled_reason and failing_since; disabling
 * records `reason`. Creates the subscription (with a fresh secret) when the
 * client has none and url is given; without one and without url nothing
 * changes. Meant for the caller's transaction; 0 or -1 (bh_db_errmsg()).
 */
int bh_sub_psd2_set(struct bh_db *db, const char *client_id, bool enabled, const char *url,
		    const char *header, const char *reason) BH_MUSTCHECK;

/* How long a rotated-out secret keeps signing beside the new one. */
#define BH_SUB_PREVIOUS_SECRET_S (24 * 3600)

/*
 * Gives the subscription a fresh signing secret; the current one becomes
 * previous_secret until now + BH_SUB_PREVIOUS_SECRET_S (a secret rotated
 * out earlier is dropped: at most two sign at once). On 0 *out (the
 * caller's) is {"secret", "previous_secret_expires_at", "client_id"}.
 * 0, BH_SUB_NOT_FOUND or -1.
 */
int bh_sub_rotate_secret(struct bh_db *db, const char *client_id, const char *id,
			 json_t **out) BH_MUSTCHECK;

#endif
