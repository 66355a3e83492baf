/*
 * The delivery log: events (dedup and replay), deliveries (one event for
 * one subscription) and attempts. Every SQL statement on these three
 * tables lives in delivery.c.
 *
 * A delivery's life:
 *   created   status 'pending', attempts 0, next_attempt_at = now + lease
 *             (the creating worker holds it for lease_s and attempts it)
 *   attempt   one row in attempts; success -> 'succeeded'; failure ->
 *             next_attempt_at = now + schedule[attempts] ± jitter, or
 *             'failed' when the schedule is used up
 *   due       the scheduler claims pending deliveries whose next_attempt_at
 *             passed (moving it lease_s ahead) and sends a job on
 *             bankhook.deliveries; a worker that died mid-attempt is
 *             covered the same way, once its lease ran out
 */
#ifndef BH_COMMON_DELIVERY_H
#define BH_COMMON_DELIVERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "event.h"
#include "subscription.h"
#include "util.h"

/* Filters of GET /v1/deliveries; NULL fields do not filter. */
struct bh_delivery_filter {
	const char *endpoint_id;
	const char *event_id;
	const char *status; /* pending | succeeded | failed */
};

/*
 * One page of deliveries, newest first: {"data":[...],"next_cursor":...}
 * (next_cursor null on the last page). client_id NULL means every client
 * (admin). cursor is the opaque next_cursor of the previous page or NULL.
 * Returns NULL with a message in errbuf; a bad cursor gives "cursor: ...".
 */
json_t *bh_delivery_list_json(struct bh_db *db, const char *client_id,
			      const struct bh_delivery_filter *f, int limit, const char *cursor,
			      char *errbuf, size_t errlen);

/*
 * One delivery with every attempt, or NULL when absent or not the client's
 * (client_id NULL: any client).
 */
json_t *bh_delivery_get_json(struct bh_db *db, const char *client_id, const char *id);

/*
 * The event with its deliveries: {"id","type","occurred_at","bank_id",
 * "account_id","event" (the stored body),"received_at","deliveries":[...]},
 * deliveries oldest first and, for a client, only that client's. NULL when
 * absent, on a database error, or when a client (client_id not NULL) has no
 * delivery of it: events carry no owner, so another client's event is 404.
 * The caller owns the result.
 */
json_t *bh_event_get_json(struct bh_db *db, const char *client_id, const char *id);

/* ---- operator controls: the API ---------------------------------------- */

/*
 * POST /v1/deliveries/{id}/retry: makes a finished delivery pending again,
 * due now, with schedule_base = attempts so the retry schedule starts over
 * (the attempt numbers keep counting). client_id NULL = admin (any client).
 * Returns 0 done, 1 absent or not the client's, 2 pending already (409),
 * -1 database error with errbuf.
 */
int bh_delivery_retry(struct bh_db *db, const char *client_id, const char *id, char *errbuf,
		      size_t errlen) BH_MUSTCHECK;

/*
 * POST /v1/endpoints/{id}/replay: every delivery of the subscription created
 * in [since_ms, until_ms) (epoch ms; a negative bound is open), only the
 * failed ones when only_failed, never one pending already, becomes pending,
 * due now, with its schedule restarted as by bh_delivery_retry. *count says
 * how many. 0, 1 subscription absent or not the client's, -1 database error
 * with errbuf. One statement: a huge window is one (long) transaction, and
 * the scheduler then hands the deliveries out batch by batch.
 */
int bh_delivery_replay(struct bh_db *db, const char *client_id, const char *subscription_id,
		       int64_t since_ms, int64_t until_ms, bool only_failed, long long *count,
		       char *errbuf, size_t errlen) BH_MUSTCHECK;

/* ---- write side: worker and scheduler ---------------------------------- */

/* One event of a Kafka batch and the subscriptions it matched (borrowed). */
struct bh_delivery_input {
	const struct bh_event *ev;
	const struct bh_sub *const *subs;
	int nsubs;
};

