/*
 * libFuzzer target: the PSD2 application-webhook dialect (PRODUCT.md 6.2):
 * the pure rules of common/kind_psd2.c and the request validation of
 * api/dialect_psd2.c, which is included so its static functions are
 * reachable (the Makefile's archive member is then never linked beside
 * it). Selector (first input line), then the body after the empty line:
 *   settings [loopback] [private]  PUT /tpp/v1/webhook-settings (parse_settings)
 *   refresh                        PUT /tpp/v1/refresh: Consent-ID header
 *                                  and body (refresh_consent)
 *   endpoint [loopback] [private]  the body as a URL to bh_psd2_check_endpoint
 *   header                         the body to bh_psd2_header_valid
 *   activation                     the body as a decimal ms instant
 *   accounts                       the body as a connector answer, then the
 *                                  payload builders on what it gives
 *   diff                           two connector answers split by a line "--"
 * Besides crashes and sanitizer reports it checks that refusals are the
 * native envelope with a 4xx naming the field, and what passes holds.
 */
#include "dialect_psd2.c"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>

#include "event.h"
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOUR_MS INT64_C(3600000)
/* 0000-01-01 .. 9999-12-31: the instants bankhook's clock and formats handle. */
#define TIME_LIMIT_MS INT64_C(253402300800000)

/* The native envelope: {"error":{"code","message"}} whose message starts with field. */
static void expect_refusal(const struct fuzz_req *fr)
{
	json_t *reply = fuzz_req_expect_error(fr);
	json_t *error = json_object_get(reply, "error");
	const char *msg = json_string_value(json_object_get(error, "message"));
	if (msg == NULL || !json_is_string(json_object_get(error, "code")))
		fuzz_fail("not the native error envelope: %s", fr->req.reply_body);
	json_decref(reply);
}

static bool header_chars_ok(const char *h)
{
	for (; *h; h++)
		if (!(*h == ' ' || *h == '=' || *h == '+' || *h == '/' ||
		      isalnum((unsigned char)*h)) ||
		    (unsigned char)*h >= 0x80)
			return false;
	return true;
}

static void check_endpoint_passed(const char *url, const struct bh_config *cfg)
{
	char msg[256];
	if (strpbrk(url, "?#") != NULL)
		fuzz_fail("endpoint with parameters passed: %s", url);
	if (bh_url_check(url, cfg->delivery_allow_loopback, cfg->delivery_allow_private, msg,
			 sizeof(msg)) < 0)
		fuzz_fail("endpoint passed but bh_url_check refuses it: %s", msg);
}

