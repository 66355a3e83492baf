/*
 * libFuzzer target: the Open Bank Project dialect's request validation.
 * api/dialect_obp.c is included so its static parse_* functions are
 * reachable without widening the api's interface (the Makefile links the
 * other api objects, not dialect_obp.o). Selector (first input line):
 *   create | update | notify | list | login, optionally followed by
 *   "loopback" and/or "private" (delivery.allow_* for the URL check).
 * Besides crashes and sanitizer reports, it checks that a refusal is an
 * OBP envelope {"code":<status>,"message":"OBP-..."} with a 4xx status,
 * and that what passes honours every documented limit.
 */
#include "dialect_obp.c"

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The limits a value that passed must honour: no NUL inside, printable, max bytes. */
static void check_text(json_t *body, const char *key, const char *got, size_t max)
{
	json_t *v = json_object_get(body, key);
	if (!json_is_string(v) || json_string_value(v) != got)
		fuzz_fail("%s: not the body's string", key);
	if (strlen(got) != json_string_length(v) || strlen(got) > max || !fuzz_printable(got))
		fuzz_fail("%s: passed with a NUL, a control character or over %zu bytes", key, max);
}

static void check_obp_error(const struct fuzz_req *fr)
{
	json_t *reply = fuzz_req_expect_error(fr);
	const char *msg = json_string_value(json_object_get(reply, "message"));
	if (json_integer_value(json_object_get(reply, "code")) != fr->req.status || msg == NULL ||
	    strncmp(msg, "OBP-", 4) != 0)
		fuzz_fail("not an OBP error envelope: %s", fr->req.reply_body);
	json_decref(reply);
}

static void check_url_passed(const struct fuzz_req *fr, const char *url)
{
	char msg[256];
	if (bh_url_check(url, fr->cfg.delivery_allow_loopback, fr->cfg.delivery_allow_private, msg,
			 sizeof(msg)) < 0)
		fuzz_fail("url passed but bh_url_check refuses it: %s", msg);
}

static void run_create(struct fuzz_req *fr)
{
	struct account_webhook_req w;
	if (parse_account_webhook(&fr->req, &w) < 0) {
		check_obp_error(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	json_t *b = fr->req.body;
	check_text(b, "account_id", w.account_id, ACCOUNT_ID_MAX);
	check_text(b, "url", w.url, BH_URL_MAX);
	if (w.account_id[0] == '\0' ||
	    !in_list(w.trigger, account_triggers, BH_ARRAY_LEN(account_triggers)) ||
	    !in_list(w.method, account_methods, BH_ARRAY_LEN(account_methods)) ||
	    strcmp(w.protocol, HTTP_1_1) != 0)
		fuzz_fail("account webhook passed with a bad value");
	check_url_passed(fr, w.url);
}

static void run_update(struct fuzz_req *fr)
{
	const char *id;
	bool active;
	if (parse_webhook_update(&fr->req, &id, &active) < 0) {
		check_obp_error(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	check_text(fr->req.body, "account_webhook_id", id, WEBHOOK_ID_MAX);
}

static void run_notify(struct fuzz_req *fr)
{
	const char *url, *method, *protocol;
	if (parse_notification_webhook(&fr->req, &url, &method, &protocol) < 0) {
		check_obp_error(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	check_text(fr->req.body, "url", url, BH_URL_MAX);
	if (strcmp(method, "POST") != 0 || strcmp(protocol, HTTP_1_1) != 0)
		fuzz_fail("notification webhook passed with a bad value");
	check_url_passed(fr, url);
}

static void run_list(struct fuzz_req *fr)
{
	struct list_query q;
	if (parse_list_query(&fr->req, &q) < 0) {
		check_obp_error(fr);
		return;
	}
	fuzz_req_expect_no_reply(fr);
	if (q.limit < 1 || q.limit > LIMIT_MAX || q.offset < 0 ||
	    (q.account_id != NULL && q.account_id[0] == '\0') ||
	    (q.user_id != NULL && q.user_id[0] == '\0'))
		fuzz_fail("list query passed out of range: limit %lld offset %lld", q.limit,
			  q.offset);
}

static void run_login(struct fuzz_req *fr)
{
	struct dl_params p;
	const char *h = dl_header(&fr->req);
	dl_parse(h ? h : "", &p);
	if (strlen(p.username) > DL_VALUE_MAX || strlen(p.password) > DL_VALUE_MAX ||
	    strlen(p.consumer_key) > DL_VALUE_MAX)
		fuzz_fail("DirectLogin parameter over %d bytes", DL_VALUE_MAX);
	/* The body too, as one header line: the parser must stop at its NUL whatever it holds. */
	char *raw = bh_xstrndup(fr->body, fr->body_len);
	dl_parse(raw, &p);
	free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_req fr;
	if (size > 64 * 1024)
		return -1; /* the api's body limit is larger, but nothing here grows with it */
	fuzz_req_init(&fr, data, size, "POST", "/obp/v5.1.0/fuzz", false, false);
	fr.cfg.delivery_allow_loopback = strstr(fr.selector, "loopback") != NULL;
	fr.cfg.delivery_allow_private = strstr(fr.selector, "private") != NULL;
	fr.req.obp = true;
	fr.req.body_invalid = !fr.body_is_json; /* as server.c does on OBP routes */
	if (strncmp(fr.selector, "create", 6) == 0)
		run_create(&fr);
	else if (strncmp(fr.selector, "update", 6) == 0)
		run_update(&fr);
	else if (strncmp(fr.selector, "notify", 6) == 0)
		run_notify(&fr);
	else if (strncmp(fr.selector, "list", 4) == 0)
		run_list(&fr);
	else if (strncmp(fr.selector, "login", 5) == 0)
		run_login(&fr);
	fuzz_req_free(&fr);
	return 0;
}
