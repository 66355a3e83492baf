/*
 * libFuzzer target: the chain "the API accepts => the worker stores =>
 * every renderer renders" (issue 12). The input is one message as it
 * arrives on bankhook.events (or as a POST /v1/events body). When
 * bh_event_parse, the one validator of both, accepts it:
 *
 *   store   every value the worker writes fits its column: id, type,
 *           bank_id, account_id text of at most 200 bytes without NUL;
 *           occurred_at formats (bh_format_time, four-digit year) inside
 *           PostgreSQL's timestamptz range and parses back to the same
 *           instant; body is the compact event, at most BH_EVENT_MAX_BYTES
 *           (what Kafka takes), no NUL in a string (jsonb refuses \u0000), reals that
 *           jsonb's plain notation keeps readable; and the stored body
 *           validates again (the worker re-reads it for every retry).
 *   render  a valid subscription of every kind that matches it renders it
 *           (native, OBP account with each trigger, OBP notification,
 *           Banksocket, acquirer; PSD2 for application notifications).
 *
 * Anything else aborts: that event would be accepted and then stall a
 * partition or fail every delivery.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "harness.h"
#include "kind_psd2.h"
#include "subscription.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define COLUMN_TEXT_MAX 200

static void check_text_column(const char *name, const char *v, bool nullable)
{
	if (v == NULL) {
		if (!nullable)
			fuzz_fail("stored %s is NULL", name);
		return;
	}
	size_t n = strlen(v);
	if (n == 0 || n > COLUMN_TEXT_MAX)
		fuzz_fail("stored %s is %zu bytes", name, n);
}

/* Every real below v, as jsonb gives it back, fits jansson; no string holds NUL. */
static void check_jsonb(json_t *v)
{
	const char *key;
	json_t *m;
	size_t i;
	if (json_is_real(v) && !(fabs(json_real_value(v)) < 9.2e18))
		fuzz_fail("real %g comes back from jsonb as an integer jansson refuses",
			  json_real_value(v));
	if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
		fuzz_fail("string with NUL accepted");
	json_array_foreach (v, i, m)
		check_jsonb(m);
	json_object_foreach (v, key, m)
		check_jsonb(m);
}

static void check_store(const struct bh_event *ev)
{
	check_text_column("id", ev->id, false);
	check_text_column("type", ev->type_name, false);
	check_text_column("bank_id", ev->bank_id, true);
	check_text_column("account_id", ev->account_id, true);
	if (ev->occurred_ms < BH_TIME_MIN_MS || ev->occurred_ms > BH_TIME_MAX_MS)
		fuzz_fail("occurred_at %lld ms is outside years 1..9999",
			  (long long)ev->occurred_ms);
	char when[32];
	int64_t back;
	bh_format_time(ev->occurred_ms, when);
	if (strlen(when) != 24 || bh_parse_time(when, &back) < 0 || back != ev->occurred_ms)
		fuzz_fail("occurred_at %lld ms is stored as %s, which does not read back",
			  (long long)ev->occurred_ms, when);
	char *body = json_dumps(ev->json, JSON_COMPACT);
	if (body == NULL || strlen(body) > BH_EVENT_MAX_BYTES)
		fuzz_fail("body not serializable or over %d bytes", BH_EVENT_MAX_BYTES);
	/* Not a search for "\\u0000" in body: an escaped backslash before "u0000" is fine. */
	check_jsonb(ev->json);
	/* The worker parses the stored body again for every later attempt. */
	struct bh_event again;
	char err[512];
	if (bh_event_parse(body, strlen(body), ev->id, &again, err, sizeof(err)) < 0)
		fuzz_fail("the stored body does not validate again: %s", err);
	if (again.occurred_ms != ev->occurred_ms || strcmp(again.id, ev->id) != 0)
		fuzz_fail("the stored body reads back as another event");
	bh_event_free(&again);
	free(body);
}