/* A delivery created by bh_delivery_store_events. */
struct bh_delivery_created {
	char id[37];
	int input;		  /* index into the caller's inputs */
	const struct bh_sub *sub; /* borrowed from the input */
	bool ordered; /* the subscription is ordered (as stored): not leased, see below */
};

/*
 * In ONE transaction: inserts every event (ON CONFLICT (id) DO NOTHING) and,
 * for each event that was new, one 'pending' delivery per matched
 * subscription with next_attempt_at = now() + lease_s, so the caller holds
 * it and may attempt it at once. A delivery to an ordered subscription is
 * created due (next_attempt_at = now()) instead and flagged `ordered`: it
 * must wait for the earlier ones, so the caller does not attempt it but
 * claims the head of the line with bh_delivery_claim_next. A duplicate event
 * (already stored, or twice in the batch) creates nothing. On success
 * *out (malloc'ed, caller frees; may be NULL when *nout is 0) lists the
 * deliveries created and 0 is returned; on -1 nothing was written and
 * errbuf says why (the caller retries the batch later).
 */
int bh_delivery_store_events(struct bh_db *db, const struct bh_delivery_input *in, int n,
			     int lease_s, struct bh_delivery_created **out, int *nout, char *errbuf,
			     size_t errlen) BH_MUSTCHECK;

/*
 * An internal notification (PRODUCT.md 6.2): inserts `event` (a normalized
 * event, borrowed; its "id" must be new) and one 'pending' delivery of it
 * to subscription_id, due now, so the scheduler's claim hands it to a
 * worker like any retry. Meant for the caller's transaction. On 0
 * delivery_id holds the new delivery's id; -1 with errbuf.
 */
int bh_delivery_create_notification(struct bh_db *db, const char *subscription_id,
				    const char *client_id, json_t *event, char delivery_id[37],
				    char *errbuf, size_t errlen) BH_MUSTCHECK;

/* A delivery as a worker needs it to attempt it (bh_delivery_load). */
struct bh_delivery_row {
	char *id;
	char *event_id;
	char *subscription_id;
	char *status;
	int attempts;
	char *event_body; /* the stored normalized event JSON */
};

/* Loads one delivery with its event; 1 found, 0 absent, -1 database error. */
int bh_delivery_load(struct bh_db *db, const char *id, struct bh_delivery_row *out) BH_MUSTCHECK;
void bh_delivery_row_free(struct bh_delivery_row *row);
/*
 * Loads many deliveries in one query; *out (malloc'ed, free each row and
 * the array) holds those found, in no particular order. 0 or -1.
 */
int bh_delivery_load_many(struct bh_db *db, const char *const *ids, int n,
			  struct bh_delivery_row **out, int *nout) BH_MUSTCHECK;

/* What one attempt gave. */
struct bh_attempt_result {
	int64_t started_ms; /* wall clock */
	int duration_ms;
	int http_status;      /* 0 when no response */
	const char *error;    /* NULL on success; curl error or reason */
	const char *response; /* first bytes of the response body, or NULL */
	bool permanent;	      /* retrying cannot help (render failed): fail now */
	int retry_after_s;    /* Retry-After of a 429/503 in seconds; 0: none */
};

enum bh_delivery_state { BH_DELIVERY_PENDING, BH_DELIVERY_SUCCEEDED, BH_DELIVERY_FAILED };

/*
 * Records one attempt and moves the delivery on, in one transaction, as
 * bh_retry_decide (retry.h) decides with the delivery's step on its
 * schedule (attempts - schedule_base): 2xx -> 'succeeded' (subscription
 * last_success_at = now, failing_since cleared); failure -> pending with
 * next_attempt_at = now + the decided delay, or 'failed' (subscription
 * failing_since set if unset); 410 Gone -> 'failed' and the subscription
 * disabled at once. *state says which (may be NULL). 0 or -1 with errbuf.
 */
