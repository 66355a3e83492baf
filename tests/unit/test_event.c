/*
 * common/event: every event type that must be accepted, and for each way a
 * message can be wrong, an error that names the field (it becomes the DLQ
 * reason).
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

#define TXN_DATA                                                                                \
	"\"data\":{\"transaction_id\":\"t-1\",\"dc\":\"credit\",\"code\":\"EFT\","             \
	"\"amount\":\"100.00\",\"balance\":\"739.00\",\"currency\":\"EUR\","                   \
	"\"description\":\"salary\",\"counterparty\":{\"id\":\"c1\",\"iban\":\"DE89\",\"name\":\"ACME\"}," \
	"\"related_entities\":[{\"user_id\":\"u1\",\"customer_ids\":[\"c9\"]}]}"
#define HEAD(type) "\"type\":\"" type "\",\"occurred_at\":\"2026-11-25T10:15:00Z\","
#define ZERO8 "[0][0][0][0][0][0][0][0]"
#define TIMED(at) "\"type\":\"balance.changed\",\"occurred_at\":\"" at "\","
#define TXN_AMOUNT(a)                                                                     \
	"\"data\":{\"transaction_id\":\"t\",\"dc\":\"debit\",\"amount\":\"" a "\"," \
	"\"currency\":\"EUR\"}"
#define ACCOUNT "\"bank_id\":\"gh.29.uk\",\"account_id\":\"8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0\","
#define BAL_DATA "\"data\":{\"balance\":\"10.50\",\"previous_balance\":\"-3\",\"currency\":\"GBP\"}"
#define PAY_DATA                                                                               \
	"\"data\":{\"acquirer_id\":\"1234567890\",\"merchant_id\":\"42\",\"acceptor_id\":\"a1\"," \
	"\"terminal_id\":\"T1\",\"payment_id\":\"p-1\",\"payment_method\":\"BLIK\","          \
	"\"status\":\"ACSC\",\"amount\":\"12.34\",\"currency\":\"PLN\"}"

/* ---------------------------------------------------------------- valid */

struct valid_case {
	const char *name;
	const char *json;
	const char *fallback_id;
	const char *want_id;
	enum bh_event_type want_type;
	const char *want_account; /* NULL: absent */
};

