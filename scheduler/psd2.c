/*
 * PSD2 application webhooks in the scheduler: hourly activation,
 * transactionEvent windows and /refresh tasks (see psd2.h). SQL on
 * psd2_settings (apply side), psd2_tx_pending, psd2_tasks,
 * psd2_task_banks and psd2_snapshots lives here.
 */
#include "psd2.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delivery.h"
#include "kafka.h"
#include "kind_psd2.h"
#include "log.h"
#include "subscription.h"

/* Rows per pass: LIMIT 100 in the activation and window queries. */
#define CONNECTOR_BODY_MAX (2 * 1024 * 1024)
#define CONNECTOR_ERROR_MAX 300
#define REFRESH_GROUP "bankhook-scheduler"
#define SWEEP_EVERY_MS 5000
#define SWEEP_AFTER_S 5 /* a QUEUED task older than this lost its Kafka message */
#define LEASE_MARGIN_S 10
#define IDLE_MS 200
#define BACKOFF_MAX_MS 600000

/* ---- activation ---------------------------------------------------------- */

int bh_psd2_activate_due(struct bh_db *db, int64_t now_ms)
{
	int rc = -1, n = 0;
	char at[32];
	snprintf(at, sizeof(at), "%lld", (long long)now_ms);
	const char *params[] = {now_ms >= 0 ? at : NULL};
	if (bh_db_begin(db) < 0)
		return -1;
	PGresult *res = bh_db_query(
		db,
		"SELECT client_id, pending_endpoint, pending_header FROM psd2_settings"
		" WHERE pending_from <= COALESCE(to_timestamp($1::bigint / 1000.0), now())"
		" ORDER BY pending_from LIMIT 100 FOR UPDATE SKIP LOCKED",
		1, params);
	if (res == NULL)
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *client = PQgetvalue(res, i, 0);
		if (bh_sub_psd2_set(db, client, true, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
				    NULL) < 0 ||
		    bh_db_exec(db,
			       "UPDATE psd2_settings SET pending_endpoint = NULL, pending_header = "
			       "NULL,"
			       " pending_from = NULL, updated_at = now() WHERE client_id = $1",
			       1, (const char *[]){client}) < 0)
			goto out;
		bh_info("webhook settings of client %s now in force", client);
		n++;
	}
	if (bh_db_commit(db) < 0)
		goto out;
	rc = n;
out:
	if (rc < 0) {
		bh_warn("psd2 activation: %s", bh_db_errmsg(db));
		bh_db_rollback(db);
	}
	PQclear(res);
	return rc;
}

/* ---- notifications ------------------------------------------------------- */

/*
 * Creates the delivery of `payload` (stolen) to the client's enabled
 * application webhook, in the caller's transaction. delivery_id is "" when
 * the client has none in force. 0 or -1.
 */
static int notify(struct bh_db *db, const char *client_id, json_t *payload, char delivery_id[37])
{
	int rc = -1;
	json_t *event = NULL;
	delivery_id[0] = '\0';
	PGresult *res = bh_db_query(db,
				    "SELECT id FROM subscriptions WHERE client_id = $1"
				    " AND kind = 'psd2' AND enabled",
				    1, (const char *[]){client_id});
	if (res == NULL)
		goto out;
	if (PQntuples(res) == 0) {
		rc = 0;
		goto out;
	}
	char event_id[37], err[256];
	bh_uuid4(event_id);
	event = bh_psd2_event_json(event_id, bh_now_ms(), payload);
	payload = NULL; /* now owned by event */
	if (bh_delivery_create_notification(db, PQgetvalue(res, 0, 0), client_id, event,
					    delivery_id, err, sizeof(err)) < 0) {
		delivery_id[0] = '\0';
		goto out;
	}
	rc = 0;
out:
	json_decref(payload);
	json_decref(event);
	PQclear(res);
	return rc;
}

