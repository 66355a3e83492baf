/*
 * The api's request plumbing over libmicrohttpd: body accumulation with a
 * cap, the route table and its matcher, bearer-token authentication, JSON
 * body parsing, replies, and per-route request counters for /metrics.
 *
 * A handler receives a fully read, authenticated request and fills its
 * reply with one of the bh_api_reply_* helpers; the server sends it after
 * the handler returns, so handlers never touch libmicrohttpd.
 */
#ifndef BH_API_SERVER_H
#define BH_API_SERVER_H

#include <stdio.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "db.h"
#include "kafka.h"
#include "ratelimit.h"
#include "util.h"

#define BH_API_MAX_PARAMS 4
#define BH_API_MAX_REPLY_HEADERS 4

struct bh_request;
/*
 * A dialect's error envelope: answers status with msg (which names the
 * field) in the dialect's own shape; code is the native snake_case code.
 */
typedef void (*bh_error_fn)(struct bh_request *req, unsigned int status, const char *code,
			    const char *msg);

/* What every request can reach; owned by main(), outlives the daemon. */
struct bh_api {
	const struct bh_config *cfg;
	struct bh_db_pool *pool;
	struct bh_kafka_producer *producer;
	struct bh_ratelimit *ratelimit; /* per-token API rate limit; NULL: none */
	struct bh_ratelimit *client_ratelimit; /* per client, over its tokens; NULL: none */
	/* Publish routes called with role event_publisher (or admin), per token; NULL: none. */
	struct bh_ratelimit *publish_ratelimit;
	/* Logins per username, password sets per client, failures' back-off; never NULL. */
	struct bh_ratelimit *login_limit;
	struct bh_ratelimit *scrypt_limit; /* one key: scrypt runs a second, process-wide */
};

/* The authenticated caller. */
struct bh_caller {
	char *user_id;
	char *client_id;
	bool is_admin;
	json_t *roles; /* array of system-wide (bank_id '') role names */
};

struct bh_request {
	struct bh_api *api;
	const char *method;
	const char *path;
	/* {name} segments of the route pattern, in order, malloc'ed copies. */
	char *param_names[BH_API_MAX_PARAMS];
	char *param_values[BH_API_MAX_PARAMS];
	int n_params;
	json_t *body; /* parsed JSON body, or NULL when the request had none */
	struct bh_caller caller;
	/* Internal: the connection, the pooled database handle, the reply. */
	void *conn;
	struct bh_db *db;
	unsigned int status;
	char *reply_body; /* malloc'ed; handed to libmicrohttpd to free */
	size_t reply_len;
	const char *reply_type;
	char *reply_allow; /* Allow header for 405 */
	/* OBP dialect: errors in OBP's envelope (see bh_api_reply_error). */
	bool obp;
	/* OBP routes only: the body was not JSON; the handler answers OBP-10001 in turn. */
	bool body_invalid;
	/* The route's error envelope when it is neither native nor OBP (see bh_route). */
	bh_error_fn reply_error;
	/* The route publishes events: its own rate limit (bh_api_rate_limit). */
	bool publish;
	/* The matched route's pattern, or NULL. */
	const char *route;
	/* Extra reply headers (bh_api_reply_header), malloc'ed. */
	char *reply_header_names[BH_API_MAX_REPLY_HEADERS];
	char *reply_header_values[BH_API_MAX_REPLY_HEADERS];
	int n_reply_headers;
};

struct bh_route;
typedef void (*bh_handler_fn)(struct bh_request *req);

