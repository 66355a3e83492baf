/*
 * The Banksocket dialect (PRODUCT.md 6.3, seed 003) under /banksocket/v1:
 * create, list and delete webhooks that post each new account movement as
 * a form with Banksocket's hash (common/kind_banksocket.c renders them).
 *
 * A webhook is a subscription of kind "banksocket" owned by the caller's
 * client, so GET /v1/endpoints lists it too. Banksocket ids are integers:
 * a webhook's id is its subscription's seq, already unique and never
 * reused. The caller authenticates with "Authentication: <token>" (or
 * "Authorization: Bearer <token>"), and every error is Banksocket's
 * {"status":"error","message":...}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "subscription.h"

#define TOKEN_MAX 512
#define TITLE_MAX 200
#define ACCOUNT_MAX 200
#define LIST_MAX 1000
#define SEQ_MAX (1LL << 62)

static const char *const events[] = {"NEW_TRANSACTION", "NEW_DEBIT", "NEW_CREDIT"};

/* The caller's scope for subscription queries: NULL for admin. */
static const char *scope(const struct bh_request *req)
{
	return req->caller.is_admin ? NULL : req->caller.client_id;
}

static void reply_error(struct bh_request *req, unsigned int status, const char *code,
			const char *msg)
{
	(void)code;
	bh_api_reply_json(req, status, json_pack("{s:s,s:s}", "status", "error", "message", msg));
}

/*
 * The token: "Authentication: <token>" as Banksocket sends it (a "Bearer "
 * prefix tolerated), else "Authorization: Bearer <token>". 0, or -1.
 */
static int request_token(struct bh_request *req, char *out, size_t outlen)
{
	const char *t = bh_api_header(req, "Authentication");
	if (t == NULL) {
		t = bh_api_header(req, "Authorization");
		if (t == NULL || strncasecmp(t, "Bearer ", 7) != 0)
			return -1;
	}
	if (strncasecmp(t, "Bearer ", 7) == 0)
		t += 7;
	t += strspn(t, " ");
	size_t n = strcspn(t, " ");
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, t, n);
	out[n] = '\0';
	return 0;
}

/* 0 with req->caller filled in, or -1 with the reply set. */
static int authenticate(struct bh_request *req)
{
	char token[TOKEN_MAX + 1];
	if (request_token(req, token, sizeof(token)) < 0) {
		bh_api_reply_error(req, 401, "unauthorized",
				   "Authentication: a header with your token is required.");
		return -1;
	}
	int rc = bh_identity_authenticate(bh_api_db(req), token, &req->caller);
	if (rc < 0) {
		bh_api_reply_db_error(req, "authenticate");
		return -1;
	}
	if (rc > 0) {
		bh_api_reply_error(req, 401, "unauthorized",
				   "Authentication: the token is not valid.");
		return -1;
	}
	return bh_api_rate_limit(req, token);
}

/* A webhook as Banksocket shows it. */
static json_t *webhook_json(long long id, const char *endpoint, json_t *options)
{
	const char *title = json_string_value(json_object_get(options, "title"));
	const char *event = json_string_value(json_object_get(options, "event"));
	const char *account = json_string_value(json_object_get(options, "account"));
	return json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)id, "endpoint", endpoint,
			 "title", title ? title : "", "event", event ? event : "", "account",
			 account ? account : "all");
}

/*
 * "account": "all" or one account id. Banksocket's ids are integers, so a
 * JSON integer is accepted too and compared as its decimal text.
 * 0 with *out malloc'ed, or -1 with the reply set.
 */
static int body_account(struct bh_request *req, json_t *obj, char **out)
{
	json_t *v = json_object_get(obj, "account");
	*out = NULL;
	if (json_is_integer(v)) {
		*out = bh_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return 0;
	}
	const char *s;
	if (bh_body_string(req, obj, "", "account", 1, ACCOUNT_MAX, true, &s) < 0)
		return -1;
	*out = bh_xstrdup(s);
	return 0;
}

/*
 * The body of a create, apart from authentication and the database so
 * tests/fuzz/fuzz_banksocket.c can run it on any body: title, endpoint,
 * event borrowed from req->body, *account malloc'ed (also on failure).
 * 0, or -1 with the reply set.
 */
static int parse_create(struct bh_request *req, const char **title, const char **endpoint,
			const char **event, char **account)
{
	char msg[256];
	const struct bh_config *cfg = req->api->cfg;
	json_t *obj = req->body;
	*account = NULL;
	if (!json_is_object(obj)) {
		bh_api_reply_error(req, 400, "invalid_body", "body: a JSON object is required.");
		return -1;
	}
	if (bh_body_string(req, obj, "", "title", 1, TITLE_MAX, true, title) < 0 ||
	    bh_body_string(req, obj, "", "endpoint", 1, BH_URL_MAX, true, endpoint) < 0 ||
	    bh_body_string(req, obj, "", "event", 1, 32, true, event) < 0 ||
	    body_account(req, obj, account) < 0)
		return -1;
	if (bh_url_check(*endpoint, cfg->delivery_allow_loopback, cfg->delivery_allow_private, msg,
			 sizeof(msg)) < 0) {
		bh_api_reply_error(req, 400, "invalid_field", "endpoint: %s", msg);
		return -1;
	}
	bool known = false;
	for (size_t i = 0; i < BH_ARRAY_LEN(events); i++)
		known = known || strcmp(*event, events[i]) == 0;
	if (!known) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "event: must be NEW_TRANSACTION, NEW_DEBIT or NEW_CREDIT.");
		return -1;
	}
	return 0;
}