/* ---- transactionEvent windows -------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Closes one consent's window in one transaction; 1 event created, 0 none, -1. */
static int flush_consent(struct bh_db *db, const struct bh_config *cfg, const char *consent_id)
{
	int rc = -1;
	const char **ids = NULL;
	PGresult *marks = NULL, *owner = NULL;
	if (bh_db_begin(db) < 0)
		return -1;
	const char *params[] = {consent_id, cfg->psd2_own_bank_code};
	/* Every account of the window, own bank or not, so nothing piles up. */
	marks = bh_db_query(db,
			    "DELETE FROM psd2_tx_pending WHERE consent_id = $1"
			    " RETURNING account_id, bank_code = $2",
			    2, params);
	owner = bh_db_query(db, "SELECT client_id FROM consents WHERE consent_id = $1", 1, params);
	if (marks == NULL || owner == NULL)
		goto out;
	int n = 0;
	ids = bh_xcalloc((size_t)PQntuples(marks) + 1, sizeof(*ids));
	for (int i = 0; i < PQntuples(marks); i++)
		if (PQgetvalue(marks, i, 1)[0] == 't')
			ids[n++] = PQgetvalue(marks, i, 0);
	qsort(ids, (size_t)n, sizeof(*ids), cmp_str);
	char delivery_id[37] = "";
	if (n > 0 && PQntuples(owner) == 1 &&
	    notify(db, PQgetvalue(owner, 0, 0), bh_psd2_transaction_event(consent_id, ids, n),
		   delivery_id) < 0)
		goto out;
	if (bh_db_commit(db) < 0)
		goto out;
	if (delivery_id[0])
		bh_info("transactionEvent for consent %s: %d accounts, delivery %s", consent_id, n,
			delivery_id);
	rc = delivery_id[0] ? 1 : 0;
out:
	if (rc < 0) {
		bh_warn("psd2 window of consent %s: %s", consent_id, bh_db_errmsg(db));
		bh_db_rollback(db);
	}
	free(ids);
	PQclear(marks);
	PQclear(owner);
	return rc;
}

int bh_psd2_flush_transactions(struct bh_db *db, const struct bh_config *cfg)
{
	char window[16];
	snprintf(window, sizeof(window), "%d", cfg->psd2_aggregation_window_s);
	PGresult *res =
		bh_db_query(db,
			    "SELECT consent_id FROM psd2_tx_pending GROUP BY consent_id"
			    " HAVING min(first_at) <= now() - make_interval(secs => $1::int)"
			    " LIMIT 100",
			    1, (const char *[]){window});
	if (res == NULL) {
		bh_warn("psd2 windows: %s", bh_db_errmsg(db));
		return -1;
	}
	int events = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		int r = flush_consent(db, cfg, PQgetvalue(res, i, 0));
		if (r > 0)
			events += r;
	}
	PQclear(res);
	return events;
}

/* ---- refresh tasks ------------------------------------------------------- */

long long bh_psd2_purge_tasks(struct bh_db *db, int days, int batch)
{
	char d[16], b[16];
	snprintf(d, sizeof(d), "%d", days);
	snprintf(b, sizeof(b), "%d", batch);
	PGresult *res = bh_db_query(db,
				    "DELETE FROM psd2_tasks WHERE id IN (SELECT id FROM psd2_tasks"
				    " WHERE status = 'COMPLETED' AND finished_at < now() -"
				    " make_interval(days => $1::int) LIMIT $2::int)",
				    2, (const char *[]){d, b});
	if (res == NULL)
		return -1;
	long long n = atoll(PQcmdTuples(res));
	PQclear(res);
	return n;
}

struct bh_psd2_refresh {
	const struct bh_config *cfg;
	const atomic_int *leader;
	struct bh_psd2_metrics *m;
	struct bh_db *db;
	rd_kafka_t *consumer; /* only while leading */
	CURL *curl;
	pthread_t thread;
	atomic_bool stop;
};

/* A due part claimed by this scheduler. */
struct part {
	char *task_id;
	char *bank_code;
	char *consent_id;
	char *client_id;
	char *connector_url; /* "" when the bank has none */
	char *bank_name;
	int attempts; /* including this one */
};

static void part_free(struct part *p)
{
	free(p->task_id);
	free(p->bank_code);
	free(p->consent_id);
	free(p->client_id);
	free(p->connector_url);
	free(p->bank_name);
	memset(p, 0, sizeof(*p));
}

/*
 * QUEUED -> RUNNING with one part per other bank of the consent (COMPLETED
 * at once when there is none). A task no longer QUEUED is left alone, so
 * the Kafka message and the sweep may both name it. 0 or -1.
 */