struct bh_route {
	const char *method;
	const char *pattern; /* "/v1/endpoints/{id}" */
	bh_handler_fn handler;
	const char *role; /* required role, NULL: any authenticated caller */
	bool needs_auth;
	/*
	 * An Open Bank Project route: errors use OBP's {"code","message"}
	 * envelope, and a body that is not JSON reaches the handler with
	 * body_invalid set, because OBP checks the body only after the bank
	 * and the caller's roles.
	 */
	bool obp;
	/*
	 * Another dialect's error envelope (Banksocket, acquirer): every error,
	 * including those the server raises itself (authentication, body
	 * limits, bad JSON, the database), goes through it. NULL: native.
	 * Unmatched paths under the same first segment answer in it too.
	 */
	bh_error_fn reply_error;
	/*
	 * Publishes events (POST /v1/events, /v1/events/batch): a caller with
	 * role event_publisher (or admin) is held to api.publish_rate_limit_*
	 * instead of the management limits.
	 */
	bool publish;
	/* The body limit is api.batch_body_limit instead of api.body_limit. */
	bool batch_body;
};

/* Route tables of the resource files, each ended by an entry with method NULL. */
extern const struct bh_route bh_routes_ops[];
extern const struct bh_route bh_routes_identity[];
extern const struct bh_route bh_routes_endpoints[];
extern const struct bh_route bh_routes_events[];
extern const struct bh_route bh_routes_deliveries[];
extern const struct bh_route bh_routes_banks[];
extern const struct bh_route bh_routes_obp[];
extern const struct bh_route bh_routes_banksocket[];
extern const struct bh_route bh_routes_acquirer[];
extern const struct bh_route bh_routes_consents[];
extern const struct bh_route bh_routes_psd2[];
extern const struct bh_route bh_routes_grants[];

/*
 * Writes every registered route as "METHOD PATTERN", one a line, in match
 * order: `bankhook-api routes`, which the OpenAPI and isolation tests read.
 */
void bh_routes_print(FILE *out);

struct bh_server;

/*
 * Starts listening on cfg->api_host:api_port with one thread per
 * connection. NULL with the reason in errbuf.
 */
struct bh_server *bh_server_start(struct bh_api *api, char *errbuf, size_t errlen);
/*
 * Stops accepting new connections, waits up to drain_ms for requests in
 * flight to finish, then stops the daemon and frees srv. NULL is fine.
 * (A second signal does not wait for this: the api's handler _exit()s.)
 */
void bh_server_stop(struct bh_server *srv, int drain_ms);

/* The value of path parameter `name`; never NULL for a name in the pattern. */
const char *bh_api_param(const struct bh_request *req, const char *name);
/* A query-string argument, or NULL when absent. */
const char *bh_api_query(const struct bh_request *req, const char *key);
/* A request header (case-insensitive name), or NULL when absent. */
const char *bh_api_header(const struct bh_request *req, const char *name);
/* A pooled database connection for this request (returned by the server). */
struct bh_db *bh_api_db(struct bh_request *req);

