/*
 * POST /v1/events: validates an event exactly as the worker will (one
 * validator, common/event.c), gives it an id when it has none, and answers
 * 202 only once Kafka acknowledged it, so an accepted event is never lost;
 * 413 for one over BH_EVENT_MAX_BYTES, which Kafka would refuse.
 * POST /v1/events/batch: up to BATCH_MAX events, each validated the same
 * way, the valid ones written to Kafka in one produce batch, answered 202
 * with one result per event in order. Both take an Idempotency-Key
 * (common/idempotency.h). GET /v1/events/{id}: the stored event with the
 * caller's deliveries of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "delivery.h"
#include "event.h"
#include "idempotency.h"
#include "log.h"
#include "server.h"

#define BATCH_MAX 1000

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

static void publish_one(struct bh_request *req)
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

/* One event of a batch: what the validator made of it and, once produced, its outcome. */
struct batch_item {
	struct bh_event ev;
	bool valid;
	char *payload; /* the compact event, for Kafka */
	json_t *error; /* {"code","message"} when refused */
};

/* The result of item i of a batch refused with code and the validator's reason err. */
static json_t *item_error(size_t i, const char *code, const char *err)
{
	char msg[640];
	/* "event: ..." is about the element itself; every other reason names a field in it. */
	if (strncmp(err, "event:", 6) == 0)
		snprintf(msg, sizeof(msg), "events[%zu]:%s", i, err + 6);
	else
		snprintf(msg, sizeof(msg), "events[%zu].%s", i, err);
	bh_utf8_fix(msg);
	return json_pack("{s:s,s:s}", "code", code, "message", msg);
}

/* Validates element i of the batch into it. */
static void batch_validate(json_t *elem, size_t i, struct batch_item *it)
{
	char id[37], err[512];
	bh_uuid4(id);
	int rc = bh_event_from_json(elem, id, &it->ev, err, sizeof(err));
	if (rc == BH_EVENT_TOO_LARGE) {
		it->error = item_error(i, "event_too_large", err);
		return;
	}
	if (rc < 0) {
		it->error = item_error(i, "invalid_event", err);
		return;
	}
	it->valid = true;
	if (bh_event_type_internal(it->ev.type)) {
		it->error = item_error(i, "invalid_event",
				       "type: must be transaction.created, balance.changed or"
				       " payment.updated");
		return;
	}
	it->payload = json_dumps(it->ev.json, JSON_COMPACT);
	if (it->payload == NULL)
		it->error = item_error(i, "internal", "event: cannot be serialized");
}

/*
 * POST /v1/events/batch {"events":[...]}. Every valid event is produced
 * before the one wait for Kafka's acknowledgements, so a batch costs one
 * round trip however many events it carries. 503 only when Kafka took
 * none of them (a retry with the same Idempotency-Key then runs again);
 * otherwise 202, and an event Kafka refused says so in its result.
 */
static void publish_batch(struct bh_request *req)
{
	static const char *const allowed[] = {"events", NULL};
	json_t *body = bh_body_object(req, allowed, true);
	if (body == NULL)
		return;
	json_t *events = json_object_get(body, "events");
	if (!json_is_array(events)) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "events: required, must be an array of events");
		return;
	}
	size_t n = json_array_size(events);
	if (n == 0 || n > BATCH_MAX) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "events: must hold 1 to %d events (has %zu)", BATCH_MAX, n);
		return;
	}
	struct batch_item *items = bh_xcalloc(n, sizeof(*items));
	struct bh_kafka_msg *msgs = bh_xcalloc(n, sizeof(*msgs));
	size_t *msg_item = bh_xcalloc(n, sizeof(*msg_item));
	size_t nmsgs = 0;
	for (size_t i = 0; i < n; i++) {
		batch_validate(json_array_get(events, i), i, &items[i]);
		if (items[i].error != NULL)
			continue;
		msgs[nmsgs] = (struct bh_kafka_msg){.key = event_key(&items[i].ev),
						    .payload = items[i].payload,
						    .len = strlen(items[i].payload)};
		msg_item[nmsgs++] = i;
	}
	int failed = nmsgs > 0 ? bh_kafka_produce_batch(req->api->producer,
							req->api->cfg->topic_events, msgs, nmsgs)
			       : 0;
	for (size_t m = 0; m < nmsgs; m++) {
		if (msgs[m].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		struct batch_item *it = &items[msg_item[m]];
		struct bh_log_ctx ctx = {.event = it->ev.id};
		bh_log_write(BH_LOG_ERROR, &ctx, __FILE__, __LINE__,
			     "event not accepted: kafka: %s", rd_kafka_err2str(msgs[m].err));
		it->error =
			item_error(msg_item[m], "dependency_unavailable",
				   "event: Kafka did not acknowledge the event; try again later.");
	}
	if (nmsgs > 0 && (size_t)failed == nmsgs) {
		bh_api_reply_error(req, 503, "dependency_unavailable",
				   "Kafka did not acknowledge the events; try again later.");
		goto out;
	}
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_pack("{s:I}", "index", (json_int_t)i);
		if (items[i].error != NULL) {
			json_object_set(r, "error", items[i].error);
		} else {
			json_object_set_new(r, "id", json_string(items[i].ev.id));
		}
		json_array_append_new(data, r);
	}
	bh_info("batch of %zu: %zu accepted", n, nmsgs - (size_t)failed);
	bh_api_reply_json(req, 202, json_pack("{s:o}", "data", data));
