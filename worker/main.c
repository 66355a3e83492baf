/*
 * bankhook-worker: consumes events and delivery jobs from Kafka, turns each
 * event into durable deliveries in PostgreSQL, and attempts them over HTTP.
 * See docs/DESIGN.md for the data flow this follows.
 *
 * Threads. Besides librdkafka's and the ops listener's, three of ours, so
 * that HTTP transfers never wait for a PostgreSQL round trip or commit,
 * and the two kinds of writes run side by side on two connections:
 *
 *   I/O thread (main): reads Kafka and drives every transfer over libcurl
 *   multi (sender.c). It never touches PostgreSQL: each batch of messages
 *   goes to the store thread as read, each finished attempt to the record
 *   thread as it ends, and it starts the jobs the store thread hands back.
 *   It sleeps in curl_multi_poll, woken by a socket, by librdkafka
 *   (messages arrived) or by the store thread (jobs ready) through the
 *   handoff's pipe.
 *
 *   store thread: owns a connection, the subscriptions cache and
 *   rendering. Each turn takes every batch waiting: events and their
 *   deliveries in one transaction, offsets stored only after the commit,
 *   delivery jobs loaded in one query; the requests it renders go back to
 *   the I/O thread at the end of the turn. It also claims the next
 *   delivery of ordered subscriptions.
 *
 *   record thread: owns a second connection. Each turn records every
 *   attempt finished since the last one in one transaction, and passes the
 *   ordered subscriptions whose line moved to the store thread.
 *
 * A turn under load covers everything that arrived during the previous
 * one, so transactions grow with the load and commits stay few. The
 * threads share only the handoff (handoff.c, one mutex), the configuration
 * (read-only) and the metrics (atomics). Kafka is not read while enough
 * messages wait for the store thread or the sender holds BACKLOG_MAX jobs:
 * the backlog stays in Kafka, memory stays bounded.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "delivery.h"
#include "event.h"
#include "grant.h"
#include "handoff.h"
#include "header.h"
#include "kafka.h"
#include "log.h"
#include "ops_http.h"
#include "sender.h"
#include "subscription.h"
#include "util.h"

#define BATCH_MAX 200 /* Kafka messages read at once */
/*
 * Kafka is not read while this many jobs wait in the sender or on their
 * way to it, or this many finished attempts wait for the record thread:
 * the backlog stays in Kafka and PostgreSQL, not in memory, the pace is
 * the slowest thread's, and a waiting job never outlives its lease. One stuck subscription holds at
 * most a quarter of it (the sender's per-subscription queue cap), so it
 * cannot stall the rest.
 */
#define BACKLOG_MAX 10000
#define IDLE_WAIT_MS 100 /* the I/O thread's longest sleep; wake-ups are by fd */
/*
 * Messages waiting for the store thread, at most: enough that one turn
 * covers everything that arrived during the previous one (fewer, larger
 * transactions under load), but only as many as make BACKLOG_MAX / 2
 * deliveries at the fan-out seen so far, so memory stays bounded when
 * every event matches a hundred subscriptions.
 */
#define WAITING_MAX 5000
#define JOB_MAX_BYTES 4096   /* a delivery job is three ids */
#define RETRY_PAUSE_MS 1000  /* between tries while PostgreSQL is down */
#define DRAIN_MS 10000	     /* bound on finishing transfers at shutdown */
#define HOUSEKEEPING_MS 2000 /* readiness and lag refresh */
#define DLQ_FLUSH_MS 10000
#define DLQ_PAYLOAD_MAX (256 * 1024) /* of the original message, in the DLQ copy */
/* A row PostgreSQL refuses is tried this often alone, POISON_PAUSE_MS apart, before the DLQ. */
#define POISON_TRIES 3
#define POISON_PAUSE_MS 200

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	/* A second signal means "now": skip the drain. */
	if (stop_requested)
		_exit(1);
	stop_requested = 1;
}

/* Upper bounds of the attempt duration histogram, in seconds. */
static const double duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5,	1,    2.5,   5,	   10,	30};
#define NBOUNDS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))

/* Written by the I/O and store threads, read by the ops listener's thread. */
struct metrics {
	atomic_llong succeeded;
	atomic_llong retrying;
	atomic_llong failed;
	atomic_llong duration_le[NBOUNDS]; /* cumulative when printed */
	atomic_llong duration_count;
	atomic_llong duration_sum_us;
	atomic_int in_flight;
	atomic_llong lag;
	atomic_bool db_ok;
	atomic_int fanout_pct; /* deliveries per message read, x100, smoothed */
};

struct worker {
	struct bh_config cfg;
	struct metrics m;
	bool log_all_attempts; /* log.attempts: all */
	struct bh_handoff *handoff;
	struct bh_kafka_producer *producer; /* dead-letter queue; thread-safe */
	struct bh_ops_http *ops;
	/* I/O thread only */
	rd_kafka_t *consumer;
	rd_kafka_queue_t *consumer_queue; /* its io event wakes the I/O thread */
	struct bh_sender *sender;
	struct bh_finished fin; /* attempts finished in one sender pass */
	/* store thread only (init and teardown aside) */
	pthread_t store;
	bool store_started;
	struct bh_db *db;
	struct bh_sub_set subs;
	struct bh_grant_set grants;  /* what each client may receive, reloaded with subs */
	const struct bh_sub **by_id; /* subs sorted by id, for job lookups */
	bool subs_loaded;
	/* Jobs rendered in this turn, handed back at its end. */
	struct bh_send_job *jobs_head, *jobs_tail;
	int njobs;
	/* record thread only */
	pthread_t recorder;
	bool recorder_started;
	struct bh_db *rdb;
};

/* ---- ops listener ------------------------------------------------------ */

