/*
 * libFuzzer target: the Banksocket dialect's request parsing and
 * validation. api/dialect_banksocket.c is included so its static
 * functions are reachable (the Makefile's archive member is then never
 * linked beside it). Selector (first input line):
 *   create [loopback] [private]   the POST /webhooks body (parse_create)
 *   token                         the Authentication header (request_token)
 * Besides crashes and sanitizer reports, it checks that a refusal is
 * Banksocket's {"status":"error","message":...} with a 4xx status, and
 * that what passes honours the documented limits.
 */
#include "dialect_banksocket.c"

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(json_t *body, const char *key, const char *got, size_t max)
{
	json_t *v = json_object_get(body, key);
	if (json_string_value(v) != got || strlen(got) != json_string_length(v) || got[0] == '\0' ||
	    strlen(got) > max || !fuzz_printable(got))
		fuzz_fail("%s: passed empty, over %zu bytes, or with a NUL or control character",
			  key, max);
}

static void run_create(struct fuzz_req *fr)
{
	const char *title, *endpoint, *event;
	char *account = NULL;
	char msg[256];
	if (!fr->body_is_json) /* the server answers invalid JSON before any handler */
		return;
	if (parse_create(&fr->req, &title, &endpoint, &event, &account) < 0) {
		json_t *reply = fuzz_req_expect_error(fr);
		const char *status = json_string_value(json_object_get(reply, "status"));
		if (status == NULL || strcmp(status, "error") != 0 ||
		    !json_is_string(json_object_get(reply, "message")))
			fuzz_fail("not Banksocket's error shape: %s", fr->req.reply_body);
		json_decref(reply);
		free(account);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	json_t *b = fr->req.body;
	check_text(b, "title", title, TITLE_MAX);
	check_text(b, "endpoint", endpoint, BH_URL_MAX);
	if (bh_url_check(endpoint, fr->cfg.delivery_allow_loopback, fr->cfg.delivery_allow_private,
			 msg, sizeof(msg)) < 0)
		fuzz_fail("endpoint passed but bh_url_check refuses it: %s", msg);
	if (strcmp(event, "NEW_TRANSACTION") != 0 && strcmp(event, "NEW_DEBIT") != 0 &&
	    strcmp(event, "NEW_CREDIT") != 0)
		fuzz_fail("event %s passed", event);
	if (account == NULL || account[0] == '\0' || strlen(account) > ACCOUNT_MAX + 24 ||
	    !fuzz_printable(account))
		fuzz_fail("account passed empty, too long or with a control character");
	free(account);
}

static void run_token(struct fuzz_req *fr)
{
	char token[TOKEN_MAX + 1];
	if (request_token(&fr->req, token, sizeof(token)) == 0 &&
	    (token[0] == '\0' || strlen(token) > TOKEN_MAX || strchr(token, ' ') != NULL))
		fuzz_fail("token \"%s\" taken from the headers", token);
	char tiny[8];
	if (request_token(&fr->req, tiny, sizeof(tiny)) == 0 && strlen(tiny) >= sizeof(tiny))
		fuzz_fail("token overran its buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_req fr;
	if (size > 64 * 1024)
		return -1;
	fuzz_req_init(&fr, data, size, "POST", "/banksocket/v1/webhooks", false, false);
	fr.cfg.delivery_allow_loopback = strstr(fr.selector, "loopback") != NULL;
	fr.cfg.delivery_allow_private = strstr(fr.selector, "private") != NULL;
	fr.req.reply_error = reply_error; /* as the route table sets it */
	if (strncmp(fr.selector, "create", 6) == 0)
		run_create(&fr);
	else if (strncmp(fr.selector, "token", 5) == 0)
		run_token(&fr);
	fuzz_req_free(&fr);
	return 0;
}
