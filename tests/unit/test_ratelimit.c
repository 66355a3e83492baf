/*
 * common/ratelimit: the burst is served then refused with the wait until
 * the next token, tokens refill at the rate and never beyond the burst,
 * keys have separate buckets, and a full table evicts without failing.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_then_refused_with_wait),
		cmocka_unit_test(slow_rate_waits_several_seconds),
		cmocka_unit_test(refill_is_capped_at_burst),
		cmocka_unit_test(keys_have_separate_buckets),
		cmocka_unit_test(full_table_evicts_least_recent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
