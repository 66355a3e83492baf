/*
 * worker/destination: the key of a receiving host (scheme, host, port);
 * the per-host window (starts at BH_DEST_INITIAL_WINDOW, +1 per answer up
 * to the per-host cap, halved per unanswered transfer); the global cap; a
 * host dead after dead_after failures in a row, for a back-off that
 * doubles and is capped, then one probe; the global slots shared fairly
 * among hosts; and what the table remembers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "destination.h"

static const struct bh_dest_limits LIMITS = {
	.global_max = 100,
	.host_max = 40,
	.dead_after = 3,
	.backoff_ms = 1000,
	.backoff_max_ms = 3000,
	.stall_ms = 2000,
};

/* Starts transfers to d while admitted; returns how many started. */
static int fill(struct bh_dest_table *t, struct bh_dest *d, int64_t now)
{
	int n = 0;
	while (bh_dest_admit(t, d, now) == BH_DEST_GO) {
		bh_dest_started(t, d, now);
		n++;
	}
	return n;
}

static void finish_n(struct bh_dest_table *t, struct bh_dest *d, int n,
		     enum bh_dest_outcome outcome, int64_t now)
{
	for (int i = 0; i < n; i++)
		bh_dest_finished(t, d, outcome, now);
}

static void key_is_scheme_host_port(void **state)
{
	(void)state;
	static const struct {
		const char *url, *key;
	} cases[] = {
		{"http://example.com/hook", "http://example.com:80"},
		{"https://example.com/a?b", "https://example.com:443"},
		{"HTTP://Example.COM:8080/x", "http://example.com:8080"},
		{"http://example.com:080", "http://example.com:80"},
		{"http://example.com.:81/", "http://example.com:81"},
		{"http://[::1]:9000/h", "http://[::1]:9000"},
		{"https://[2001:DB8::1]/h", "https://[2001:db8::1]:443"},
		{"http://u:p@host:1/", "http://host:1"},
		{"http://127.0.0.1:5000#frag", "http://127.0.0.1:5000"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char key[BH_DEST_KEY_MAX];
		assert_int_equal(bh_dest_key(cases[i].url, key, sizeof(key)), 0);
		assert_string_equal(key, cases[i].key);
	}
	/* Different paths and subscriptions, one host: one key. */
	char a[BH_DEST_KEY_MAX], b[BH_DEST_KEY_MAX];
	assert_int_equal(bh_dest_key("http://h:1/dead/1", a, sizeof(a)), 0);
	assert_int_equal(bh_dest_key("http://h:1/dead/2?x", b, sizeof(b)), 0);
	assert_string_equal(a, b);
	static const char *bad[] = {"example.com/x", "://h",	       "http://",
				    "http://:80/",   "http://h:port/", "http://h:70000/",
				    "http://[::1/",  "http://[::1]x/"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char key[BH_DEST_KEY_MAX];
		assert_int_equal(bh_dest_key(bad[i], key, sizeof(key)), -1);
	}
	char tiny[12];
	assert_int_equal(bh_dest_key("http://example.com/", tiny, sizeof(tiny)), -1);
}

static void host_starts_at_initial_window_and_waits_there(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *d = bh_dest_get(t, "http://a:80", 0);
	assert_int_equal(fill(t, d, 0), BH_DEST_INITIAL_WINDOW);
	assert_int_equal(bh_dest_admit(t, d, 0), BH_DEST_WAIT);
	/* Another host is not held back by it. */
	struct bh_dest *e = bh_dest_get(t, "http://b:80", 0);
	assert_int_equal(bh_dest_admit(t, e, 0), BH_DEST_GO);
	bh_dest_table_free(t);
}

static void window_grows_per_answer_up_to_host_cap(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *d = bh_dest_get(t, "http://a:80", 0);
	fill(t, d, 0);
	finish_n(t, d, 1, BH_DEST_ANSWERED, 10);
	assert_int_equal(bh_dest_window(d), BH_DEST_INITIAL_WINDOW + 1);
	/* The freed slot and the one gained: two more start. */
	assert_int_equal(fill(t, d, 10), 2);
	/* Any status is an answer: a 500 still says the host is alive. */
	for (int i = 0; i < 100; i++) {
		finish_n(t, d, 1, BH_DEST_ANSWERED, 20);
		fill(t, d, 20);
	}
	assert_int_equal(bh_dest_window(d), LIMITS.host_max);
	assert_int_equal(bh_dest_in_flight(d), LIMITS.host_max);
	assert_int_equal(bh_dest_admit(t, d, 20), BH_DEST_WAIT);
	bh_dest_table_free(t);
}

static void window_halves_per_failure_never_below_one(void **state)
{
	(void)state;
	struct bh_dest_limits lim = LIMITS;
	lim.dead_after = 100; /* shrinking only, no death here */
	struct bh_dest_table *t = bh_dest_table_new(&lim);
	struct bh_dest *d = bh_dest_get(t, "http://a:80", 0);
	fill(t, d, 0);
	finish_n(t, d, 1, BH_DEST_FAILED, 5000);
	assert_int_equal(bh_dest_window(d), BH_DEST_INITIAL_WINDOW / 2);
	/* 9 still running, window 5: nothing more starts. */
	assert_int_equal(bh_dest_admit(t, d, 5000), BH_DEST_WAIT);
	finish_n(t, d, 9, BH_DEST_FAILED, 5000);
	assert_int_equal(bh_dest_window(d), 1);
	assert_int_equal(fill(t, d, 5000), 1);
	/* An answer grows it again; a local end (policy refusal) changes nothing. */
	finish_n(t, d, 1, BH_DEST_ANSWERED, 5001);
	assert_int_equal(bh_dest_window(d), 2);
	fill(t, d, 5001);
	finish_n(t, d, 2, BH_DEST_LOCAL, 5002);
	assert_int_equal(bh_dest_window(d), 2);
	assert_int_equal(bh_dest_in_flight(d), 0);
	bh_dest_table_free(t);
}

static void consecutive_failures_mark_host_dead_until_backoff_ends(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *d = bh_dest_get(t, "http://dead:80", 0);
	fill(t, d, 0);
	/* Two in a row, then an answer: the count starts over. */
	finish_n(t, d, 2, BH_DEST_FAILED, 100);
	finish_n(t, d, 1, BH_DEST_ANSWERED, 100);
	finish_n(t, d, 2, BH_DEST_FAILED, 100);
	assert_int_equal(bh_dest_dead_until(d), 0);
	assert_false(bh_dest_stalled(t, d, 100));
	finish_n(t, d, 1, BH_DEST_FAILED, 200);
	assert_int_equal(bh_dest_dead_until(d), 200 + LIMITS.backoff_ms);
	assert_true(bh_dest_stalled(t, d, 200));
	assert_int_equal(bh_dest_admit(t, d, 200), BH_DEST_DEAD);
	assert_int_equal(bh_dest_admit(t, d, 1199), BH_DEST_DEAD);
	/* Transfers running when it died fail too: no second, longer death. */
	finish_n(t, d, 4, BH_DEST_FAILED, 300);
	assert_int_equal(bh_dest_dead_until(d), 200 + LIMITS.backoff_ms);
	/* Back-off over: one probe, no more. */
	assert_int_equal(fill(t, d, 1200), 1);
	assert_int_equal(bh_dest_admit(t, d, 1200), BH_DEST_WAIT);
	bh_dest_table_free(t);
}

static void failed_probe_doubles_backoff_capped_and_answer_revives(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *d = bh_dest_get(t, "http://dead:80", 0);
	fill(t, d, 0);
	finish_n(t, d, 3, BH_DEST_FAILED, 0);
	finish_n(t, d, BH_DEST_INITIAL_WINDOW - 3, BH_DEST_FAILED, 0);
	assert_int_equal(bh_dest_dead_until(d), 1000);
	int64_t now = 1000;
	const int64_t expect[] = {2000, 3000, 3000}; /* doubles, capped at backoff_max_ms */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(fill(t, d, now), 1);
		finish_n(t, d, 1, BH_DEST_FAILED, now);
		assert_int_equal(bh_dest_dead_until(d) - now, expect[i]);
		now = bh_dest_dead_until(d);
	}
	/* The probe answers: alive, window grows from one, back-off starts over. */
	assert_int_equal(fill(t, d, now), 1);
	finish_n(t, d, 1, BH_DEST_ANSWERED, now);
	assert_int_equal(bh_dest_dead_until(d), 0);
	assert_int_equal(bh_dest_window(d), 2);
	assert_int_equal(fill(t, d, now), 2);
	finish_n(t, d, 2, BH_DEST_FAILED, now);
	finish_n(t, d, 1, BH_DEST_FAILED, now);
	assert_int_equal(bh_dest_dead_until(d) - now, LIMITS.backoff_ms);
	bh_dest_table_free(t);
}