static bool worker_ready(void *arg)
{
	struct worker *w = arg;
	return atomic_load(&w->m.db_ok) && bh_kafka_ping(w->producer, 1000);
}

static void worker_metrics(struct bh_buf *b, void *arg)
{
	struct metrics *m = &((struct worker *)arg)->m;
	(void)bh_buf_appendf(b,
			     "# HELP bankhook_deliveries_total Delivery attempts by outcome.\n"
			     "# TYPE bankhook_deliveries_total counter\n"
			     "bankhook_deliveries_total{outcome=\"succeeded\"} %lld\n"
			     "bankhook_deliveries_total{outcome=\"retrying\"} %lld\n"
			     "bankhook_deliveries_total{outcome=\"failed\"} %lld\n",
			     (long long)atomic_load(&m->succeeded),
			     (long long)atomic_load(&m->retrying),
			     (long long)atomic_load(&m->failed));
	(void)bh_buf_appendf(b, "# HELP bankhook_attempt_duration_seconds Time of one attempt.\n"
				"# TYPE bankhook_attempt_duration_seconds histogram\n");
	long long cum = 0;
	for (size_t i = 0; i < NBOUNDS; i++) {
		cum += atomic_load(&m->duration_le[i]);
		(void)bh_buf_appendf(b,
				     "bankhook_attempt_duration_seconds_bucket{le=\"%g\"} %lld\n",
				     duration_bounds[i], cum);
	}
	long long count = atomic_load(&m->duration_count);
	(void)bh_buf_appendf(b,
			     "bankhook_attempt_duration_seconds_bucket{le=\"+Inf\"} %lld\n"
			     "bankhook_attempt_duration_seconds_sum %.6f\n"
			     "bankhook_attempt_duration_seconds_count %lld\n",
			     count, (double)atomic_load(&m->duration_sum_us) / 1e6, count);
	(void)bh_buf_appendf(b,
			     "# HELP bankhook_in_flight Transfers running now.\n"
			     "# TYPE bankhook_in_flight gauge\n"
			     "bankhook_in_flight %d\n"
			     "# HELP bankhook_consumer_lag Kafka messages not yet consumed.\n"
			     "# TYPE bankhook_consumer_lag gauge\n"
			     "bankhook_consumer_lag %lld\n",
			     atomic_load(&m->in_flight), (long long)atomic_load(&m->lag));
}

static void observe_duration(struct metrics *m, int duration_ms)
{
	double s = duration_ms / 1000.0;
	for (size_t i = 0; i < NBOUNDS; i++) {
		if (s <= duration_bounds[i]) {
			atomic_fetch_add(&m->duration_le[i], 1);
			break;
		}
	}
	atomic_fetch_add(&m->duration_count, 1);
	atomic_fetch_add(&m->duration_sum_us, (long long)duration_ms * 1000);
}

/* ---- subscriptions ----------------------------------------------------- */

static int sub_ptr_cmp(const void *a, const void *b)
{
	const struct bh_sub *x = *(const struct bh_sub *const *)a;
	const struct bh_sub *y = *(const struct bh_sub *const *)b;
	return strcmp(x->id, y->id);
}

static int sub_key_cmp(const void *key, const void *elem)
{
	const struct bh_sub *y = *(const struct bh_sub *const *)elem;
	return strcmp(key, y->id);
}

static const struct bh_sub *sub_find(const struct worker *w, const char *id)
{
	if (w->subs.n == 0)
		return NULL;
	const struct bh_sub **p =
		bsearch(id, w->by_id, (size_t)w->subs.n, sizeof(*w->by_id), sub_key_cmp);
	return p ? *p : NULL;
}

/*
 * Reloads the enabled subscriptions and the data grants when
 * subscriptions_version moved (a grant, consent or bank change bumps it
 * too): one cheap query per batch. The grants are read after the version,
 * so a change committed in between reloads again at the next check. 0, or
 * -1 when the database cannot answer.
 */
static int subs_refresh(struct worker *w)
{
	long long v = bh_sub_version(w->db);
	if (v < 0)
		return -1;
	if (w->subs_loaded && v == w->subs.version)
		return 0;
	if (bh_sub_load_enabled(w->db, &w->subs) < 0)
		return -1;
	free(w->by_id);
	w->by_id = bh_xcalloc((size_t)(w->subs.n > 0 ? w->subs.n : 1), sizeof(*w->by_id));
	for (int i = 0; i < w->subs.n; i++)
		w->by_id[i] = &w->subs.subs[i];
	qsort(w->by_id, (size_t)w->subs.n, sizeof(*w->by_id), sub_ptr_cmp);
	/* Without the grants of this version the next check loads both again. */
	w->subs_loaded = bh_grant_load(w->db, NULL, &w->grants) == 0;
	if (!w->subs_loaded)
		return -1;
	bh_info("loaded %d enabled subscriptions and %d grants (version %lld)", w->subs.n,
		w->grants.n, w->subs.version);
	return 0;
}

/* ---- attempts ---------------------------------------------------------- */

static bool header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

/*
 * The request for one delivery: what the subscription's kind renders plus
 * the subscription's own headers. NULL with the reason when it cannot be
 * rendered (the delivery then fails: retrying would render the same).
 */
