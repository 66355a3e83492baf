/*
 * Idempotency keys of the publish routes (docs/DESIGN.md "Publishing:
 * batch and idempotency"): the first request with a key, per client,
 * claims the key before it produces anything; its answer (status and
 * body) is stored and replayed to every later request with that key for
 * BH_IDEM_TTL_S. A key reused with another request is refused. The SQL on
 * idempotency_keys (deploy/migrations/007_idempotency.sql) is all here.
 */
#ifndef BH_COMMON_IDEMPOTENCY_H
#define BH_COMMON_IDEMPOTENCY_H

#include <jansson.h>
#include <stddef.h>

#include "db.h"
#include "util.h"

#define BH_IDEM_KEY_MAX 255
/* How long an answer is replayed. */
#define BH_IDEM_TTL_S (24 * 3600)
/*
 * A claim whose request never stored an answer (the api died in between)
 * is taken over by the next request with its key after this long: longer
 * than any request can run (the producer's timeout is 10 s).
 */
#define BH_IDEM_CLAIM_S 120

/*
 * Pure. 0 when key is 1..BH_IDEM_KEY_MAX printable ASCII characters
 * (0x20..0x7e), else -1 with the reason (without the header's name) in
 * errbuf.
 */
int bh_idem_key_check(const char *key, char *errbuf, size_t errlen) BH_MUSTCHECK;

/*
 * Pure. The fingerprint a key is bound to: SHA-256 (hex) over method,
 * route pattern and the body serialized canonically (sorted keys,
 * compact), so the same JSON sent with other spacing or key order is the
 * same request. body may be NULL.
 */
void bh_idem_request_hash(const char *method, const char *route, const json_t *body, char out[65]);

enum bh_idem_claim {
	BH_IDEM_NEW,	     /* the key is this request's: run it, then bh_idem_store/release */
	BH_IDEM_REPLAY,	     /* answered before: *status and *body (malloc'ed) are the answer */
	BH_IDEM_MISMATCH,    /* used before with another request */
	BH_IDEM_IN_PROGRESS, /* its first request is still running */
	BH_IDEM_ERROR,	     /* the database failed */
};

/*
 * Claims (client_id, key) for a request with fingerprint hash: inserts the
 * claim first (ON CONFLICT), so of concurrent requests with one key exactly
 * one gets BH_IDEM_NEW. An expired row, or a claim older than
 * BH_IDEM_CLAIM_S without an answer, is taken over. On BH_IDEM_REPLAY the
 * caller frees *body.
 */
enum bh_idem_claim bh_idem_claim(struct bh_db *db, const char *client_id, const char *key,
				 const char *hash, int *status, char **body) BH_MUSTCHECK;
/* Stores the answer of a claimed key. 0 or -1. */
int bh_idem_store(struct bh_db *db, const char *client_id, const char *key, int status,
		  const char *body) BH_MUSTCHECK;
/* Gives a claimed key up (the request failed in a way a retry may cure). 0 or -1. */
int bh_idem_release(struct bh_db *db, const char *client_id, const char *key) BH_MUSTCHECK;
/* Deletes up to batch expired rows (the scheduler's retention); how many, or -1. */
long long bh_idem_purge(struct bh_db *db, int batch) BH_MUSTCHECK;

#endif
