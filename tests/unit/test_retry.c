/*
 * common/retry: the retry decision, table-driven over every outcome
 * (2xx, 410, 5xx, 429, 503, transport error, permanent) × schedule
 * position (first, middle, last retry, exhausted) × Retry-After (none,
 * shorter than the schedule's delay, longer, over the cap) × disable-after
 * (not failing, failing less long, failing longer) × an already finished
 * delivery, each row checked against the rules of PRODUCT.md section 5
 * written out independently below (expect()); plus hand-written rows for
 * the exact figures, the jitter's bounds and the subscription health.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "retry.h"

/* The default schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
static const int schedule[] = {0, 5, 300, 1800, 7200, 18000, 36000, 36000};
#define NOW 1800000000000LL
#define DAY_MS (86400LL * 1000)

static struct bh_retry_policy policy(int jitter_percent)
{
	return (struct bh_retry_policy){.schedule = schedule,
					.schedule_len = 8,
					.jitter_percent = jitter_percent,
					.retry_after_max_s = 3600,
					.disable_after_s = 5 * 86400};
}

/* ---- hand-written rows: exact figures ---------------------------------- */

struct row {
	const char *name;
	int http_status;
	bool error, permanent;
	int retry_after_s;
	int step;
	bool finished;
	int64_t failing_since_ms;
	enum bh_retry_action action;
	double delay_s;
	int retry_after_recorded;
};

static const struct row rows[] = {
	{"2xx_first_attempt_succeeds", 200, false, false, 0, 1, false, 0, BH_RETRY_SUCCEEDED, 0, 0},
	{"204_succeeds", 204, false, false, 0, 4, false, 0, BH_RETRY_SUCCEEDED, 0, 0},
	{"2xx_after_schedule_end_still_succeeds", 200, false, false, 0, 8, false, 0,
	 BH_RETRY_SUCCEEDED, 0, 0},
	{"2xx_on_finished_delivery_succeeds", 200, false, false, 0, 3, true, 0, BH_RETRY_SUCCEEDED,
	 0, 0},
	{"2xx_with_transport_error_is_a_failure", 200, true, false, 0, 1, false, 0, BH_RETRY_AT, 5,
	 0},
	{"500_first_retries_after_5s", 500, false, false, 0, 1, false, 0, BH_RETRY_AT, 5, 0},
	{"500_middle_retries_after_30min", 500, false, false, 0, 3, false, 0, BH_RETRY_AT, 1800, 0},
	{"500_last_retry_after_10h", 500, false, false, 0, 7, false, 0, BH_RETRY_AT, 36000, 0},
	{"500_schedule_exhausted_fails", 500, false, false, 0, 8, false, 0, BH_RETRY_FAILED, 0, 0},
	{"500_beyond_schedule_fails", 500, false, false, 0, 12, false, 0, BH_RETRY_FAILED, 0, 0},
	{"step_below_one_counts_as_first", 500, false, false, 0, -3, false, 0, BH_RETRY_AT, 5, 0},
	{"no_response_retries", 0, true, false, 0, 2, false, 0, BH_RETRY_AT, 300, 0},
	{"302_is_a_failure", 302, false, false, 0, 1, false, 0, BH_RETRY_AT, 5, 0},
	{"404_is_retried_not_disabled", 404, false, false, 0, 1, false, 0, BH_RETRY_AT, 5, 0},
	{"410_disables_at_once", 410, false, false, 0, 1, false, 0, BH_RETRY_DISABLE, 0, 0},
	{"410_disables_at_schedule_end", 410, false, false, 0, 8, false, 0, BH_RETRY_DISABLE, 0, 0},
	{"410_disables_a_finished_delivery", 410, false, false, 0, 2, true, 0, BH_RETRY_DISABLE, 0,
	 0},
	{"permanent_fails_on_first", 0, true, true, 0, 1, false, 0, BH_RETRY_FAILED, 0, 0},
	{"429_retry_after_shorter_keeps_schedule", 429, false, false, 60, 2, false, 0, BH_RETRY_AT,
	 300, 60},
	{"429_retry_after_longer_wins", 429, false, false, 600, 1, false, 0, BH_RETRY_AT, 600, 600},
	{"503_retry_after_over_cap_is_capped", 503, false, false, 86400, 1, false, 0, BH_RETRY_AT,
	 3600, 3600},
	{"503_capped_retry_after_below_schedule", 503, false, false, 86400, 5, false, 0,
	 BH_RETRY_AT, 18000, 3600},
	{"500_retry_after_is_ignored", 500, false, false, 600, 1, false, 0, BH_RETRY_AT, 5, 0},
	{"429_retry_after_recorded_when_exhausted", 429, false, false, 120, 8, false, 0,
	 BH_RETRY_FAILED, 0, 120},
	{"failure_on_finished_delivery_stays_failed", 500, false, false, 0, 2, true, 0,
	 BH_RETRY_FAILED, 0, 0},
	{"failing_4_days_still_retries", 500, false, false, 0, 2, false, NOW - 4 * DAY_MS,
	 BH_RETRY_AT, 300, 0},
	{"failing_exactly_5_days_still_retries", 500, false, false, 0, 2, false, NOW - 5 * DAY_MS,
	 BH_RETRY_AT, 300, 0},
	{"failing_over_5_days_disables", 500, false, false, 0, 2, false, NOW - 5 * DAY_MS - 1,
	 BH_RETRY_DISABLE, 0, 0},
	{"success_of_long_failing_subscription_succeeds", 200, false, false, 0, 2, false,
	 NOW - 30 * DAY_MS, BH_RETRY_SUCCEEDED, 0, 0},
};