/* Replies with `body` (stolen) serialized compactly. */
void bh_api_reply_json(struct bh_request *req, unsigned int status, json_t *body);
/* Replies {"error":{"code":code,"message":...}}; the message names the field. */
void bh_api_reply_error(struct bh_request *req, unsigned int status, const char *code,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Replies {"code":status,"message":...} (OBP's envelope); the message
 * starts with its OBP-nnnnn code. On an OBP route bh_api_reply_error()
 * answers in this envelope too, with the OBP text for its status.
 */
void bh_api_reply_obp(struct bh_request *req, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Replies with a text body (copied). */
void bh_api_reply_text(struct bh_request *req, unsigned int status, const char *content_type,
		       const char *text, size_t len);
/*
 * Adds a reply header (name and value copied), replacing one of the same
 * name; values with control characters are dropped. At most
 * BH_API_MAX_REPLY_HEADERS; more is a bug in the handler and is logged.
 */
void bh_api_reply_header(struct bh_request *req, const char *name, const char *value);
/* Replies 204 without a body. */
void bh_api_reply_empty(struct bh_request *req, unsigned int status);
/* Logs the database failure of `what` and replies 503 dependency_unavailable. */
void bh_api_reply_db_error(struct bh_request *req, const char *what);

/*
 * Parses `limit` (1..1000, default 50) from the query; on a bad value
 * replies 400 and returns -1.
 */
int bh_api_query_limit(struct bh_request *req, int *out) BH_MUSTCHECK;

/*
 * The per-token API rate limit (api.rate_limit_per_s) and the per-client
 * one over all the client's tokens (api.client_rate_limit_per_s), for the
 * dialects that authenticate by themselves; call it once the token is
 * known to be valid and req->caller filled. On a publish route a caller
 * with role event_publisher (or admin) is held to the publish limit
 * (api.publish_rate_limit_per_s, per token; 0: none) instead. 0, or -1 with a 429 and
 * Retry-After set in the route's envelope.
 */
int bh_api_rate_limit(struct bh_request *req, const char *token) BH_MUSTCHECK;
/* Sets Retry-After: wait_s (a 429's). */
void bh_api_reply_retry_after(struct bh_request *req, int wait_s);
/* The caller's numeric IP address (or "unknown") into out. */
void bh_api_client_address(const struct bh_request *req, char *out, size_t outlen);

/*
 * Replies 409 subscription_limit in the route's envelope: the caller's
 * client has api.max_subscriptions subscriptions already.
 */
void bh_api_reply_subscription_limit(struct bh_request *req);

/* Appends the request counters in Prometheus text format. */
void bh_server_metrics(struct bh_buf *out);

/*
 * Identity queries the server needs (routes_identity.c keeps all SQL on
 * clients, users, entitlements and tokens).
 * bh_identity_authenticate: 0 and caller filled, 1 when the token is
 * unknown, -1 on a database error.
 */
int bh_identity_authenticate(struct bh_db *db, const char *token, struct bh_caller *caller)
	BH_MUSTCHECK;
/* Stores token as the bootstrap admin token of user "admin"; 0 or -1. */
int bh_identity_bootstrap_admin(struct bh_db *db, const char *token) BH_MUSTCHECK;
void bh_caller_free(struct bh_caller *caller);

/*
 * Authentication throttling (docs/DESIGN.md "Authentication throttling").
 * bh_identity_login_allowed: before checking username's password; 0, or
 * -1 with a 429 and Retry-After set in the route's envelope (the username
 * or the caller's address is backing off after failures, the username is
 * over api.login_rate_per_s, or the process over api.scrypt_per_s).
 * bh_identity_login_result then records the outcome (a failure counts
 * for the username and the address, a success resets the username).
 * bh_identity_password_allowed: before hashing a new password for
 * client_id; the same 0 / -1 and 429, per client and process-wide.
 */
int bh_identity_login_allowed(struct bh_request *req, const char *username) BH_MUSTCHECK;
void bh_identity_login_result(struct bh_request *req, const char *username, bool ok);
int bh_identity_password_allowed(struct bh_request *req, const char *client_id) BH_MUSTCHECK;

/*
 * Stores a token (its hash) for user_id unless the user's client already
 * has api.max_tokens_per_client: 0 stored (its creation time, RFC 3339,
 * into created_at unless NULL), 1 over the cap, -1 on a database error.
 * Concurrent inserts for one client are serialized.
 */
int bh_identity_token_insert(struct bh_request *req, const char *id, const char *user_id,
			     const char *hash, char *created_at, size_t created_len) BH_MUSTCHECK;

/* Bank reference data (routes_banks.c): 1 when bank_id is registered, 0 when not, -1 on error. */
int bh_banks_exists(struct bh_db *db, const char *bank_id) BH_MUSTCHECK;

/*
 * Data grants at registration (routes_grants.c; the rules are
 * bh_grant_covers_* in common/grant.h): 1 when the caller may subscribe to
 * the filter (admin and system always; no filter means "all it is
 * entitled to"), 0 when no grant of its client covers it (the dialect then
 * answers 403 in its envelope, naming the field), -1 on a database error.
 */
int bh_api_grants_cover_account(struct bh_request *req, const char *bank_id,
				const char *account_id) BH_MUSTCHECK;
int bh_api_grants_cover_merchant(struct bh_request *req, const char *acquirer_id,
				 const char *merchant_id) BH_MUSTCHECK;

#endif
