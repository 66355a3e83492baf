/*
 * The delivery log as seen through the native API, and the manual retry
 * of one delivery; the queries are in common/delivery.c and are scoped to
 * the caller's client (admin: all).
 */
#include <string.h>

#include "body.h"
#include "delivery.h"
#include "log.h"
#include "server.h"

#define FILTER_MAX 200

static const char *scope(const struct bh_request *req)
{
	return req->caller.is_admin ? NULL : req->caller.client_id;
}

/* A query filter of at most FILTER_MAX bytes; -1 with the reply set. */
static int query_filter(struct bh_request *req, const char *key, const char **out)
{
	*out = bh_api_query(req, key);
	if (*out != NULL && (strlen(*out) == 0 || strlen(*out) > FILTER_MAX)) {
		bh_api_reply_error(req, 400, "invalid_parameter", "%s: must be 1 to %d characters",
				   key, FILTER_MAX);
		return -1;
	}
	return 0;
}

static void list_deliveries(struct bh_request *req)
{
	struct bh_delivery_filter f;
	char err[256];
	int limit;
	if (bh_api_query_limit(req, &limit) < 0 ||
	    query_filter(req, "endpoint_id", &f.endpoint_id) < 0 ||
	    query_filter(req, "event_id", &f.event_id) < 0 ||
	    query_filter(req, "status", &f.status) < 0)
		return;
	if (f.status != NULL && strcmp(f.status, "pending") != 0 &&
	    strcmp(f.status, "succeeded") != 0 && strcmp(f.status, "failed") != 0) {
		bh_api_reply_error(req, 400, "invalid_parameter",
				   "status: must be pending, succeeded or failed");
		return;
	}
	json_t *page = bh_delivery_list_json(bh_api_db(req), scope(req), &f, limit,
					     bh_api_query(req, "cursor"), err, sizeof(err));
	if (page == NULL) {
		if (strncmp(err, "cursor:", 7) == 0)
			bh_api_reply_error(req, 400, "invalid_parameter", "%s", err);
		else
			bh_api_reply_db_error(req, "list deliveries");
		return;
	}
	bh_api_reply_json(req, 200, page);
}

static void get_delivery(struct bh_request *req)
{
	/* NULL is both "absent" and "database down": tell them apart with a ping. */
	json_t *d = bh_delivery_get_json(bh_api_db(req), scope(req), bh_api_param(req, "id"));
	if (d != NULL) {
		bh_api_reply_json(req, 200, d);
		return;
	}
	if (!bh_db_ping(req->db)) {
		bh_api_reply_db_error(req, "get delivery");
		return;
	}
	bh_api_reply_error(req, 404, "not_found", "id: no such delivery");
}

/*
 * POST /v1/deliveries/{id}/retry: a succeeded or failed delivery goes back
 * to pending and is attempted at once, its retry schedule starting over;
 * the attempt count keeps growing. A pending one is already on its way:
 * 409, so a retry never races the attempt in flight.
 */
static void retry_delivery(struct bh_request *req)
{
	static const char *const fields[] = {NULL};
	char err[256];
	const char *id = bh_api_param(req, "id");
	if (bh_body_object(req, fields, false) == NULL)
		return;
	err[0] = '\0';
	int rc = bh_delivery_retry(bh_api_db(req), scope(req), id, err, sizeof(err));
	struct bh_log_ctx ctx = {.delivery = id};
	switch (rc) {
	case 0: /* bh_delivery_retry logged it */
		bh_api_reply_json(req, 202, json_pack("{s:s,s:s}", "id", id, "status", "pending"));
		break;
	case 1:
		bh_api_reply_error(req, 404, "not_found", "id: no such delivery");
		break;
	case 2:
		bh_api_reply_error(req, 409, "conflict",
				   "id: the delivery is still pending; it is attempted on its "
				   "schedule");
		break;
	default:
		bh_log_write(BH_LOG_ERROR, &ctx, __FILE__, __LINE__, "manual retry: %s", err);
		bh_api_reply_error(req, 503, "dependency_unavailable",
				   "The database is unavailable; try again later.");
		break;
	}
}

const struct bh_route bh_routes_deliveries[] = {
	{.method = "GET",
	 .pattern = "/v1/deliveries",
	 .handler = list_deliveries,
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/deliveries/{id}",
	 .handler = get_delivery,
	 .needs_auth = true},
	{.method = "POST",
	 .pattern = "/v1/deliveries/{id}/retry",
	 .handler = retry_delivery,
	 .needs_auth = true},
	{.method = NULL},
};