static struct bh_send_job *job_build(const struct bh_sub *sub, const struct bh_event *ev,
				     const char *delivery_id, char *errbuf, size_t errlen)
{
	struct bh_rendered r;
	memset(&r, 0, sizeof(r));
	if (bh_sub_render(sub, ev, &r, errbuf, errlen) < 0) {
		bh_rendered_free(&r);
		return NULL;
	}
	struct bh_send_job *job = bh_send_job_new();
	job->delivery_id = bh_xstrdup(delivery_id);
	job->subscription_id = bh_xstrdup(sub->id);
	job->event_id = bh_xstrdup(ev->id);
	job->url = bh_xstrdup(sub->url);
	job->method = bh_xstrdup(sub->http_method ? sub->http_method : "POST");
	job->secret = bh_xstrdup(sub->secret);
	/* The cache may outlive the 24 hours: the clock decides, not the row. */
	bool rotating =
		sub->previous_secret != NULL && sub->previous_secret_expires_ms > bh_now_ms();
	job->previous_secret = rotating ? bh_xstrdup(sub->previous_secret) : NULL;
	job->ordered = sub->ordered;
	job->rate_limit_per_s = sub->rate_limit_per_s;
	job->body = r.body; /* now owned by the job */
	job->body_len = r.len;
	r.body = NULL;
	char *line = bh_xasprintf("Content-Type: %s",
				  r.content_type ? r.content_type : "application/json");
	job->headers = curl_slist_append(job->headers, line);
	free(line);
	for (int i = 0; i < r.n_extra_headers; i++)
		if (header_safe(r.extra_headers[i]))
			job->headers = curl_slist_append(job->headers, r.extra_headers[i]);
	const char *name;
	json_t *value;
	json_object_foreach (sub->headers, name, value) {
		const char *v = json_string_value(value);
		if (v == NULL || name[0] == '\0' || strchr(name, ':') || !header_safe(name) ||
		    !header_safe(v) || bh_header_reserved(name)) /* the API refused these */
			continue;
		line = bh_xasprintf("%s: %s", name, v);
		job->custom = curl_slist_append(job->custom, line);
		free(line);
	}
	bh_rendered_free(&r);
	return job;
}

static void outcome(struct worker *w, const struct bh_attempt_record *rec, const char *event_id)
{
	static const char *const names[] = {"retrying", "succeeded", "failed"};
	struct bh_log_ctx ctx = {.delivery = rec->delivery_id,
				 .subscription = rec->subscription_id,
				 .event = event_id};
	const struct bh_attempt_result *ar = &rec->r;
	if (rec->state == BH_DELIVERY_SUCCEEDED)
		atomic_fetch_add(&w->m.succeeded, 1);
	else if (rec->state == BH_DELIVERY_FAILED)
		atomic_fetch_add(&w->m.failed, 1);
	else
		atomic_fetch_add(&w->m.retrying, 1);
	/* A success is the common case: one line each only when asked (log.attempts). */
	enum bh_log_level level = rec->state == BH_DELIVERY_SUCCEEDED && !w->log_all_attempts
					  ? BH_LOG_DEBUG
					  : BH_LOG_INFO;
	bh_log_write(level, &ctx, __FILE__, __LINE__, "attempt: http %d in %d ms -> %s%s%s",
		     ar->http_status, ar->duration_ms, names[rec->state], ar->error ? ": " : "",
		     ar->error ? ar->error : "");
}

/*
 * Records one attempt alone, on the calling thread's connection. Returns
 * where the delivery went, or -1 when it could not be recorded.
 */
static int record(struct worker *w, struct bh_db *db, const char *delivery_id, const char *sub_id,
		  const char *event_id, const struct bh_attempt_result *ar)
{
	struct bh_attempt_record rec = {
		.delivery_id = delivery_id, .subscription_id = sub_id, .r = *ar};
	char err[512];
	if (bh_delivery_record_attempts(db, &w->cfg, &rec, 1, err, sizeof(err)) < 0) {
		struct bh_log_ctx ctx = {
			.delivery = delivery_id, .subscription = sub_id, .event = event_id};
		/* The lease brings it back; at least once still holds. */
		bh_warn_ctx(&ctx, "attempt not recorded: %s", err);
		return -1;
	}
	outcome(w, &rec, event_id);
	return (int)rec.state;
}

static void job_attempt(struct worker *w, const struct bh_delivery_row *row);

/*
 * Ordered subscriptions whose delivery just ended (or was just created):
 * claims the head of each line if it is due and attempts it here, rather
 * than waiting for the scheduler's next tick. The claim excludes the
 * scheduler's, so one delivery per subscription is in flight at a time. On
 * a database error the scheduler hands them out instead.
 */
static void ordered_advance(struct worker *w, const char *const *sub_ids, int n)
{
	struct bh_delivery_row *rows = NULL;
	int nrows = 0;
	if (n == 0)
		return;
	if (bh_delivery_claim_next(w->db, sub_ids, n, w->cfg.delivery_lease_s, &rows, &nrows) < 0) {
		bh_warn("ordered subscriptions: next deliveries left to the scheduler: %s",
			bh_db_errmsg(w->db));
		return;
	}
	for (int i = 0; i < nrows; i++) {
		job_attempt(w, &rows[i]);
		bh_delivery_row_free(&rows[i]);
	}
	free(rows);
}

/* I/O thread: keeps a copy of a finished attempt for the store thread. */
static void on_sent(const struct bh_send_result *r, void *arg)
{
	struct worker *w = arg;
	observe_duration(&w->m, r->duration_ms);
	bh_finished_add(&w->fin, r);
}

/*
 * Record thread: records the finished attempts handed over, in one
 * transaction: one commit for many attempts is what keeps up with a busy
 * receiver. If the batch fails, each is tried alone so one bad row cannot
 * sink the rest. Leaves f empty.
 */