static void render_one(struct bh_sub *sub, const struct bh_event *ev, bool must_match)
{
	struct bh_rendered r;
	char err[512] = "";
	if (!must_match && !bh_sub_match(sub, ev))
		return;
	if (bh_sub_render(sub, ev, &r, err, sizeof(err)) < 0)
		fuzz_fail("accepted event %s does not render as %s: %s", ev->id, sub->kind, err);
	if (r.body == NULL || r.len == 0 || strlen(r.body) != r.len || r.content_type == NULL)
		fuzz_fail("%s rendered without a body or content type", sub->kind);
	if (strcmp(r.content_type, "application/json") == 0) {
		json_t *j = json_loadb(r.body, r.len, 0, NULL);
		if (j == NULL)
			fuzz_fail("%s body is not JSON", sub->kind);
		json_decref(j);
	}
	bh_rendered_free(&r);
}

static void check_render(const struct bh_event *ev)
{
	static char native[] = "native", obp_account[] = "obp_account",
		    obp_notification[] = "obp_notification", banksocket[] = "banksocket",
		    acquirer[] = "acquirer", psd2[] = BH_PSD2_KIND, secret[] = "api-secret";
	static const char *const triggers[] = {"OnBalanceChange", "OnCreditTransaction",
					       "OnDebitTransaction"};
	static const char *const bs_events[] = {"NEW_TRANSACTION", "NEW_CREDIT", "NEW_DEBIT"};
	struct bh_sub sub;

	memset(&sub, 0, sizeof(sub));
	sub.enabled = true;
	sub.kind = native;
	render_one(&sub, ev, false);

	sub.kind = obp_notification;
	render_one(&sub, ev, false);

	/* An OBP account webhook names its bank and account: the event's. */
	sub.kind = obp_account;
	sub.bank_id = (char *)ev->bank_id;
	sub.account_id = (char *)ev->account_id;
	for (size_t i = 0; i < BH_ARRAY_LEN(triggers); i++) {
		sub.options = json_pack("{s:s}", "trigger_name", triggers[i]);
		render_one(&sub, ev, false);
		json_decref(sub.options);
	}
	sub.bank_id = sub.account_id = NULL;

	sub.kind = banksocket;
	sub.client_api_secret = secret;
	for (size_t i = 0; i < BH_ARRAY_LEN(bs_events); i++) {
		sub.options = json_pack("{s:s}", "event", bs_events[i]);
		render_one(&sub, ev, false);
		json_decref(sub.options);
	}
	sub.client_api_secret = NULL;

	/* An acquirer configuration for the event's acquirer, merchant and method. */
	sub.kind = acquirer;
	sub.options = json_pack(
		"{s:s,s:s,s:s,s:[s],s:{s:s}}", "notificationConfigurationCode", "CFG1",
		"acquirerId", bh_event_data_str(ev, "acquirer_id"), "merchantId",
		bh_event_data_str(ev, "merchant_id"), "paymentMethods",
		bh_event_data_str(ev, "payment_method"), "security", "key",
		"0123456789abcdef0123456789abcdef");
	render_one(&sub, ev, false);
	json_decref(sub.options);
	sub.options = NULL;

	/* The scheduler creates these deliveries itself: no match step. */
	sub.kind = psd2;
	if (ev->type == BH_EVENT_TPP_NOTIFICATION)
		render_one(&sub, ev, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bh_event ev;
	char err[512];
	int rc = bh_event_parse((const char *)data, size, "kafka-bankhook.events-0-1", &ev, err,
				sizeof(err));
	if (rc < 0) {
		/* A refusal names the field ("field: reason"): it is the 400 and the DLQ reason. */
		json_t *msg = json_string(err);
		if (strchr(err, ':') == NULL || msg == NULL)
			fuzz_fail("refusal without a field, or not UTF-8: %s", err);
		json_decref(msg);
		return 0;
	}
	check_store(&ev);
	check_render(&ev);
	bh_event_free(&ev);
	return 0;
}
