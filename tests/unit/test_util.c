/*
 * common/util: bh_utf8_scrub, which keeps error messages that echo client
 * bytes valid UTF-8 (a JSON reply could not carry them otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "util.h"

struct scrub_case {
	const char *name;
	const char *in;
	const char *out;
};

static const struct scrub_case scrub_cases[] = {
	{"scrub_ascii_unchanged", "url: host contains '%'", "url: host contains '%'"},
	{"scrub_valid_two_three_four_byte_unchanged", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
	{"scrub_lone_lead_byte", "ex\xc3mple", "ex?mple"},
	{"scrub_lone_continuation_byte", "a\x80z", "a?z"},
	{"scrub_sequence_cut_at_end", "euro \xe2\x82", "euro ??"},
	{"scrub_overlong_slash", "\xc0\xaf", "??"},
	{"scrub_overlong_three_byte", "\xe0\x80\xaf", "???"},
	{"scrub_surrogate", "\xed\xa0\x80", "???"},
	{"scrub_past_u10ffff", "\xf4\x90\x80\x80", "????"},
	{"scrub_byte_f5_and_ff", "\xf5\xff", "??"},
};

static void run_scrub_case(void **state)
{
	const struct scrub_case *c = *state;
	char buf[64];
	strcpy(buf, c->in);
	bh_utf8_scrub(buf);
	assert_string_equal(buf, c->out);
	/* The point of it: jansson takes the result as a JSON string. */
	json_t *j = json_string(buf);
	assert_non_null(j);
	json_decref(j);
}

int main(void)
{
	struct CMUnitTest tests[16];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(scrub_cases) / sizeof(scrub_cases[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = scrub_cases[i].name,
						 .test_func = run_scrub_case,
						 .initial_state = (void *)&scrub_cases[i]};
	return _cmocka_run_group_tests("util", tests, n, NULL, NULL);
}