static void records_flush(struct worker *w, struct bh_finished *f)
{
	if (f->n == 0)
		return;
	char err[512];
	/* Ordered subscriptions whose line moved on: their next delivery may go. */
	char **advance = NULL;
	int nadvance = 0;
	if (bh_delivery_record_attempts(w->rdb, &w->cfg, f->recs, f->n, err, sizeof(err)) == 0) {
		for (int i = 0; i < f->n; i++)
			outcome(w, &f->recs[i], f->event_ids[i]);
	} else {
		if (f->n > 1)
			bh_warn("recording %d attempts together failed (%s); one by one", f->n,
				err);
		for (int i = 0; i < f->n; i++) {
			int st = record(w, w->rdb, f->recs[i].delivery_id,
					f->recs[i].subscription_id, f->event_ids[i], &f->recs[i].r);
			f->recs[i].state =
				st < 0 ? BH_DELIVERY_PENDING : (enum bh_delivery_state)st;
		}
	}
	for (int i = 0; i < f->n; i++) {
		if (!f->ordered[i] || f->recs[i].state == BH_DELIVERY_PENDING)
			continue;
		if (advance == NULL)
			advance = bh_xcalloc((size_t)f->n, sizeof(*advance));
		advance[nadvance++] = bh_xstrdup(f->recs[i].subscription_id);
	}
	bh_finished_clear(f);
	/* The store thread claims and renders them (it owns the subscriptions). */
	bh_handoff_put_advance(w->handoff, advance, nadvance);
	free(advance);
}

/* Renders one delivery for the I/O thread to send, or fails it now. */
static void attempt(struct worker *w, const struct bh_sub *sub, const struct bh_event *ev,
		    const char *delivery_id)
{
	char err[256];
	struct bh_send_job *job = job_build(sub, ev, delivery_id, err, sizeof(err));
	if (job == NULL) {
		struct bh_attempt_result ar = {
			.started_ms = bh_now_ms(), .error = err, .permanent = true};
		record(w, w->db, delivery_id, sub->id, ev->id, &ar);
		return;
	}
	/* Handed back at the end of the turn (jobs_hand_back). */
	job->next = NULL;
	if (w->jobs_tail)
		w->jobs_tail->next = job;
	else
		w->jobs_head = job;
	w->jobs_tail = job;
	w->njobs++;
}

static void jobs_hand_back(struct worker *w)
{
	bh_handoff_put_jobs(w->handoff, w->jobs_head, w->jobs_tail, w->njobs);
	w->jobs_head = w->jobs_tail = NULL;
	w->njobs = 0;
}

/* ---- the store thread --------------------------------------------------- */

/*
 * Waits ms before trying PostgreSQL again (transfers go on in the I/O
 * thread); false when the worker stops meanwhile.
 */
static bool store_pause(struct worker *w, int ms)
{
	int64_t until = bh_mono_ms() + ms;
	while (!bh_handoff_stopping(w->handoff) && bh_mono_ms() < until)
		usleep(50 * 1000);
	return !bh_handoff_stopping(w->handoff);
}

static int dlq(struct worker *w, const rd_kafka_message_t *msg, const char *reason)
{
	json_t *o = json_object();
	json_object_set_new(o, "reason", json_string(reason));
	/* Escaping can double the size: keep the DLQ message under Kafka's limit. */
	size_t len = msg->len > DLQ_PAYLOAD_MAX ? DLQ_PAYLOAD_MAX : msg->len;
	if (len < msg->len)
		json_object_set_new(o, "payload_truncated", json_true());
	json_t *payload = json_stringn((const char *)msg->payload, len);
	if (payload == NULL) {
		/* Not UTF-8 (or cut inside a character): keep ASCII, mark the rest. */
		char *copy = bh_xstrndup(msg->payload ? (const char *)msg->payload : "", len);
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)copy[i] >= 0x80 || copy[i] == '\0')
				copy[i] = '?';
		payload = json_stringn(copy, len);
		free(copy);
	}
	json_object_set_new(o, "payload", payload);
	json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(msg->rkt)));
	json_object_set_new(o, "partition", json_integer(msg->partition));
	json_object_set_new(o, "offset", json_integer(msg->offset));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	int rc = text ? bh_kafka_produce(w->producer, w->cfg.topic_dlq, NULL, text, strlen(text))
		      : -1;
	free(text);
	return rc;
}

/*
 * Stores in[0..n) in one transaction and hands their deliveries on. 0, or
 * -1 with nothing written: then bh_db_sqlstate() says why.
 */
static int events_store(struct worker *w, const struct bh_delivery_input *in, int n, char *err,
			size_t errlen)
{
	struct bh_delivery_created *created = NULL;
	int ncreated = 0;
	if (bh_delivery_store_events(w->db, in, n, w->cfg.delivery_lease_s, &created, &ncreated,
				     err, errlen) < 0)
		return -1;
	/*
	 * Durable: each delivery is pending with a lease, so attempting is
	 * safe. An ordered one is not leased: it goes when it heads its line.
	 */
	const char **heads = ncreated ? bh_xcalloc((size_t)ncreated, sizeof(*heads)) : NULL;
	int nheads = 0;
	for (int i = 0; i < ncreated; i++) {
		if (created[i].ordered)
			heads[nheads++] = created[i].sub->id;
		else
			attempt(w, created[i].sub, in[created[i].input].ev, created[i].id);
	}
	ordered_advance(w, heads, nheads);
	free(heads);
	free(created);
	return 0;
}

/*
 * The poison-message policy (docs/DESIGN.md "Poison messages"), once
 * PostgreSQL refused a batch for its data: each event alone, so the good
 * ones proceed; one refused POISON_TRIES times in a row goes to the DLQ
 * with PostgreSQL's reason, and its offset moves on with the others. 0
 * once every event is stored or dead-lettered (and the DLQ acknowledged);
 * -1 as soon as PostgreSQL is unavailable instead, or the DLQ does not
 * acknowledge: the caller retries the whole batch, and the events stored
 * meanwhile dedup by id.
 */