static void stalled_when_running_without_answer_and_then_waits(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *d = bh_dest_get(t, "http://slow:80", 0);
	assert_false(bh_dest_stalled(t, d, 99999)); /* nothing running */
	bh_dest_started(t, d, 1000);
	assert_false(bh_dest_stalled(t, d, 3000));
	assert_true(bh_dest_stalled(t, d, 3001));
	/* Stalled: its window has room, but no new transfer starts. */
	assert_int_equal(bh_dest_admit(t, d, 3000), BH_DEST_GO);
	assert_int_equal(bh_dest_admit(t, d, 3001), BH_DEST_WAIT);
	bh_dest_started(t, d, 3000);
	finish_n(t, d, 1, BH_DEST_ANSWERED, 3500);
	assert_false(bh_dest_stalled(t, d, 5500));
	assert_int_equal(bh_dest_admit(t, d, 5500), BH_DEST_GO);
	assert_true(bh_dest_stalled(t, d, 5501));
	bh_dest_table_free(t);
}

static void host_slow_when_its_backlog_outlasts_its_pace_at_its_window(void **state)
{
	(void)state;
	struct bh_dest_limits lim = LIMITS;
	lim.host_max = 20;
	lim.drain_ms = 10000;
	lim.dead_after = 100; /* shrunk below, never dead */
	struct bh_dest_table *t = bh_dest_table_new(&lim);
	struct bh_dest *d = bh_dest_get(t, "http://a:80", 0);
	/* About 100 answers a second, over two windows, one transfer at a time. */
	for (int64_t now = 0; now <= 2000; now += 10) {
		bh_dest_started(t, d, now);
		bh_dest_finished(t, d, BH_DEST_ANSWERED, now);
	}
	assert_int_equal(bh_dest_window(d), 20);
	/* Below its window the worker, not the host, sets the pace: never slow. */
	bh_dest_queued(d, 5000);
	assert_false(bh_dest_slow(t, d, 2000));
	/* At its window (the cap): 10 s at ~100/s is 1,000 jobs; 1,100 are too many. */
	fill(t, d, 2000);
	assert_int_equal(bh_dest_in_flight(d), 20);
	bh_dest_queued(d, -4000);
	assert_false(bh_dest_slow(t, d, 2000));
	bh_dest_queued(d, 100);
	assert_true(bh_dest_slow(t, d, 2000));
	/* A window still growing is judged at the cap: at 10 of 20, twice as many may wait. */
	finish_n(t, d, 20, BH_DEST_FAILED, 2000); /* window 20 -> 1 */
	for (int i = 0; i < 9; i++) {
		fill(t, d, 2000);
		finish_n(t, d, 1, BH_DEST_ANSWERED, 2000);
	}
	fill(t, d, 2000);
	assert_int_equal(bh_dest_window(d), 10);
	assert_int_equal(bh_dest_in_flight(d), 10);
	bh_dest_queued(d, 2000 - 1100);
	assert_false(bh_dest_slow(t, d, 2000));
	bh_dest_queued(d, 200);
	assert_true(bh_dest_slow(t, d, 2000));
	bh_dest_queued(d, -2200);
	finish_n(t, d, 10, BH_DEST_ANSWERED, 2000);
	/* Stalled counts as slow whatever the backlog. */
	bh_dest_started(t, d, 2000);
	assert_false(bh_dest_slow(t, d, 4000));
	assert_true(bh_dest_slow(t, d, 4001));
	/* While jobs wait for it, it is not forgotten. */
	bh_dest_finished(t, d, BH_DEST_ANSWERED, 4001);
	bh_dest_queued(d, 1);
	bh_dest_put(t, d, 4001);
	assert_int_equal(bh_dest_count(t), 1);
	bh_dest_queued(d, -1);
	bh_dest_put(t, bh_dest_hold(d), 4001);
	assert_int_equal(bh_dest_count(t), 0);
	bh_dest_table_free(t);
}