out:
	for (size_t i = 0; i < n; i++) {
		if (items[i].valid)
			bh_event_free(&items[i].ev);
		free(items[i].payload);
		json_decref(items[i].error);
	}
	free(msg_item);
	free(msgs);
	free(items);
}

/*
 * Runs a publish handler under the request's Idempotency-Key, if any: the
 * key is claimed before anything is produced, so of two requests with one
 * key only one produces; its answer is stored and replayed as it was
 * (status and body, with Idempotent-Replayed: true). A key reused with
 * another request is 422; one whose first request still runs, 409. A 5xx
 * is not stored: the key is released, and a retry runs again.
 */
static void publish_idempotent(struct bh_request *req, bh_handler_fn handler)
{
	const char *key = bh_api_header(req, "Idempotency-Key");
	char err[160], hash[65];
	if (key == NULL) {
		handler(req);
		return;
	}
	if (bh_idem_key_check(key, err, sizeof(err)) < 0) {
		bh_api_reply_error(req, 400, "invalid_header", "Idempotency-Key: %s", err);
		return;
	}
	const char *client_id = req->caller.client_id;
	bh_idem_request_hash(req->method, req->route, req->body, hash);
	int status = 0;
	char *body = NULL;
	struct bh_db *db = bh_api_db(req);
	switch (bh_idem_claim(db, client_id, key, hash, &status, &body)) {
	case BH_IDEM_NEW:
		break;
	case BH_IDEM_REPLAY:
		bh_api_reply_text(req, (unsigned int)status, "application/json", body,
				  strlen(body));
		bh_api_reply_header(req, "Idempotent-Replayed", "true");
		free(body);
		return;
	case BH_IDEM_MISMATCH:
		bh_api_reply_error(req, 422, "idempotency_key_reused",
				   "Idempotency-Key: already used with a different request"
				   " (method, path or body); use a new key for a new request.");
		return;
	case BH_IDEM_IN_PROGRESS:
		bh_api_reply_error(req, 409, "idempotency_key_in_use",
				   "Idempotency-Key: a request with this key is still being"
				   " processed; retry later.");
		return;
	case BH_IDEM_ERROR:
		bh_api_reply_db_error(req, "idempotency key");
		return;
	}
	handler(req);
	if (req->status >= 500) {
		if (bh_idem_release(db, client_id, key) < 0)
			bh_warn("idempotency key not released (it frees itself after %d s): %s",
				BH_IDEM_CLAIM_S, bh_db_errmsg(db));
		return;
	}
	char *answer = bh_xstrndup(req->reply_body != NULL ? req->reply_body : "", req->reply_len);
	/* The events are in Kafka: the answer stands even when it cannot be stored. */
	if (bh_idem_store(db, client_id, key, (int)req->status, answer) < 0)
		bh_warn("idempotency key answer not stored (a retry after %d s runs again): %s",
			BH_IDEM_CLAIM_S, bh_db_errmsg(db));
	free(answer);
}

static void post_event(struct bh_request *req)
{
	publish_idempotent(req, publish_one);
}

static void post_events_batch(struct bh_request *req)
{
	publish_idempotent(req, publish_batch);
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
	 .needs_auth = true,
	 .publish = true},
	{.method = "POST",
	 .pattern = "/v1/events/batch",
	 .handler = post_events_batch,
	 .role = "event_publisher",
	 .needs_auth = true,
	 .publish = true,
	 .batch_body = true},
	{.method = "GET", .pattern = "/v1/events/{id}", .handler = get_event, .needs_auth = true},
	{.method = NULL},
};