static void exact_rows(void **state)
{
	(void)state;
	struct bh_retry_policy p = policy(0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct bh_attempt_outcome o = {r->http_status, r->error, r->permanent,
					       r->retry_after_s};
		struct bh_retry_position at = {r->step, r->finished, r->failing_since_ms, NOW, 0.5};
		struct bh_retry_decision d = bh_retry_decide(&p, &o, &at);
		print_message("%s\n", r->name);
		assert_int_equal(d.action, r->action);
		assert_true(d.delay_s == r->delay_s);
		assert_int_equal(d.retry_after_s, r->retry_after_recorded);
		assert_int_equal(d.next_at_ms,
				 r->action == BH_RETRY_AT ? NOW + (int64_t)(r->delay_s * 1000) : 0);
		assert_non_null(d.reason);
	}
}

/* ---- the full matrix against the rules --------------------------------- */

struct outcome_case {
	const char *name;
	int http_status;
	bool error, permanent;
	bool honours_retry_after; /* 429 / 503 */
};

static const struct outcome_case outcomes[] = {
	{"200", 200, false, false, false},   {"299", 299, false, false, false},
	{"410", 410, false, false, false},   {"500", 500, false, false, false},
	{"429", 429, false, false, true},    {"503", 503, false, false, true},
	{"timeout", 0, true, false, false},  {"permanent", 0, true, true, false},
	{"400+permanent", 400, false, true, false},
};

/* first failure, middle, last retry, schedule used up */
static const int steps[] = {1, 4, 7, 8};
/* none, shorter than any failure delay, longer than early ones, over the cap */
static const int retry_afters[] = {0, 2, 1000, 7200};
static const int64_t failing_since[] = {0, NOW - DAY_MS, NOW - 6 * DAY_MS};

/* The rules, as PRODUCT.md section 5 states them, independently of retry.c. */
static void expect(const struct outcome_case *oc, int step, int retry_after, int64_t since,
		   bool finished, enum bh_retry_action *action, double *delay, int *recorded)
{
	bool success = !oc->error && oc->http_status >= 200 && oc->http_status < 300;
	int ra = oc->honours_retry_after && retry_after > 0
			 ? (retry_after > 3600 ? 3600 : retry_after)
			 : 0;
	*recorded = ra;
	*delay = 0;
	if (success)
		*action = BH_RETRY_SUCCEEDED;
	else if (oc->http_status == 410)
		*action = BH_RETRY_DISABLE;
	else if (since != 0 && NOW - since > 5 * DAY_MS)
		*action = BH_RETRY_DISABLE;
	else if (oc->permanent || step >= 8 || finished)
		*action = BH_RETRY_FAILED;
	else {
		*action = BH_RETRY_AT;
		*delay = schedule[step] > ra ? schedule[step] : ra;
	}
}

static void every_combination(void **state)
{
	(void)state;
	struct bh_retry_policy p = policy(0);
	int checked = 0;
	for (size_t a = 0; a < sizeof(outcomes) / sizeof(outcomes[0]); a++)
		for (size_t b = 0; b < sizeof(steps) / sizeof(steps[0]); b++)
			for (size_t c = 0; c < sizeof(retry_afters) / sizeof(retry_afters[0]); c++)
				for (size_t e = 0; e < sizeof(failing_since) / sizeof(failing_since[0]);
				     e++)
					for (int fin = 0; fin < 2; fin++) {
						const struct outcome_case *oc = &outcomes[a];
						struct bh_attempt_outcome o = {
							oc->http_status, oc->error, oc->permanent,
							retry_afters[c]};
						struct bh_retry_position at = {
							steps[b], fin, failing_since[e], NOW, 0.25};
						struct bh_retry_decision d =
							bh_retry_decide(&p, &o, &at);
						enum bh_retry_action want;
						double delay;
						int recorded;
						expect(oc, steps[b], retry_afters[c], failing_since[e],
						       fin, &want, &delay, &recorded);
						if (d.action != want || d.delay_s != delay ||
						    d.retry_after_s != recorded)
							fail_msg("%s step %d retry-after %d failing "
								 "since %lld finished %d: action %d "
								 "delay %g recorded %d, want %d %g %d",
								 oc->name, steps[b], retry_afters[c],
								 (long long)failing_since[e], fin,
								 d.action, d.delay_s, d.retry_after_s,
								 want, delay, recorded);
						checked++;
					}
	assert_int_equal(checked, 9 * 4 * 4 * 3 * 2);
}

/* ---- jitter ------------------------------------------------------------ */

