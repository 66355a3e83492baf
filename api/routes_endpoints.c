/*
 * Native endpoints: POST/GET/PATCH/DELETE /v1/endpoints, and the operator
 * controls on one endpoint: rotate-secret and replay. Validation lives
 * here; the SQL is in common/subscription.c and common/delivery.c. A
 * caller without role admin works on its own client's subscriptions only,
 * and another client's id answers 404.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "delivery.h"
#include "header.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "subscription.h"

#define HEADERS_MAX 20
#define HEADER_NAME_MAX 100
#define HEADER_VALUE_MAX 1000
#define EVENT_TYPES_MAX 16
#define RATE_LIMIT_MAX 10000
#define TIME_TEXT_MAX 64

static const char *const event_types[] = {"transaction.created", "balance.changed",
					  "payment.updated"};

static const char *const endpoint_fields[] = {
	"url",	   "description", "event_types",      "filter",	   "headers",
	"enabled", "ordered",	  "rate_limit_per_s", "client_id", NULL};

/* The caller's scope for subscription queries: NULL for admin. */
static const char *scope(const struct bh_request *req)
{
	return req->caller.is_admin ? NULL : req->caller.client_id;
}

/* The secret is shown to its owner only, not to an admin looking on. */
static bool caller_owns(const struct bh_request *req, const json_t *row)
{
	const char *owner = json_string_value(json_object_get(row, "client_id"));
	return owner != NULL && strcmp(owner, req->caller.client_id) == 0;
}

static int check_url(struct bh_request *req, const char *url)
{
	char msg[256];
	const struct bh_config *cfg = req->api->cfg;
	if (bh_url_check(url, cfg->delivery_allow_loopback, cfg->delivery_allow_private, msg,
			 sizeof(msg)) < 0) {
		bh_api_reply_error(req, 400, "invalid_field", "url: %s", msg);
		return -1;
	}
	return 0;
}

static int check_event_types(struct bh_request *req, json_t *v)
{
	size_t i;
	json_t *t;
	if (!json_is_array(v) || json_array_size(v) > EVENT_TYPES_MAX) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "event_types: must be an array of at most %d event types",
				   EVENT_TYPES_MAX);
		return -1;
	}
	json_array_foreach (v, i, t) {
		bool known = false;
		for (size_t k = 0; k < BH_ARRAY_LEN(event_types) && json_is_string(t); k++)
			known = known || strcmp(json_string_value(t), event_types[k]) == 0;
		if (!known) {
			bh_api_reply_error(
				req, 400, "invalid_field",
				"event_types[%zu]: unknown event type; expected "
				"transaction.created, balance.changed or payment.updated",
				i);
			return -1;
		}
	}
	return 0;
}

/* RFC 9110 token characters, the only ones a header name may hold. */
static bool is_token(const char *s)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || (c != '\0' && strchr(extra, c) != NULL);
		if (!ok)
			return false;
	}
	return true;
}

static int check_headers(struct bh_request *req, json_t *v)
{
	const char *name;
	json_t *val;
	if (!json_is_object(v) || json_object_size(v) > HEADERS_MAX) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "headers: must be an object of at most %d name: value strings",
				   HEADERS_MAX);
		return -1;
	}
	json_object_foreach (v, name, val) {
		if (strlen(name) > HEADER_NAME_MAX || !is_token(name)) {
			bh_api_reply_error(req, 400, "invalid_field",
					   "headers: \"%.100s\" is not a valid header name", name);
			return -1;
		}
		/* What the worker would override or what would break the request. */
		if (bh_header_reserved(name)) {
			bh_api_reply_error(req, 400, "invalid_field",
					   "headers.%s: set by bankhook, cannot be overridden",
					   name);
			return -1;
		}
		const char *s;
		/* bh_body_string refuses CR and LF, so no header can be injected. */
		if (bh_body_string(req, v, "headers.", name, 0, HEADER_VALUE_MAX, true, &s) < 0)
			return -1;
	}
	return 0;
}

/* filter {bank_id, account_id}: each present key sets the value (null: any). */
static int check_filter(struct bh_request *req, json_t *v, struct bh_sub_patch *p)
{
	static const char *const fields[] = {"bank_id", "account_id", NULL};
	if (!json_is_object(v)) {
		bh_api_reply_error(req, 400, "invalid_field", "filter: must be an object");
		return -1;
	}
	if (bh_body_only_fields(req, v, "filter.", fields) < 0 ||
	    bh_body_string(req, v, "filter.", "bank_id", 1, 200, false, &p->bank_id) < 0 ||
	    bh_body_string(req, v, "filter.", "account_id", 1, 200, false, &p->account_id) < 0)
		return -1;
	p->set_bank_id = json_object_get(v, "bank_id") != NULL;
	p->set_account_id = json_object_get(v, "account_id") != NULL;
	return 0;
}