static int task_start(struct bh_psd2_refresh *r, const char *task_id)
{
	struct bh_db *db = r->db;
	int rc = -1;
	PGresult *res = NULL;
	if (bh_db_begin(db) < 0)
		return -1;
	res = bh_db_query(db,
			  "SELECT consent_id FROM psd2_tasks WHERE id = $1 AND status = 'QUEUED'"
			  " FOR UPDATE",
			  1, (const char *[]){task_id});
	if (res == NULL)
		goto out;
	if (PQntuples(res) == 1) {
		const char *params[] = {task_id, PQgetvalue(res, 0, 0), r->cfg->psd2_own_bank_code};
		if (bh_db_exec(db,
			       "INSERT INTO psd2_task_banks (task_id, bank_code)"
			       " SELECT DISTINCT $1, bank_code FROM consent_accounts"
			       " WHERE consent_id = $2 AND bank_code <> $3",
			       3, params) < 0 ||
		    bh_db_exec(db,
			       "UPDATE psd2_tasks SET started_at = now(), status = CASE WHEN EXISTS"
			       " (SELECT 1 FROM psd2_task_banks WHERE task_id = $1) THEN 'RUNNING'"
			       " ELSE 'COMPLETED' END, finished_at = CASE WHEN EXISTS"
			       " (SELECT 1 FROM psd2_task_banks WHERE task_id = $1) THEN NULL"
			       " ELSE now() END WHERE id = $1",
			       1, params) < 0)
			goto out;
		bh_info("refresh task %s started", task_id);
		atomic_fetch_add(&r->m->tasks_started, 1);
	}
	if (bh_db_commit(db) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		bh_warn("refresh task %s: start: %s", task_id, bh_db_errmsg(db));
		bh_db_rollback(db);
	}
	PQclear(res);
	return rc;
}

/* Starts tasks whose Kafka message never came (or came before their commit). */
static void tasks_sweep(struct bh_psd2_refresh *r)
{
	char after[16];
	snprintf(after, sizeof(after), "%d", SWEEP_AFTER_S);
	PGresult *res =
		bh_db_query(r->db,
			    "SELECT id FROM psd2_tasks WHERE status = 'QUEUED' AND created_at"
			    " <= now() - make_interval(secs => $1::int) ORDER BY created_at"
			    " LIMIT 100",
			    1, (const char *[]){after});
	if (res == NULL)
		return;
	for (int i = 0; i < PQntuples(res); i++)
		(void)task_start(r, PQgetvalue(res, i, 0));
	PQclear(res);
}

/*
 * Claims the most overdue part: PENDING and due, or RUNNING with its lease
 * run out (its scheduler died). The lease covers one connector call. 1
 * claimed, 0 none due, -1.
 */
static int part_claim(struct bh_psd2_refresh *r, struct part *p)
{
	char lease[16];
	snprintf(lease, sizeof(lease), "%d",
		 r->cfg->psd2_connector_timeout_ms / 1000 + 1 + LEASE_MARGIN_S);
	PGresult *res = bh_db_query(
		r->db,
		"UPDATE psd2_task_banks t SET status = 'RUNNING', attempts = t.attempts + 1,"
		" next_at = now() + make_interval(secs => $1::int)"
		" FROM (SELECT task_id, bank_code FROM psd2_task_banks"
		"  WHERE status IN ('PENDING', 'RUNNING') AND next_at <= now() ORDER BY next_at"
		"  LIMIT 1 FOR UPDATE SKIP LOCKED) d, psd2_tasks k"
		" WHERE t.task_id = d.task_id AND t.bank_code = d.bank_code AND k.id = t.task_id"
		" RETURNING t.task_id, t.bank_code, k.consent_id, k.client_id,"
		" COALESCE((SELECT b.connector_url FROM banks b WHERE b.code = t.bank_code"
		"  ORDER BY b.connector_url <> '' DESC, b.updated_at DESC LIMIT 1), ''),"
		" COALESCE((SELECT b.name FROM banks b WHERE b.code = t.bank_code"
		"  ORDER BY b.connector_url <> '' DESC, b.updated_at DESC LIMIT 1), ''),"
		" t.attempts",
		1, (const char *[]){lease});
	if (res == NULL)
		return -1;
	int rc = PQntuples(res) == 1;
	if (rc) {
		p->task_id = bh_xstrdup(PQgetvalue(res, 0, 0));
		p->bank_code = bh_xstrdup(PQgetvalue(res, 0, 1));
		p->consent_id = bh_xstrdup(PQgetvalue(res, 0, 2));
		p->client_id = bh_xstrdup(PQgetvalue(res, 0, 3));
		p->connector_url = bh_xstrdup(PQgetvalue(res, 0, 4));
		p->bank_name = bh_xstrdup(PQgetvalue(res, 0, 5));
		p->attempts = atoi(PQgetvalue(res, 0, 6));
	}
	PQclear(res);
	return rc;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct bh_buf *b = arg;
	/* Past the cap the transfer is aborted (returning less than given). */
	return bh_buf_append(b, data, size * n) == 0 ? size * n : 0;
}