static void jitter_spans_plus_minus_percent(void **state)
{
	(void)state;
	struct bh_retry_policy p = policy(20);
	struct bh_attempt_outcome o = {500, false, false, 0};
	struct bh_retry_position at = {3, false, 0, NOW, 0.0}; /* schedule[3] = 1800 s */
	assert_true(bh_retry_decide(&p, &o, &at).delay_s == 1800 * 0.8);
	at.jitter = 0.5;
	assert_true(bh_retry_decide(&p, &o, &at).delay_s == 1800);
	at.jitter = 0.999999;
	double hi = bh_retry_decide(&p, &o, &at).delay_s;
	assert_true(hi < 1800 * 1.2 && hi > 1800 * 1.19);
	assert_int_equal(bh_retry_decide(&p, &o, &at).next_at_ms, NOW + (int64_t)(hi * 1000 + 0.5));
}

static void jitter_never_shortens_retry_after(void **state)
{
	(void)state;
	struct bh_retry_policy p = policy(20);
	/* 5 s - 20 % would be 4 s; the receiver asked for 5 s */
	struct bh_attempt_outcome o = {429, false, false, 5};
	struct bh_retry_position at = {1, false, 0, NOW, 0.0};
	struct bh_retry_decision d = bh_retry_decide(&p, &o, &at);
	assert_int_equal(d.action, BH_RETRY_AT);
	assert_true(d.delay_s == 5);
}

static void zero_delay_is_not_jittered(void **state)
{
	(void)state;
	static const int immediate[] = {0, 0, 10};
	struct bh_retry_policy p = {.schedule = immediate,
				    .schedule_len = 3,
				    .jitter_percent = 100,
				    .retry_after_max_s = 3600,
				    .disable_after_s = 60};
	struct bh_attempt_outcome o = {500, false, false, 0};
	struct bh_retry_position at = {1, false, 0, NOW, 0.9};
	struct bh_retry_decision d = bh_retry_decide(&p, &o, &at);
	assert_int_equal(d.action, BH_RETRY_AT);
	assert_true(d.delay_s == 0);
	assert_int_equal(d.next_at_ms, NOW);
}

/* ---- a one-entry schedule: one attempt, no retry ------------------------ */

static void single_attempt_schedule_fails_first_failure(void **state)
{
	(void)state;
	static const int once[] = {0};
	struct bh_retry_policy p = {.schedule = once,
				    .schedule_len = 1,
				    .jitter_percent = 20,
				    .retry_after_max_s = 3600,
				    .disable_after_s = 60};
	struct bh_attempt_outcome o = {503, false, false, 30};
	struct bh_retry_position at = {1, false, 0, NOW, 0.5};
	struct bh_retry_decision d = bh_retry_decide(&p, &o, &at);
	assert_int_equal(d.action, BH_RETRY_FAILED);
	assert_string_equal(d.reason, "retry schedule exhausted");
	assert_int_equal(d.retry_after_s, 30);
}

/* ---- health and the policy from the configuration ---------------------- */

static void health_of_each_outcome(void **state)
{
	(void)state;
	static const struct {
		struct bh_attempt_outcome o;
		enum bh_retry_health want;
	} cases[] = {
		{{200, false, false, 0}, BH_RETRY_HEALTH_OK},
		{{201, false, false, 0}, BH_RETRY_HEALTH_OK},
		{{200, true, false, 0}, BH_RETRY_HEALTH_FAILING},
		{{410, false, false, 0}, BH_RETRY_HEALTH_GONE},
		{{500, false, false, 0}, BH_RETRY_HEALTH_FAILING},
		{{0, true, false, 0}, BH_RETRY_HEALTH_FAILING},
		{{0, true, true, 0}, BH_RETRY_HEALTH_FAILING},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(bh_retry_health(&cases[i].o), cases[i].want);
		assert_int_equal(bh_retry_succeeded(&cases[i].o),
				 cases[i].want == BH_RETRY_HEALTH_OK);
	}
}

static void policy_from_config(void **state)
{
	(void)state;
	struct bh_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.delivery_schedule[0] = 0;
	cfg.delivery_schedule[1] = 7;
	cfg.delivery_schedule_len = 2;
	cfg.delivery_jitter_percent = 15;
	cfg.delivery_disable_after_s = 3600;
	struct bh_retry_policy p;
	bh_retry_policy_from_config(&p, &cfg);
	assert_ptr_equal(p.schedule, cfg.delivery_schedule);
	assert_int_equal(p.schedule_len, 2);
	assert_int_equal(p.jitter_percent, 15);
	assert_int_equal(p.retry_after_max_s, BH_RETRY_AFTER_MAX_S);
	assert_int_equal(p.disable_after_s, 3600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_rows),
		cmocka_unit_test(every_combination),
		cmocka_unit_test(jitter_spans_plus_minus_percent),
		cmocka_unit_test(jitter_never_shortens_retry_after),
		cmocka_unit_test(zero_delay_is_not_jittered),
		cmocka_unit_test(single_attempt_schedule_fails_first_failure),
		cmocka_unit_test(health_of_each_outcome),
		cmocka_unit_test(policy_from_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