static int events_store_singly(struct worker *w, rd_kafka_message_t **msgs, const int *msg_of,
			       const struct bh_delivery_input *in, int n)
{
	int ndlq = 0;
	char err[512], reason[700];
	for (int i = 0; i < n; i++) {
		struct bh_log_ctx ctx = {.event = in[i].ev->id};
		for (int tries = 1; events_store(w, &in[i], 1, err, sizeof(err)) < 0; tries++) {
			const char *state = bh_db_sqlstate(w->db);
			if (bh_db_failure_of(state) != BH_DB_REFUSED)
				return -1;
			if (tries < POISON_TRIES) {
				if (!store_pause(w, POISON_PAUSE_MS))
					return -1;
				continue;
			}
			snprintf(reason, sizeof(reason), "refused by PostgreSQL (SQLSTATE %s): %s",
				 state, err);
			bh_warn_ctx(&ctx, "event dead-lettered after %d tries: %s", tries, reason);
			if (dlq(w, msgs[msg_of[i]], reason) < 0)
				return -1;
			ndlq++;
			break;
		}
	}
	/* The DLQ copy must be acknowledged before the original's offset moves. */
	if (ndlq > 0 && bh_kafka_flush(w->producer, DLQ_FLUSH_MS) != 0) {
		bh_warn("dead-letter queue not acknowledged; retrying the batch");
		return -1;
	}
	return 0;
}

/*
 * Handles the events of one batch: DLQ for the invalid ones, then one
 * transaction for every valid one and its deliveries; when PostgreSQL
 * refuses that for the data in it, events_store_singly. 0 once all of it
 * is durable (the caller may store offsets), -1 to retry the same
 * messages.
 */
static int events_handle(struct worker *w, rd_kafka_message_t **msgs, int n)
{
	int rc = -1;
	struct bh_event *evs = bh_xcalloc((size_t)n, sizeof(*evs));
	bool *parsed = bh_xcalloc((size_t)n, sizeof(bool));
	struct bh_delivery_input *in = bh_xcalloc((size_t)n, sizeof(*in));
	int *msg_of = bh_xcalloc((size_t)n, sizeof(int)); /* in[k] came from msgs[msg_of[k]] */
	/* Matches of every event, end to end; in[].subs points in once it stops growing. */
	const struct bh_sub **matched = NULL;
	size_t *first = bh_xcalloc((size_t)n, sizeof(size_t));
	size_t nmatched = 0, amatched = 0;
	int nin = 0, ndlq = 0;
	char err[512];

	for (int i = 0; i < n; i++) {
		const rd_kafka_message_t *msg = msgs[i];
		char fallback[300];
		snprintf(fallback, sizeof(fallback), "kafka-%s-%d-%lld",
			 rd_kafka_topic_name(msg->rkt), (int)msg->partition,
			 (long long)msg->offset);
		if (bh_event_parse(msg->payload ? msg->payload : "", msg->len, fallback, &evs[i],
				   err, sizeof(err)) < 0) {
			bh_warn("event at %s: dead-lettered: %s", fallback, err);
			if (dlq(w, msg, err) < 0)
				goto out;
			ndlq++;
			continue;
		}
		parsed[i] = true;
		first[nin] = nmatched;
		for (int s = 0; s < w->subs.n; s++) {
			/* Events carry no owner: the client must be entitled to it. */
			if (!bh_sub_match(&w->subs.subs[s], &evs[i]) ||
			    !bh_grant_entitled(&w->grants, w->subs.subs[s].client_id, &evs[i]))
				continue;
			if (nmatched == amatched) {
				amatched = amatched ? amatched * 2 : 64;
				matched = bh_xrealloc(matched, amatched * sizeof(*matched));
			}
			matched[nmatched++] = &w->subs.subs[s];
		}
		in[nin].ev = &evs[i];
		in[nin].nsubs = (int)(nmatched - first[nin]);
		msg_of[nin] = i;
		nin++;
	}
	for (int i = 0; i < nin; i++)
		in[i].subs = matched ? &matched[first[i]] : NULL;
	/* The DLQ copy must be acknowledged before the original's offset moves. */
	if (ndlq > 0 && bh_kafka_flush(w->producer, DLQ_FLUSH_MS) != 0) {
		bh_warn("dead-letter queue not acknowledged; retrying the batch");
		goto out;
	}
	if (events_store(w, in, nin, err, sizeof(err)) == 0) {
		rc = 0;
		goto out;
	}
	if (bh_db_failure_of(bh_db_sqlstate(w->db)) != BH_DB_REFUSED) {
		bh_warn("events not stored; retrying the batch: %s", err);
		goto out;
	}
	bh_warn("batch of %d events refused (%s); storing them one by one", nin, err);
	rc = events_store_singly(w, msgs, msg_of, in, nin);
out:
	for (int i = 0; i < n; i++)
		if (parsed[i])
			bh_event_free(&evs[i]);
	free(evs);
	free(parsed);
	free(in);
	free(msg_of);
	free(matched);
	free(first);
	return rc;
}

/* Attempts one loaded delivery, or fails it when it cannot be attempted. */
static void job_attempt(struct worker *w, const struct bh_delivery_row *row)
{
	struct bh_log_ctx ctx = {
		.delivery = row->id, .subscription = row->subscription_id, .event = row->event_id};
	/* Finished already. (The I/O thread skips one it runs or queues already.) */
	if (strcmp(row->status, "pending") != 0)
		return;
	const char *why = NULL;
	char err[256];
	struct bh_event ev;
	const struct bh_sub *sub = sub_find(w, row->subscription_id);
	if (sub == NULL) {
		why = "endpoint disabled";
	} else if (bh_event_parse(row->event_body, strlen(row->event_body), row->event_id, &ev, err,
				  sizeof(err)) < 0) {
		bh_warn_ctx(&ctx, "stored event unreadable: %s", err);
		why = "stored event unreadable";
	} else if (!bh_event_type_internal(ev.type) &&
		   !bh_grant_entitled(&w->grants, sub->client_id, &ev)) {
		/*
		 * A retry or replay after the grant was revoked. (Internal
		 * notifications were addressed to this subscription by the
		 * scheduler, under the client's consent.)
		 */
		bh_event_free(&ev);
		why = "not entitled: the client holds no data grant covering the event";
	} else {
		attempt(w, sub, &ev, row->id);
		bh_event_free(&ev);
		return;
	}
	bh_info_ctx(&ctx, "delivery failed: %s", why);
	/* If this write fails the lease brings the job back; nothing is lost. */
	if (bh_delivery_fail(w->db, row->id, why) < 0)
		bh_warn_ctx(&ctx, "cannot fail delivery: %s", bh_db_errmsg(w->db));
}