/*
 * GET {connector_url}/consents/{consent}/accounts. On 0 *accounts is the
 * parsed answer; -1 with the reason in errbuf.
 */
static int connector_call(struct bh_psd2_refresh *r, const struct part *p, json_t **accounts,
			  char *errbuf, size_t errlen)
{
	int rc = -1;
	struct bh_buf body;
	bh_buf_init(&body, CONNECTOR_BODY_MAX);
	char *consent = curl_easy_escape(r->curl, p->consent_id, 0);
	const char *base = p->connector_url;
	size_t len = strlen(base);
	char *url = bh_xasprintf("%.*s/consents/%s/accounts",
				 (int)(len > 0 && base[len - 1] == '/' ? len - 1 : len), base,
				 consent ? consent : "");
	curl_free(consent);
	CURL *c = r->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->cfg->psd2_connector_timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)r->cfg->psd2_connector_timeout_ms);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "bankhook/" BH_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	CURLcode cc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		snprintf(errbuf, errlen, "%s",
			 body.too_big ? "answer larger than 2 MiB" : curl_easy_strerror(cc));
		goto out;
	}
	if (status != 200) {
		snprintf(errbuf, errlen, "HTTP %ld", status);
		goto out;
	}
	rc = bh_psd2_parse_accounts(body.data ? body.data : "", body.len, accounts, errbuf, errlen);
out:
	free(url);
	bh_buf_free(&body);
	return rc;
}

/*
 * The part's outcome, in one transaction: on success the new snapshot and
 * its diff; either way the accountEvent's delivery, the part FINISHED or
 * FAILED, and the task COMPLETED with its last part. Nothing happens when
 * the part is no longer ours (its lease ran out and another scheduler took
 * it: attempts moved on). accounts NULL means FAILED. 0 or -1.
 */