/*
 * Validates the fields shared by POST and PATCH into p (strings borrowed
 * from the body). 0, or -1 with the reply set.
 */
static int parse_fields(struct bh_request *req, json_t *obj, bool creating, struct bh_sub_patch *p)
{
	json_t *v;
	memset(p, 0, sizeof(*p));
	if (bh_body_string(req, obj, "", "url", 1, BH_URL_MAX, creating, &p->url) < 0 ||
	    (p->url != NULL && check_url(req, p->url) < 0))
		return -1;
	if (bh_body_string(req, obj, "", "description", 0, 1000, false, &p->description) < 0)
		return -1;
	if ((v = json_object_get(obj, "event_types")) != NULL && !json_is_null(v)) {
		if (check_event_types(req, v) < 0)
			return -1;
		p->event_types = v;
	}
	if ((v = json_object_get(obj, "filter")) != NULL && !json_is_null(v) &&
	    check_filter(req, v, p) < 0)
		return -1;
	if ((v = json_object_get(obj, "headers")) != NULL && !json_is_null(v)) {
		if (check_headers(req, v) < 0)
			return -1;
		p->headers = v;
	}
	if (bh_body_bool(req, obj, "enabled", &p->set_enabled, &p->enabled) < 0 ||
	    bh_body_bool(req, obj, "ordered", &p->set_ordered, &p->ordered) < 0)
		return -1;
	/* rate_limit_per_s: 1..RATE_LIMIT_MAX requests per second, null for none. */
	if ((v = json_object_get(obj, "rate_limit_per_s")) != NULL) {
		if (!json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 1 ||
					 json_integer_value(v) > RATE_LIMIT_MAX)) {
			bh_api_reply_error(
				req, 400, "invalid_field",
				"rate_limit_per_s: must be an integer from 1 to %d, or null",
				RATE_LIMIT_MAX);
			return -1;
		}
		p->set_rate_limit = true;
		p->rate_limit_per_s = json_is_null(v) ? 0 : (int)json_integer_value(v);
	}
	return 0;
}

/*
 * The filter must be covered by the caller's data grants (admin callers
 * are not checked; no filter means "all the client is entitled to"). 0, or
 * -1 with 403 (or 503) replied.
 */
static int check_grants(struct bh_request *req, const char *bank_id, const char *account_id)
{
	int rc = bh_api_grants_cover_account(req, bank_id, account_id);
	if (rc < 0) {
		bh_api_reply_db_error(req, "look up grants");
		return -1;
	}
	if (rc == 0) {
		if (account_id != NULL)
			bh_api_reply_error(req, 403, "forbidden",
					   "filter.account_id: no data grant of client %s covers "
					   "account %s%s%s",
					   req->caller.client_id, account_id,
					   bank_id ? " at bank " : "", bank_id ? bank_id : "");
		else
			bh_api_reply_error(
				req, 403, "forbidden",
				"filter.bank_id: no data grant of client %s covers bank %s",
				req->caller.client_id, bank_id);
		return -1;
	}
	return 0;
}

/*
 * PATCH changes part of the filter: the check is on the filter the
 * endpoint will have, the stored part completed by the patched one.
 */
static int check_patched_grants(struct bh_request *req, const struct bh_sub_patch *p)
{
	json_t *row = NULL;
	if (req->caller.is_admin || (!p->set_bank_id && !p->set_account_id))
		return 0;
	int rc = bh_sub_get_json(bh_api_db(req), scope(req), bh_api_param(req, "id"), &row);
	if (rc < 0) {
		bh_api_reply_db_error(req, "get endpoint");
		return -1;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return -1;
	}
	json_t *filter = json_object_get(row, "filter");
	const char *bank =
		p->set_bank_id ? p->bank_id : json_string_value(json_object_get(filter, "bank_id"));
	const char *account = p->set_account_id
				      ? p->account_id
				      : json_string_value(json_object_get(filter, "account_id"));
	rc = check_grants(req, bank, account);
	json_decref(row);
	return rc;
}

