/*
 * common/header: the one list of request headers a subscription may not
 * set, shared by the API (refused at registration) and the worker
 * (skipped): every header the sender sets itself, every "webhook-" name,
 * and the framing and connection fields, in any case; near misses and
 * ordinary custom headers stay allowed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>

#include "header.h"

struct header_case {
	const char *name;
	bool reserved;
};

static const struct header_case cases[] = {
	/* what worker/sender.c and the kinds set on every request */
	{"webhook-id", true},
	{"webhook-timestamp", true},
	{"webhook-signature", true},
	{"Webhook-Signature", true},
	{"webhook-anything-later", true},
	{"Content-Type", true},
	{"User-Agent", true},
	{"Expect", true},
	{"EXPECT", true},
	/* framing and the connection */
	{"Content-Length", true},
	{"Transfer-Encoding", true},
	{"Host", true},
	{"connection", true},
	{"Keep-Alive", true},
	{"Proxy-Connection", true},
	{"TE", true},
	{"Trailer", true},
	{"Upgrade", true},
	/* allowed: a receiver's own headers, and near misses */
	{"Authorization", false},
	{"X-Team", false},
	{"X-Custom", false},
	{"Consent-ID", false},
	{"webhook", false},
	{"x-webhook-id", false},
	{"Content-Types", false},
	{"Expected", false},
	{"Hosts", false},
	{"Tee", false},
	{"Content-Encoding", false},
	{"", false},
};

static void run_case(void **state)
{
	const struct header_case *c = *state;
	assert_int_equal(bh_header_reserved(c->name), c->reserved);
}

#define NCASES (sizeof(cases) / sizeof(cases[0]))

int main(void)
{
	static char names[NCASES][80];
	struct CMUnitTest tests[NCASES];
	for (size_t i = 0; i < NCASES; i++) {
		/* "Expect_is_reserved", "X-Team_is_allowed": what each case checks */
		snprintf(names[i], sizeof(names[i]), "%s_is_%s",
			 cases[i].name[0] ? cases[i].name : "empty_name",
			 cases[i].reserved ? "reserved" : "allowed");
		tests[i] = (struct CMUnitTest){
			.name = names[i], .test_func = run_case, .initial_state = (void *)&cases[i]};
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