static int part_finish(struct bh_psd2_refresh *r, const struct part *p, json_t *accounts,
		       const char *error)
{
	struct bh_db *db = r->db;
	int rc = -1;
	json_t *diff = NULL;
	char *diff_text = NULL, *snap_text = NULL;
	char attempts[16];
	snprintf(attempts, sizeof(attempts), "%d", p->attempts);
	const char *status = accounts ? "FINISHED" : "FAILED";
	PGresult *res = NULL;
	bool committed = false;
	if (bh_db_begin(db) < 0)
		return -1;
	/* The task row first: two parts finishing at once see each other. */
	res = bh_db_query(db, "SELECT 1 FROM psd2_tasks WHERE id = $1 FOR UPDATE", 1,
			  (const char *[]){p->task_id});
	if (res == NULL)
		goto out;
	PQclear(res);
	res = bh_db_query(db,
			  "SELECT 1 FROM psd2_task_banks WHERE task_id = $1 AND bank_code = $2"
			  " AND status = 'RUNNING' AND attempts = $3::int FOR UPDATE",
			  3, (const char *[]){p->task_id, p->bank_code, attempts});
	if (res == NULL)
		goto out;
	if (PQntuples(res) != 1) {
		bh_info("refresh task %s bank %s: taken over elsewhere", p->task_id, p->bank_code);
		rc = 0;
		goto out;
	}
	PQclear(res);
	res = NULL;
	const char *snap_params[] = {p->consent_id, p->bank_code, NULL};
	if (accounts) {
		res = bh_db_query(db,
				  "SELECT COALESCE(jsonb_object_agg(account_id, jsonb_build_object("
				  "'balance', balance, 'currency', currency)), '{}')::text"
				  " FROM psd2_snapshots WHERE consent_id = $1 AND bank_code = $2",
				  2, snap_params);
		if (res == NULL)
			goto out;
		json_t *previous = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		diff = bh_psd2_diff(previous, accounts);
		json_decref(previous);
		snap_text = json_dumps(accounts, JSON_COMPACT);
		snap_params[2] = snap_text;
		if (bh_db_exec(
			    db,
			    "DELETE FROM psd2_snapshots WHERE consent_id = $1 AND bank_code = $2",
			    2, snap_params) < 0 ||
		    bh_db_exec(db,
			       "INSERT INTO psd2_snapshots (consent_id, bank_code, account_id,"
			       " balance, currency) SELECT $1, $2, a.key, a.value->>'balance',"
			       " a.value->>'currency' FROM jsonb_each($3::jsonb) a",
			       3, snap_params) < 0)
			goto out;
	} else {
		diff = json_array();
	}
	char delivery_id[37];
	if (notify(db, p->client_id,
		   bh_psd2_account_event(p->consent_id, p->task_id, status, p->bank_code,
					 p->bank_name, json_incref(diff)),
		   delivery_id) < 0)
		goto out;
	diff_text = json_dumps(diff, JSON_COMPACT);
	const char *params[] = {p->task_id, p->bank_code, status,
				diff_text,  error,	  delivery_id[0] ? delivery_id : NULL};
	if (bh_db_exec(db,
		       "UPDATE psd2_task_banks SET status = $3, accounts = $4::jsonb,"
		       " last_error = $5, delivery_id = $6, finished_at = now()"
		       " WHERE task_id = $1 AND bank_code = $2",
		       6, params) < 0 ||
	    bh_db_exec(db,
		       "UPDATE psd2_tasks SET status = 'COMPLETED', finished_at = now()"
		       " WHERE id = $1 AND status = 'RUNNING' AND NOT EXISTS (SELECT 1 FROM"
		       " psd2_task_banks WHERE task_id = $1 AND status IN ('PENDING', 'RUNNING'))",
		       1, params) < 0 ||
	    bh_db_commit(db) < 0)
		goto out;
	committed = true;
	rc = 0;
	atomic_fetch_add(accounts ? &r->m->parts_finished : &r->m->parts_failed, 1);
	bh_info("refresh task %s bank %s: %s%s%s (delivery %s)", p->task_id, p->bank_code, status,
		error ? ": " : "", error ? error : "", delivery_id[0] ? delivery_id : "none");
out:
	if (rc < 0) {
		bh_warn("refresh task %s bank %s: %s", p->task_id, p->bank_code, bh_db_errmsg(db));
		bh_db_rollback(db);
	} else if (!committed) {
		bh_db_rollback(db);
	}
	PQclear(res);
	json_decref(diff);
	free(diff_text);
	free(snap_text);
	return rc;
}

/* A failed call with attempts left: PENDING again after a doubling backoff. */
static void part_retry_later(struct bh_psd2_refresh *r, const struct part *p, const char *error)
{
	long long wait = r->cfg->psd2_connector_retry_ms;
	for (int i = 1; i < p->attempts && wait < BACKOFF_MAX_MS; i++)
		wait *= 2;
	if (wait > BACKOFF_MAX_MS)
		wait = BACKOFF_MAX_MS;
	char ms[24], attempts[16];
	snprintf(ms, sizeof(ms), "%lld", wait);
	snprintf(attempts, sizeof(attempts), "%d", p->attempts);
	const char *params[] = {p->task_id, p->bank_code, attempts, ms, error};
	if (bh_db_exec(r->db,
		       "UPDATE psd2_task_banks SET status = 'PENDING', last_error = $5,"
		       " next_at = now() + make_interval(secs => $4::bigint / 1000.0)"
		       " WHERE task_id = $1 AND bank_code = $2 AND status = 'RUNNING'"
		       " AND attempts = $3::int",
		       5, params) < 0)
		bh_warn("refresh task %s bank %s: %s", p->task_id, p->bank_code,
			bh_db_errmsg(r->db));
	bh_info("refresh task %s bank %s: attempt %d failed (%s); next in %lld ms", p->task_id,
		p->bank_code, p->attempts, error, wait);
}

/* One claimed part: one connector call and its outcome. */
static void part_run(struct bh_psd2_refresh *r, const struct part *p)
{
	char err[CONNECTOR_ERROR_MAX];
	json_t *accounts = NULL;
	int max = r->cfg->psd2_connector_attempts;
	if (p->attempts > max) {
		/* Claimed again after its lease ran out on the last attempt. */
		(void)part_finish(r, p, NULL, "the scheduler stopped during the last attempt");
		return;
	}
	if (p->connector_url[0] == '\0') {
		snprintf(err, sizeof(err), "no bank with code %s has a connector_url",
			 p->bank_code);
		(void)part_finish(r, p, NULL, err);
		return;
	}
	if (connector_call(r, p, &accounts, err, sizeof(err)) == 0) {
		(void)part_finish(r, p, accounts, NULL);
		json_decref(accounts);
	} else if (p->attempts < max) {
		part_retry_later(r, p, err);
	} else {
		(void)part_finish(r, p, NULL, err);
	}
}