int bh_delivery_record_attempt(struct bh_db *db, const struct bh_config *cfg,
			       const char *delivery_id, const char *subscription_id,
			       const struct bh_attempt_result *r, enum bh_delivery_state *state,
			       char *errbuf, size_t errlen) BH_MUSTCHECK;

/* One finished attempt for bh_delivery_record_attempts. */
struct bh_attempt_record {
	const char *delivery_id;
	const char *subscription_id;
	struct bh_attempt_result r;
	enum bh_delivery_state state; /* out: where the delivery went */
};

/*
 * The same for many attempts in one transaction (rows locked in id order,
 * so concurrent workers cannot deadlock); fills each record's state.
 * 0, or -1 with errbuf and nothing recorded.
 */
int bh_delivery_record_attempts(struct bh_db *db, const struct bh_config *cfg,
				struct bh_attempt_record *recs, int n, char *errbuf,
				size_t errlen) BH_MUSTCHECK;

/* Fails a pending delivery without an attempt (its subscription is gone or disabled). */
int bh_delivery_fail(struct bh_db *db, const char *delivery_id, const char *reason) BH_MUSTCHECK;

/* A due delivery the scheduler claimed. */
struct bh_delivery_claim {
	char *delivery_id;
	char *subscription_id;
	char *event_id;
};

/*
 * Claims up to `limit` pending deliveries whose next_attempt_at passed
 * (FOR UPDATE SKIP LOCKED) and moves their next_attempt_at lease_s ahead.
 * Of an ordered subscription only the oldest pending delivery is ever
 * claimed, so a later one waits while an earlier one is retried. Run inside the caller's transaction: commit only once the jobs are in
 * Kafka. *out is malloc'ed (free with bh_delivery_claims_free). 0 or -1.
 */
int bh_delivery_claim_due(struct bh_db *db, int limit, int lease_s, struct bh_delivery_claim **out,
			  int *nout) BH_MUSTCHECK;
void bh_delivery_claims_free(struct bh_delivery_claim *c, int n);

/*
 * Ordered subscriptions: for each of the n subscription ids, claims its
 * oldest pending delivery if that one is due (moving next_attempt_at
 * lease_s ahead, as the scheduler's claim does: the two exclude each
 * other). *out (free each row and the array) holds the claimed ones with
 * their events; 0 or -1.
 */
int bh_delivery_claim_next(struct bh_db *db, const char *const *sub_ids, int n, int lease_s,
			   struct bh_delivery_row **out, int *nout) BH_MUSTCHECK;

/*
 * For each of the n delivery ids, whether an earlier (by seq) delivery of
 * the same subscription is still pending: an ordered delivery must then
 * wait. blocked[i] answers for ids[i] (false for an unknown id). 0 or -1.
 */
int bh_delivery_blocked(struct bh_db *db, const char *const *ids, int n,
			bool *blocked) BH_MUSTCHECK;

/* Pending deliveries whose next attempt is due now; -1 on error. */
long long bh_delivery_count_due(struct bh_db *db);

/*
 * Disables enabled subscriptions that have failed without a success for
 * more than after_s seconds, recording why. Returns how many, or -1.
 */
int bh_delivery_disable_failing(struct bh_db *db, int after_s);

/* Subscriptions disabled now (by 410, failing, or by hand); -1 on error. */
long long bh_delivery_count_disabled_subs(struct bh_db *db);

/*
 * Retention, one bounded statement each: deletes at most `batch` attempts
 * started more than `days` days ago / at most `batch` events received more
 * than `days` days ago that have no pending delivery (their deliveries and
 * attempts go with them). Returns how many rows went, or -1.
 */
long long bh_delivery_purge_attempts(struct bh_db *db, int days, int batch);
long long bh_delivery_purge_events(struct bh_db *db, int days, int batch);

#endif