/*
 * The jobs of one batch, {"delivery_id","subscription_id","event_id"} each:
 * one query loads every delivery still worth a look. 0 when handled, -1
 * when the database failed before anything was attempted.
 */
static int jobs_handle(struct worker *w, rd_kafka_message_t **msgs, int n)
{
	int rc = -1;
	json_t **docs = bh_xcalloc((size_t)n, sizeof(*docs));
	const char **ids = bh_xcalloc((size_t)n, sizeof(*ids));
	struct bh_delivery_row *rows = NULL;
	const char **ordered = NULL;
	bool *blocked = NULL;
	int nids = 0, nrows = 0;
	for (int i = 0; i < n; i++) {
		const rd_kafka_message_t *msg = msgs[i];
		json_error_t jerr;
		if (msg->len > JOB_MAX_BYTES ||
		    (docs[i] = json_loadb(msg->payload, msg->len, JSON_REJECT_DUPLICATES, &jerr)) ==
			    NULL ||
		    !json_is_string(json_object_get(docs[i], "delivery_id"))) {
			bh_warn("delivery job at offset %lld ignored: malformed",
				(long long)msg->offset);
			continue;
		}
		ids[nids++] = json_string_value(json_object_get(docs[i], "delivery_id"));
	}
	if (bh_delivery_load_many(w->db, ids, nids, &rows, &nrows) < 0)
		goto out;
	/*
	 * Ordered subscriptions: a job whose delivery has an earlier one still
	 * pending waits (the scheduler only claims heads, but a retry or a
	 * replay can put an earlier one back). One query for the batch, and
	 * none when no ordered subscription is involved.
	 */
	ordered = bh_xcalloc((size_t)(nrows ? nrows : 1), sizeof(*ordered));
	blocked = bh_xcalloc((size_t)(nrows ? nrows : 1), sizeof(*blocked));
	int nordered = 0;
	for (int i = 0; i < nrows; i++) {
		const struct bh_sub *sub = sub_find(w, rows[i].subscription_id);
		if (sub && sub->ordered && strcmp(rows[i].status, "pending") == 0)
			ordered[nordered++] = rows[i].id;
	}
	if (bh_delivery_blocked(w->db, ordered, nordered, blocked) < 0)
		goto out;
	for (int i = 0, k = 0; i < nrows; i++) {
		if (k < nordered && ordered[k] == rows[i].id && blocked[k++]) {
			struct bh_log_ctx ctx = {.delivery = rows[i].id,
						 .subscription = rows[i].subscription_id};
			bh_debug_ctx(&ctx, "ordered: an earlier delivery is pending; waiting");
			continue;
		}
		job_attempt(w, &rows[i]);
	}
	rc = 0;
out:
	free(ordered);
	free(blocked);
	for (int i = 0; i < nrows; i++)
		bh_delivery_row_free(&rows[i]);
	free(rows);
	for (int i = 0; i < n; i++)
		json_decref(docs[i]);
	free(docs);
	free(ids);
	return rc;
}

/* Stores the offsets of a handled batch; Kafka commits them in the background. */
static void offsets_store(struct worker *w, rd_kafka_message_t **msgs, int n)
{
	for (int i = 0; i < n; i++)
		(void)bh_kafka_consumer_store(w->consumer, msgs[i]);
}

/*
 * Everything the batches taken in one turn ask for, as one: returns with
 * their offsets stored unless stopping. Frees the batches.
 */
static void batches_handle(struct worker *w, struct bh_batch *batches)
{
	int total = 0;
	for (const struct bh_batch *b = batches; b; b = b->next)
		total += b->n;
	rd_kafka_message_t **events = bh_xcalloc((size_t)total, sizeof(*events));
	rd_kafka_message_t **jobs = bh_xcalloc((size_t)total, sizeof(*jobs));
	int nev = 0, njob = 0;
	for (const struct bh_batch *b = batches; b; b = b->next) {
		for (int i = 0; i < b->n; i++) {
			if (strcmp(rd_kafka_topic_name(b->msgs[i]->rkt), w->cfg.topic_events) == 0)
				events[nev++] = b->msgs[i];
			else
				jobs[njob++] = b->msgs[i];
		}
	}
	/* Never drop: while PostgreSQL is down, keep retrying the same messages. */
	for (;;) {
		if (subs_refresh(w) < 0)
			bh_warn("database unavailable (%s); retrying the batch",
				bh_db_errmsg(w->db));
		else if (events_handle(w, events, nev) == 0)
			break;
		atomic_store(&w->m.db_ok, bh_db_ping(w->db));
		if (!store_pause(w, RETRY_PAUSE_MS))
			goto out;
	}
	offsets_store(w, events, nev);
	if (total > 0) {
		/* Every job message makes one delivery; an event makes as many as it matches. */
		int pct = (w->njobs * 100) / total;
		int old = atomic_load(&w->m.fanout_pct);
		atomic_store(&w->m.fanout_pct, old > pct ? (old + pct) / 2 : pct);
	}
	while (jobs_handle(w, jobs, njob) < 0) {
		bh_warn("database unavailable (%s); retrying delivery jobs", bh_db_errmsg(w->db));
		if (!store_pause(w, RETRY_PAUSE_MS))
			goto out;
	}
	offsets_store(w, jobs, njob);
out:
	free(events);
	free(jobs);
	bh_batch_free_all(batches);
}

