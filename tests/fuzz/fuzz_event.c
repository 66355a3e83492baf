/*
 * libFuzzer target: event validation (common/event.c), what every event
 * from Kafka or POST /v1/events goes through. The input is the message
 * as it arrives. Besides crashes and sanitizer reports, it checks the
 * contract of event.h: a refusal names a field and leaves ev empty; an
 * accepted event carries every field its type requires, within the
 * documented limits, and parses again to the same event.
 */
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A string member that passed: no NUL inside, 1..max bytes. */
static void check_member(json_t *obj, const char *key, size_t max, bool required)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v)) {
		if (required)
			fuzz_fail("%s: required but absent", key);
		return;
	}
	const char *s = json_string_value(v);
	if (s == NULL || strlen(s) != json_string_length(v) || s[0] == '\0' || strlen(s) > max)
		fuzz_fail("%s: accepted with a NUL inside, empty or over %zu bytes", key, max);
}

static void check_decimal(json_t *data, const char *key, bool required)
{
	check_member(data, key, 64, required);
	const char *s = json_string_value(json_object_get(data, key));
	if (s != NULL && !bh_is_decimal(s))
		fuzz_fail("data.%s: accepted but not a decimal: %s", key, s);
}

static void check_accepted(const struct bh_event *ev)
{
	if (ev->json == NULL || ev->id == NULL || ev->type_name == NULL || ev->data == NULL)
		fuzz_fail("accepted event without json, id, type or data");
	check_member(ev->json, "id", BH_EVENT_ID_MAX, true);
	for (const char *p = ev->id; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			fuzz_fail("id: accepted with a space or control character");
	bool notification = ev->type == BH_EVENT_TPP_NOTIFICATION;
	bool account = ev->type != BH_EVENT_PAYMENT_UPDATED && !notification;
	check_member(ev->json, "bank_id", 200, account);
	check_member(ev->json, "account_id", 200, account);
	json_t *d = ev->data;
	const char *cur = json_string_value(json_object_get(d, "currency"));
	if (!notification &&
	    (cur == NULL || strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3))
		fuzz_fail("data.currency: accepted but not three capitals");
	switch (ev->type) {
	case BH_EVENT_TRANSACTION_CREATED:
		check_member(d, "transaction_id", 200, true);
		check_decimal(d, "amount", true);
		check_decimal(d, "balance", false);
		if (strcmp(bh_event_data_str(ev, "dc"), "credit") != 0 &&
		    strcmp(bh_event_data_str(ev, "dc"), "debit") != 0)
			fuzz_fail("data.dc: accepted but neither credit nor debit");
		break;
	case BH_EVENT_BALANCE_CHANGED:
		check_decimal(d, "balance", true);
		check_decimal(d, "previous_balance", false);
		break;
	case BH_EVENT_PAYMENT_UPDATED:
		check_member(d, "acquirer_id", 25, true);
		check_member(d, "merchant_id", 10, true);
		check_member(d, "payment_id", 200, true);
		check_decimal(d, "amount", true);
		break;
	case BH_EVENT_TPP_NOTIFICATION: /* the scheduler's own, for PSD2 notifications */
		check_member(d, "type", 64, true);
		check_member(d, "consentId", 200, true);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bh_event ev, again;
	char err[512], err2[512];
	/* Half the inputs without a fallback id, so "id: required" is reached too. */
	const char *fallback = size % 2 ? "fallback-id" : NULL;
	if (bh_event_parse((const char *)data, size, fallback, &ev, err, sizeof(err)) < 0) {
		if (ev.json != NULL || ev.id != NULL)
			fuzz_fail("refused event left fields set");
		if (strchr(err, ':') == NULL)
			fuzz_fail("refusal does not name a field: %s", err);
		return 0;
	}
	check_accepted(&ev);
	/* The normalized event is what is stored and sent: it must be accepted as is. */
	char *text = json_dumps(ev.json, JSON_COMPACT);
	if (text == NULL)
		fuzz_fail("accepted event does not serialize");
	if (bh_event_parse(text, strlen(text), NULL, &again, err2, sizeof(err2)) < 0)
		fuzz_fail("normalized event refused: %s", err2);
	if (strcmp(again.id, ev.id) != 0 || again.type != ev.type ||
	    again.occurred_ms != ev.occurred_ms)
		fuzz_fail("normalized event parses differently");
	bh_event_free(&again);
	free(text);
	(void)bh_event_is_credit(&ev);
	bh_event_free(&ev);
	return 0;
}
