/*
 * PSD2 application webhooks and asynchronous refresh (PRODUCT.md 6.2, seed
 * 002) under /tpp/v1, in the native error envelope:
 *
 *   GET/PUT /tpp/v1/webhook-settings   the caller's client's settings: those
 *                                      in force (its "psd2" subscription)
 *                                      and the pending change with activeFrom
 *   PUT /tpp/v1/refresh                202 {"taskId"}; the request goes to the
 *                                      scheduler through bankhook.refresh
 *   GET /tpp/v1/refresh/{taskId}       the task and each bank's part
 *
 * Enabling or changing waits for the next full hour (the scheduler applies
 * it); disabling is immediate. Every query is scoped by the caller's
 * client; an admin may refresh and read any client's consent and task. SQL
 * on psd2_settings and psd2_tasks as the api needs it lives here; the
 * scheduler's side is in scheduler/psd2.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "kind_psd2.h"
#include "log.h"
#include "net.h"
#include "server.h"

#define CONSENT_ID_MAX 200
#define TASK_INSERT_TRIES 3
#define TASK_ID_MAX 63 /* task_insert's buffer holds 64 bytes */
#define DISABLED_REASON "disabled in the webhook settings"

#define TIME_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The caller's scope for consents and tasks: NULL for admin. */
static const char *scope(const struct bh_request *req)
{
	return req->caller.is_admin ? NULL : req->caller.client_id;
}

static json_t *text_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

/* ---- webhook settings -------------------------------------------------- */

/*
 * {"enabled","endpoint","securityHeader","endpointId","pending"}: the
 * settings in force (the subscription; never enabled: false, null, "")
 * and the pending change ({"enabled","endpoint","securityHeader",
 * "activeFrom"} or null). NULL on a database error.
 */
static json_t *settings_json(struct bh_db *db, const char *client_id)
{
	const char *params[] = {client_id};
	PGresult *res = bh_db_query(
		db,
		"SELECT s.id, COALESCE(s.enabled, false), s.url,"
		" COALESCE(s.headers->>'Authorization', ''), p.pending_endpoint, p.pending_header,"
		" " TIME_SQL(
			"p.pending_from") " FROM (SELECT $1::text AS client_id) c"
					  " LEFT JOIN subscriptions s ON s.client_id = c.client_id "
					  "AND s.kind = 'psd2'"
					  " LEFT JOIN psd2_settings p ON p.client_id = c.client_id"
					  " AND p.pending_from IS NOT NULL",
		1, params);
	if (res == NULL)
		return NULL;
	json_t *pending = json_null();
	if (!PQgetisnull(res, 0, 4))
		pending = json_pack("{s:b, s:s, s:s, s:s}", "enabled", 1, "endpoint",
				    PQgetvalue(res, 0, 4), "securityHeader", PQgetvalue(res, 0, 5),
				    "activeFrom", PQgetvalue(res, 0, 6));
	json_t *o = json_pack("{s:b, s:o, s:s, s:o, s:o}", "enabled",
			      PQgetvalue(res, 0, 1)[0] == 't', "endpoint", text_or_null(res, 0, 2),
			      "securityHeader", PQgetvalue(res, 0, 3), "endpointId",
			      text_or_null(res, 0, 0), "pending", pending);
	PQclear(res);
	return o;
}

static void get_settings(struct bh_request *req)
{
	json_t *o = settings_json(bh_api_db(req), req->caller.client_id);
	if (o == NULL)
		bh_api_reply_db_error(req, "read webhook settings");
	else
		bh_api_reply_json(req, 200, o);
}

/*
 * Enabling or changing: the change waits in psd2_settings until the next
 * full hour, unless it equals what is in force (then any pending change is
 * dropped: the client asked for what it has). In the caller's transaction;
 * 0 or -1.
 */
