/*
 * common/idempotency, its pure parts: which Idempotency-Key values are
 * accepted (1..255 printable ASCII), and the request fingerprint a key is
 * bound to (the same JSON in another key order or spacing is the same
 * request; another body, route or method is not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "idempotency.h"

struct key_case {
	const char *what;
	const char *key;
	bool ok;
};

static char key_255[256], key_256[257];

static void test_key_check(void **state)
{
	(void)state;
	memset(key_255, 'k', 255);
	memset(key_256, 'k', 256);
	const struct key_case cases[] = {
		{"one character", "a", true},
		{"a UUID", "2b1e6a0c-3f5d-4c1e-9a7b-0d2c4e6f8a1b", true},
		{"spaces and punctuation", "order 42/retry~1!", true},
		{"255 characters", key_255, true},
		{"empty", "", false},
		{"256 characters", key_256, false},
		{"a tab", "a\tb", false},
		{"DEL", "a\x7f", false},
		{"UTF-8", "cl\xc3\xa9", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[160] = "";
		int rc = bh_idem_key_check(cases[i].key, err, sizeof(err));
		if ((rc == 0) != cases[i].ok)
			fail_msg("%s: expected %s, got %d (%s)", cases[i].what,
				 cases[i].ok ? "accepted" : "refused", rc, err);
		if (!cases[i].ok && err[0] == '\0')
			fail_msg("%s: refused without a reason", cases[i].what);
	}
}

static void hash_of(const char *method, const char *route, const char *body, char out[65])
{
	json_t *j = body != NULL ? json_loads(body, 0, NULL) : NULL;
	if (body != NULL && j == NULL)
		fail_msg("bad test JSON: %s", body);
	bh_idem_request_hash(method, route, j, out);
	json_decref(j);
}

static void test_hash_canonical(void **state)
{
	(void)state;
	char a[65], b[65];
	hash_of("POST", "/v1/events", "{\"type\":\"x\",\"data\":{\"a\":1,\"b\":2}}", a);
	hash_of("POST", "/v1/events", "{ \"data\": {\"b\":2, \"a\":1}, \"type\": \"x\" }", b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), 64);
}

static void test_hash_differs(void **state)
{
	(void)state;
	char base[65], other[65];
	hash_of("POST", "/v1/events", "{\"type\":\"x\"}", base);
	hash_of("POST", "/v1/events", "{\"type\":\"y\"}", other);
	assert_string_not_equal(base, other);
	hash_of("POST", "/v1/events/batch", "{\"type\":\"x\"}", other);
	assert_string_not_equal(base, other);
	hash_of("PUT", "/v1/events", "{\"type\":\"x\"}", other);
	assert_string_not_equal(base, other);
	hash_of("POST", "/v1/events", NULL, other);
	assert_string_not_equal(base, other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_check),
		cmocka_unit_test(test_hash_canonical),
		cmocka_unit_test(test_hash_differs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
