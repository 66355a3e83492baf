/*
 * common/util: bh_utf8_fix, which keeps replies and log lines valid UTF-8
 * when they quote input (schemathesis found a 500 where "%.40s" cut a
 * 4-byte character in half and JSON encoding then failed), and
 * bh_utf8_valid, with which the router answers 404 for a path parameter
 * PostgreSQL would refuse (GET /v1/endpoints/%FF was a 503).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util.h"

struct utf8_case {
	const char *name;
	const char *in;
	const char *out;
};

static const struct utf8_case utf8_cases[] = {
	{"ascii_unchanged", "id: no webhook 42.", "id: no webhook 42."},
	{"two_three_four_byte_unchanged", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x95\xbf",
	 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x95\xbf"},
	{"four_byte_cut_after_two", "ab\xf0\x9d", "ab??"},
	{"four_byte_cut_before_text", "\xf0\x9d\x95.", "???."},
	{"stray_continuation", "a\x80z", "a?z"},
	{"latin1_byte", "caf\xe9!", "caf?!"},
	{"overlong_nul", "\xc0\x80", "??"},
	{"overlong_three_byte", "\xe0\x80\xaf", "???"},
	{"surrogate", "\xed\xa0\x80", "???"},
	{"above_u10ffff", "\xf4\x90\x80\x80", "????"},
	{"f5_never_valid", "\xf5\x80\x80\x80", "????"},
	{"empty", "", ""},
};

static void run_utf8_case(void **state)
{
	const struct utf8_case *c = *state;
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", c->in);
	bh_utf8_fix(buf);
	assert_string_equal(buf, c->out);
}

/* Every case above is valid exactly when bh_utf8_fix leaves it unchanged. */
static void utf8_valid_agrees_with_fix(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		bool same = strcmp(utf8_cases[i].in, utf8_cases[i].out) == 0;
		if (bh_utf8_valid(utf8_cases[i].in) != same)
			fail_msg("%s: bh_utf8_valid says %d", utf8_cases[i].name, !same);
	}
}

static void utf8_valid_path_parameters(void **state)
{
	(void)state;
	assert_false(bh_utf8_valid("\xff")); /* what %FF decodes to */
	assert_false(bh_utf8_valid("ep_\xfe\xff"));
	assert_false(bh_utf8_valid("\xc3")); /* cut at the end */
	assert_true(bh_utf8_valid("%FF"));   /* still escaped: plain ASCII */
	assert_true(bh_utf8_valid("ep_01H\xc3\xa9\xf0\x9d\x95\xbf")); /* é, a 4-byte character */
}

int main(void)
{
	struct CMUnitTest tests[32];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = utf8_cases[i].name,
						 .test_func = run_utf8_case,
						 .initial_state = (void *)&utf8_cases[i]};
	tests[n++] = (struct CMUnitTest){.name = "utf8_valid_agrees_with_fix",
					 .test_func = utf8_valid_agrees_with_fix};
	tests[n++] = (struct CMUnitTest){.name = "utf8_valid_path_parameters",
					 .test_func = utf8_valid_path_parameters};
	return _cmocka_run_group_tests("util", tests, n, NULL, NULL);
}
