/*
 * common/ratelimit: the burst is served then refused with the wait until
 * the next token, tokens refill at the rate and never beyond the burst,
 * keys have separate buckets, and a full table evicts without failing;
 * the login back-off: free failures, then 1 s, 2 s, 4 s ... capped, a
 * success resets it, and failures far apart are not consecutive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "ratelimit.h"

static void burst_then_refused_with_wait(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(2, 3, 64);
	for (int i = 0; i < 3; i++)
		assert_int_equal(bh_ratelimit_take(rl, "a", 1000), 0);
	/* 2 a second: the next token is 500 ms away, rounded up to 1 s */
	assert_int_equal(bh_ratelimit_take(rl, "a", 1000), 1);
	assert_int_equal(bh_ratelimit_take(rl, "a", 1499), 1);
	assert_int_equal(bh_ratelimit_take(rl, "a", 1500), 0);
	assert_int_equal(bh_ratelimit_take(rl, "a", 1500), 1);
	bh_ratelimit_free(rl);
}

static void slow_rate_waits_several_seconds(void **state)
{
	(void)state;
	/* 1 a second, burst 1: after the first, the wait is 1 s, never 0 */
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 8);
	assert_int_equal(bh_ratelimit_take(rl, "k", 0), 0);
	assert_int_equal(bh_ratelimit_take(rl, "k", 1), 1);
	assert_int_equal(bh_ratelimit_take(rl, "k", 999), 1);
	assert_int_equal(bh_ratelimit_take(rl, "k", 1000), 0);
	bh_ratelimit_free(rl);
}

static void refill_is_capped_at_burst(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(10, 2, 64);
	assert_int_equal(bh_ratelimit_take(rl, "a", 0), 0);
	/* an hour idle refills to 2, not 36000 */
	assert_int_equal(bh_ratelimit_take(rl, "a", 3600 * 1000), 0);
	assert_int_equal(bh_ratelimit_take(rl, "a", 3600 * 1000), 0);
	assert_int_not_equal(bh_ratelimit_take(rl, "a", 3600 * 1000), 0);
	bh_ratelimit_free(rl);
}

static void keys_have_separate_buckets(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 64);
	assert_int_equal(bh_ratelimit_take(rl, "a", 0), 0);
	assert_int_not_equal(bh_ratelimit_take(rl, "a", 0), 0);
	assert_int_equal(bh_ratelimit_take(rl, "b", 0), 0);
	assert_int_not_equal(bh_ratelimit_take(rl, "b", 0), 0);
	bh_ratelimit_free(rl);
}

static void full_table_evicts_least_recent(void **state)
{
	(void)state;
	/* 4 slots, 100 keys: never fails, and the key just used keeps its bucket */
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 4);
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(bh_ratelimit_take(rl, key, i), 0);
		assert_int_not_equal(bh_ratelimit_take(rl, key, i), 0);
	}
	bh_ratelimit_free(rl);
}

static void backoff_after_free_failures_doubles_to_the_cap(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 64);
	/* three failures are free: no block */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(bh_ratelimit_fail(rl, "u", 3, 10, 1000), 0);
		assert_int_equal(bh_ratelimit_blocked(rl, "u", 1000), 0);
	}
	/* then 1 s, 2 s, 4 s, 8 s, and 10 s (the cap) from then on */
	const int want[] = {1, 2, 4, 8, 10, 10};
	int64_t now = 1000;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(bh_ratelimit_fail(rl, "u", 3, 10, now), want[i]);
		assert_int_equal(bh_ratelimit_blocked(rl, "u", now), want[i]);
		/* blocked until exactly the end of it */
		assert_int_equal(bh_ratelimit_blocked(rl, "u", now + want[i] * 1000 - 1), 1);
		now += want[i] * 1000;
		assert_int_equal(bh_ratelimit_blocked(rl, "u", now), 0);
	}
	/* another key is not affected */
	assert_int_equal(bh_ratelimit_blocked(rl, "v", now), 0);
	bh_ratelimit_free(rl);
}

static void success_resets_the_backoff(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 64);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 60, 0), 0);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 60, 0), 1);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 60, 0), 2);
	bh_ratelimit_succeed(rl, "u");
	assert_int_equal(bh_ratelimit_blocked(rl, "u", 0), 0);
	/* the count starts again: one free failure, then 1 s */
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 60, 0), 0);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 60, 0), 1);
	bh_ratelimit_free(rl);
}

static void failures_far_apart_are_not_consecutive(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 64);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 5, 0), 0);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 5, 5000), 1);
	/* more than the 5 s cap after the last one: forgotten, free again */
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 5, 10001), 0);
	assert_int_equal(bh_ratelimit_fail(rl, "u", 1, 5, 10002), 1);
	bh_ratelimit_free(rl);
}

static void no_backoff_with_unlimited_free_failures(void **state)
{
	(void)state;
	struct bh_ratelimit *rl = bh_ratelimit_new(1, 1, 64);
	for (int i = 0; i < 100; i++)
		assert_int_equal(bh_ratelimit_fail(rl, "u", 1000, 60, i), 0);
	assert_int_equal(bh_ratelimit_blocked(rl, "u", 100), 0);
	/* the bucket of the same key is separate from its failures */
	assert_int_equal(bh_ratelimit_take(rl, "u", 100), 0);
	bh_ratelimit_free(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_then_refused_with_wait),
		cmocka_unit_test(slow_rate_waits_several_seconds),
		cmocka_unit_test(refill_is_capped_at_burst),
		cmocka_unit_test(keys_have_separate_buckets),
		cmocka_unit_test(full_table_evicts_least_recent),
		cmocka_unit_test(backoff_after_free_failures_doubles_to_the_cap),
		cmocka_unit_test(success_resets_the_backoff),
		cmocka_unit_test(failures_far_apart_are_not_consecutive),
		cmocka_unit_test(no_backoff_with_unlimited_free_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