static void create_endpoint(struct bh_request *req)
{
	struct bh_sub_patch p;
	const char *client_id;
	json_t *obj = bh_body_object(req, endpoint_fields, true);
	if (obj == NULL || parse_fields(req, obj, true, &p) < 0 ||
	    bh_body_string(req, obj, "", "client_id", 1, 200, false, &client_id) < 0)
		return;
	/* What an admin creates belongs to its own client unless the body names one. */
	if (client_id != NULL && !req->caller.is_admin &&
	    strcmp(client_id, req->caller.client_id) != 0) {
		bh_api_reply_error(
			req, 403, "forbidden",
			"client_id: only an admin may create endpoints for another client");
		return;
	}
	if (check_grants(req, p.bank_id, p.account_id) < 0)
		return;
	struct bh_sub_new n = {
		.client_id = client_id ? client_id : req->caller.client_id,
		.kind = "native",
		.url = p.url,
		.description = p.description,
		.event_types = p.event_types,
		.bank_id = p.bank_id,
		.account_id = p.account_id,
		.headers = p.headers,
		.enabled = p.set_enabled ? p.enabled : true,
		.ordered = p.set_ordered && p.ordered,
		.rate_limit_per_s = p.rate_limit_per_s,
		.created_by_user_id = req->caller.user_id,
	};
	json_t *row;
	int rc = bh_sub_insert_capped(bh_api_db(req), &n, req->api->cfg->api_max_subscriptions,
				      &row);
	if (rc == BH_SUB_LIMIT) {
		bh_api_reply_subscription_limit(req);
		return;
	}
	if (rc < 0) {
		if (strcmp(bh_db_sqlstate(req->db), "23503") == 0)
			bh_api_reply_error(req, 400, "invalid_field", "client_id: no such client");
		else
			bh_api_reply_db_error(req, "create endpoint");
		return;
	}
	struct bh_log_ctx ctx = {.subscription = json_string_value(json_object_get(row, "id"))};
	bh_info_ctx(&ctx, "created endpoint for client %s", n.client_id);
	bh_api_reply_json(req, 201, row);
}

static void list_endpoints(struct bh_request *req)
{
	char err[256];
	int limit;
	if (bh_api_query_limit(req, &limit) < 0)
		return;
	/* An admin sees every client's, or one client's with ?client_id=. */
	const char *client_id = req->caller.is_admin ? bh_api_query(req, "client_id") : scope(req);
	json_t *page = bh_sub_list_json(bh_api_db(req), client_id, limit,
					bh_api_query(req, "cursor"), err, sizeof(err));
	if (page == NULL) {
		if (strncmp(err, "cursor:", 7) == 0)
			bh_api_reply_error(req, 400, "invalid_parameter", "%s", err);
		else
			bh_api_reply_db_error(req, "list endpoints");
		return;
	}
	bh_api_reply_json(req, 200, page);
}

static void get_endpoint(struct bh_request *req)
{
	json_t *row = NULL;
	int rc = bh_sub_get_json(bh_api_db(req), scope(req), bh_api_param(req, "id"), &row);
	if (rc < 0) {
		bh_api_reply_db_error(req, "get endpoint");
		return;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return;
	}
	if (!caller_owns(req, row))
		json_object_del(row, "secret");
	bh_api_reply_json(req, 200, row);
}

static void patch_endpoint(struct bh_request *req)
{
	static const char *const fields[] = {"url",	"description",	    "event_types",
					     "filter",	"headers",	    "enabled",
					     "ordered", "rate_limit_per_s", NULL};
	struct bh_sub_patch p;
	json_t *row = NULL;
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || parse_fields(req, obj, false, &p) < 0 ||
	    check_patched_grants(req, &p) < 0)
		return;
	int rc = bh_sub_update(bh_api_db(req), scope(req), bh_api_param(req, "id"), &p, &row);
	if (rc < 0) {
		bh_api_reply_db_error(req, "update endpoint");
		return;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return;
	}
	struct bh_log_ctx ctx = {.subscription = bh_api_param(req, "id")};
	bh_info_ctx(&ctx, "updated endpoint");
	bh_api_reply_json(req, 200, row);
}

static void delete_endpoint(struct bh_request *req)
{
	int rc = bh_sub_delete(bh_api_db(req), scope(req), bh_api_param(req, "id"));
	if (rc < 0) {
		bh_api_reply_db_error(req, "delete endpoint");
		return;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return;
	}
	struct bh_log_ctx ctx = {.subscription = bh_api_param(req, "id")};
	bh_info_ctx(&ctx, "deleted endpoint");
	bh_api_reply_empty(req, 204);
}

