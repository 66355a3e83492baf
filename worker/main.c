/*
 * bankhook-worker: consumes events and delivery jobs from Kafka, turns each
 * event into durable deliveries in PostgreSQL, and attempts them over HTTP.
 * See docs/DESIGN.md for the data flow this follows.
 */
#include <curl/curl.h>
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
#include "kafka.h"
#include "log.h"
#include "ops_http.h"
#include "sender.h"
#include "subscription.h"
#include "util.h"

#define BATCH_MAX 200            /* Kafka messages per database transaction */
/*
 * Kafka is not read while this many jobs wait in the sender: the backlog
 * stays in Kafka and PostgreSQL, not in memory, and a waiting job never
 * outlives its lease. One stuck subscription holds at most a quarter of it
 * (the sender's per-subscription queue cap), so it cannot stall the rest.
 */
#define BACKLOG_MAX 20000
#define JOB_MAX_BYTES 4096       /* a delivery job is three ids */
#define RETRY_PAUSE_MS 1000      /* between tries while PostgreSQL is down */
#define DRAIN_MS 10000           /* bound on finishing transfers at shutdown */
#define HOUSEKEEPING_MS 2000     /* readiness and lag refresh */
#define DLQ_FLUSH_MS 10000
#define DLQ_PAYLOAD_MAX (256 * 1024) /* of the original message, in the DLQ copy */

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
					  0.5,   1,    2.5,   5,    10,  30};
#define NBOUNDS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))

/* Written by the main loop, read by the ops listener's thread. */
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
};