static void global_cap_holds_over_every_host(void **state)
{
	(void)state;
	struct bh_dest_limits lim = LIMITS;
	lim.global_max = 12;
	struct bh_dest_table *t = bh_dest_table_new(&lim);
	struct bh_dest *d[13];
	for (int i = 0; i < 13; i++) {
		char key[32];
		snprintf(key, sizeof(key), "http://h%d:80", i);
		d[i] = bh_dest_get(t, key, 0);
	}
	/* One each: under every share, only the global cap can refuse. */
	for (int i = 0; i < 12; i++) {
		assert_int_equal(bh_dest_admit(t, d[i], 0), BH_DEST_GO);
		bh_dest_started(t, d[i], 0);
	}
	assert_int_equal(bh_dest_total_in_flight(t), 12);
	assert_int_equal(bh_dest_hosts_running(t), 12);
	assert_int_equal(bh_dest_admit(t, d[12], 0), BH_DEST_WAIT);
	bh_dest_finished(t, d[0], BH_DEST_ANSWERED, 1);
	assert_int_equal(bh_dest_admit(t, d[12], 1), BH_DEST_GO);
	bh_dest_table_free(t);
}

static void busy_host_leaves_a_newcomer_its_share(void **state)
{
	(void)state;
	struct bh_dest_limits lim = LIMITS;
	lim.global_max = 100;
	lim.host_max = 100;
	struct bh_dest_table *t = bh_dest_table_new(&lim);
	struct bh_dest *a = bh_dest_get(t, "http://a:80", 0);
	/* a's window grows past any share; alone it still leaves 100 / 2 free. */
	for (int i = 0; i < 200; i++) {
		fill(t, a, 0);
		finish_n(t, a, 1, BH_DEST_ANSWERED, 0);
	}
	fill(t, a, 0);
	assert_int_equal(bh_dest_window(a), 100);
	assert_int_equal(bh_dest_in_flight(a), 50);
	/* b comes: it finds its room, up to its own window. */
	struct bh_dest *b = bh_dest_get(t, "http://b:80", 0);
	assert_int_equal(fill(t, b, 0), BH_DEST_INITIAL_WINDOW);
	/* Two run: a may go on while more than 100 / 3 stays free. */
	assert_int_equal(fill(t, a, 0), 100 - 33 - 50 - BH_DEST_INITIAL_WINDOW);
	assert_int_equal(bh_dest_admit(t, a, 0), BH_DEST_WAIT);
	/* b, under its share, still grows into the slots a leaves; a third host gets in. */
	for (int i = 0; i < 20; i++) {
		finish_n(t, b, 1, BH_DEST_ANSWERED, 0);
		fill(t, b, 0);
	}
	assert_int_equal(bh_dest_in_flight(b), BH_DEST_INITIAL_WINDOW + 20);
	assert_int_equal(bh_dest_admit(t, a, 0), BH_DEST_WAIT);
	struct bh_dest *c = bh_dest_get(t, "http://c:80", 0);
	assert_int_equal(bh_dest_admit(t, c, 0), BH_DEST_GO);
	bh_dest_table_free(t);
}