static void run_settings(struct fuzz_req *fr)
{
	bool enabled;
	const char *endpoint, *header;
	if (!fr->body_is_json) /* the server answers invalid JSON before any handler */
		return;
	if (parse_settings(&fr->req, &enabled, &endpoint, &header) < 0) {
		expect_refusal(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	json_t *b = fr->req.body;
	if (!json_is_boolean(json_object_get(b, "enabled")) ||
	    json_is_true(json_object_get(b, "enabled")) != enabled)
		fuzz_fail("enabled passed without being the body's boolean");
	if (enabled && endpoint == NULL)
		fuzz_fail("enabled without an endpoint passed");
	if (endpoint != NULL) {
		if (strlen(endpoint) == 0 || strlen(endpoint) > BH_URL_MAX)
			fuzz_fail("endpoint of %zu bytes passed", strlen(endpoint));
		check_endpoint_passed(endpoint, &fr->cfg);
	}
	if (header != NULL && (strlen(header) > BH_PSD2_HEADER_MAX || !header_chars_ok(header)))
		fuzz_fail("securityHeader \"%s\" passed", header);
}

static void run_refresh(struct fuzz_req *fr)
{
	if (!fr->body_is_json)
		return;
	const char *id = refresh_consent(&fr->req);
	if (id == NULL) {
		expect_refusal(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	if (!bh_body_is_id(id, CONSENT_ID_MAX))
		fuzz_fail("consent id \"%s\" passed", id);
	const char *h = bh_api_header(&fr->req, "Consent-ID");
	const char *b = json_string_value(json_object_get(fr->req.body, "consentId"));
	if ((h == NULL || strcmp(h, id) != 0) && (b == NULL || strcmp(b, id) != 0))
		fuzz_fail("consent id \"%s\" is neither the header nor the body's", id);
	if (h != NULL && b != NULL && strcmp(h, b) != 0)
		fuzz_fail("header and body consent ids differ yet passed");
}

static void run_endpoint(struct fuzz_req *fr)
{
	char msg[256];
	const char *url = fr->body;
	if (strlen(url) != fr->body_len) /* a C string cannot hold a NUL */
		return;
	if (bh_psd2_check_endpoint(url, fr->cfg.delivery_allow_loopback,
				   fr->cfg.delivery_allow_private, msg, sizeof(msg)) == 0)
		check_endpoint_passed(url, &fr->cfg);
	else if (msg[0] == '\0')
		fuzz_fail("endpoint refused without a reason");
}

static void run_header(struct fuzz_req *fr)
{
	const char *h = fr->body;
	if (strlen(h) != fr->body_len)
		return;
	bool ok = bh_psd2_header_valid(h);
	bool want = strlen(h) <= BH_PSD2_HEADER_MAX && header_chars_ok(h);
	if (ok != want)
		fuzz_fail("securityHeader of %zu bytes: valid %d, expected %d", strlen(h), ok,
			  want);
}

static void run_activation(struct fuzz_req *fr)
{
	char *end;
	errno = 0;
	long long v = strtoll(fr->body, &end, 10);
	if (errno != 0 || end == fr->body)
		return;
	int64_t now = v;
	if (now <= -TIME_LIMIT_MS || now >= TIME_LIMIT_MS)
		return;
	int64_t at = bh_psd2_activation_ms(now);
	if (at % HOUR_MS != 0 || at <= now || at - now > HOUR_MS)
		fuzz_fail("activation of %" PRId64 " is %" PRId64
			  ": not the next whole hour strictly after",
			  now, at);
	if (bh_psd2_activation_ms(at - 1) != at || bh_psd2_activation_ms(at) != at + HOUR_MS)
		fuzz_fail("activation around %" PRId64 " does not step by one hour", at);
}

/* What bh_psd2_parse_accounts gave: every member within its documented limits. */
static void check_accounts(json_t *acc)
{
	const char *id;
	json_t *v;
	if (!json_is_object(acc) || json_object_size(acc) > BH_PSD2_ACCOUNTS_MAX)
		fuzz_fail("accounts: not an object within %d", BH_PSD2_ACCOUNTS_MAX);
	json_object_foreach (acc, id, v) {
		const char *bal = json_string_value(json_object_get(v, "balance"));
		const char *cur = json_string_value(json_object_get(v, "currency"));
		if (id[0] == '\0' || strlen(id) > BH_PSD2_ACCOUNT_ID_MAX)
			fuzz_fail("accountId of %zu bytes kept", strlen(id));
		if (bal == NULL || bal[0] == '\0' || cur == NULL || cur[0] == '\0' ||
		    strlen(cur) > 16 || json_object_size(v) != 2)
			fuzz_fail("account %s kept without a balance and a 1..16 currency", id);
	}
}

static int parse(const char *body, size_t len, json_t **out)
{
	char err[512];
	err[0] = '\0';
	if (bh_psd2_parse_accounts(body, len, out, err, sizeof(err)) == 0) {
		check_accounts(*out);
		/* Ids are unique: one kept account per element, none merged. */
		json_t *doc = json_loadb(body, len, 0, NULL);
		size_t n = json_array_size(json_object_get(doc, "accounts"));
		json_decref(doc);
		if (json_object_size(*out) != n)
			fuzz_fail("%zu accounts kept of %zu given", json_object_size(*out), n);
		return 0;
	}
	if (*out != NULL || (strncmp(err, "accounts", 8) != 0 && strncmp(err, "body:", 5) != 0))
		fuzz_fail("refusal \"%s\" names no member or left a result", err);
	return -1;
}

/* The builders on parsed accounts; the stored event must parse as an event. */
static void run_builders(json_t *acc)
{
	const char *ids[64], *id;
	json_t *v;
	int n = 0;
	json_object_foreach (acc, id, v) {
		if (n == 64)
			break;
		ids[n++] = id;
	}
	const char *consent = n > 0 && bh_body_is_id(ids[0], CONSENT_ID_MAX) ? ids[0] : "c-1";
	json_t *tx = bh_psd2_transaction_event(consent, ids, n);
	json_t *list = json_object_get(tx, "accounts");
	if (tx == NULL || json_array_size(list) != (size_t)n)
		fuzz_fail("transactionEvent lost accounts");
	for (int i = 0; i < n; i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(list, i), "accountId")),
			   ids[i]) != 0)
			fuzz_fail("transactionEvent changed accountId %s", ids[i]);
	json_t *ae = bh_psd2_account_event(consent, "t-1", "COMPLETED", "B1", "Bank",
					   json_deep_copy(acc));
	if (ae == NULL || !json_equal(json_object_get(ae, "accounts"), acc))
		fuzz_fail("accountEvent changed its accounts");
	json_decref(ae);
	struct bh_event ev;
	char err[512];
	json_t *stored = bh_psd2_event_json("e-1", INT64_C(1790000000000), tx);
	char *text = json_dumps(stored, JSON_COMPACT);
	if (stored == NULL || text == NULL)
		fuzz_fail("stored notification not built");
	if (bh_event_parse(text, strlen(text), NULL, &ev, err, sizeof(err)) < 0)
		fuzz_fail("stored notification does not parse: %s", err);
	if (ev.type != BH_EVENT_TPP_NOTIFICATION || strcmp(ev.id, "e-1") != 0 ||
	    !json_equal(ev.data, json_object_get(stored, "data")))
		fuzz_fail("stored notification parses to another event");
	bh_event_free(&ev);
	free(text);
	json_decref(stored);
}

static void run_accounts(struct fuzz_req *fr)
{
	json_t *acc;
	if (parse(fr->body, fr->body_len, &acc) < 0)
		return;
	run_builders(acc);
	json_decref(acc);
}

static const char *diff_type(json_t *was, json_t *now)
{
	if (was == NULL)
		return "ADDED";
	if (now == NULL)
		return "DELETED";
	return json_equal(was, now) ? NULL : "UPDATED";
}

static void run_diff(struct fuzz_req *fr)
{
	const char *sep = memmem(fr->body, fr->body_len, "\n--\n", 4);
	json_t *prev, *cur;
	if (sep == NULL)
		return;
	size_t first = (size_t)(sep - fr->body);
	if (parse(fr->body, first, &prev) < 0)
		return;
	if (parse(sep + 4, fr->body_len - first - 4, &cur) < 0) {
		json_decref(prev);
		return;
	}
	json_t *d = bh_psd2_diff(prev, cur);
	size_t i, listed = 0;
	json_t *e;
	const char *last = NULL;
	json_array_foreach (d, i, e) {
		const char *id = json_string_value(json_object_get(e, "accountId"));
		const char *type = json_string_value(json_object_get(e, "eventType"));
		if (id == NULL || type == NULL || json_object_size(e) != 2)
			fuzz_fail("diff entry %zu malformed", i);
		if (last != NULL && strcmp(last, id) >= 0)
			fuzz_fail("diff not sorted strictly by accountId at %s", id);
		last = id;
		const char *want = diff_type(json_object_get(prev, id), json_object_get(cur, id));
		if (want == NULL || strcmp(want, type) != 0)
			fuzz_fail("account %s listed %s, expected %s", id, type,
				  want ? want : "nothing");
	}
	/* Every change listed: count what should be there. */
	const char *id;
	json_t *v;
	json_object_foreach (cur, id, v)
		listed += diff_type(json_object_get(prev, id), v) != NULL;
	json_object_foreach (prev, id, v)
		listed += json_object_get(cur, id) == NULL;
	if (listed != json_array_size(d))
		fuzz_fail("diff lists %zu changes, expected %zu", json_array_size(d), listed);
	json_t *none = bh_psd2_diff(cur, cur);
	if (json_array_size(none) != 0)
		fuzz_fail("a snapshot differs from itself");
	json_decref(none);
	json_decref(d);
	json_decref(prev);
	json_decref(cur);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_req fr;
	if (size > 64 * 1024)
		return -1;
	fuzz_req_init(&fr, data, size, "PUT", "/tpp/v1/webhook-settings", false, false);
	fr.cfg.delivery_allow_loopback = strstr(fr.selector, "loopback") != NULL;
	fr.cfg.delivery_allow_private = strstr(fr.selector, "private") != NULL;
	if (strncmp(fr.selector, "settings", 8) == 0)
		run_settings(&fr);
	else if (strncmp(fr.selector, "refresh", 7) == 0)
		run_refresh(&fr);
	else if (strncmp(fr.selector, "endpoint", 8) == 0)
		run_endpoint(&fr);
	else if (strncmp(fr.selector, "header", 6) == 0)
		run_header(&fr);
	else if (strncmp(fr.selector, "activation", 10) == 0)
		run_activation(&fr);
	else if (strncmp(fr.selector, "accounts", 8) == 0)
		run_accounts(&fr);
	else if (strncmp(fr.selector, "diff", 4) == 0)
		run_diff(&fr);
	fuzz_req_free(&fr);
	return 0;
}
