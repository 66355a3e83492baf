/*
 * libFuzzer target: the card acquirer dialect's request parsing and
 * validation. api/dialect_acquirer.c is included so its static functions
 * are reachable. Selector (first input line):
 *   headers                   the five mandatory headers (parse_headers)
 *   config [loopback] [private]
 *                             path, query and body of a create/update
 *                             (parse_config_req); P version=, P acquirer_id=,
 *                             P merchant_id=, Q acceptorId=, Q terminalId=
 *   list                      path and body of a list (parse_list_req)
 * Besides crashes and sanitizer reports, it checks that a refusal is the
 * RJCT envelope with a 4xx status and a statusCode from the table, that
 * echoed headers carry no control characters, and that what passes
 * honours the seed's limits.
 */
#include "dialect_acquirer.c"

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rjct(const struct fuzz_req *fr)
{
	json_t *reply = fuzz_req_expect_error(fr);
	json_t *rs = json_object_get(reply, "returnStatus");
	const char *code = json_string_value(json_object_get(rs, "statusCode"));
	const char *ts = json_string_value(json_object_get(reply, "transactionStatus"));
	bool known = false;
	for (size_t i = 0; code != NULL && i < BH_ARRAY_LEN(rs_table); i++)
		known = known ||
			(strcmp(code, rs_table[i].code) == 0 && rs_table[i].http == fr->req.status);
	if (ts == NULL || strcmp(ts, "RJCT") != 0 || !known ||
	    !json_is_string(json_object_get(rs, "statusDescription")))
		fuzz_fail("not the RJCT envelope of the table: %s", fr->req.reply_body);
	json_decref(reply);
}

static void check_reply_headers(const struct fuzz_req *fr)
{
	for (int i = 0; i < fr->req.n_reply_headers; i++)
		if (!fuzz_printable(fr->req.reply_header_values[i]))
			fuzz_fail("reply header %s echoes a control character",
				  fr->req.reply_header_names[i]);
}

static bool digits(const char *s, size_t max)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= max &&
	       strspn(s, "0123456789") == strlen(s);
}

static void run_headers(struct fuzz_req *fr)
{
	char token[TOKEN_MAX + 1];
	if (parse_headers(&fr->req, token) < 0) {
		check_rjct(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	if (token[0] == '\0' || strlen(token) > TOKEN_MAX)
		fuzz_fail("token of %zu bytes passed", strlen(token));
	if (!bh_is_uuid(bh_api_header(&fr->req, TPP_REQUEST_ID)))
		fuzz_fail("TPP-Request-ID passed without being a UUID");
}

static void run_config(struct fuzz_req *fr)
{
	struct config_req c;
	char msg[256];
	if (parse_config_req(&fr->req, &c) < 0) {
		check_rjct(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	if (!digits(c.acquirer, ACQUIRER_ID_MAX) || !digits(c.merchant, MERCHANT_ID_MAX) ||
	    (c.acceptor != NULL && !digits(c.acceptor, ACCEPTOR_ID_MAX)) ||
	    (c.terminal != NULL && !digits(c.terminal, TERMINAL_ID_MAX)))
		fuzz_fail("binding passed that is not digits within the limits");
	if (c.code == NULL || c.code[0] == '\0' || strlen(c.code) > CODE_MAX ||
	    !fuzz_printable(c.code))
		fuzz_fail("notificationConfigurationCode passed out of its limits");
	if (strlen(c.key) != BH_ACQUIRER_KEY_LEN || strcmp(c.algorithm, BH_ACQUIRER_ALGORITHM) != 0)
		fuzz_fail("security key of %zu bytes or algorithm %s passed", strlen(c.key),
			  c.algorithm);
	const char *at = strchr(c.email, '@');
	if (at == NULL || at == c.email || strchr(at + 1, '@') != NULL ||
	    strlen(c.email) > EMAIL_MAX)
		fuzz_fail("supportEmail %s passed", c.email);
	if (bh_url_check(c.url, fr->cfg.delivery_allow_loopback, fr->cfg.delivery_allow_private,
			 msg, sizeof(msg)) < 0)
		fuzz_fail("channel URL passed but bh_url_check refuses it: %s", msg);
	bool any = false;
	for (size_t k = 0; k < BH_ARRAY_LEN(payment_methods); k++)
		any = any || c.methods[k];
	if (!any)
		fuzz_fail("configuration passed without a payment method");
	/* What put_config stores: it must serialize (valid UTF-8 throughout). */
	json_t *options = config_options(&c, c.methods);
	char *text = options ? json_dumps(options, JSON_COMPACT) : NULL;
	if (text == NULL)
		fuzz_fail("validated configuration does not serialize");
	free(text);
	json_decref(options);
}

static void run_list(struct fuzz_req *fr)
{
	struct list_req l;
	if (parse_list_req(&fr->req, &l) < 0) {
		check_rjct(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	if (!digits(l.acquirer, ACQUIRER_ID_MAX) || !digits(l.merchant, MERCHANT_ID_MAX) ||
	    (l.acceptor != NULL && !digits(l.acceptor, ACCEPTOR_ID_MAX)) ||
	    (l.terminal != NULL && !digits(l.terminal, TERMINAL_ID_MAX)))
		fuzz_fail("list binding passed that is not digits within the limits");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_req fr;
	if (size > 64 * 1024)
		return -1;
	fuzz_req_init(&fr, data, size, "POST", "/acquirer/v1/fuzz", false, false);
	fr.cfg.delivery_allow_loopback = strstr(fr.selector, "loopback") != NULL;
	fr.cfg.delivery_allow_private = strstr(fr.selector, "private") != NULL;
	fr.req.reply_error = reply_error; /* as the route table sets it */
	if (!fr.body_is_json) {
		/* The server answers invalid JSON itself, through the dialect's envelope. */
		bh_api_reply_error(&fr.req, 400, "invalid_json", "body: not valid JSON.");
		check_rjct(&fr);
	} else if (strncmp(fr.selector, "headers", 7) == 0) {
		run_headers(&fr);
	} else if (strncmp(fr.selector, "config", 6) == 0) {
		run_config(&fr);
	} else if (strncmp(fr.selector, "list", 4) == 0) {
		run_list(&fr);
	}
	check_reply_headers(&fr);
	fuzz_req_free(&fr);
	return 0;
}
