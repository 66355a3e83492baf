/*
 * common/kind_psd2: the activation hour (the seed's 11:31 -> 12:00, a
 * change on the hour waits a whole hour, day / month / year / leap-day
 * boundaries, offsets that only rename the same instant), the endpoint and
 * security-header rules, the connector answer parser, the ADDED / UPDATED /
 * DELETED diff, the payloads, and that the kind renders the notification
 * as it is and matches no incoming event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "kind_psd2.h"
#include "subscription.h"

/* ---------------------------------------------------------------- activation */

struct activation_case {
	const char *name;
	const char *now;  /* RFC 3339, as bh_parse_time reads it */
	const char *want; /* bh_format_time of the activation */
};

static const struct activation_case activation_cases[] = {
	{"activation_seed_example_1131_gives_1200", "2026-11-26T11:31:00Z",
	 "2026-11-26T12:00:00.000Z"},
	{"activation_exactly_on_the_hour_waits_a_whole_hour", "2026-11-26T12:00:00.000Z",
	 "2026-11-26T13:00:00.000Z"},
	{"activation_one_ms_after_the_hour", "2026-11-26T12:00:00.001Z",
	 "2026-11-26T13:00:00.000Z"},
	{"activation_last_ms_before_the_hour", "2026-11-26T12:59:59.999Z",
	 "2026-11-26T13:00:00.000Z"},
	{"activation_crosses_midnight", "2026-11-26T23:31:00Z", "2026-11-27T00:00:00.000Z"},
	{"activation_crosses_month_end_30_days", "2026-11-30T23:59:00Z",
	 "2026-12-01T00:00:00.000Z"},
	{"activation_crosses_year_end", "2026-12-31T23:00:00Z", "2027-01-01T00:00:00.000Z"},
	{"activation_reaches_leap_day", "2028-02-28T23:15:00Z", "2028-02-29T00:00:00.000Z"},
	{"activation_leaves_leap_day", "2028-02-29T23:15:00Z", "2028-03-01T00:00:00.000Z"},
	{"activation_non_leap_february_end", "2027-02-28T23:15:00Z", "2027-03-01T00:00:00.000Z"},
	{"activation_offset_plus_one_is_the_same_instant", "2026-11-26T12:31:00+01:00",
	 "2026-11-26T12:00:00.000Z"},
	{"activation_offset_minus_five_across_local_midnight", "2026-11-26T23:45:00-05:00",
	 "2026-11-27T05:00:00.000Z"},
	{"activation_epoch_start", "1970-01-01T00:00:00Z", "1970-01-01T01:00:00.000Z"},
};

static void run_activation_case(void **state)
{
	const struct activation_case *c = *state;
	int64_t now;
	char got[32];
	assert_int_equal(bh_parse_time(c->now, &now), 0);
	int64_t at = bh_psd2_activation_ms(now);
	bh_format_time(at, got);
	assert_string_equal(got, c->want);
	/* Strictly later, on a whole hour, less than an hour away. */
	assert_true(at > now);
	assert_int_equal(at % 3600000, 0);
	assert_true(at - now <= 3600000);
}

/* ---------------------------------------------------------------- settings rules */

static void endpoint_refuses_parameters_and_non_http(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(
		bh_psd2_check_endpoint("https://tpp.example/hook", false, false, err, sizeof(err)),
		0);
	assert_int_equal(bh_psd2_check_endpoint("https://tpp.example/hook?a=b", false, false, err,
						sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "parameters"));
	assert_int_equal(bh_psd2_check_endpoint("https://tpp.example/hook#x", false, false, err,
						sizeof(err)),
			 -1);
	assert_int_equal(
		bh_psd2_check_endpoint("https://tpp.example/hook?", false, false, err, sizeof(err)),
		-1);
	assert_int_equal(
		bh_psd2_check_endpoint("ftp://tpp.example/hook", false, false, err, sizeof(err)),
		-1);
	/* Loopback only when the configuration allows it. */
	assert_int_equal(
		bh_psd2_check_endpoint("http://127.0.0.1:9/h", false, false, err, sizeof(err)), -1);
	assert_int_equal(
		bh_psd2_check_endpoint("http://127.0.0.1:9/h", true, false, err, sizeof(err)), 0);
}