static int settings_schedule(struct bh_db *db, const char *client_id, const char *endpoint,
			     const char *header)
{
	const char *p1[] = {client_id};
	/* The settings row serializes concurrent PUTs and the scheduler's apply. */
	if (bh_db_exec(db,
		       "INSERT INTO psd2_settings (client_id) VALUES ($1) ON CONFLICT DO NOTHING",
		       1, p1) < 0)
		return -1;
	PGresult *res = bh_db_query(
		db,
		"SELECT s.enabled AND s.url = $2 AND COALESCE(s.headers->>'Authorization', '') = $3"
		" FROM psd2_settings p LEFT JOIN subscriptions s ON s.client_id = p.client_id"
		" AND s.kind = 'psd2' WHERE p.client_id = $1 FOR UPDATE OF p",
		3, (const char *[]){client_id, endpoint, header});
	if (res == NULL)
		return -1;
	bool in_force = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	char from[32];
	snprintf(from, sizeof(from), "%lld", (long long)bh_psd2_activation_ms(bh_now_ms()));
	const char *p4[] = {client_id, in_force ? NULL : endpoint, in_force ? NULL : header,
			    in_force ? NULL : from};
	return bh_db_exec(db,
			  "UPDATE psd2_settings SET pending_endpoint = $2, pending_header = $3,"
			  " pending_from = to_timestamp($4::bigint / 1000.0), updated_at = now()"
			  " WHERE client_id = $1",
			  4, p4);
}

/* Disabling: at once, and any pending change is dropped. 0 or -1. */
static int settings_disable(struct bh_db *db, const char *client_id, const char *endpoint,
			    const char *header)
{
	const char *params[] = {client_id};
	/*
	 * The settings row first, as the scheduler's activation locks it before
	 * the subscription: the same order on both sides cannot deadlock, and an
	 * activation running now either finished or will find nothing pending.
	 */
	if (bh_db_exec(db,
		       "UPDATE psd2_settings SET pending_endpoint = NULL, pending_header = NULL,"
		       " pending_from = NULL, updated_at = now() WHERE client_id = $1",
		       1, params) < 0)
		return -1;
	return bh_sub_psd2_set(db, client_id, false, endpoint, header, DISABLED_REASON);
}

/*
 * The PUT body's validation, apart from the database (tests/fuzz/fuzz_psd2.c
 * calls it): 0 with the fields (endpoint / header NULL when absent), or -1
 * with the reply set.
 */
static int parse_settings(struct bh_request *req, bool *enabled, const char **endpoint,
			  const char **header)
{
	static const char *const fields[] = {"enabled", "endpoint", "securityHeader", NULL};
	const struct bh_config *cfg = req->api->cfg;
	bool present;
	char err[256];

	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || bh_body_bool(req, obj, "enabled", &present, enabled) < 0 ||
	    bh_body_string(req, obj, "", "endpoint", 1, BH_URL_MAX, false, endpoint) < 0 ||
	    bh_body_string(req, obj, "", "securityHeader", 0, BH_PSD2_HEADER_MAX, false, header) <
		    0)
		return -1;
	if (!present) {
		bh_api_reply_error(req, 400, "invalid_field", "enabled: required");
		return -1;
	}
	if (*endpoint == NULL && *enabled) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "endpoint: required to enable webhooks");
		return -1;
	}
	if (*endpoint != NULL &&
	    bh_psd2_check_endpoint(*endpoint, cfg->delivery_allow_loopback,
				   cfg->delivery_allow_private, err, sizeof(err)) < 0) {
		bh_api_reply_error(req, 400, "invalid_field", "endpoint: %s", err);
		return -1;
	}
	if (*header != NULL && !bh_psd2_header_valid(*header)) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "securityHeader: must be empty or match [ a-zA-Z0-9=+/]*");
		return -1;
	}
	return 0;
}

static void put_settings(struct bh_request *req)
{
	struct bh_db *db = bh_api_db(req);
	const char *endpoint, *header;
	bool enabled;

	/* Every check before any write: bad input stores nothing. */
	if (parse_settings(req, &enabled, &endpoint, &header) < 0)
		return;
	if (bh_db_begin(db) < 0) {
		bh_api_reply_db_error(req, "update webhook settings");
		return;
	}
	int rc = enabled ? settings_schedule(db, req->caller.client_id, endpoint,
					     header ? header : "")
			 : settings_disable(db, req->caller.client_id, endpoint, header);
	if (rc < 0 || bh_db_commit(db) < 0) {
		bh_db_rollback(db);
		bh_api_reply_db_error(req, "update webhook settings");
		return;
	}
	bh_info("webhook settings of client %s: %s", req->caller.client_id,
		enabled ? "change scheduled for the next full hour" : "disabled");
	get_settings(req);
}

