/*
 * The Open Bank Project dialect (PRODUCT.md 6.1, seeds 000 and 001) under
 * /obp/v3.1.0, /obp/v4.0.0 and /obp/v5.1.0: account webhooks (create,
 * enable/disable, list), bank- and system-level account-notification
 * webhooks, and DirectLogin.
 *
 * Webhooks are subscriptions of kind "obp_account" / "obp_notification"
 * (common/kind_obp.c fires and renders them), owned by the caller's client
 * so GET /v1/endpoints lists them too. An account webhook's id is its
 * subscription id and is_active is the subscription's enabled flag.
 *
 * Every handler checks in OBP-API's order: authentication (the server),
 * bank exists, role at that bank, JSON body, field values; and answers in
 * OBP's envelope {"code":<status>,"message":"OBP-nnnnn: ..."} with
 * OBP-API's texts.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "crypto.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "subscription.h"

#define ACCOUNT_ID_MAX 200
#define WEBHOOK_ID_MAX 200
#define LIMIT_MAX 10000
#define DL_VALUE_MAX 1024 /* each DirectLogin parameter */

#define MSG_BANK_NOT_FOUND "OBP-30001: Bank not found. Please specify a valid value for BANK_ID."
#define MSG_MISSING_ROLES "OBP-20006: User is missing one or more roles: "
#define MSG_MISSING_GRANT "OBP-20006: User is missing a data grant: "
#define MSG_BAD_JSON "OBP-10001: Incorrect json format. The Json body should be the "
#define MSG_BAD_BOOLEAN                                                                    \
	"OBP-10019: Invalid Boolean. Could not convert value to a boolean type. Possible " \
	"values of the json field is_active are true or false."
#define MSG_BAD_LIMIT \
	"OBP-10025: wrong value for obp_limit parameter. Please send a positive integer (=>1)!"
#define MSG_BAD_OFFSET \
	"OBP-10024: wrong value for obp_offset parameter. Please send a positive integer (=>0)!"
#define MSG_BAD_SORT \
	"OBP-10023: obp_sort_direction parameter can only take two values: DESC or ASC!"
#define MSG_WEBHOOK_NOT_FOUND \
	"OBP-30050: Webhook not found. Please specify a valid value for account_webhook_id."
#define MSG_BAD_LOGIN "OBP-20004: Invalid login credentials. Check username/password."

#define ON_CREATE_TRANSACTION "OnCreateTransaction"
#define HTTP_1_1 "HTTP/1.1"

/* Sorted, as OBP-API lists them in its error text. */
static const char *const account_triggers[] = {"OnBalanceChange", "OnCreditTransaction",
					       "OnDebitTransaction"};
/* The methods a delivery can be made with (the worker sends GET without a body). */
static const char *const account_methods[] = {"POST", "PUT", "PATCH", "GET", "DELETE"};