static void header_follows_the_seed_pattern(void **state)
{
	(void)state;
	assert_true(bh_psd2_header_valid(""));
	assert_true(bh_psd2_header_valid("Basic dXNlcjpwYXNzd29yZA=="));
	assert_true(bh_psd2_header_valid("a+b/c= 09"));
	assert_false(bh_psd2_header_valid("Basic abc;"));
	assert_false(bh_psd2_header_valid("Bearer x:y"));
	assert_false(bh_psd2_header_valid("tab\there"));
	assert_false(bh_psd2_header_valid("line\r\nInjected: 1"));
	assert_false(bh_psd2_header_valid("caf\xc3\xa9"));
	char *long_header = malloc(BH_PSD2_HEADER_MAX + 2);
	memset(long_header, 'a', BH_PSD2_HEADER_MAX + 1);
	long_header[BH_PSD2_HEADER_MAX + 1] = '\0';
	assert_false(bh_psd2_header_valid(long_header));
	long_header[BH_PSD2_HEADER_MAX] = '\0';
	assert_true(bh_psd2_header_valid(long_header));
	free(long_header);
}

/* ---------------------------------------------------------------- connector answers */

struct parse_case {
	const char *name;
	const char *body;
	const char *err_has; /* NULL: accepted */
};

static const struct parse_case parse_cases[] = {
	{"parse_accepts_string_and_number_balances",
	 "{\"accounts\":[{\"accountId\":\"a\",\"balance\":\"10.50\",\"currency\":\"EUR\"},"
	 "{\"accountId\":\"b\",\"balance\":7,\"currency\":\"EUR\"}]}",
	 NULL},
	{"parse_accepts_no_accounts", "{\"accounts\":[]}", NULL},
	{"parse_refuses_not_json", "<html>", "not valid JSON"},
	{"parse_refuses_missing_accounts", "{}", "accounts: must be an array"},
	{"parse_refuses_missing_account_id",
	 "{\"accounts\":[{\"balance\":\"1\",\"currency\":\"EUR\"}]}", "accounts[0].accountId"},
	{"parse_refuses_bad_balance",
	 "{\"accounts\":[{\"accountId\":\"a\",\"balance\":\"ten\",\"currency\":\"EUR\"}]}",
	 "accounts[0].balance"},
	{"parse_refuses_missing_currency",
	 "{\"accounts\":[{\"accountId\":\"a\",\"balance\":\"1\"}]}", "accounts[0].currency"},
	{"parse_refuses_duplicate_account",
	 "{\"accounts\":[{\"accountId\":\"a\",\"balance\":\"1\",\"currency\":\"EUR\"},"
	 "{\"accountId\":\"a\",\"balance\":\"2\",\"currency\":\"EUR\"}]}",
	 "appears twice"},
};

static void run_parse_case(void **state)
{
	const struct parse_case *c = *state;
	json_t *out = NULL;
	char err[256] = "";
	int rc = bh_psd2_parse_accounts(c->body, strlen(c->body), &out, err, sizeof(err));
	if (c->err_has == NULL) {
		assert_int_equal(rc, 0);
		assert_non_null(out);
	} else {
		assert_int_equal(rc, -1);
		assert_null(out);
		assert_non_null(strstr(err, c->err_has));
	}
	json_decref(out);
}

static json_t *accounts(const char *body)
{
	json_t *out = NULL;
	char err[256];
	assert_int_equal(bh_psd2_parse_accounts(body, strlen(body), &out, err, sizeof(err)), 0);
	return out;
}