/* ---- refresh ----------------------------------------------------------- */

/*
 * The consent of a refresh: the Consent-ID header or the body's consentId
 * (both given must agree). NULL with the reply set.
 */
static const char *refresh_consent(struct bh_request *req)
{
	static const char *const fields[] = {"consentId", NULL};
	const char *from_body;
	json_t *obj = bh_body_object(req, fields, false);
	if (obj == NULL ||
	    bh_body_string(req, obj, "", "consentId", 1, CONSENT_ID_MAX, false, &from_body) < 0)
		return NULL;
	const char *from_header = bh_api_header(req, "Consent-ID");
	if (from_header != NULL && from_body != NULL && strcmp(from_header, from_body) != 0) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "Consent-ID: differs from the body's consentId");
		return NULL;
	}
	const char *id = from_header ? from_header : from_body;
	if (id == NULL || id[0] == '\0') {
		bh_api_reply_error(req, 400, "invalid_field",
				   "consentId: required (Consent-ID header or body consentId)");
		return NULL;
	}
	if (!bh_body_is_id(id, CONSENT_ID_MAX)) {
		bh_api_reply_error(req, 404, "not_found", "consentId: no such consent");
		return NULL;
	}
	return id;
}

/*
 * Inserts a QUEUED task, or finds the unfinished one of the consent.
 * 1 new (task_id filled), 0 existing (task_id filled), -1 database error.
 */
static int task_insert(struct bh_db *db, const char *consent_id, const char *client_id,
		       char task_id[64])
{
	for (int i = 0; i < TASK_INSERT_TRIES; i++) {
		char id[37];
		bh_uuid4(id);
		const char *params[] = {id, consent_id, client_id};
		PGresult *res = bh_db_query(db,
					    "INSERT INTO psd2_tasks (id, consent_id, client_id)"
					    " VALUES ($1, $2, $3) ON CONFLICT (consent_id)"
					    " WHERE status <> 'COMPLETED' DO NOTHING RETURNING id",
					    3, params);
		if (res == NULL)
			return -1;
		bool inserted = PQntuples(res) == 1;
		PQclear(res);
		if (inserted) {
			snprintf(task_id, 64, "%s", id);
			return 1;
		}
		res = bh_db_query(db,
				  "SELECT id FROM psd2_tasks WHERE consent_id = $1"
				  " AND status <> 'COMPLETED'",
				  1, (const char *[]){consent_id});
		if (res == NULL)
			return -1;
		bool found = PQntuples(res) == 1;
		if (found)
			snprintf(task_id, 64, "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		if (found)
			return 0;
		/* It completed between the two statements: try again. */
	}
	return -1;
}

static void put_refresh(struct bh_request *req)
{
	struct bh_db *db = bh_api_db(req);
	char task_id[64], err[256];
	const char *consent_id = refresh_consent(req);
	if (consent_id == NULL)
		return;
	const char *params[] = {consent_id, scope(req)};
	PGresult *res = bh_db_query(db,
				    "SELECT client_id FROM consents WHERE consent_id = $1"
				    " AND ($2::text IS NULL OR client_id = $2)",
				    2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "find consent");
		return;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		bh_api_reply_error(req, 404, "not_found", "consentId: no such consent");
		return;
	}
	char *owner = bh_xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	int rc = task_insert(db, consent_id, owner, task_id);
	free(owner);
	if (rc < 0) {
		bh_api_reply_db_error(req, "create refresh task");
		return;
	}
	if (rc == 1) {
		json_t *msg = json_pack("{s:s, s:s}", "taskId", task_id, "consentId", consent_id);
		char *text = json_dumps(msg, JSON_COMPACT);
		json_decref(msg);
		/* Keyed by consent: one consent's requests stay in order. */
		int prc = bh_kafka_produce_sync(req->api->producer, req->api->cfg->topic_refresh,
						consent_id, text, strlen(text), err, sizeof(err));
		free(text);
		if (prc < 0) {
			/* Not handed over: take the task back so a retry starts afresh. */
			bh_warn("refresh task %s not accepted by Kafka: %s", task_id, err);
			if (bh_db_exec(db,
				       "DELETE FROM psd2_tasks WHERE id = $1 AND status = 'QUEUED'",
				       1, (const char *[]){task_id}) < 0)
				bh_warn("refresh task %s: %s", task_id, bh_db_errmsg(db));
			bh_api_reply_error(
				req, 503, "dependency_unavailable",
				"Kafka did not take the refresh request; try again later.");
			return;
		}
		bh_info("refresh task %s queued for consent %s", task_id, consent_id);
	}
	bh_api_reply_json(req, 202, json_pack("{s:s}", "taskId", task_id));
}