/* POST /banksocket/v1/webhooks {title, endpoint, event, account} */
static void create_webhook(struct bh_request *req)
{
	const char *title, *endpoint, *event;
	char *account = NULL;
	json_t *row = NULL;
	PGresult *res = NULL;

	if (authenticate(req) < 0 || parse_create(req, &title, &endpoint, &event, &account) < 0)
		goto out;
	bool all = strcmp(account, "all") == 0;
	/* "all": every account the client is entitled to; matching restricts it. */
	int granted = bh_api_grants_cover_account(req, NULL, all ? NULL : account);
	if (granted < 0) {
		bh_api_reply_db_error(req, "look up grants");
		goto out;
	}
	if (granted == 0) {
		bh_api_reply_error(req, 403, "forbidden",
				   "account: no data grant of this client covers the account.");
		goto out;
	}
	json_t *types = json_pack("[s]", "transaction.created");
	json_t *options =
		json_pack("{s:s,s:s,s:s}", "title", title, "event", event, "account", account);
	struct bh_sub_new n = {
		.client_id = req->caller.client_id,
		.kind = "banksocket",
		.url = endpoint,
		.description = title,
		.event_types = types,
		.account_id = all ? NULL : account,
		.http_method = "POST",
		.options = options,
		.enabled = true,
		.created_by_user_id = req->caller.user_id,
	};
	int rc = bh_sub_insert_capped(bh_api_db(req), &n, req->api->cfg->api_max_subscriptions,
				      &row);
	json_decref(types);
	if (rc != 0) {
		json_decref(options);
		if (rc == BH_SUB_LIMIT)
			bh_api_reply_subscription_limit(req);
		else
			bh_api_reply_db_error(req, "create Banksocket webhook");
		goto out;
	}
	const char *id = json_string_value(json_object_get(row, "id"));
	const char *params[] = {id};
	res = bh_db_query(bh_api_db(req), "SELECT seq FROM subscriptions WHERE id = $1", 1, params);
	if (res == NULL || PQntuples(res) != 1) {
		json_decref(options);
		bh_api_reply_db_error(req, "read Banksocket webhook id");
		goto out;
	}
	long long seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	struct bh_log_ctx ctx = {.subscription = id};
	bh_info_ctx(&ctx, "created Banksocket webhook %lld (%s, account %s)", seq, event, account);
	bh_api_reply_json(req, 200,
			  json_pack("{s:o}", "webhook", webhook_json(seq, endpoint, options)));
	json_decref(options);
out:
	PQclear(res);
	json_decref(row);
	free(account);
}

/* GET /banksocket/v1/webhooks: the caller's webhooks by id, at most LIST_MAX. */
static void list_webhooks(struct bh_request *req)
{
	char limit[16];
	PGresult *res = NULL;
	if (authenticate(req) < 0)
		goto out;
	snprintf(limit, sizeof(limit), "%d", LIST_MAX);
	const char *params[] = {scope(req), limit};
	res = bh_db_query(bh_api_db(req),
			  "SELECT s.seq, s.url, s.options::text FROM subscriptions s"
			  " WHERE s.kind = 'banksocket' AND ($1::text IS NULL OR s.client_id = $1)"
			  " ORDER BY s.seq LIMIT $2::int",
			  2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "list Banksocket webhooks");
		goto out;
	}
	json_t *hooks = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *options = json_loads(PQgetvalue(res, i, 2), 0, NULL);
		json_array_append_new(hooks, webhook_json(strtoll(PQgetvalue(res, i, 0), NULL, 10),
							  PQgetvalue(res, i, 1), options));
		json_decref(options);
	}
	bh_api_reply_json(req, 200, json_pack("{s:o}", "webhooks", hooks));
out:
	PQclear(res);
}

/* DELETE /banksocket/v1/webhooks/{id}: another client's id is not found, like an unknown one. */
static void delete_webhook(struct bh_request *req)
{
	const char *id = bh_api_param(req, "id");
	long long seq;
	PGresult *res = NULL;
	if (authenticate(req) < 0)
		goto out;
	if (bh_parse_int(id, 1, SEQ_MAX, &seq) < 0) {
		bh_api_reply_error(req, 404, "not_found", "id: no webhook %.40s.", id);
		goto out;
	}
	const char *params[] = {id, scope(req)};
	res = bh_db_query(bh_api_db(req),
			  "DELETE FROM subscriptions s"
			  " WHERE s.seq = $1::bigint AND s.kind = 'banksocket'"
			  " AND ($2::text IS NULL OR s.client_id = $2) RETURNING s.id",
			  2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "delete Banksocket webhook");
		goto out;
	}
	if (PQntuples(res) != 1) {
		bh_api_reply_error(req, 404, "not_found", "id: no webhook %lld.", seq);
		goto out;
	}
	struct bh_log_ctx ctx = {.subscription = PQgetvalue(res, 0, 0)};
	bh_info_ctx(&ctx, "deleted Banksocket webhook %lld", seq);
	bh_api_reply_json(req, 200, json_pack("{s:s}", "status", "success"));
out:
	PQclear(res);
}

/* Authentication is the handlers' own: Banksocket's header is not the server's. */
const struct bh_route bh_routes_banksocket[] = {
	{.method = "POST",
	 .pattern = "/banksocket/v1/webhooks",
	 .handler = create_webhook,
	 .reply_error = reply_error},
	{.method = "GET",
	 .pattern = "/banksocket/v1/webhooks",
	 .handler = list_webhooks,
	 .reply_error = reply_error},
	{.method = "DELETE",
	 .pattern = "/banksocket/v1/webhooks/{id}",
	 .handler = delete_webhook,
	 .reply_error = reply_error},
	{.method = NULL},
};