static void consumer_close(struct bh_psd2_refresh *r)
{
	if (r->consumer == NULL)
		return;
	rd_kafka_consumer_close(r->consumer);
	rd_kafka_destroy(r->consumer);
	r->consumer = NULL;
}

/* Reads one request from bankhook.refresh, if any, and starts its task. */
static void consume_one(struct bh_psd2_refresh *r)
{
	rd_kafka_message_t *msg = rd_kafka_consumer_poll(r->consumer, IDLE_MS);
	if (msg == NULL)
		return;
	if (msg->err) {
		if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			bh_warn("kafka: %s", rd_kafka_message_errstr(msg));
		rd_kafka_message_destroy(msg);
		return;
	}
	json_error_t jerr;
	json_t *doc = msg->len <= 4096 ? json_loadb(msg->payload, msg->len, 0, &jerr) : NULL;
	const char *task_id = json_string_value(json_object_get(doc, "taskId"));
	/* Stored only once the task started; a lost one is found by the sweep anyway. */
	if (task_id == NULL)
		bh_warn("refresh request at offset %lld ignored: malformed",
			(long long)msg->offset);
	if (task_id == NULL || task_start(r, task_id) == 0)
		(void)bh_kafka_consumer_store(r->consumer, msg);
	json_decref(doc);
	rd_kafka_message_destroy(msg);
}

static void *refresh_main(void *arg)
{
	struct bh_psd2_refresh *r = arg;
	int64_t next_sweep = 0;
	char err[512];
	while (!atomic_load(&r->stop)) {
		if (!atomic_load(r->leader)) {
			/* A standby leaves the group, so the leader gets every partition. */
			consumer_close(r);
			usleep(IDLE_MS * 1000);
			continue;
		}
		if (r->consumer == NULL) {
			const char *topics[] = {r->cfg->topic_refresh};
			r->consumer = bh_kafka_consumer_new_group(r->cfg, REFRESH_GROUP, topics, 1,
								  err, sizeof(err));
			if (r->consumer == NULL) {
				bh_warn("refresh consumer: %s", err);
				usleep(1000 * 1000);
				continue;
			}
		}
		consume_one(r);
		if (bh_mono_ms() >= next_sweep) {
			tasks_sweep(r);
			next_sweep = bh_mono_ms() + SWEEP_EVERY_MS;
		}
		/* Every due part, one call at a time, while we still lead. */
		struct part p;
		memset(&p, 0, sizeof(p));
		while (!atomic_load(&r->stop) && atomic_load(r->leader) && part_claim(r, &p) == 1) {
			part_run(r, &p);
			part_free(&p);
		}
	}
	consumer_close(r);
	return NULL;
}

struct bh_psd2_refresh *bh_psd2_refresh_start(const struct bh_config *cfg, const atomic_int *leader,
					      struct bh_psd2_metrics *m, char *errbuf,
					      size_t errlen)
{
	struct bh_psd2_refresh *r = bh_xcalloc(1, sizeof(*r));
	r->cfg = cfg;
	r->leader = leader;
	r->m = m;
	r->db = bh_db_connect(cfg->db_url, errbuf, errlen);
	r->curl = curl_easy_init();
	if (r->db == NULL || r->curl == NULL) {
		if (r->curl == NULL)
			snprintf(errbuf, errlen, "curl: cannot create a handle");
		goto fail;
	}
	atomic_init(&r->stop, false);
	if (pthread_create(&r->thread, NULL, refresh_main, r) != 0) {
		snprintf(errbuf, errlen, "refresh thread: cannot start");
		goto fail;
	}
	return r;
fail:
	if (r->curl)
		curl_easy_cleanup(r->curl);
	bh_db_close(r->db);
	free(r);
	return NULL;
}

void bh_psd2_refresh_stop(struct bh_psd2_refresh *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	curl_easy_cleanup(r->curl);
	bh_db_close(r->db);
	free(r);
}
