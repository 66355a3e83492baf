/*
 * The retry policy (PRODUCT.md section 5) as one pure decision: given the
 * outcome of one attempt and where the delivery stands on its schedule,
 * what happens next. No database, no clock and no random source of its
 * own: the caller passes the time and a uniform sample for the jitter, so
 * every rule is unit-tested (tests/unit/test_retry.c) and the recorder
 * (common/delivery.c) only turns the decision into SQL.
 *
 * The rules, in the order they apply:
 *   success      any 2xx without a transport error: succeeded
 *   410 Gone     the delivery fails and the subscription is disabled at once
 *   disable-after  a failure of a subscription failing without a success
 *                for longer than disable_after_s: fails and disables it
 *   permanent    retrying cannot help (render failed, bad secret): failed
 *   exhausted    the schedule is used up: failed (visible, re-drivable)
 *   retry        otherwise again after schedule[step] seconds ± jitter,
 *                and never before the Retry-After of a 429/503, itself
 *                honoured up to retry_after_max_s
 * A delivery that already has an outcome (two attempts overlapped after a
 * lease ran out) keeps it: a later failure cannot make it pending again.
 */
#ifndef BH_COMMON_RETRY_H
#define BH_COMMON_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/*
 * Retry-After is honoured up to one hour: a receiver asking for more is
 * retried after an hour anyway (its answer is recorded), so a bad header
 * cannot park a delivery for days, and the schedule's later, longer
 * delays still apply when they are longer.
 */
#define BH_RETRY_AFTER_MAX_S 3600

/* The policy; borrowed pointers, valid as long as the config they came from. */
struct bh_retry_policy {
	const int *schedule; /* seconds before attempt 1..n (schedule[0]: the first) */
	int schedule_len;    /* n >= 1 */
	int jitter_percent;  /* 0..100: each delay is scaled by 1 ± this / 100 */
	int retry_after_max_s;
	int disable_after_s; /* failing without a success this long disables */
};

/* The policy of a loaded configuration (delivery.*); borrows cfg's schedule. */
void bh_retry_policy_from_config(struct bh_retry_policy *p, const struct bh_config *cfg);

/* What one attempt gave, as far as the policy cares. */
struct bh_attempt_outcome {
	int http_status;   /* 0 when no response */
	bool error;	   /* the transfer failed (timeout, refused, reset, ...) */
	bool permanent;	   /* retrying cannot help */
	int retry_after_s; /* the response's Retry-After in seconds; 0: none */
};

/* Where the delivery stands when this attempt ends. */
struct bh_retry_position {
	int step;		  /* attempts since the schedule (re)started, this one
				   * included: 1 after the first; below 1 counts as 1 */
	bool finished;		  /* the delivery already has an outcome */
	int64_t failing_since_ms; /* the subscription's failing_since; 0: not failing
				   * or not known (then disable-after is left to the
				   * scheduler's sweep, bh_delivery_disable_failing) */
	int64_t now_ms;		  /* the caller's clock */
	double jitter;		  /* a uniform sample in [0, 1) */
};

enum bh_retry_action {
	BH_RETRY_SUCCEEDED, /* the delivery succeeded */
	BH_RETRY_AT,	    /* pending, attempted again at next_at_ms */
	BH_RETRY_FAILED,    /* the delivery failed for good */
	BH_RETRY_DISABLE    /* failed, and its subscription is to be disabled */
};

struct bh_retry_decision {
	enum bh_retry_action action;
	double delay_s;	    /* BH_RETRY_AT: seconds from now_ms; else 0 */
	int64_t next_at_ms; /* BH_RETRY_AT: now_ms + delay_s; else 0 */
	int retry_after_s;  /* the Retry-After of a 429/503 as honoured (capped),
			     * whatever the action, to be recorded; 0: none */
	const char *reason; /* static text: why, for logs and records */
};

/* The decision for one attempt; p, o and at are only read. */
struct bh_retry_decision bh_retry_decide(const struct bh_retry_policy *p,
					 const struct bh_attempt_outcome *o,
					 const struct bh_retry_position *at);

/* The attempt succeeded: a 2xx without a transport error. */
bool bh_retry_succeeded(const struct bh_attempt_outcome *o);

/* What one attempt says about its subscription's health. */
enum bh_retry_health {
	BH_RETRY_HEALTH_OK,	 /* success: last_success_at now, failing_since cleared */
	BH_RETRY_HEALTH_FAILING, /* failure: failing_since set if unset */
	BH_RETRY_HEALTH_GONE	 /* 410 Gone: disable now */
};
enum bh_retry_health bh_retry_health(const struct bh_attempt_outcome *o);

#endif