/* The caller's scope for subscription queries: NULL for admin. */
static const char *scope(const struct bh_request *req)
{
	return req->caller.is_admin ? NULL : req->caller.client_id;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- bank and role */

/* 1 when the caller holds role at bank_id ('' for system-wide), 0 when not, -1 on error. */
static int has_entitlement(struct bh_request *req, const char *role, const char *bank_id)
{
	if (req->caller.is_admin)
		return 1;
	const char *params[] = {req->caller.user_id, role, bank_id};
	PGresult *res = bh_db_query(bh_api_db(req),
				    "SELECT 1 FROM entitlements"
				    " WHERE user_id = $1 AND role = $2 AND bank_id = $3",
				    3, params);
	if (res == NULL)
		return -1;
	int rc = PQntuples(res) > 0 ? 1 : 0;
	PQclear(res);
	return rc;
}

/*
 * The checks after authentication, in OBP's order: the bank exists (when
 * bank_id is not NULL), then the caller holds role there (system-wide
 * when bank_id is NULL). 0, or -1 with the reply set.
 */
static int check_bank_and_role(struct bh_request *req, const char *bank_id, const char *role)
{
	if (bank_id != NULL) {
		int rc = bh_banks_exists(bh_api_db(req), bank_id);
		if (rc < 0) {
			bh_api_reply_db_error(req, "look up bank");
			return -1;
		}
		if (rc == 0) {
			bh_api_reply_obp(req, 404, MSG_BANK_NOT_FOUND);
			return -1;
		}
	}
	int rc = has_entitlement(req, role, bank_id ? bank_id : "");
	if (rc < 0) {
		bh_api_reply_db_error(req, "look up entitlements");
		return -1;
	}
	if (rc == 0) {
		if (bank_id != NULL)
			bh_api_reply_obp(req, 403, MSG_MISSING_ROLES "%s at Bank(%s)", role,
					 bank_id);
		else
			bh_api_reply_obp(req, 403, MSG_MISSING_ROLES "%s", role);
		return -1;
	}
	return 0;
}

/*
 * The caller's client must hold a data grant covering the webhook's bank
 * (and account): OBP-20006's family, since a missing grant is a missing
 * entitlement to the data. 0, or -1 with the reply set.
 */
static int check_grant(struct bh_request *req, const char *bank_id, const char *account_id)
{
	int rc = bh_api_grants_cover_account(req, bank_id, account_id);
	if (rc < 0) {
		bh_api_reply_db_error(req, "look up grants");
		return -1;
	}
	if (rc == 0) {
		if (account_id != NULL)
			bh_api_reply_obp(req, 403, MSG_MISSING_GRANT "account_id %s at Bank(%s)",
					 account_id, bank_id);
		else
			bh_api_reply_obp(req, 403, MSG_MISSING_GRANT "bank_id %s", bank_id);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- bodies */

/* The body as an object, or NULL with OBP-10001 naming the expected body. */
static json_t *obp_body(struct bh_request *req, const char *expected)
{
	if (req->body_invalid || !json_is_object(req->body)) {
		bh_api_reply_obp(req, 400, MSG_BAD_JSON "%s", expected);
		return NULL;
	}
	return req->body;
}

/*
 * A required string member of at most max bytes. OBP-API extracts the
 * body into a class of strings, so a missing or non-string member is
 * OBP-10001; an overlong one or one with control characters OBP-10035.
 */
static int body_str(struct bh_request *req, json_t *obj, const char *key, size_t max,
		    const char *expected, const char **out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v)) {
		bh_api_reply_obp(req, 400, MSG_BAD_JSON "%s", expected);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	bool clean = n <= max;
	for (size_t i = 0; i < n && clean; i++)
		clean = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f;
	if (!clean) {
		bh_api_reply_obp(
			req, 400,
			"OBP-10035: Incorrect json value. %s must be at most %zu characters"
			" without control characters.",
			key, max);
		return -1;
	}
	*out = s;
	return 0;
}

/*
 * is_active as OBP reads it: the string "true" or "false" in any case
 * (Scala's toBoolean). A JSON boolean is accepted too.
 */
static int body_is_active(struct bh_request *req, json_t *obj, const char *expected, bool *out)
{
	json_t *v = json_object_get(obj, "is_active");
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (!json_is_string(v)) {
		bh_api_reply_obp(req, 400, MSG_BAD_JSON "%s", expected);
		return -1;
	}
	const char *s = json_string_value(v);
	if (strcasecmp(s, "true") != 0 && strcasecmp(s, "false") != 0) {
		bh_api_reply_obp(req, 400, MSG_BAD_BOOLEAN);
		return -1;
	}
	*out = strcasecmp(s, "true") == 0;
	return 0;
}

static int check_url(struct bh_request *req, const char *url)
{
	char msg[256];
	const struct bh_config *cfg = req->api->cfg;
	if (strlen(url) > BH_URL_MAX ||
	    bh_url_check(url, cfg->delivery_allow_loopback, cfg->delivery_allow_private, msg,
			 sizeof(msg)) < 0) {
		bh_api_reply_obp(req, 400, "OBP-10017: Incorrect URL Format. url: %s",
				 strlen(url) > BH_URL_MAX ? "too long" : msg);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- JSON shapes */

static const char *str_member(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "";
}

/* An account webhook as OBP shows it, from a subscription in the native shape. */
static json_t *account_webhook_json(json_t *row, const char *created_by_user_id)
{
	json_t *filter = json_object_get(row, "filter");
	json_t *options = json_object_get(row, "options");
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "account_webhook_id",
			 str_member(row, "id"), "bank_id", str_member(filter, "bank_id"),
			 "account_id", str_member(filter, "account_id"), "trigger_name",
			 str_member(options, "trigger_name"), "url", str_member(row, "url"),
			 "http_method", str_member(row, "http_method"), "http_protocol",
			 str_member(options, "http_protocol"), "created_by_user_id",
			 created_by_user_id ? created_by_user_id : "", "is_active",
			 json_is_true(json_object_get(row, "enabled")));
}

/* ---------------------------------------------------------------- account webhooks */

/*
 * The request validation of each call is a function of its own, apart
 * from the bank, role and database steps, so tests/fuzz/fuzz_obp.c can
 * run it on any body, query or header.
 */

/* A POST account-web-hooks body; the strings are borrowed from req->body. */
struct account_webhook_req {
	const char *account_id, *trigger, *url, *method, *protocol;
	bool active;
};

/* Members and then values, in OBP-API's order; 0, or -1 with the reply set. */
static int parse_account_webhook(struct bh_request *req, struct account_webhook_req *w)
{
	static const char expected[] = "AccountWebhookPostJson";
	json_t *obj = obp_body(req, expected);
	if (obj == NULL)
		return -1;
	if (body_str(req, obj, "account_id", ACCOUNT_ID_MAX, expected, &w->account_id) < 0 ||
	    body_str(req, obj, "trigger_name", 100, expected, &w->trigger) < 0 ||
	    body_str(req, obj, "url", BH_URL_MAX, expected, &w->url) < 0 ||
	    body_str(req, obj, "http_method", 20, expected, &w->method) < 0 ||
	    body_str(req, obj, "http_protocol", 20, expected, &w->protocol) < 0 ||
	    body_is_active(req, obj, expected, &w->active) < 0)
		return -1;
	/* Values, in OBP-API's order: trigger, is_active; then what bankhook adds. */
	if (!in_list(w->trigger, account_triggers, BH_ARRAY_LEN(account_triggers))) {
		bh_api_reply_obp(req, 400,
				 "OBP-10039: Incorrect Trigger name:%s. Possible values are "
				 "OnBalanceChange, OnCreditTransaction, OnDebitTransaction",
				 w->trigger);
		return -1;
	}
	if (!in_list(w->method, account_methods, BH_ARRAY_LEN(account_methods))) {
		bh_api_reply_obp(req, 400,
				 "OBP-10037: Incorrect http_method. Only Support `POST`, `PUT`, "
				 "`PATCH`, `GET`, `DELETE` currently. Current value is (%s)",
				 w->method);
		return -1;
	}
	if (strcmp(w->protocol, HTTP_1_1) != 0) {
		bh_api_reply_obp(req, 400,
				 "OBP-10038: Incorrect http_protocol. Only Support `HTTP/1.1` "
				 "currently. Current value is (%s)",
				 w->protocol);
		return -1;
	}
	if (w->account_id[0] == '\0') {
		bh_api_reply_obp(req, 400, "OBP-10035: Incorrect json value. account_id is empty.");
		return -1;
	}
	return check_url(req, w->url);
}

/* POST /banks/BANK_ID/account-web-hooks */
static void create_account_webhook(struct bh_request *req)
{
	const char *bank_id = bh_api_param(req, "bank_id");
	struct account_webhook_req w;
	json_t *row = NULL;

	if (check_bank_and_role(req, bank_id, "CanCreateWebhook") < 0 ||
	    parse_account_webhook(req, &w) < 0 || check_grant(req, bank_id, w.account_id) < 0)
		goto out;
	/* OnBalanceChange also fires on balance.changed; the others only on transactions. */
	json_t *types = strcmp(w.trigger, "OnBalanceChange") == 0
				? json_pack("[s,s]", "transaction.created", "balance.changed")
				: json_pack("[s]", "transaction.created");
	json_t *options =
		json_pack("{s:s,s:s}", "trigger_name", w.trigger, "http_protocol", w.protocol);
	char *description = bh_xasprintf("OBP account webhook %s", w.trigger);
	struct bh_sub_new n = {
		.client_id = req->caller.client_id,
		.kind = "obp_account",
		.url = w.url,
		.description = description,
		.event_types = types,
		.bank_id = bank_id,
		.account_id = w.account_id,
		.http_method = w.method,
		.options = options,
		.enabled = w.active,
		.created_by_user_id = req->caller.user_id,
	};
	int rc = bh_sub_insert_capped(bh_api_db(req), &n, req->api->cfg->api_max_subscriptions,
				      &row);
	json_decref(types);
	json_decref(options);
	free(description);
	if (rc == BH_SUB_LIMIT) {
		bh_api_reply_subscription_limit(req);
		goto out;
	}
	if (rc < 0) {
		bh_api_reply_db_error(req, "create account webhook");
		goto out;
	}
	struct bh_log_ctx ctx = {.subscription = str_member(row, "id")};
	bh_info_ctx(&ctx, "created OBP account webhook %s at %s for user %s", w.trigger, bank_id,
		    req->caller.user_id);
	bh_api_reply_json(req, 201, account_webhook_json(row, req->caller.user_id));
out:
	json_decref(row);
}

/*
 * The account webhook id at bank_id within the caller's scope: 0 with *row
 * (native shape) and *created_by (malloc'ed), BH_SUB_NOT_FOUND, or -1.
 */
static int find_account_webhook(struct bh_request *req, const char *bank_id, const char *id,
				json_t **row, char **created_by)
{
	const char *params[] = {id, bank_id, scope(req)};
	*row = NULL;
	*created_by = NULL;
	PGresult *res = bh_db_query(bh_api_db(req),
				    "SELECT " BH_SUB_COLUMNS " FROM subscriptions s"
				    " WHERE s.id = $1 AND s.kind = 'obp_account' AND s.bank_id = $2"
				    " AND ($3::text IS NULL OR s.client_id = $3)",
				    3, params);
	if (res == NULL)
		return -1;
	int rc = BH_SUB_NOT_FOUND;
	if (PQntuples(res) == 1) {
		*row = bh_sub_row_json(res, 0);
		*created_by = bh_xstrdup(PQgetvalue(res, 0, 16));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/* The PUT account-web-hooks body: *id borrowed from req->body; 0, or -1 with the reply set. */
static int parse_webhook_update(struct bh_request *req, const char **id, bool *active)
{
	static const char expected[] = "AccountWebhookPutJson";
	json_t *obj = obp_body(req, expected);
	if (obj == NULL ||
	    body_str(req, obj, "account_webhook_id", WEBHOOK_ID_MAX, expected, id) < 0 ||
	    body_is_active(req, obj, expected, active) < 0)
		return -1;
	return 0;
}

/* PUT /banks/BANK_ID/account-web-hooks {account_webhook_id, is_active} */
static void update_account_webhook(struct bh_request *req)
{
	const char *bank_id = bh_api_param(req, "bank_id");
	const char *id;
	bool active;
	json_t *row = NULL, *updated = NULL;
	char *created_by = NULL;

	if (check_bank_and_role(req, bank_id, "CanUpdateWebhook") < 0 ||
	    parse_webhook_update(req, &id, &active) < 0)
		goto out;
	int rc = find_account_webhook(req, bank_id, id, &row, &created_by);
	if (rc < 0) {
		bh_api_reply_db_error(req, "look up account webhook");
		goto out;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_obp(req, 400, MSG_WEBHOOK_NOT_FOUND);
		goto out;
	}
	struct bh_sub_patch p = {.set_enabled = true, .enabled = active};
	rc = bh_sub_update(bh_api_db(req), scope(req), id, &p, &updated);
	if (rc < 0) {
		bh_api_reply_db_error(req, "update account webhook");
		goto out;
	}
	if (rc == BH_SUB_NOT_FOUND) { /* deleted in between */
		bh_api_reply_obp(req, 400, MSG_WEBHOOK_NOT_FOUND);
		goto out;
	}
	struct bh_log_ctx ctx = {.subscription = id};
	bh_info_ctx(&ctx, "OBP account webhook %s", active ? "enabled" : "disabled");
	bh_api_reply_json(req, 200, account_webhook_json(updated, created_by));
out:
	json_decref(row);
	json_decref(updated);
	free(created_by);
}

/* The query of GET account-web-hooks; filters NULL when absent or empty. */
struct list_query {
	long long limit, offset;
	bool ascending;
	const char *account_id, *user_id;
};

/* 0, or -1 with the reply set. */
static int parse_list_query(struct bh_request *req, struct list_query *q)
{
	const char *limit_s = bh_api_query(req, "limit");
	const char *offset_s = bh_api_query(req, "offset");
	const char *sort = bh_api_query(req, "sort_direction");
	const char *account_id = bh_api_query(req, "account_id");
	const char *user_id = bh_api_query(req, "user_id");
	q->limit = 50;
	q->offset = 0;
	if (limit_s != NULL && bh_parse_int(limit_s, 1, LLONG_MAX, &q->limit) < 0) {
		bh_api_reply_obp(req, 400, MSG_BAD_LIMIT);
		return -1;
	}
	if (q->limit > LIMIT_MAX) {
		bh_api_reply_obp(req, 400, "OBP-10012: Invalid value. Maximum number is %d.",
				 LIMIT_MAX);
		return -1;
	}
	if (offset_s != NULL && bh_parse_int(offset_s, 0, LLONG_MAX, &q->offset) < 0) {
		bh_api_reply_obp(req, 400, MSG_BAD_OFFSET);
		return -1;
	}
	if (sort != NULL && strcasecmp(sort, "ASC") != 0 && strcasecmp(sort, "DESC") != 0) {
		bh_api_reply_obp(req, 400, MSG_BAD_SORT);
		return -1;
	}
	q->ascending = sort != NULL && strcasecmp(sort, "ASC") == 0;
	/* Empty filters are ignored, as OBP-API ignores them ("if null ignore"). */
	q->account_id = account_id && account_id[0] ? account_id : NULL;
	q->user_id = user_id && user_id[0] ? user_id : NULL;
	return 0;
}

/* GET /management/banks/BANK_ID/account-web-hooks */
static void list_account_webhooks(struct bh_request *req)
{
	const char *bank_id = bh_api_param(req, "bank_id");
	struct list_query q;
	char limit_text[24], offset_text[24];
	PGresult *res = NULL;

	if (check_bank_and_role(req, bank_id, "CanGetWebhooks") < 0 ||
	    parse_list_query(req, &q) < 0)
		goto out;
	bool ascending = q.ascending;
	snprintf(limit_text, sizeof(limit_text), "%lld", q.limit);
	snprintf(offset_text, sizeof(offset_text), "%lld", q.offset);
	const char *params[] = {
		bank_id, scope(req), q.account_id, q.user_id, limit_text, offset_text,
	};
	/* seq follows creation order; the two literal orders keep the plan simple. */
	res = bh_db_query(bh_api_db(req),
			  ascending ? "SELECT " BH_SUB_COLUMNS " FROM subscriptions s"
				      " WHERE s.kind = 'obp_account' AND s.bank_id = $1"
				      " AND ($2::text IS NULL OR s.client_id = $2)"
				      " AND ($3::text IS NULL OR s.account_id = $3)"
				      " AND ($4::text IS NULL OR s.created_by_user_id = $4)"
				      " ORDER BY s.seq ASC LIMIT $5::bigint OFFSET $6::bigint"
				    : "SELECT " BH_SUB_COLUMNS " FROM subscriptions s"
				      " WHERE s.kind = 'obp_account' AND s.bank_id = $1"
				      " AND ($2::text IS NULL OR s.client_id = $2)"
				      " AND ($3::text IS NULL OR s.account_id = $3)"
				      " AND ($4::text IS NULL OR s.created_by_user_id = $4)"
				      " ORDER BY s.seq DESC LIMIT $5::bigint OFFSET $6::bigint",
			  (int)BH_ARRAY_LEN(params), params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "list account webhooks");
		goto out;
	}
	json_t *hooks = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *row = bh_sub_row_json(res, i);
		json_array_append_new(hooks, account_webhook_json(row, PQgetvalue(res, i, 16)));
		json_decref(row);
	}
	bh_api_reply_json(req, 200, json_pack("{s:o}", "web_hooks", hooks));
out:
	PQclear(res);
}

/* ---------------------------------------------------------------- notification webhooks */

/* A notification webhook body, borrowed from req->body; 0, or -1 with the reply set. */
static int parse_notification_webhook(struct bh_request *req, const char **url, const char **method,
				      const char **protocol)
{
	static const char expected[] = "AccountNotificationWebhookPostJson";
	json_t *obj = obp_body(req, expected);
	if (obj == NULL || body_str(req, obj, "url", BH_URL_MAX, expected, url) < 0 ||
	    body_str(req, obj, "http_method", 20, expected, method) < 0 ||
	    body_str(req, obj, "http_protocol", 20, expected, protocol) < 0)
		return -1;
	if (strcmp(*method, "POST") != 0) {
		bh_api_reply_obp(req, 400,
				 "OBP-10037: Incorrect http_method. Only Support `POST` currently."
				 " Current value is (%s)",
				 *method);
		return -1;
	}
	if (strcmp(*protocol, HTTP_1_1) != 0) {
		bh_api_reply_obp(req, 400,
				 "OBP-10038: Incorrect http_protocol. Only Support `HTTP/1.1` "
				 "currently. Current value is (%s)",
				 *protocol);
		return -1;
	}
	return check_url(req, *url);
}

/*
 * POST [/banks/BANK_ID]/web-hooks/account/notifications/on-create-transaction
 * bank_id NULL: the system-level one.
 */
static void create_notification_webhook(struct bh_request *req, const char *bank_id)
{
	const char *url, *method, *protocol;
	json_t *row = NULL;

	const char *role = bank_id ? "CanCreateAccountNotificationWebhookAtOneBank"
				   : "CanCreateSystemAccountNotificationWebhook";
	if (check_bank_and_role(req, bank_id, role) < 0 ||
	    parse_notification_webhook(req, &url, &method, &protocol) < 0 ||
	    check_grant(req, bank_id, NULL) < 0)
		goto out;

	json_t *types = json_pack("[s]", "transaction.created");
	json_t *options = json_pack("{s:s,s:s}", "trigger_name", ON_CREATE_TRANSACTION,
				    "http_protocol", protocol);
	struct bh_sub_new n = {
		.client_id = req->caller.client_id,
		.kind = "obp_notification",
		.url = url,
		.description = bank_id ? "OBP bank-level account notification webhook"
				       : "OBP system-level account notification webhook",
		.event_types = types,
		.bank_id = bank_id,
		.http_method = method,
		.options = options,
		.enabled = true,
		.created_by_user_id = req->caller.user_id,
	};
	int rc = bh_sub_insert_capped(bh_api_db(req), &n, req->api->cfg->api_max_subscriptions,
				      &row);
	json_decref(types);
	json_decref(options);
	if (rc == BH_SUB_LIMIT) {
		bh_api_reply_subscription_limit(req);
		goto out;
	}
	if (rc < 0) {
		bh_api_reply_db_error(req, "create notification webhook");
		goto out;
	}
	struct bh_log_ctx ctx = {.subscription = str_member(row, "id")};
	bh_info_ctx(&ctx, "created OBP %s notification webhook%s%s", bank_id ? "bank" : "system",
		    bank_id ? " at " : "", bank_id ? bank_id : "");
	json_t *out = json_pack("{s:s}", "webhook_id", str_member(row, "id"));
	if (bank_id != NULL)
		json_object_set_new(out, "bank_id", json_string(bank_id));
	json_object_set_new(out, "trigger_name", json_string(ON_CREATE_TRANSACTION));
	json_object_set_new(out, "url", json_string(url));
	json_object_set_new(out, "http_method", json_string(method));
	json_object_set_new(out, "http_protocol", json_string(protocol));
	json_object_set_new(out, "created_by_user_id", json_string(req->caller.user_id));
	bh_api_reply_json(req, 201, out);
out:
	json_decref(row);
}

static void create_bank_notification_webhook(struct bh_request *req)
{
	create_notification_webhook(req, bh_api_param(req, "bank_id"));
}

static void create_system_notification_webhook(struct bh_request *req)
{
	create_notification_webhook(req, NULL);
}

/* ---------------------------------------------------------------- DirectLogin */

struct dl_params {
	char username[DL_VALUE_MAX + 1];
	char password[DL_VALUE_MAX + 1];
	char consumer_key[DL_VALUE_MAX + 1];
};

/*
 * Parses `username=..., password="...", consumer_key=...` (values quoted
 * or not, separated by commas) into p; unknown parameters are ignored and
 * a parameter absent or too long stays empty.
 */
static void dl_parse(const char *h, struct dl_params *p)
{
	memset(p, 0, sizeof(*p));
	while (*h != '\0') {
		h += strspn(h, " \t,");
		size_t klen = strcspn(h, "= \t,");
		const char *v = h + klen;
		v += strspn(v, " \t");
		if (*v != '=') {
			h = v + strcspn(v, ",");
			continue;
		}
		v++;
		v += strspn(v, " \t");
		bool quoted = *v == '"';
		v += quoted;
		size_t vlen = quoted ? strcspn(v, "\"") : strcspn(v, ",");
		/* Unquoted values end at the comma; trailing blanks are not part of them. */
		while (!quoted && vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		char *dst = NULL;
		if (klen == 8 && strncmp(h, "username", 8) == 0)
			dst = p->username;
		else if (klen == 8 && strncmp(h, "password", 8) == 0)
			dst = p->password;
		else if (klen == 12 && strncmp(h, "consumer_key", 12) == 0)
			dst = p->consumer_key;
		if (dst != NULL && vlen <= DL_VALUE_MAX) {
			memcpy(dst, v, vlen);
			dst[vlen] = '\0';
		}
		h = v + vlen;
		if (quoted && *h == '"')
			h++;
		h += strcspn(h, ",");
	}
}

/* The DirectLogin parameters: the DirectLogin header, or Authorization: DirectLogin ... */
static const char *dl_header(struct bh_request *req)
{
	const char *h = bh_api_header(req, "DirectLogin");
	if (h != NULL)
		return h;
	h = bh_api_header(req, "Authorization");
	if (h != NULL && strncasecmp(h, "DirectLogin ", 12) == 0)
		return h + 12;
	return NULL;
}

static char *unknown_user_hash_value;

static void make_unknown_user_hash(void)
{
	unknown_user_hash_value = bh_password_hash("unknown user");
}

/*
 * A hash to verify against when the username does not exist, so that an
 * unknown username costs the same scrypt run as a wrong password and the
 * answer's timing does not tell which usernames exist.
 */
static const char *unknown_user_hash(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, make_unknown_user_hash);
	return unknown_user_hash_value;
}

/*
 * POST /my/logins/direct: a user created with a password gets a new
 * bankhook token (stored hashed, like POST /v1/tokens). consumer_key must
 * be given, as OBP requires, but bankhook has no consumers to check it
 * against. Users and tokens are identity tables; this is the one place
 * outside routes_identity.c that reads users, because the dialect's login
 * is its own call; the token is stored by routes_identity.c, under the
 * per-client cap. Every attempt is throttled first (bh_identity_login_allowed).
 */
static void direct_login(struct bh_request *req)
{
	struct dl_params p;
	char id[37], hash[65];
	char *token = NULL;
	PGresult *res = NULL;
	const char *h = dl_header(req);

	dl_parse(h ? h : "", &p);
	if (p.username[0] == '\0' || p.password[0] == '\0' || p.consumer_key[0] == '\0') {
		char missing[64] = "";
		if (p.username[0] == '\0')
			strcat(missing, ", username");
		if (p.password[0] == '\0')
			strcat(missing, ", password");
		if (p.consumer_key[0] == '\0')
			strcat(missing, ", consumer_key");
		bh_api_reply_obp(req, 400,
				 "OBP-20002: These DirectLogin parameters are missing: %s",
				 missing + 2);
		goto out;
	}
	/* Throttled before any scrypt run: per username, per address, process-wide. */
	if (bh_identity_login_allowed(req, p.username) < 0)
		goto out;
	const char *uparams[] = {p.username};
	res = bh_db_query(bh_api_db(req), "SELECT id, password_hash FROM users WHERE username = $1",
			  1, uparams);
	if (res == NULL) {
		bh_api_reply_db_error(req, "look up user");
		goto out;
	}
	bool known = PQntuples(res) == 1 && !PQgetisnull(res, 0, 1);
	const char *stored = known ? PQgetvalue(res, 0, 1) : unknown_user_hash();
	if (bh_password_verify(p.password, stored) < 0 || !known) {
		bh_warn("DirectLogin refused for username \"%.100s\"", p.username);
		bh_identity_login_result(req, p.username, false);
		bh_api_reply_obp(req, 401, MSG_BAD_LOGIN);
		goto out;
	}
	bh_identity_login_result(req, p.username, true);
	char *user_id = bh_xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	res = NULL;
	bh_uuid4(id);
	token = bh_token_new("bh_");
	bh_token_hash(token, hash);
	int rc = bh_identity_token_insert(req, id, user_id, hash, NULL, 0);
	if (rc == 1) {
		/* bankhook's own, like OBP-39001 (docs/DIALECTS.md) */
		bh_api_reply_obp(req, 409,
				 "OBP-39002: Token limit reached. api.max_tokens_per_client: this"
				 " user's client already has the limit of %d tokens; delete one"
				 " first.",
				 req->api->cfg->api_max_tokens_per_client);
	} else if (rc < 0) {
		bh_api_reply_db_error(req, "create token");
	} else {
		bh_info("DirectLogin: token %s for user %s", id, user_id);
		bh_api_reply_json(req, 201, json_pack("{s:s}", "token", token));
	}
	free(user_id);
out:
	PQclear(res);
	free(token);
}

/* ---------------------------------------------------------------- routes */

#define OBP_ROUTES(v)                                                                              \
	{.method = "POST",                                                                         \
	 .pattern = "/obp/" v "/my/logins/direct",                                                 \
	 .handler = direct_login,                                                                  \
	 .obp = true},                                                                             \
		{.method = "POST",                                                                 \
		 .pattern = "/obp/" v "/banks/{bank_id}/account-web-hooks",                        \
		 .handler = create_account_webhook,                                                \
		 .needs_auth = true,                                                               \
		 .obp = true},                                                                     \
		{.method = "PUT",                                                                  \
		 .pattern = "/obp/" v "/banks/{bank_id}/account-web-hooks",                        \
		 .handler = update_account_webhook,                                                \
		 .needs_auth = true,                                                               \
		 .obp = true},                                                                     \
		{.method = "GET",                                                                  \
		 .pattern = "/obp/" v "/management/banks/{bank_id}/account-web-hooks",             \
		 .handler = list_account_webhooks,                                                 \
		 .needs_auth = true,                                                               \
		 .obp = true},                                                                     \
		{.method = "POST",                                                                 \
		 .pattern =                                                                        \
			 "/obp/" v                                                                 \
			 "/banks/{bank_id}/web-hooks/account/notifications/on-create-transaction", \
		 .handler = create_bank_notification_webhook,                                      \
		 .needs_auth = true,                                                               \
		 .obp = true},                                                                     \
	{                                                                                          \
		.method = "POST",                                                                  \
		.pattern = "/obp/" v "/web-hooks/account/notifications/on-create-transaction",     \
		.handler = create_system_notification_webhook, .needs_auth = true, .obp = true     \
	}

const struct bh_route bh_routes_obp[] = {
	OBP_ROUTES("v3.1.0"),
	OBP_ROUTES("v4.0.0"),
	OBP_ROUTES("v5.1.0"),
	{.method = NULL},
};