static void *store_main(void *arg)
{
	struct worker *w = arg;
	pthread_setname_np(pthread_self(), "bh-store"); /* for top -H and perf */
	int64_t next_ping = bh_mono_ms() + HOUSEKEEPING_MS;
	for (;;) {
		struct bh_batch *batches;
		char **advance;
		int nadvance;
		if (bh_handoff_take_batches(w->handoff, &batches, &advance, &nadvance,
					    HOUSEKEEPING_MS) < 0)
			break;
		if (batches)
			batches_handle(w, batches);
		ordered_advance(w, (const char *const *)advance, nadvance);
		for (int i = 0; i < nadvance; i++)
			free(advance[i]);
		free(advance);
		jobs_hand_back(w);
		bh_kafka_poll(w->producer);
		if (bh_mono_ms() >= next_ping) {
			atomic_store(&w->m.db_ok, bh_db_ping(w->db));
			next_ping = bh_mono_ms() + HOUSEKEEPING_MS;
		}
	}
	return NULL;
}

static void *record_main(void *arg)
{
	struct worker *w = arg;
	pthread_setname_np(pthread_self(), "bh-record");
	struct bh_finished fin = {0};
	int rc;
	while ((rc = bh_handoff_take_finished(w->handoff, &fin, HOUSEKEEPING_MS)) >= 0)
		records_flush(w, &fin);
	bh_finished_free(&fin);
	return NULL;
}

/* ---- the I/O thread ---------------------------------------------------- */

/* Starts the jobs the store thread handed back. */
static void jobs_start(struct worker *w)
{
	struct bh_send_job *job = bh_handoff_take_jobs(w->handoff), *next;
	for (; job; job = next) {
		next = job->next;
		job->next = NULL;
		/* Running or queued here already (a lease ran out under a slow receiver). */
		if (bh_sender_holds(w->sender, job->delivery_id))
			bh_send_job_free(job);
		else
			bh_sender_submit(w->sender, job); /* now owned by the sender */
	}
}

/*
 * Reads up to max messages without waiting and hands them to the store
 * thread. True when it got max (more may be waiting).
 */
static bool kafka_read(struct worker *w, int max)
{
	rd_kafka_message_t **msgs = bh_xcalloc((size_t)max, sizeof(*msgs));
	int n = 0;
	rd_kafka_message_t *m;
	while (n < max && (m = rd_kafka_consumer_poll(w->consumer, 0)) != NULL) {
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				bh_warn("kafka: %s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
		} else {
			msgs[n++] = m;
		}
	}
	if (n == 0) {
		free(msgs);
		return false;
	}
	bh_handoff_put_batch(w->handoff, msgs, n); /* now owned by the handoff */
	return n == max;
}

/* Messages that may wait for the store thread now (see WAITING_MAX). */
static int waiting_max(struct worker *w)
{
	int pct = atomic_load(&w->m.fanout_pct);
	/* Until a batch was stored, assume the worst: one batch at a time. */
	if (pct < 0)
		return 1;
	long long n = pct == 0 ? WAITING_MAX : (long long)BACKLOG_MAX / 2 * 100 / pct;
	return n < 1 ? 1 : n > WAITING_MAX ? WAITING_MAX : (int)n;
}

static void worker_run(struct worker *w)
{
	int wake_fd = bh_handoff_wake_fd(w->handoff);
	int64_t next_housekeeping = 0;
	while (!stop_requested) {
		/* Drained before looking, so a wake-up after the look is not lost. */
		bh_handoff_drain_wake(w->handoff);
		jobs_start(w);
		bool more = false;
		int room = waiting_max(w) - bh_handoff_messages_waiting(w->handoff);
		if (room > 0 && !bh_sender_congested(w->sender) &&
		    bh_sender_queued(w->sender) + bh_handoff_jobs_waiting(w->handoff) <
			    BACKLOG_MAX &&
		    bh_handoff_finished_waiting(w->handoff) < BACKLOG_MAX)
			more = kafka_read(w, room < BATCH_MAX ? room : BATCH_MAX);
		bh_sender_run(w->sender, more ? 0 : IDLE_WAIT_MS, wake_fd);
		bh_handoff_put_finished(w->handoff, &w->fin);
		atomic_store(&w->m.in_flight, bh_sender_in_flight(w->sender));
		if (bh_mono_ms() >= next_housekeeping) {
			atomic_store(&w->m.lag, bh_kafka_consumer_lag(w->consumer));
			next_housekeeping = bh_mono_ms() + HOUSEKEEPING_MS;
		}
	}
}

/*
 * Finishes the transfers already running, within DRAIN_MS, hands their
 * outcomes to the store thread and waits for it to record them.
 */
static void worker_drain(struct worker *w)
{
	bh_sender_drop_queued(w->sender);
	int64_t until = bh_mono_ms() + DRAIN_MS;
	if (bh_sender_in_flight(w->sender) > 0)
		bh_info("finishing %d transfers", bh_sender_in_flight(w->sender));
	while (bh_sender_in_flight(w->sender) > 0 && bh_mono_ms() < until) {
		bh_sender_run(w->sender, 50, -1);
		bh_handoff_put_finished(w->handoff, &w->fin);
	}
	if (bh_sender_in_flight(w->sender) > 0)
		bh_warn("%d transfers abandoned; their leases return them",
			bh_sender_in_flight(w->sender));
}

