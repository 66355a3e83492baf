/*
 * POST /v1/events: validates an event exactly as the worker will (one
 * validator, common/event.c), gives it an id when it has none, and answers
 * 202 only once Kafka acknowledged it, so an accepted event is never lost;
 * 413 for one over BH_EVENT_MAX_BYTES, which Kafka would refuse. GET /v1/events/{id}: the stored
 * event with the caller's deliveries of it.
 */
#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "event.h"
#include "log.h"
#include "server.h"

/* The partition key keeps one account's events in order. */
static const char *event_key(const struct bh_event *ev)
{
	const char *merchant = bh_event_data_str(ev, "merchant_id");
	if (ev->account_id != NULL)
		return ev->account_id;
	if (ev->bank_id != NULL)
		return ev->bank_id;
	return merchant[0] != '\0' ? merchant : ev->id;
}

static void post_event(struct bh_request *req)
{
	struct bh_event ev;
	char id[37], err[512];
	char *payload = NULL;
	if (req->body == NULL) {
		bh_api_reply_error(req, 400, "invalid_body",
				   "body: a JSON event object is required");
		return;
	}
	bh_uuid4(id);
	int rc = bh_event_from_json(req->body, id, &ev, err, sizeof(err));
	if (rc == BH_EVENT_TOO_LARGE) {
		/* Kafka would refuse it: "try again" (503) would make clients retry forever. */
		bh_api_reply_error(req, 413, "body_too_large", "body: %s", err);
		return;
	}
	if (rc < 0) {
		bh_api_reply_error(req, 400, "invalid_event", "%s", err);
		return;
	}
	if (bh_event_type_internal(ev.type)) {
		bh_event_free(&ev);
		bh_api_reply_error(
			req, 400, "invalid_event",
			"type: must be transaction.created, balance.changed or payment.updated");
		return;
	}
	payload = json_dumps(ev.json, JSON_COMPACT);
	if (payload == NULL) {
		bh_api_reply_error(req, 500, "internal", "event: cannot be serialized");
		goto out;
	}
	struct bh_log_ctx ctx = {.event = ev.id};
	if (bh_kafka_produce_sync(req->api->producer, req->api->cfg->topic_events, event_key(&ev),
				  payload, strlen(payload), err, sizeof(err)) < 0) {
		bh_log_write(BH_LOG_ERROR, &ctx, __FILE__, __LINE__, "event not accepted: %s", err);
		bh_api_reply_error(req, 503, "dependency_unavailable",
				   "Kafka did not acknowledge the event; try again later.");
		goto out;
	}
	bh_info_ctx(&ctx, "accepted %s", ev.type_name);
	bh_api_reply_json(req, 202, json_pack("{s:s,s:s}", "id", ev.id, "status", "accepted"));
out:
	free(payload);
	bh_event_free(&ev);
}

/*
 * GET /v1/events/{id}. An event is visible to a client when one of its
 * deliveries is the client's (the common/delivery.c query decides), so a
 * tenant cannot read events meant for others by guessing ids.
 */
static void get_event(struct bh_request *req)
{
	const char *client_id = req->caller.is_admin ? NULL : req->caller.client_id;
	/* NULL is both "absent" and "database down": tell them apart with a ping. */
	json_t *ev = bh_event_get_json(bh_api_db(req), client_id, bh_api_param(req, "id"));
	if (ev != NULL) {
		bh_api_reply_json(req, 200, ev);
		return;
	}
	if (!bh_db_ping(req->db)) {
		bh_api_reply_db_error(req, "get event");
		return;
	}
	bh_api_reply_error(req, 404, "not_found", "id: no such event");
}

/*
 * Publishing events is for core systems: an event reaches every client's
 * subscriptions, so a tenant must not be able to forge one. Role
 * event_publisher (or admin) is required.
 */
const struct bh_route bh_routes_events[] = {
	{.method = "POST",
	 .pattern = "/v1/events",
	 .handler = post_event,
	 .role = "event_publisher",
	 .needs_auth = true},
	{.method = "GET", .pattern = "/v1/events/{id}", .handler = get_event, .needs_auth = true},
	{.method = NULL},
};
