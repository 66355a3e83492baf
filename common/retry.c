#include "retry.h"

void bh_retry_policy_from_config(struct bh_retry_policy *p, const struct bh_config *cfg)
{
	p->schedule = cfg->delivery_schedule;
	p->schedule_len = cfg->delivery_schedule_len;
	p->jitter_percent = cfg->delivery_jitter_percent;
	p->retry_after_max_s = BH_RETRY_AFTER_MAX_S;
	p->disable_after_s = cfg->delivery_disable_after_s;
}

bool bh_retry_succeeded(const struct bh_attempt_outcome *o)
{
	return !o->error && o->http_status >= 200 && o->http_status < 300;
}

enum bh_retry_health bh_retry_health(const struct bh_attempt_outcome *o)
{
	if (o->http_status == 410)
		return BH_RETRY_HEALTH_GONE;
	return bh_retry_succeeded(o) ? BH_RETRY_HEALTH_OK : BH_RETRY_HEALTH_FAILING;
}

/* Only a 429 or 503 asks to be left alone for a while; others are ignored. */
static int honoured_retry_after(const struct bh_retry_policy *p, const struct bh_attempt_outcome *o)
{
	if ((o->http_status != 429 && o->http_status != 503) || o->retry_after_s <= 0)
		return 0;
	return o->retry_after_s < p->retry_after_max_s ? o->retry_after_s : p->retry_after_max_s;
}

/* Strictly longer than disable_after_s, as the scheduler's sweep compares. */
static bool failing_too_long(const struct bh_retry_policy *p, const struct bh_retry_position *at)
{
	return at->failing_since_ms > 0 &&
	       at->now_ms - at->failing_since_ms > (int64_t)p->disable_after_s * 1000;
}

/* schedule[step] seconds scaled by a factor uniform in [1 - j, 1 + j). */
static double jittered(const struct bh_retry_policy *p, int step, double u)
{
	double d = p->schedule[step];
	double j = p->jitter_percent / 100.0;
	if (d > 0 && j > 0)
		d *= (1.0 - j) + 2.0 * j * u;
	return d;
}

struct bh_retry_decision bh_retry_decide(const struct bh_retry_policy *p,
					 const struct bh_attempt_outcome *o,
					 const struct bh_retry_position *at)
{
	struct bh_retry_decision d = {.action = BH_RETRY_FAILED,
				      .retry_after_s = honoured_retry_after(p, o)};
	int step = at->step < 1 ? 1 : at->step;

	if (bh_retry_succeeded(o)) {
		d.action = BH_RETRY_SUCCEEDED;
		d.reason = "succeeded";
		return d;
	}
	if (o->http_status == 410) {
		d.action = BH_RETRY_DISABLE;
		d.reason = "endpoint answered 410 Gone";
		return d;
	}
	if (failing_too_long(p, at)) {
		d.action = BH_RETRY_DISABLE;
		d.reason = "failing without a successful delivery for longer than disable_after_s";
		return d;
	}
	if (o->permanent) {
		d.reason = "permanent failure";
		return d;
	}
	if (step >= p->schedule_len) {
		d.reason = "retry schedule exhausted";
		return d;
	}
	if (at->finished) {
		/* An overlapping attempt already ended it; this one cannot reopen it. */
		d.reason = "delivery already finished";
		return d;
	}
	d.action = BH_RETRY_AT;
	d.delay_s = jittered(p, step, at->jitter);
	d.reason = "retry on schedule";
	if (d.delay_s < d.retry_after_s) {
		d.delay_s = d.retry_after_s;
		d.reason = "retry after the receiver's Retry-After";
	}
	d.next_at_ms = at->now_ms + (int64_t)(d.delay_s * 1000.0 + 0.5);
	return d;
}