/* Stops the store and record threads, the latter once it recorded everything. */
static void store_stop(struct worker *w)
{
	if (w->handoff)
		bh_handoff_stop(w->handoff);
	if (w->recorder_started)
		pthread_join(w->recorder, NULL);
	w->recorder_started = false;
	if (!w->store_started)
		return;
	pthread_join(w->store, NULL);
	w->store_started = false;
	/* Rendered in its last turn and never started: their leases return them. */
	while (w->jobs_head) {
		struct bh_send_job *next = w->jobs_head->next;
		bh_send_job_free(w->jobs_head);
		w->jobs_head = next;
	}
	w->jobs_tail = NULL;
}

/* ---- init and teardown ------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bankhook-worker [--config FILE] [--log-format text|json]\n");
}

static int worker_init(struct worker *w, int argc, char **argv)
{
	const char *config_path = NULL, *log_format = NULL;
	char err[512];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc) {
			log_format = argv[++i];
		} else {
			usage();
			return -1;
		}
	}
	if (log_format && strcmp(log_format, "text") != 0 && strcmp(log_format, "json") != 0) {
		usage();
		return -1;
	}
	/* 1. configuration and logging */
	bh_log_init("worker");
	if (bh_config_load(&w->cfg, config_path, err, sizeof(err)) < 0) {
		bh_error("%s", err);
		return -1;
	}
	enum bh_log_level level;
	if (bh_log_parse_level(w->cfg.log_level, &level) == 0)
		bh_log_set_level(level);
	bh_log_set_json(strcmp(log_format ? log_format : w->cfg.log_format, "json") == 0);
	w->log_all_attempts = strcmp(w->cfg.log_attempts, "all") == 0;
	/* 2. signals: only a flag; SIGPIPE would kill us on a closed socket */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* 3. PostgreSQL: a connection for each thread that writes */
	w->db = bh_db_connect(w->cfg.db_url, err, sizeof(err));
	if (w->db == NULL) {
		bh_error("%s", err);
		return -1;
	}
	w->rdb = bh_db_connect(w->cfg.db_url, err, sizeof(err));
	if (w->rdb == NULL) {
		bh_error("%s", err);
		return -1;
	}
	atomic_store(&w->m.db_ok, true);
	atomic_store(&w->m.fanout_pct, -1);
	/* 4. Kafka: the producer (DLQ) before the consumer that feeds it */
	w->producer = bh_kafka_producer_new(&w->cfg, DLQ_FLUSH_MS, err, sizeof(err));
	if (w->producer == NULL) {
		bh_error("%s", err);
		return -1;
	}
	const char *topics[] = {w->cfg.topic_events, w->cfg.topic_deliveries};
	w->consumer = bh_kafka_consumer_new(&w->cfg, topics, 2, err, sizeof(err));
	if (w->consumer == NULL) {
		bh_error("%s", err);
		return -1;
	}
	/* 5. HTTP client */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		bh_error("curl: global init failed");
		return -1;
	}
	w->sender = bh_sender_new(&w->cfg, on_sent, w, err, sizeof(err));
	if (w->sender == NULL) {
		bh_error("%s", err);
		return -1;
	}
	/* 6. the handoff, woken by librdkafka too, and the store and record threads */
	w->handoff = bh_handoff_new(err, sizeof(err));
	if (w->handoff == NULL) {
		bh_error("%s", err);
		return -1;
	}
	w->consumer_queue = rd_kafka_queue_get_consumer(w->consumer);
	rd_kafka_queue_io_event_enable(w->consumer_queue, bh_handoff_notify_fd(w->handoff), "k", 1);
	/* Signals go to the I/O thread, whose poll they cut short. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int prc = pthread_create(&w->store, NULL, store_main, w);
	if (prc == 0) {
		w->store_started = true;
		prc = pthread_create(&w->recorder, NULL, record_main, w);
		w->recorder_started = prc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (prc != 0) {
		bh_error("worker: cannot start a thread: %s", strerror(prc));
		return -1;
	}
	/* 7. ops listener, last: ready only once everything above works */
	if (bh_ops_http_start(w->cfg.worker_http_port, worker_ready, worker_metrics, w, &w->ops,
			      err, sizeof(err)) < 0) {
		bh_error("%s", err);
		return -1;
	}
	bh_info("worker %s consuming %s and %s", BH_VERSION, w->cfg.topic_events,
		w->cfg.topic_deliveries);
	return 0;
}

/* Reverse order of worker_init; safe on a partly initialized worker. */
static void worker_free(struct worker *w)
{
	bh_ops_http_stop(w->ops);
	if (w->sender && w->store_started)
		worker_drain(w);
	store_stop(w);
	if (w->consumer_queue) {
		rd_kafka_queue_io_event_enable(w->consumer_queue, -1, NULL, 0);
		rd_kafka_queue_destroy(w->consumer_queue);
	}
	/* After the store thread: it destroyed every message it took. */
	bh_handoff_free(w->handoff);
	bh_finished_free(&w->fin);
	if (w->sender) {
		bh_sender_free(w->sender);
		curl_global_cleanup();
	}
	if (w->consumer) {
		/* Commits the offsets stored so far and leaves the group cleanly. */
		rd_kafka_consumer_close(w->consumer);
		rd_kafka_destroy(w->consumer);
	}
	bh_kafka_producer_free(w->producer);
	bh_db_close(w->db);
	bh_db_close(w->rdb);
	bh_sub_set_free(&w->subs); /* empty until loaded */
	bh_grant_set_free(&w->grants);
	free(w->by_id);
	bh_config_free(&w->cfg);
}

int main(int argc, char **argv)
{
	static struct worker w; /* static: zeroed, and large */
	int rc = 1;
	/* init: config, signals, database, Kafka, HTTP client, store thread, ops listener */
	if (worker_init(&w, argc, argv) == 0) {
		/* run: until SIGINT/SIGTERM */
		worker_run(&w);
		bh_info("stopping");
		rc = 0;
	}
	/* free: drain transfers, record them, commit offsets, close everything */
	worker_free(&w);
	return rc;
}