static void diff_lists_added_updated_deleted_sorted(void **state)
{
	(void)state;
	json_t *prev =
		accounts("{\"accounts\":["
			 "{\"accountId\":\"A\",\"balance\":\"1.00\",\"currency\":\"EUR\"},"
			 "{\"accountId\":\"B\",\"balance\":\"2.00\",\"currency\":\"EUR\"},"
			 "{\"accountId\":\"C\",\"balance\":\"3.00\",\"currency\":\"EUR\"},"
			 "{\"accountId\":\"E\",\"balance\":\"5.00\",\"currency\":\"EUR\"}]}");
	json_t *cur = accounts("{\"accounts\":["
			       "{\"accountId\":\"D\",\"balance\":\"4.00\",\"currency\":\"EUR\"},"
			       "{\"accountId\":\"C\",\"balance\":\"3.00\",\"currency\":\"EUR\"},"
			       "{\"accountId\":\"E\",\"balance\":\"5.00\",\"currency\":\"USD\"},"
			       "{\"accountId\":\"A\",\"balance\":\"1.50\",\"currency\":\"EUR\"}]}");
	json_t *d = bh_psd2_diff(prev, cur);
	char *text = json_dumps(d, JSON_COMPACT);
	assert_string_equal(text, "[{\"accountId\":\"A\",\"eventType\":\"UPDATED\"},"
				  "{\"accountId\":\"B\",\"eventType\":\"DELETED\"},"
				  "{\"accountId\":\"D\",\"eventType\":\"ADDED\"},"
				  "{\"accountId\":\"E\",\"eventType\":\"UPDATED\"}]");
	free(text);
	json_decref(d);
	/* First refresh: everything ADDED; unchanged again: nothing. */
	json_t *empty = json_object();
	d = bh_psd2_diff(empty, cur);
	assert_int_equal(json_array_size(d), 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(
			json_string_value(json_object_get(json_array_get(d, i), "eventType")),
			"ADDED");
	json_decref(d);
	d = bh_psd2_diff(cur, cur);
	assert_int_equal(json_array_size(d), 0);
	json_decref(d);
	json_decref(empty);
	json_decref(prev);
	json_decref(cur);
}

/* ---------------------------------------------------------------- payloads and kind */

static void payloads_have_the_seed_shape(void **state)
{
	(void)state;
	const char *ids[] = {"acc-1", "acc-2"};
	json_t *t = bh_psd2_transaction_event("c-1", ids, 2);
	char *text = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text,
			    "{\"accounts\":[{\"accountId\":\"acc-1\"},{\"accountId\":\"acc-2\"}],"
			    "\"consentId\":\"c-1\",\"eventType\":\"NEW\","
			    "\"type\":\"transactionEvent\"}");
	free(text);
	json_decref(t);
	json_t *a =
		bh_psd2_account_event("c-1", "t-1", "FAILED", "SLSP", "Slovenská sporiteľňa", NULL);
	text = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"accounts\":[],\"bankCode\":\"SLSP\","
				  "\"bankName\":\"Slovenská sporiteľňa\",\"consentId\":\"c-1\","
				  "\"taskId\":\"t-1\",\"taskStatus\":\"FAILED\","
				  "\"type\":\"accountEvent\"}");
	free(text);
	json_decref(a);
}

static void kind_renders_the_payload_and_matches_nothing(void **state)
{
	(void)state;
	json_t *stored = bh_psd2_event_json(
		"ev-1", 1764156600000LL,
		bh_psd2_account_event("c-1", "t-1", "FINISHED", "SLSP", "S", json_array()));
	struct bh_event ev;
	char err[256];
	assert_int_equal(bh_event_from_json(stored, NULL, &ev, err, sizeof(err)), 0);
	assert_true(bh_event_type_internal(ev.type));
	struct bh_sub sub;
	memset(&sub, 0, sizeof(sub));
	sub.kind = "psd2";
	sub.enabled = true;
	assert_false(bh_sub_match(&sub, &ev));
	/* A native subscription for every type does not get it either. */
	sub.kind = "native";
	assert_false(bh_sub_match(&sub, &ev));
	sub.kind = "psd2";
	struct bh_rendered r;
	assert_int_equal(bh_sub_render(&sub, &ev, &r, err, sizeof(err)), 0);
	json_t *body = json_loadb(r.body, r.len, 0, NULL);
	assert_true(json_equal(body, json_object_get(stored, "data")));
	assert_string_equal(r.content_type, "application/json");
	json_decref(body);
	bh_rendered_free(&r);
	bh_event_free(&ev);
	json_decref(stored);
}


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(activation_cases, run_activation_case);
	TABLE(parse_cases, run_parse_case);
	ONE(endpoint_refuses_parameters_and_non_http);
	ONE(header_follows_the_seed_pattern);
	ONE(diff_lists_added_updated_deleted_sorted);
	ONE(payloads_have_the_seed_shape);
	ONE(kind_renders_the_payload_and_matches_nothing);
	return _cmocka_run_group_tests("psd2", tests, n, NULL, NULL);
}