struct worker {
	struct bh_config cfg;
	struct bh_db *db;
	rd_kafka_t *consumer;
	struct bh_kafka_producer *producer;
	struct bh_sender *sender;
	struct bh_ops_http *ops;
	struct bh_sub_set subs;
	const struct bh_sub **by_id; /* subs sorted by id, for job lookups */
	/* Attempts finished in one pass of the sender, recorded together. */
	struct bh_attempt_record *done;
	char **done_event; /* event id of each, for the log line */
	bool *done_ordered; /* its subscription is ordered: a final outcome frees the next */
	int ndone, adone;
	bool subs_loaded;
	struct metrics m;
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
	(void)bh_buf_appendf(
		b,
		"# HELP bankhook_deliveries_total Delivery attempts by outcome.\n"
		"# TYPE bankhook_deliveries_total counter\n"
		"bankhook_deliveries_total{outcome=\"succeeded\"} %lld\n"
		"bankhook_deliveries_total{outcome=\"retrying\"} %lld\n"
		"bankhook_deliveries_total{outcome=\"failed\"} %lld\n",
		(long long)atomic_load(&m->succeeded), (long long)atomic_load(&m->retrying),
		(long long)atomic_load(&m->failed));
	(void)bh_buf_appendf(b, "# HELP bankhook_attempt_duration_seconds Time of one attempt.\n"
				"# TYPE bankhook_attempt_duration_seconds histogram\n");
	long long cum = 0;
	for (size_t i = 0; i < NBOUNDS; i++) {
		cum += atomic_load(&m->duration_le[i]);
		(void)bh_buf_appendf(b, "bankhook_attempt_duration_seconds_bucket{le=\"%g\"} %lld\n",
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
 * Reloads the enabled subscriptions when subscriptions_version moved: one
 * cheap query per batch. 0, or -1 when the database cannot answer.
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
	w->subs_loaded = true;
	free(w->by_id);
	w->by_id = bh_xcalloc((size_t)(w->subs.n > 0 ? w->subs.n : 1), sizeof(*w->by_id));
	for (int i = 0; i < w->subs.n; i++)
		w->by_id[i] = &w->subs.subs[i];
	qsort(w->by_id, (size_t)w->subs.n, sizeof(*w->by_id), sub_ptr_cmp);
	bh_info("loaded %d enabled subscriptions (version %lld)", w->subs.n, w->subs.version);
	return 0;
}

/* ---- attempts ---------------------------------------------------------- */

static bool header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

/* Headers a subscription may not set: the signature's and HTTP framing. */
static bool header_reserved(const char *name)
{
	static const char *const reserved[] = {"webhook-id", "webhook-timestamp",
					       "webhook-signature", "content-length",
					       "transfer-encoding", "host", "expect"};
	for (size_t i = 0; i < BH_ARRAY_LEN(reserved); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
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
	job->previous_secret = sub->previous_secret ? bh_xstrdup(sub->previous_secret) : NULL;
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
	json_object_foreach(sub->headers, name, value)
	{
		const char *v = json_string_value(value);
		if (v == NULL || name[0] == '\0' || strchr(name, ':') || !header_safe(name) ||
		    !header_safe(v) || header_reserved(name))
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
	struct bh_log_ctx ctx = {
		.delivery = rec->delivery_id, .subscription = rec->subscription_id, .event = event_id};
	const struct bh_attempt_result *ar = &rec->r;
	if (rec->state == BH_DELIVERY_SUCCEEDED)
		atomic_fetch_add(&w->m.succeeded, 1);
	else if (rec->state == BH_DELIVERY_FAILED)
		atomic_fetch_add(&w->m.failed, 1);
	else
		atomic_fetch_add(&w->m.retrying, 1);
	bh_info_ctx(&ctx, "attempt: http %d in %d ms -> %s%s%s", ar->http_status, ar->duration_ms,
		    names[rec->state], ar->error ? ": " : "", ar->error ? ar->error : "");
}

/*
 * Records one attempt now (outside a sender pass). Returns where the
 * delivery went, or -1 when it could not be recorded.
 */
static int record(struct worker *w, const char *delivery_id, const char *sub_id,
		  const char *event_id, const struct bh_attempt_result *ar)
{
	struct bh_attempt_record rec = {
		.delivery_id = delivery_id, .subscription_id = sub_id, .r = *ar};
	char err[512];
	if (bh_delivery_record_attempts(w->db, &w->cfg, &rec, 1, err, sizeof(err)) < 0) {
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

/* Keeps a copy of a finished attempt until records_flush. */
static void on_sent(const struct bh_send_result *r, void *arg)
{
	struct worker *w = arg;
	observe_duration(&w->m, r->duration_ms);
	if (w->ndone == w->adone) {
		w->adone = w->adone ? w->adone * 2 : 64;
		w->done = bh_xrealloc(w->done, (size_t)w->adone * sizeof(*w->done));
		w->done_event = bh_xrealloc(w->done_event, (size_t)w->adone * sizeof(char *));
		w->done_ordered = bh_xrealloc(w->done_ordered, (size_t)w->adone * sizeof(bool));
	}
	struct bh_attempt_record *rec = &w->done[w->ndone];
	memset(rec, 0, sizeof(*rec));
	rec->delivery_id = bh_xstrdup(r->job->delivery_id);
	rec->subscription_id = bh_xstrdup(r->job->subscription_id);
	rec->r.started_ms = r->started_ms;
	rec->r.duration_ms = r->duration_ms;
	rec->r.http_status = r->http_status;
	rec->r.error = r->error ? bh_xstrdup(r->error) : NULL;
	rec->r.response = r->response ? bh_xstrdup(r->response) : NULL;
	rec->r.permanent = r->permanent;
	rec->r.retry_after_s = r->retry_after_s;
	w->done_event[w->ndone] = bh_xstrdup(r->job->event_id);
	w->done_ordered[w->ndone] = r->job->ordered;
	w->ndone++;
}

/*
 * Records every attempt the last sender pass finished, in one transaction:
 * one commit for many attempts is what keeps up with a busy receiver. If
 * the batch fails, each is tried alone so one bad row cannot sink the rest.
 */
static void records_flush(struct worker *w)
{
	if (w->ndone == 0)
		return;
	char err[512];
	/* Ordered subscriptions whose line moved on: their next delivery may go. */
	const char **advance = NULL;
	int nadvance = 0;
	if (bh_delivery_record_attempts(w->db, &w->cfg, w->done, w->ndone, err, sizeof(err)) == 0) {
		for (int i = 0; i < w->ndone; i++)
			outcome(w, &w->done[i], w->done_event[i]);
	} else {
		if (w->ndone > 1)
			bh_warn("recording %d attempts together failed (%s); one by one", w->ndone, err);
		for (int i = 0; i < w->ndone; i++) {
			int st = record(w, w->done[i].delivery_id, w->done[i].subscription_id,
					w->done_event[i], &w->done[i].r);
			w->done[i].state = st < 0 ? BH_DELIVERY_PENDING : (enum bh_delivery_state)st;
		}
	}
	for (int i = 0; i < w->ndone; i++) {
		if (!w->done_ordered[i] || w->done[i].state == BH_DELIVERY_PENDING)
			continue;
		if (advance == NULL)
			advance = bh_xcalloc((size_t)w->ndone, sizeof(*advance));
		advance[nadvance++] = bh_xstrdup(w->done[i].subscription_id);
	}
	for (int i = 0; i < w->ndone; i++) {
		free((char *)w->done[i].delivery_id);
		free((char *)w->done[i].subscription_id);
		free((char *)w->done[i].r.error);
		free((char *)w->done[i].r.response);
		free(w->done_event[i]);
	}
	w->ndone = 0;
	/* After the reset: an attempt that fails at once is recorded next pass. */
	ordered_advance(w, advance, nadvance);
	for (int i = 0; i < nadvance; i++)
		free((char *)advance[i]);
	free(advance);
}

/* One pass of the sender, then its results into PostgreSQL. */
static void sender_pass(struct worker *w, int timeout_ms)
{
	bh_sender_run(w->sender, timeout_ms);
	records_flush(w);
}

/* Renders and hands one delivery to the sender, or fails it now. */
static void attempt(struct worker *w, const struct bh_sub *sub, const struct bh_event *ev,
		    const char *delivery_id)
{
	char err[256];
	struct bh_send_job *job = job_build(sub, ev, delivery_id, err, sizeof(err));
	if (job == NULL) {
		struct bh_attempt_result ar = {
			.started_ms = bh_now_ms(), .error = err, .permanent = true};
		record(w, delivery_id, sub->id, ev->id, &ar);
		return;
	}
	bh_sender_submit(w->sender, job); /* now owned by the sender */
}

/* ---- the consume loop -------------------------------------------------- */

/* Waits ms while transfers go on; false when asked to stop meanwhile. */
static bool pause_ms(struct worker *w, int ms)
{
	int64_t until = bh_mono_ms() + ms;
	while (!stop_requested && bh_mono_ms() < until) {
		if (bh_sender_in_flight(w->sender) > 0)
			sender_pass(w, 50);
		else
			usleep(50 * 1000);
	}
	return !stop_requested;
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
 * Handles the events of one batch: DLQ for the invalid ones, then one
 * transaction for every valid one and its deliveries. 0 once all of it is
 * durable (the caller may store offsets), -1 to retry the same messages.
 */
static int events_handle(struct worker *w, rd_kafka_message_t **msgs, int n)
{
	int rc = -1;
	struct bh_event *evs = bh_xcalloc((size_t)n, sizeof(*evs));
	bool *parsed = bh_xcalloc((size_t)n, sizeof(bool));
	struct bh_delivery_input *in = bh_xcalloc((size_t)n, sizeof(*in));
	/* Matches of every event, end to end; in[].subs points in once it stops growing. */
	const struct bh_sub **matched = NULL;
	size_t *first = bh_xcalloc((size_t)n, sizeof(size_t));
	size_t nmatched = 0, amatched = 0;
	struct bh_delivery_created *created = NULL;
	int nin = 0, ncreated = 0, ndlq = 0;
	char err[512];

	for (int i = 0; i < n; i++) {
		const rd_kafka_message_t *msg = msgs[i];
		char fallback[300];
		snprintf(fallback, sizeof(fallback), "kafka-%s-%d-%lld", rd_kafka_topic_name(msg->rkt),
			 (int)msg->partition, (long long)msg->offset);
		if (bh_event_parse(msg->payload ? msg->payload : "", msg->len, fallback, &evs[i], err,
				   sizeof(err)) < 0) {
			bh_warn("event at %s: dead-lettered: %s", fallback, err);
			if (dlq(w, msg, err) < 0)
				goto out;
			ndlq++;
			continue;
		}
		parsed[i] = true;
		first[nin] = nmatched;
		for (int s = 0; s < w->subs.n; s++) {
			if (!bh_sub_match(&w->subs.subs[s], &evs[i]))
				continue;
			if (nmatched == amatched) {
				amatched = amatched ? amatched * 2 : 64;
				matched = bh_xrealloc(matched, amatched * sizeof(*matched));
			}
			matched[nmatched++] = &w->subs.subs[s];
		}
		in[nin].ev = &evs[i];
		in[nin].nsubs = (int)(nmatched - first[nin]);
		nin++;
	}
	for (int i = 0; i < nin; i++)
		in[i].subs = matched ? &matched[first[i]] : NULL;
	/* The DLQ copy must be acknowledged before the original's offset moves. */
	if (ndlq > 0 && bh_kafka_flush(w->producer, DLQ_FLUSH_MS) != 0) {
		bh_warn("dead-letter queue not acknowledged; retrying the batch");
		goto out;
	}
	if (bh_delivery_store_events(w->db, in, nin, w->cfg.delivery_lease_s, &created, &ncreated,
				     err, sizeof(err)) < 0) {
		bh_warn("events not stored; retrying the batch: %s", err);
		goto out;
	}
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
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		if (parsed[i])
			bh_event_free(&evs[i]);
	free(evs);
	free(parsed);
	free(in);
	free(matched);
	free(first);
	free(created);
	return rc;
}

/* Attempts one loaded delivery, or fails it when it cannot be attempted. */
static void job_attempt(struct worker *w, const struct bh_delivery_row *row)
{
	struct bh_log_ctx ctx = {
		.delivery = row->id, .subscription = row->subscription_id, .event = row->event_id};
	/* Finished already, or handled by an earlier copy of this job. */
	if (strcmp(row->status, "pending") != 0)
		return;
	if (bh_sender_holds(w->sender, row->id))
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
		const char *id = json_string_value(json_object_get(docs[i], "delivery_id"));
		/* Still running or queued here (a lease ran out under a slow receiver). */
		if (bh_sender_holds(w->sender, id))
			continue;
		ids[nids++] = id;
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

/* Everything one batch asks for; returns with its offsets stored unless stopping. */
static void batch_handle(struct worker *w, rd_kafka_message_t **msgs, int n)
{
	rd_kafka_message_t *events[BATCH_MAX], *jobs[BATCH_MAX];
	int nev = 0, njob = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(rd_kafka_topic_name(msgs[i]->rkt), w->cfg.topic_events) == 0)
			events[nev++] = msgs[i];
		else
			jobs[njob++] = msgs[i];
	}
	/* Never drop: while PostgreSQL is down, keep retrying the same messages. */
	for (;;) {
		if (subs_refresh(w) < 0)
			bh_warn("database unavailable (%s); retrying the batch",
				bh_db_errmsg(w->db));
		else if (events_handle(w, events, nev) == 0)
			break;
		atomic_store(&w->m.db_ok, bh_db_ping(w->db));
		if (!pause_ms(w, RETRY_PAUSE_MS))
			return;
	}
	offsets_store(w, events, nev);
	while (jobs_handle(w, jobs, njob) < 0) {
		bh_warn("database unavailable (%s); retrying delivery jobs", bh_db_errmsg(w->db));
		if (!pause_ms(w, RETRY_PAUSE_MS))
			return;
	}
	offsets_store(w, jobs, njob);
}

static void worker_run(struct worker *w)
{
	rd_kafka_message_t *msgs[BATCH_MAX];
	int64_t next_housekeeping = 0;
	while (!stop_requested) {
		/* Short waits: transfers, rate-limited jobs and the stop flag need attention. */
		int wait = bh_sender_in_flight(w->sender) > 0 ? 0 : 100;
		int wake = bh_sender_wake_ms(w->sender);
		if (wake >= 0 && wake < wait)
			wait = wake;
		int n = 0;
		if (bh_sender_queued(w->sender) >= BACKLOG_MAX) {
			sender_pass(w, 20);
			continue;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, wait);
		while (m != NULL) {
			if (m->err) {
				if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
					bh_warn("kafka: %s", rd_kafka_message_errstr(m));
				rd_kafka_message_destroy(m);
			} else {
				msgs[n++] = m;
			}
			m = n < BATCH_MAX ? rd_kafka_consumer_poll(w->consumer, 0) : NULL;
		}
		if (n > 0)
			batch_handle(w, msgs, n);
		for (int i = 0; i < n; i++)
			rd_kafka_message_destroy(msgs[i]);
		sender_pass(w, n > 0 ? 0 : 20);
		bh_kafka_poll(w->producer);
		atomic_store(&w->m.in_flight, bh_sender_in_flight(w->sender));
		if (bh_mono_ms() >= next_housekeeping) {
			atomic_store(&w->m.db_ok, bh_db_ping(w->db));
			atomic_store(&w->m.lag, bh_kafka_consumer_lag(w->consumer));
			next_housekeeping = bh_mono_ms() + HOUSEKEEPING_MS;
		}
	}
}

/* Finishes the transfers already running, within DRAIN_MS. */
static void worker_drain(struct worker *w)
{
	bh_sender_drop_queued(w->sender);
	int64_t until = bh_mono_ms() + DRAIN_MS;
	if (bh_sender_in_flight(w->sender) > 0)
		bh_info("finishing %d transfers", bh_sender_in_flight(w->sender));
	while (bh_sender_in_flight(w->sender) > 0 && bh_mono_ms() < until)
		sender_pass(w, 50);
	if (bh_sender_in_flight(w->sender) > 0)
		bh_warn("%d transfers abandoned; their leases return them",
			bh_sender_in_flight(w->sender));
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
	/* 2. signals: only a flag; SIGPIPE would kill us on a closed socket */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* 3. PostgreSQL */
	w->db = bh_db_connect(w->cfg.db_url, err, sizeof(err));
	if (w->db == NULL) {
		bh_error("%s", err);
		return -1;
	}
	atomic_store(&w->m.db_ok, true);
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
	/* 6. ops listener, last: ready only once everything above works */
	if (bh_ops_http_start(w->cfg.worker_http_port, worker_ready, worker_metrics, w, &w->ops, err,
			      sizeof(err)) < 0) {
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
	if (w->sender) {
		worker_drain(w);
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
	if (w->subs_loaded)
		bh_sub_set_free(&w->subs);
	free(w->by_id);
	free(w->done);
	free(w->done_event);
	free(w->done_ordered);
	bh_config_free(&w->cfg);
}

int main(int argc, char **argv)
{
	static struct worker w; /* static: zeroed, and large */
	int rc = 1;
	/* init: config, signals, database, Kafka, HTTP client, ops listener */
	if (worker_init(&w, argc, argv) == 0) {
		/* run: until SIGINT/SIGTERM */
		worker_run(&w);
		bh_info("stopping");
		rc = 0;
	}
	/* free: drain transfers, commit offsets, close everything */
	worker_free(&w);
	return rc;
}
