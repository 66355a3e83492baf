/*
 * Data grants: what a client's subscriptions may receive (PRODUCT.md 7).
 * Events carry no owner, so an event reaches a subscription only when the
 * subscription's client is entitled to it: a grant covering its bank (or
 * that one account) for account events, its acquirer (or that one
 * merchant) for payment.updated; a consent of the client covering the
 * account; or the client is the built-in "system", entitled to all.
 *
 * The decisions (bh_grant_entitled, bh_grant_covers_*) are pure functions
 * over a bh_grant_set, so the worker (every event) and the API (every
 * registration) apply the same rules, and tests/unit/test_grant.c checks
 * them without a database. SQL on the grants table lives here.
 */
#ifndef BH_COMMON_GRANT_H
#define BH_COMMON_GRANT_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "event.h"
#include "util.h"

/* The built-in operator client: entitled to every event without a grant. */
#define BH_GRANT_SYSTEM_CLIENT "system"

/* One grant; exactly one of bank_id and acquirer_id is set. */
struct bh_grant {
	char *client_id;
	char *bank_id;	   /* NULL for an acquirer grant */
	char *account_id;  /* NULL: every account of bank_id */
	char *acquirer_id; /* NULL for a bank grant */
	char *merchant_id; /* NULL: every merchant of acquirer_id */
};

/* Grants sorted by client_id (bh_grant_set_index), so a client's are found by bisection. */
struct bh_grant_set {
	struct bh_grant *grants;
	int n;
};

/*
 * Appends a grant (strings copied; NULL where the grant has none). Call
 * bh_grant_set_index once all are added, before any lookup.
 */
void bh_grant_set_add(struct bh_grant_set *set, const char *client_id, const char *bank_id,
		      const char *account_id, const char *acquirer_id, const char *merchant_id);
void bh_grant_set_index(struct bh_grant_set *set);
void bh_grant_set_free(struct bh_grant_set *set);

/*
 * True when client_id may receive ev: system always; payment.updated when
 * an acquirer grant names data.acquirer_id (and data.merchant_id, or every
 * merchant); any other type when a bank grant names ev's bank_id (and its
 * account_id, or every account). Internal types: system only.
 */
bool bh_grant_entitled(const struct bh_grant_set *set, const char *client_id,
		       const struct bh_event *ev);

/*
 * Whether a subscription filter is acceptable at registration (matching
 * restricts it further to what the client is entitled to):
 *   no bank and no account: yes ("all" means all the client is entitled to);
 *   bank and account: a grant of that bank, whole or naming the account;
 *   bank only: any grant at that bank (then its granted accounts);
 *   account only: a grant naming the account at some bank, or a whole-bank
 *   grant (the account may be at that bank; matching checks the bank).
 * System is always covered.
 */
bool bh_grant_covers_account(const struct bh_grant_set *set, const char *client_id,
			     const char *bank_id, const char *account_id);
/*
 * The same for an acquirer configuration: a grant of acquirer_id, whole or
 * naming merchant_id (merchant_id NULL: any grant of the acquirer).
 */
bool bh_grant_covers_merchant(const struct bh_grant_set *set, const char *client_id,
			      const char *acquirer_id, const char *merchant_id);

/*
 * Loads the grants of client_id (NULL: of every client), with the accounts
 * its consents cover as bank grants of one account (through the bank's
 * code), into set (replaced), indexed. 0 or -1 (bh_db_errmsg()).
 */
int bh_grant_load(struct bh_db *db, const char *client_id, struct bh_grant_set *set) BH_MUSTCHECK;

/* ---- the admin API (api/routes_grants.c) ---- */

#define BH_GRANT_NOT_FOUND 1
#define BH_GRANT_CONFLICT 2
#define BH_GRANT_NO_CLIENT 3

/*
 * Inserts a grant for client_id. 0 with *out (the caller's) the new grant
 * as JSON {id, client_id, bank_id, account_id, acquirer_id, merchant_id,
 * created_at}; BH_GRANT_CONFLICT when the client holds the same grant;
 * BH_GRANT_NO_CLIENT when there is no such client; -1 on error.
 */
int bh_grant_insert(struct bh_db *db, const char *client_id, const char *bank_id,
		    const char *account_id, const char *acquirer_id, const char *merchant_id,
		    json_t **out) BH_MUSTCHECK;
/*
 * One page of client_id's grants, newest first: {"data":[...],
 * "next_cursor":...}. NULL on failure with "cursor: ..." in errbuf for a
 * bad cursor, "database: ..." otherwise.
 */
json_t *bh_grant_list_json(struct bh_db *db, const char *client_id, int limit, const char *cursor,
			   char *errbuf, size_t errlen);
/* One grant of client_id: 0 with *out (the caller's), BH_GRANT_NOT_FOUND, or -1. */
int bh_grant_get_json(struct bh_db *db, const char *client_id, const char *id,
		      json_t **out) BH_MUSTCHECK;
/* Revokes one grant of client_id: 0, BH_GRANT_NOT_FOUND, or -1. */
int bh_grant_delete(struct bh_db *db, const char *client_id, const char *id) BH_MUSTCHECK;

#endif