static void get_refresh(struct bh_request *req)
{
	struct bh_db *db = bh_api_db(req);
	const char *params[] = {bh_api_param(req, "taskId"), scope(req)};
	/* Task ids are UUIDs; other bytes (maybe not UTF-8) name no task. */
	if (!bh_body_is_id(params[0], TASK_ID_MAX)) {
		bh_api_reply_error(req, 404, "not_found", "taskId: no such task");
		return;
	}
	PGresult *res = bh_db_query(
		db,
		"SELECT id, consent_id, status, " TIME_SQL(
			"created_at") ","
				      " " TIME_SQL("started_at") ", " TIME_SQL(
					      "finished_at") " FROM psd2_tasks WHERE id = $1"
							     " AND ($2::text IS NULL OR client_id "
							     "= $2)",
		2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "read refresh task");
		return;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		bh_api_reply_error(req, 404, "not_found", "taskId: no such task");
		return;
	}
	json_t *task =
		json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "taskId", PQgetvalue(res, 0, 0),
			  "consentId", PQgetvalue(res, 0, 1), "status", PQgetvalue(res, 0, 2),
			  "createdAt", PQgetvalue(res, 0, 3), "startedAt", text_or_null(res, 0, 4),
			  "finishedAt", text_or_null(res, 0, 5));
	PQclear(res);
	res = bh_db_query(db,
			  "SELECT t.bank_code, COALESCE((SELECT name FROM banks b WHERE b.code ="
			  " t.bank_code ORDER BY b.updated_at DESC LIMIT 1), ''), t.status,"
			  " t.attempts, t.last_error, t.accounts::text, " TIME_SQL(
				  "t.finished_at") ","
						   " t.delivery_id FROM psd2_task_banks t WHERE "
						   "t.task_id = $1"
						   " ORDER BY t.bank_code",
			  1, params);
	if (res == NULL) {
		json_decref(task);
		bh_api_reply_db_error(req, "read refresh task banks");
		return;
	}
	json_t *banks = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *accounts = PQgetisnull(res, i, 5)
					   ? json_null()
					   : json_loads(PQgetvalue(res, i, 5), 0, NULL);
		json_array_append_new(
			banks,
			json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o}", "bankCode",
				  PQgetvalue(res, i, 0), "bankName", PQgetvalue(res, i, 1),
				  "status", PQgetvalue(res, i, 2), "attempts",
				  atoi(PQgetvalue(res, i, 3)), "error", text_or_null(res, i, 4),
				  "accounts", accounts ? accounts : json_null(), "finishedAt",
				  text_or_null(res, i, 6), "deliveryId", text_or_null(res, i, 7)));
	}
	PQclear(res);
	json_object_set_new(task, "banks", banks);
	bh_api_reply_json(req, 200, task);
}

const struct bh_route bh_routes_psd2[] = {
	{.method = "GET",
	 .pattern = "/tpp/v1/webhook-settings",
	 .handler = get_settings,
	 .needs_auth = true},
	{.method = "PUT",
	 .pattern = "/tpp/v1/webhook-settings",
	 .handler = put_settings,
	 .needs_auth = true},
	{.method = "PUT", .pattern = "/tpp/v1/refresh", .handler = put_refresh, .needs_auth = true},
	{.method = "GET",
	 .pattern = "/tpp/v1/refresh/{taskId}",
	 .handler = get_refresh,
	 .needs_auth = true},
	{.method = NULL},
};