static const struct valid_case valid_cases[] = {
	{"accepts_transaction_created_credit",
	 "{\"id\":\"e-1\"," HEAD("transaction.created") ACCOUNT TXN_DATA "}", NULL, "e-1",
	 BH_EVENT_TRANSACTION_CREATED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_balance_changed", "{\"id\":\"e-2\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}",
	 NULL, "e-2", BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_payment_updated_without_account",
	 "{\"id\":\"e-3\"," HEAD("payment.updated") PAY_DATA "}", NULL, "e-3",
	 BH_EVENT_PAYMENT_UPDATED, NULL},
	{"uses_fallback_id_when_id_absent",
	 "{" HEAD("balance.changed") ACCOUNT BAL_DATA "}", "kafka-bankhook.events-0-17",
	 "kafka-bankhook.events-0-17", BH_EVENT_BALANCE_CHANGED,
	 "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"keeps_given_id_over_fallback", "{\"id\":\"mine\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}",
	 "fallback", "mine", BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_consent_ids_and_offset_time",
	 "{\"id\":\"e-4\",\"type\":\"balance.changed\",\"occurred_at\":\"2026-11-25T11:15:00.250+01:00\"," ACCOUNT
	 "\"consent_ids\":[\"c-1\",\"c-2\"]," BAL_DATA "}",
	 NULL, "e-4", BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	/* The bounds of the documented ranges are inside them. */
	{"accepts_first_time_of_year_1",
	 "{\"id\":\"e-5\"," TIMED("0001-01-01T00:00:00Z") ACCOUNT BAL_DATA "}", NULL, "e-5",
	 BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_last_time_of_year_9999",
	 "{\"id\":\"e-6\"," TIMED("9999-12-31T23:59:59.999Z") ACCOUNT BAL_DATA "}", NULL, "e-6",
	 BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_offset_that_stays_in_year_1",
	 "{\"id\":\"e-7\"," TIMED("0001-01-01T01:00:00+01:00") ACCOUNT BAL_DATA "}", NULL, "e-7",
	 BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_leap_day", "{\"id\":\"e-8\"," TIMED("2024-02-29T12:00:00Z") ACCOUNT BAL_DATA "}",
	 NULL, "e-8", BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
	{"accepts_largest_amount",
	 "{\"id\":\"e-9\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"-999999999999999.9999999999\",\"currency\":\"EUR\"}}",
	 NULL, "e-9", BH_EVENT_BALANCE_CHANGED, "8ca8a7e4-6d02-40e3-a129-0b2bf89de9f0"},
};

static void run_valid_case(void **state)
{
	const struct valid_case *c = *state;
	struct bh_event ev;
	char err[256] = "";
	int rc = bh_event_parse(c->json, strlen(c->json), c->fallback_id, &ev, err, sizeof(err));
	if (rc != 0)
		fail_msg("refused: %s", err);
	assert_string_equal(ev.id, c->want_id);
	assert_int_equal(ev.type, c->want_type);
	if (c->want_account)
		assert_string_equal(ev.account_id, c->want_account);
	else
		assert_null(ev.account_id);
	assert_non_null(ev.data);
	/* the normalized JSON carries the id, generated or not */
	assert_string_equal(json_string_value(json_object_get(ev.json, "id")), c->want_id);
	bh_event_free(&ev);
}

static void occurred_at_is_parsed_to_utc_ms(void **state)
{
	(void)state;
	const char *a = "{\"id\":\"a\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}";
	const char *b = "{\"id\":\"b\",\"type\":\"balance.changed\",\"occurred_at\":\"2026-11-25T11:15:00+01:00\"," ACCOUNT BAL_DATA "}";
	struct bh_event ea, eb;
	char err[256];
	assert_int_equal(bh_event_parse(a, strlen(a), NULL, &ea, err, sizeof(err)), 0);
	assert_int_equal(bh_event_parse(b, strlen(b), NULL, &eb, err, sizeof(err)), 0);
	assert_true(ea.occurred_ms == eb.occurred_ms);
	bh_event_free(&ea);
	bh_event_free(&eb);
}

static void credit_and_debit_are_told_apart(void **state)
{
	(void)state;
	const char *credit = "{\"id\":\"c\"," HEAD("transaction.created") ACCOUNT TXN_DATA "}";
	char debit[2048];
	strcpy(debit, credit);
	char *dc = strstr(debit, "\"credit\"");
	memcpy(dc, "\"debit\" ", 8); /* same length: JSON allows the trailing space */
	struct bh_event ev;
	char err[256];
	assert_int_equal(bh_event_parse(credit, strlen(credit), NULL, &ev, err, sizeof(err)), 0);
	assert_true(bh_event_is_credit(&ev));
	assert_string_equal(bh_event_data_str(&ev, "currency"), "EUR");
	assert_string_equal(bh_event_data_str(&ev, "no_such_key"), "");
	bh_event_free(&ev);
	assert_int_equal(bh_event_parse(debit, strlen(debit), NULL, &ev, err, sizeof(err)), 0);
	assert_false(bh_event_is_credit(&ev));
	bh_event_free(&ev);
}

/* -------------------------------------------------------------- invalid */

struct invalid_case {
	const char *name;
	const char *json;
	const char *field; /* the error must start with this field name */
};

static const struct invalid_case invalid_cases[] = {
	{"refuses_text_that_is_not_json", "this is not json", "event"},
	{"refuses_truncated_json", "{\"id\":\"x\",\"type\":", "event"},
	{"refuses_json_array", "[1,2,3]", "event"},
	{"refuses_json_string", "\"transaction.created\"", "event"},
	{"refuses_missing_type", "{\"id\":\"x\",\"occurred_at\":\"2026-11-25T10:15:00Z\"," ACCOUNT BAL_DATA "}",
	 "type"},
	{"refuses_unknown_type", "{\"id\":\"x\"," HEAD("account.deleted") ACCOUNT BAL_DATA "}", "type"},
	{"refuses_type_of_wrong_json_type",
	 "{\"id\":\"x\",\"type\":7,\"occurred_at\":\"2026-11-25T10:15:00Z\"," ACCOUNT BAL_DATA "}", "type"},
	{"refuses_missing_occurred_at", "{\"id\":\"x\",\"type\":\"balance.changed\"," ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_bad_occurred_at",
	 "{\"id\":\"x\",\"type\":\"balance.changed\",\"occurred_at\":\"yesterday\"," ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_occurred_at_out_of_range",
	 "{\"id\":\"x\",\"type\":\"balance.changed\",\"occurred_at\":\"2026-13-45T10:15:00\"," ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_missing_account_id",
	 "{\"id\":\"x\"," HEAD("balance.changed") "\"bank_id\":\"b\"," BAL_DATA "}", "account_id"},
	{"refuses_missing_bank_id",
	 "{\"id\":\"x\"," HEAD("balance.changed") "\"account_id\":\"a\"," BAL_DATA "}", "bank_id"},
	{"refuses_id_with_spaces", "{\"id\":\"a b\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}", "id"},
	{"refuses_numeric_id", "{\"id\":5," HEAD("balance.changed") ACCOUNT BAL_DATA "}", "id"},
	{"refuses_missing_data", "{\"id\":\"x\"," HEAD("balance.changed") "\"bank_id\":\"b\",\"account_id\":\"a\"}",
	 "data"},
	{"refuses_consent_ids_not_array",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT "\"consent_ids\":\"c-1\"," BAL_DATA "}",
	 "consent_ids"},
	{"refuses_non_decimal_amount",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT
	 "\"data\":{\"transaction_id\":\"t\",\"dc\":\"debit\",\"amount\":\"1,000.00\",\"currency\":\"EUR\"}}",
	 "data.amount"},
	{"refuses_numeric_amount",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT
	 "\"data\":{\"transaction_id\":\"t\",\"dc\":\"debit\",\"amount\":100.0,\"currency\":\"EUR\"}}",
	 "data.amount"},
	{"refuses_bad_dc",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT
	 "\"data\":{\"transaction_id\":\"t\",\"dc\":\"both\",\"amount\":\"1\",\"currency\":\"EUR\"}}",
	 "data.dc"},
	{"refuses_lowercase_currency",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"1.00\",\"currency\":\"eur\"}}",
	 "data.currency"},
	{"refuses_non_decimal_balance",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT "\"data\":{\"balance\":\"1e5\",\"currency\":\"EUR\"}}",
	 "data.balance"},
	{"refuses_unknown_payment_method",
	 "{\"id\":\"x\"," HEAD("payment.updated")
	 "\"data\":{\"acquirer_id\":\"1\",\"merchant_id\":\"2\",\"payment_id\":\"p\",\"payment_method\":\"CASH\","
	 "\"status\":\"ACSC\",\"amount\":\"1.00\",\"currency\":\"EUR\"}}",
	 "data.payment_method"},
	{"refuses_overlong_merchant_id",
	 "{\"id\":\"x\"," HEAD("payment.updated")
	 "\"data\":{\"acquirer_id\":\"1\",\"merchant_id\":\"12345678901\",\"payment_id\":\"p\",\"payment_method\":\"CARD\","
	 "\"status\":\"ACSC\",\"amount\":\"1.00\",\"currency\":\"EUR\"}}",
	 "data.merchant_id"},
	/* Times PostgreSQL or a renderer would refuse, or that would be normalised. */
	{"refuses_february_30", "{\"id\":\"x\"," TIMED("2026-02-30T10:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_february_29_of_common_year",
	 "{\"id\":\"x\"," TIMED("2025-02-29T10:00:00Z") ACCOUNT BAL_DATA "}", "occurred_at"},
	{"refuses_february_29_of_1900", "{\"id\":\"x\"," TIMED("1900-02-29T10:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_april_31", "{\"id\":\"x\"," TIMED("2026-04-31T10:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_year_0", "{\"id\":\"x\"," TIMED("0000-01-01T00:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_offset_before_year_1",
	 "{\"id\":\"x\"," TIMED("0001-01-01T00:00:00+01:00") ACCOUNT BAL_DATA "}", "occurred_at"},
	{"refuses_offset_after_year_9999",
	 "{\"id\":\"x\"," TIMED("9999-12-31T23:59:59-01:00") ACCOUNT BAL_DATA "}", "occurred_at"},
	{"refuses_hour_24", "{\"id\":\"x\"," TIMED("2026-11-25T24:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_leap_second", "{\"id\":\"x\"," TIMED("2026-12-31T23:59:60Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_offset_hour_24", "{\"id\":\"x\"," TIMED("2026-11-25T10:00:00+24:00") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_time_without_zone", "{\"id\":\"x\"," TIMED("2026-11-25T10:00:00") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	{"refuses_short_year", "{\"id\":\"x\"," TIMED("26-11-25T10:00:00Z") ACCOUNT BAL_DATA "}",
	 "occurred_at"},
	/* Amounts every renderer formats: 15 integer and 10 fraction digits at most. */
	{"refuses_16_integer_digits",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT TXN_AMOUNT("1000000000000000") "}",
	 "data.amount"},
	{"refuses_38_integer_digits",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT TXN_AMOUNT(
		 "12345678901234567890123456789012345678.00") "}",
	 "data.amount"},
	{"refuses_leading_zeros_past_15_digits",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT TXN_AMOUNT("0000000000000001") "}",
	 "data.amount"},
	{"refuses_11_fraction_digits",
	 "{\"id\":\"x\"," HEAD("transaction.created") ACCOUNT TXN_AMOUNT("1.00000000001") "}",
	 "data.amount"},
	{"refuses_balance_past_15_digits",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"-9999999999999999\",\"currency\":\"EUR\"}}",
	 "data.balance"},
	{"refuses_previous_balance_past_15_digits",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"1\",\"previous_balance\":\"9999999999999999\",\"currency\":\"EUR\"}}",
	 "data.previous_balance"},
	{"refuses_data_nested_too_deep",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"1\",\"currency\":\"EUR\",\"x\":"
	 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
	 "event.data.x" ZERO8 ZERO8 ZERO8 "[0][0][0][0][0][0][0]"},
	/* jsonb would give it back as a 301-digit integer, which jansson cannot read. */
	{"refuses_huge_real_number",
	 "{\"id\":\"x\"," HEAD("balance.changed") ACCOUNT
	 "\"data\":{\"balance\":\"1\",\"currency\":\"EUR\",\"rate\":[0.5,1e300]}}",
	 "event.data.rate[1]"},
};

static void run_invalid_case(void **state)
{
	const struct invalid_case *c = *state;
	struct bh_event ev;
	char err[256] = "";
	int rc = bh_event_parse(c->json, strlen(c->json), "fallback-id", &ev, err, sizeof(err));
	if (rc == 0) {
		bh_event_free(&ev);
		fail_msg("accepted an invalid event");
	}
	size_t n = strlen(c->field);
	if (strncmp(err, c->field, n) != 0 || err[n] != ':')
		fail_msg("error \"%s\" does not start with \"%s:\"", err, c->field);
	assert_null(ev.json); /* nothing half-built is left behind */
}

static void missing_id_without_fallback_is_refused(void **state)
{
	(void)state;
	const char *j = "{" HEAD("balance.changed") ACCOUNT BAL_DATA "}";
	struct bh_event ev;
	char err[256] = "";
	assert_int_equal(bh_event_parse(j, strlen(j), NULL, &ev, err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "id:", 3), 0);
}

static void oversized_message_is_refused(void **state)
{
	(void)state;
	size_t len = BH_EVENT_MAX_BYTES + 1;
	char *big = malloc(len);
	memset(big, ' ', len);
	struct bh_event ev;
	char err[256] = "";
	assert_int_equal(bh_event_parse(big, len, "f", &ev, err, sizeof(err)), BH_EVENT_TOO_LARGE);
	assert_non_null(strstr(err, "larger"));
	free(big);
}

/* A NUL inside any string (jansson keeps it when \\u0000 was allowed): PostgreSQL refuses it. */
static void nul_in_a_string_is_refused(void **state)
{
	(void)state;
	const char *j = "{\"id\":\"n\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}";
	json_t *obj = json_loads(j, 0, NULL);
	json_object_set_new(json_object_get(obj, "data"), "note", json_stringn("a\0b", 3));
	struct bh_event ev;
	char err[256] = "";
	assert_int_equal(bh_event_from_json(obj, NULL, &ev, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "event.data.note: must not contain NUL"));
	json_decref(obj);
}

/* Over the limit once serialized (what Kafka gets), though each field is within its own. */
static void event_larger_than_kafka_takes_is_too_large(void **state)
{
	(void)state;
	const char *j = "{\"id\":\"big\"," HEAD("balance.changed") ACCOUNT BAL_DATA "}";
	json_t *obj = json_loads(j, 0, NULL);
	char *pad = malloc(BH_EVENT_MAX_BYTES);
	memset(pad, 'x', BH_EVENT_MAX_BYTES - 1);
	pad[BH_EVENT_MAX_BYTES - 1] = '\0';
	json_object_set_new(json_object_get(obj, "data"), "note", json_string(pad));
	struct bh_event ev;
	char err[256] = "";
	assert_int_equal(bh_event_from_json(obj, NULL, &ev, err, sizeof(err)), BH_EVENT_TOO_LARGE);
	assert_non_null(strstr(err, "event: larger than"));
	/* A little less fits. */
	pad[BH_EVENT_MAX_BYTES - 400] = '\0';
	json_object_set_new(json_object_get(obj, "data"), "note", json_string(pad));
	assert_int_equal(bh_event_from_json(obj, NULL, &ev, err, sizeof(err)), 0);
	bh_event_free(&ev);
	free(pad);
	json_decref(obj);
}

/* ------------------------------------------------------------- decimals */

struct decimal_case {
	const char *name;
	const char *text;
	bool want;
};

static const struct decimal_case decimal_cases[] = {
	{"decimal_accepts_integer", "123", true},
	{"decimal_accepts_two_places", "100.00", true},
	{"decimal_accepts_negative", "-5.20", true},
	{"decimal_refuses_empty", "", false},
	{"decimal_refuses_lone_minus", "-", false},
	{"decimal_refuses_trailing_dot", "5.", false},
	{"decimal_refuses_leading_dot", ".5", false},
	{"decimal_refuses_exponent", "1e3", false},
	{"decimal_refuses_thousands_separator", "1,000", false},
	{"decimal_refuses_plus_sign", "+5", false},
	{"decimal_refuses_spaces", " 5", false},
	{"decimal_refuses_null", NULL, false},
};

static void run_decimal_case(void **state)
{
	const struct decimal_case *c = *state;
	assert_int_equal(bh_is_decimal(c->text), c->want);
}

/* ------------------------------------------------------------------ main */


int main(void)
{
	struct CMUnitTest tests[96];
	size_t n = 0;
	TABLE(valid_cases, run_valid_case);
	ONE(occurred_at_is_parsed_to_utc_ms);
	ONE(credit_and_debit_are_told_apart);
	TABLE(invalid_cases, run_invalid_case);
	ONE(missing_id_without_fallback_is_refused);
	ONE(oversized_message_is_refused);
	ONE(nul_in_a_string_is_refused);
	ONE(event_larger_than_kafka_takes_is_too_large);
	TABLE(decimal_cases, run_decimal_case);
	return _cmocka_run_group_tests("event", tests, n, NULL, NULL);
}