/*
 * POST /v1/endpoints/{id}/rotate-secret: a new secret signs from now on;
 * the old one signs beside it for BH_SUB_PREVIOUS_SECRET_S, so receivers
 * can switch without losing a delivery.
 */
static void rotate_secret(struct bh_request *req)
{
	static const char *const fields[] = {NULL};
	json_t *out = NULL;
	if (bh_body_object(req, fields, false) == NULL)
		return;
	int rc = bh_sub_rotate_secret(bh_api_db(req), scope(req), bh_api_param(req, "id"), &out);
	if (rc < 0) {
		bh_api_reply_db_error(req, "rotate endpoint secret");
		return;
	}
	if (rc == BH_SUB_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return;
	}
	/* An admin rotating another client's secret (a leak) does not learn the new one. */
	if (!caller_owns(req, out))
		json_object_del(out, "secret");
	json_object_del(out, "client_id");
	struct bh_log_ctx ctx = {.subscription = bh_api_param(req, "id")};
	bh_info_ctx(&ctx, "rotated the signing secret");
	bh_api_reply_json(req, 200, out);
}

/* An RFC 3339 member; absent gives *present false. 0, or -1 with the reply set. */
static int body_time(struct bh_request *req, json_t *obj, const char *key, bool required,
		     bool *present, int64_t *ms)
{
	const char *s;
	if (bh_body_string(req, obj, "", key, 1, TIME_TEXT_MAX, required, &s) < 0)
		return -1;
	*present = s != NULL;
	if (s != NULL && bh_parse_time(s, ms) < 0) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "%s: must be an RFC 3339 time such as 2026-11-25T10:15:00Z",
				   key);
		return -1;
	}
	return 0;
}

/*
 * POST /v1/endpoints/{id}/replay {since, until, only_failed}: every
 * delivery of the endpoint created in [since, until) is sent again (as
 * the same delivery, so the receiver sees the same webhook-id).
 */
static void replay_endpoint(struct bh_request *req)
{
	static const char *const fields[] = {"since", "until", "only_failed", NULL};
	char err[256];
	bool has_since, has_until, has_only_failed, only_failed = false;
	int64_t since_ms = 0, until_ms = bh_now_ms();
	long long count = 0;
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || body_time(req, obj, "since", true, &has_since, &since_ms) < 0 ||
	    body_time(req, obj, "until", false, &has_until, &until_ms) < 0 ||
	    bh_body_bool(req, obj, "only_failed", &has_only_failed, &only_failed) < 0)
		return;
	/* bh_delivery_replay reads a negative bound as open: refuse times before 1970. */
	if (since_ms < 0) {
		bh_api_reply_error(req, 400, "invalid_field", "since: must not be before 1970");
		return;
	}
	if (since_ms >= until_ms) {
		bh_api_reply_error(req, 400, "invalid_field",
				   has_until ? "until: must be later than since"
					     : "until: must be later than since (default: now)");
		return;
	}
	err[0] = '\0';
	int rc = bh_delivery_replay(bh_api_db(req), scope(req), bh_api_param(req, "id"), since_ms,
				    until_ms, only_failed, &count, err, sizeof(err));
	if (rc < 0) {
		bh_error("replay of endpoint %s: %s", bh_api_param(req, "id"), err);
		bh_api_reply_error(req, 503, "dependency_unavailable",
				   "The database is unavailable; try again later.");
		return;
	}
	if (rc == 1) {
		bh_api_reply_error(req, 404, "not_found", "id: no such endpoint");
		return;
	}
	/* bh_delivery_replay logged how many. */
	bh_api_reply_json(req, 202, json_pack("{s:I}", "replayed", (json_int_t)count));
}

const struct bh_route bh_routes_endpoints[] = {
	{.method = "POST",
	 .pattern = "/v1/endpoints",
	 .handler = create_endpoint,
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/endpoints",
	 .handler = list_endpoints,
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/endpoints/{id}",
	 .handler = get_endpoint,
	 .needs_auth = true},
	{.method = "PATCH",
	 .pattern = "/v1/endpoints/{id}",
	 .handler = patch_endpoint,
	 .needs_auth = true},
	{.method = "DELETE",
	 .pattern = "/v1/endpoints/{id}",
	 .handler = delete_endpoint,
	 .needs_auth = true},
	{.method = "POST",
	 .pattern = "/v1/endpoints/{id}/rotate-secret",
	 .handler = rotate_secret,
	 .needs_auth = true},
	{.method = "POST",
	 .pattern = "/v1/endpoints/{id}/replay",
	 .handler = replay_endpoint,
	 .needs_auth = true},
	{.method = NULL},
};