static void dead_host_never_holds_slots_others_need(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *dead = bh_dest_get(t, "http://dead:80", 0);
	struct bh_dest *live = bh_dest_get(t, "http://live:80", 0);
	/* Fifty subscriptions at one host: still one window. */
	assert_int_equal(fill(t, dead, 0), BH_DEST_INITIAL_WINDOW);
	finish_n(t, dead, BH_DEST_INITIAL_WINDOW, BH_DEST_FAILED, 15000);
	assert_int_equal(bh_dest_in_flight(dead), 0);
	assert_int_equal(bh_dest_admit(t, dead, 15000), BH_DEST_DEAD);
	for (int i = 0; i < 200; i++) {
		fill(t, live, 15000);
		finish_n(t, live, 1, BH_DEST_ANSWERED, 15000);
	}
	fill(t, live, 15000);
	assert_int_equal(bh_dest_in_flight(live), LIMITS.host_max);
	bh_dest_table_free(t);
}

static void table_forgets_idle_hosts_remembers_failing_ones(void **state)
{
	(void)state;
	struct bh_dest_table *t = bh_dest_table_new(&LIMITS);
	struct bh_dest *a = bh_dest_get(t, "http://a:80", 0);
	assert_ptr_equal(bh_dest_get(t, "http://a:80", 0), a);
	bh_dest_put(t, a, 0);
	assert_int_equal(bh_dest_count(t), 1); /* one reference left */
	bh_dest_started(t, bh_dest_hold(a), 0);
	bh_dest_put(t, a, 0);
	bh_dest_put(t, a, 0);
	assert_int_equal(bh_dest_count(t), 1); /* a transfer still runs */
	bh_dest_finished(t, a, BH_DEST_ANSWERED, 0);
	bh_dest_put(t, bh_dest_hold(a), 0);
	assert_int_equal(bh_dest_count(t), 0);

	struct bh_dest *d = bh_dest_get(t, "http://dead:80", 0);
	fill(t, d, 0);
	finish_n(t, d, BH_DEST_INITIAL_WINDOW, BH_DEST_FAILED, 0);
	bh_dest_put(t, d, 0);
	/* Nobody refers to it, but it is dead: its next delivery must find it so. */
	assert_int_equal(bh_dest_count(t), 1);
	d = bh_dest_get(t, "http://dead:80", 500);
	assert_int_equal(bh_dest_admit(t, d, 500), BH_DEST_DEAD);
	bh_dest_put(t, d, 500);
	/* Long after: forgotten when its bucket is next looked at. */
	d = bh_dest_get(t, "http://dead:80", 500 + LIMITS.backoff_max_ms + 1000);
	assert_int_equal(bh_dest_dead_until(d), 0);
	assert_int_equal(bh_dest_admit(t, d, 500 + LIMITS.backoff_max_ms + 1000), BH_DEST_GO);
	bh_dest_put(t, d, 0);
	bh_dest_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_is_scheme_host_port),
		cmocka_unit_test(host_starts_at_initial_window_and_waits_there),
		cmocka_unit_test(window_grows_per_answer_up_to_host_cap),
		cmocka_unit_test(window_halves_per_failure_never_below_one),
		cmocka_unit_test(consecutive_failures_mark_host_dead_until_backoff_ends),
		cmocka_unit_test(failed_probe_doubles_backoff_capped_and_answer_revives),
		cmocka_unit_test(stalled_when_running_without_answer_and_then_waits),
		cmocka_unit_test(host_slow_when_its_backlog_outlasts_its_pace_at_its_window),
		cmocka_unit_test(global_cap_holds_over_every_host),
		cmocka_unit_test(busy_host_leaves_a_newcomer_its_share),
		cmocka_unit_test(dead_host_never_holds_slots_others_need),
		cmocka_unit_test(table_forgets_idle_hosts_remembers_failing_ones),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
