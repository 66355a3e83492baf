#include "sender.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "crypto.h"
#include "destination.h"
#include "log.h"
#include "net.h"

#define RESPONSE_CAP 1024      /* what attempts.response_body keeps */
#define HEADER_CAP (64 * 1024) /* response headers beyond this abort */
/*
 * Jobs waiting here, in all (about 1 KiB each), and for one subscription:
 * enough to absorb a burst to a healthy receiver without a lease's delay.
 * A healthy subscription's queue never reaches its cap: past
 * ENDPOINT_QUEUE_HIGH the sender asks its caller to stop reading Kafka
 * (bh_sender_congested). A slow one keeps SLOW_QUEUE_MAX jobs and leaves
 * the rest to PostgreSQL, so its backlog takes neither memory nor the
 * others' turn.
 */
#define QUEUED_MAX 100000
#define ENDPOINT_QUEUE_MAX 5000
#define ENDPOINT_QUEUE_HIGH (ENDPOINT_QUEUE_MAX / 2)
#define SLOW_QUEUE_MAX 50
/*
 * Slow: transfers running and none ended for SLOW_STALL_MS (a receiver
 * that does not answer), or, running at its own cap, a queue that would
 * take more than SLOW_DRAIN_MS to send at the pace transfers end; or its
 * host is slow by the same measures (bh_dest_slow).
 */
#define SLOW_STALL_MS 2000
#define SLOW_DRAIN_MS 10000
#define ENDPOINT_BUCKETS 1024
#define HELD_BUCKETS 8192
#define RETRY_AFTER_LINE_MAX 128  /* a longer Retry-After header is ignored */
#define RETRY_AFTER_CEILING 86400 /* parsed values are clamped here; record bounds further */
/*
 * A rate-limited subscription may burst 50 ms worth of its rate (at least
 * one request): the main loop's wake-ups are that coarse, and any 1-second
 * window then holds at most rate + rate/20 requests.
 */
#define BURST_MS 50

/* Per subscription: transfers running and jobs waiting for a slot. */
struct endpoint {
	char *sub_id;
	int in_flight;
	int max_in_flight; /* 1 when ordered, else the configured cap */
	bool ordered;
	struct bh_send_job *qhead, *qtail;
	int queued;
	/* Token bucket, when rate > 0; kept while idle so a pause does not reset it. */
	int rate;
	double tokens;
	int64_t refill_ms; /* monotonic */
	/* Progress, to tell a slow receiver from a busy one. */
	int64_t progress_ms; /* monotonic: last transfer ended, or first one started */
	struct bh_pace pace; /* of its transfers ending */
	/* Its receiving host (a reference), as its latest job's URL names it. */
	struct bh_dest *dest;
	/*
	 * On the sender's waiting list: its queue waits for a token or for its
	 * host's window, not for one of its own transfers to end.
	 */
	bool throttled;
	struct endpoint *tprev, *tnext;
	struct endpoint *next;
};

struct held {
	struct held *next;
	char id[];
};

struct transfer {
	struct bh_sender *sender;
	struct transfer *prev, *next; /* every running transfer, for shutdown */
	CURL *easy;
	struct bh_send_job *job;
	struct endpoint *ep;
	struct bh_dest *dest; /* a reference of its own: ep may move to another host */
	struct bh_buf response;
	size_t header_bytes;
	bool headers_too_big;
	bool refused;
	int requests;	     /* sent on a connection: more than 1 only if libcurl re-sends */
	bool resend_stopped; /* libcurl tried to re-send it; stopped, see on_prereq */
	int retry_after_s;
	int64_t started_ms;
	int64_t started_mono;
	char errbuf[CURL_ERROR_SIZE];
};

struct bh_sender {
	const struct bh_config *cfg;
	CURLM *multi;
	bh_sender_done_fn done;
	void *arg;
	int in_flight;
	struct transfer *running;
	struct endpoint *buckets[ENDPOINT_BUCKETS];
	struct bh_send_job *qhead, *qtail; /* waiting for a global slot */
	int queued;
	int queued_total;	     /* here and in every endpoint's queue */
	struct endpoint *throttled;  /* endpoints whose queue waits for a token or its host */
	struct bh_dest_table *dests; /* per receiving host: windows, dead hosts */
	/* Easy handles of ended transfers, reset and reused: fewer allocations per request. */
	CURL **idle;
	int nidle;
	/* Delivery ids running or queued here: the scheduler's re-sends are skipped. */
	struct held *held[HELD_BUCKETS];
};

struct bh_send_job *bh_send_job_new(void)
{
	return bh_xcalloc(1, sizeof(struct bh_send_job));
}

void bh_send_job_free(struct bh_send_job *job)
{
	if (job == NULL)
		return;
	free(job->delivery_id);
	free(job->subscription_id);
	free(job->event_id);
	free(job->url);
	free(job->method);
	free(job->secret);
	free(job->previous_secret);
	curl_slist_free_all(job->headers);
	curl_slist_free_all(job->custom);
	free(job->body);
	free(job);
}

/* ---- endpoints --------------------------------------------------------- */

static unsigned hash_str(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct endpoint *endpoint_get(struct bh_sender *s, const char *sub_id)
{
	unsigned h = hash_str(sub_id) % ENDPOINT_BUCKETS;
	for (struct endpoint *e = s->buckets[h]; e; e = e->next)
		if (strcmp(e->sub_id, sub_id) == 0)
			return e;
	struct endpoint *e = bh_xcalloc(1, sizeof(*e));
	e->sub_id = bh_xstrdup(sub_id);
	e->pace.per_s = -1;
	e->next = s->buckets[h];
	s->buckets[h] = e;
	return e;
}

static void throttle_add(struct bh_sender *s, struct endpoint *ep)
{
	if (ep->throttled)
		return;
	ep->throttled = true;
	ep->tprev = NULL;
	ep->tnext = s->throttled;
	if (s->throttled)
		s->throttled->tprev = ep;
	s->throttled = ep;
}

static void throttle_remove(struct bh_sender *s, struct endpoint *ep)
{
	if (!ep->throttled)
		return;
	if (ep->tprev)
		ep->tprev->tnext = ep->tnext;
	else
		s->throttled = ep->tnext;
	if (ep->tnext)
		ep->tnext->tprev = ep->tprev;
	ep->throttled = false;
	ep->tprev = ep->tnext = NULL;
}

static void endpoint_destroy(struct bh_sender *s, struct endpoint *ep)
{
	bh_dest_put(s->dests, ep->dest, bh_mono_ms());
	free(ep->sub_id);
	free(ep);
}

/*
 * Forgets an endpoint with nothing running or waiting: the table stays
 * small. A rate-limited one stays, with its bucket: there is one per
 * subscription at most, and forgetting it would grant a fresh burst.
 */
static void endpoint_release(struct bh_sender *s, struct endpoint *ep)
{
	if (ep->in_flight > 0 || ep->queued > 0 || ep->rate > 0)
		return;
	throttle_remove(s, ep);
	struct endpoint **pp = &s->buckets[hash_str(ep->sub_id) % ENDPOINT_BUCKETS];
	while (*pp && *pp != ep)
		pp = &(*pp)->next;
	if (*pp)
		*pp = ep->next;
	endpoint_destroy(s, ep);
}

static void held_add(struct bh_sender *s, const char *id)
{
	unsigned h = hash_str(id) % HELD_BUCKETS;
	size_t n = strlen(id) + 1;
	struct held *e = bh_xmalloc(sizeof(*e) + n);
	memcpy(e->id, id, n);
	e->next = s->held[h];
	s->held[h] = e;
}

static void held_remove(struct bh_sender *s, const char *id)
{
	struct held **pp = &s->held[hash_str(id) % HELD_BUCKETS];
	for (; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			struct held *e = *pp;
			*pp = e->next;
			free(e);
			return;
		}
	}
}

/* The subscription's current limits, as its latest job carries them. */
static void endpoint_configure(struct bh_sender *s, struct endpoint *ep,
			       const struct bh_send_job *job)
{
	ep->ordered = job->ordered;
	ep->max_in_flight = job->ordered ? 1 : s->cfg->delivery_max_in_flight_per_endpoint;
	char key[BH_DEST_KEY_MAX];
	/* Registration checked the URL; one libcurl will refuse shares a catch-all host. */
	if (bh_dest_key(job->url, key, sizeof(key)) != 0)
		snprintf(key, sizeof(key), "unparsed://");
	if (ep->dest == NULL || strcmp(bh_dest_name(ep->dest), key) != 0) {
		int64_t now = bh_mono_ms();
		if (ep->dest)
			bh_dest_queued(ep->dest, -ep->queued); /* its queue moves along */
		bh_dest_put(s->dests, ep->dest, now);
		ep->dest = bh_dest_get(s->dests, key, now);
		bh_dest_queued(ep->dest, ep->queued);
	}
	if (job->rate_limit_per_s != ep->rate) {
		ep->rate = job->rate_limit_per_s > 0 ? job->rate_limit_per_s : 0;
		ep->tokens = 1;
		ep->refill_ms = bh_mono_ms();
	}
}

static double burst_of(const struct endpoint *ep)
{
	double b = ep->rate * BURST_MS / 1000.0;
	return b < 1 ? 1 : b;
}

static void refill(struct endpoint *ep, int64_t now)
{
	ep->tokens += (double)(now - ep->refill_ms) * ep->rate / 1000.0;
	if (ep->tokens > burst_of(ep))
		ep->tokens = burst_of(ep);
	ep->refill_ms = now;
}

/* Takes a token if the rate allows a request now. */
static bool token_take(struct endpoint *ep)
{
	if (ep->rate <= 0)
		return true;
	refill(ep, bh_mono_ms());
	if (ep->tokens < 1)
		return false;
	ep->tokens -= 1;
	return true;
}

/* Milliseconds until the next token. */
static int token_wait_ms(const struct endpoint *ep)
{
	if (ep->rate <= 0)
		return 0;
	double have = ep->tokens + (double)(bh_mono_ms() - ep->refill_ms) * ep->rate / 1000.0;
	if (have >= 1)
		return 0;
	return (int)((1 - have) * 1000.0 / ep->rate) + 1;
}

/* A transfer of ep ended: counts towards its pace. */
static void progress(struct endpoint *ep, int64_t now)
{
	ep->progress_ms = now;
	bh_pace_tick(&ep->pace, now);
}

/* See SLOW_STALL_MS: such a subscription's backlog waits in PostgreSQL. */
static bool endpoint_slow(const struct bh_sender *s, const struct endpoint *ep, int64_t now)
{
	if (ep->in_flight > 0 && now - ep->progress_ms > SLOW_STALL_MS)
		return true;
	/* Its host is dead, stopped answering, or has more waiting than it answers in 10 s. */
	if (ep->dest && bh_dest_slow(s->dests, ep->dest, now))
		return true;
	/*
	 * Its own pace tells about its receiver only while it runs at its own
	 * cap; below that its host's window or the worker's slots set the pace.
	 */
	return ep->in_flight >= ep->max_in_flight &&
	       bh_pace_behind(&ep->pace, ep->queued, SLOW_DRAIN_MS);
}

static void queue_push(struct bh_send_job **head, struct bh_send_job **tail, int *n,
		       struct bh_send_job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
	(*n)++;
}

static struct bh_send_job *queue_pop(struct bh_send_job **head, struct bh_send_job **tail, int *n)
{
	struct bh_send_job *job = *head;
	if (job == NULL)
		return NULL;
	*head = job->next;
	if (*head == NULL)
		*tail = NULL;
	job->next = NULL;
	(*n)--;
	return job;
}

/* The oldest job of ep's queue, off every count. */
static struct bh_send_job *endpoint_pop(struct bh_sender *s, struct endpoint *ep)
{
	struct bh_send_job *job = queue_pop(&ep->qhead, &ep->qtail, &ep->queued);
	if (job) {
		s->queued_total--;
		bh_dest_queued(ep->dest, -1);
	}
	return job;
}

/* ---- one transfer ------------------------------------------------------ */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t n = size * nmemb;
	size_t room = t->response.cap - t->response.len;
	/* Keep the first KiB, swallow the rest: the transfer goes on. */
	if (room > 0)
		(void)bh_buf_append(&t->response, ptr, n < room ? n : room);
	return n;
}

/*
 * Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3), as seconds
 * from now, clamped to [0, RETRY_AFTER_CEILING]; 0 when unreadable.
 */
static int retry_after_parse(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v >= '0' && *v <= '9') {
		long long secs = 0;
		for (; *v >= '0' && *v <= '9'; v++)
			if (secs < RETRY_AFTER_CEILING)
				secs = secs * 10 + (*v - '0');
		while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
			v++;
		if (*v != '\0')
			return 0;
		return secs > RETRY_AFTER_CEILING ? RETRY_AFTER_CEILING : (int)secs;
	}
	time_t when = curl_getdate(v, NULL);
	if (when == -1)
		return 0;
	time_t now = time(NULL);
	if (when <= now)
		return 0;
	return when - now > RETRY_AFTER_CEILING ? RETRY_AFTER_CEILING : (int)(when - now);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t n = size * nmemb;
	t->header_bytes += n;
	if (t->header_bytes > HEADER_CAP) {
		t->headers_too_big = true;
		return 0; /* aborts the transfer */
	}
	static const char name[] = "retry-after:";
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		t->retry_after_s = 0; /* a new response (after a 1xx) starts over */
	} else if (n > sizeof(name) - 1 && n < RETRY_AFTER_LINE_MAX &&
		   strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
		char value[RETRY_AFTER_LINE_MAX];
		size_t len = n - (sizeof(name) - 1);
		memcpy(value, ptr + sizeof(name) - 1, len);
		value[len] = '\0';
		t->retry_after_s = retry_after_parse(value);
	}
	return n;
}

/*
 * Checked for every connection curl opens, after DNS: a name that resolves
 * to an internal address is refused here even if the URL looked fine.
 */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	(void)purpose;
	struct transfer *t = clientp;
	const struct bh_config *cfg = t->sender->cfg;
	if (!bh_addr_allowed(&addr->addr, cfg->delivery_allow_loopback,
			     cfg->delivery_allow_private)) {
		t->refused = true;
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype, addr->protocol);
}

/*
 * Called by libcurl each time it is about to send the request on a
 * connection. The first time is the attempt. A second time means the
 * request went out on a reused connection that then died without a byte of
 * response, and libcurl is re-sending it on another one: the receiver may
 * well have got and acted on the first copy (one that reads the request
 * and resets the connection got up to six per attempt). So the re-send is
 * refused and the attempt ends as failed, to be retried on the schedule
 * and recorded like any other: one attempt row per request sent.
 */
static int on_prereq(void *clientp, char *conn_primary_ip, char *conn_local_ip,
		     int conn_primary_port, int conn_local_port)
{
	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	struct transfer *t = clientp;
	if (++t->requests == 1)
		return CURL_PREREQFUNC_OK;
	t->resend_stopped = true;
	return CURL_PREREQFUNC_ABORT;
}

static void report(struct bh_sender *s, struct transfer *t, int http_status, const char *error,
		   bool permanent)
{
	bool wants_later = http_status == 429 || http_status == 503;
	struct bh_send_result r = {
		.retry_after_s = wants_later ? t->retry_after_s : 0,
		.job = t->job,
		.started_ms = t->started_ms,
		.duration_ms = (int)(bh_mono_ms() - t->started_mono),
		.http_status = http_status,
		.error = error,
		.response = t->response.len ? t->response.data : NULL,
		.permanent = permanent,
	};
	s->done(&r, s->arg);
}

static void transfer_free(struct bh_sender *s, struct transfer *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else if (s->running == t)
		s->running = t->next;
	if (t->next)
		t->next->prev = t->prev;
	if (t->easy) {
		curl_multi_remove_handle(s->multi, t->easy);
		/* Connections live in the multi handle's pool, not in the easy handle. */
		if (s->nidle < s->cfg->delivery_max_in_flight)
			s->idle[s->nidle++] = t->easy;
		else
			curl_easy_cleanup(t->easy);
	}
	bh_buf_free(&t->response);
	bh_dest_put(s->dests, t->dest, bh_mono_ms());
	held_remove(s, t->job->delivery_id);
	bh_send_job_free(t->job);
	free(t);
}

static const char *curl_method(const struct bh_send_job *job)
{
	return job->method && job->method[0] ? job->method : "POST";
}

/* Starts job now (the caps were checked); reports at once if it cannot. */
static void start(struct bh_sender *s, struct endpoint *ep, struct bh_send_job *job)
{
	const struct bh_config *cfg = s->cfg;
	struct transfer *t = bh_xcalloc(1, sizeof(*t));
	t->sender = s;
	t->job = job;
	t->ep = ep;
	t->dest = bh_dest_hold(ep->dest);
	t->next = s->running;
	if (s->running)
		s->running->prev = t;
	s->running = t;
	t->started_ms = bh_now_ms();
	t->started_mono = bh_mono_ms();
	bh_buf_init(&t->response, RESPONSE_CAP);
	if (ep->in_flight == 0)
		ep->progress_ms = t->started_mono; /* the stall clock starts now */
	ep->in_flight++;
	s->in_flight++;
	bh_dest_started(s->dests, t->dest, t->started_mono);

	int64_t ts = t->started_ms / 1000;
	char *sig = bh_webhook_sign(job->secret, job->delivery_id, ts, job->body, job->body_len);
	char *sig_old = job->previous_secret
				? bh_webhook_sign(job->previous_secret, job->delivery_id, ts,
						  job->body, job->body_len)
				: NULL;
	if (sig == NULL) {
		free(sig_old);
		report(s, t, 0, "signing secret is malformed", true);
		goto fail;
	}
	char line[512];
	/* Every name set here is in bh_header_reserved: no custom header repeats one. */
	struct curl_slist *h = job->headers;
	snprintf(line, sizeof(line), "webhook-id: %s", job->delivery_id);
	h = curl_slist_append(h, line);
	snprintf(line, sizeof(line), "webhook-timestamp: %" PRId64, ts);
	h = curl_slist_append(h, line);
	char *sigline = sig_old ? bh_xasprintf("webhook-signature: %s %s", sig, sig_old)
				: bh_xasprintf("webhook-signature: %s", sig);
	h = curl_slist_append(h, sigline);
	free(sigline);
	free(sig);
	free(sig_old);
	h = curl_slist_append(h, "User-Agent: bankhook/" BH_VERSION);
	/* No "Expect: 100-continue" round trip before larger bodies. */
	h = curl_slist_append(h, "Expect:");
	for (const struct curl_slist *c = job->custom; c; c = c->next)
		h = curl_slist_append(h, c->data);
	job->headers = h;

	if (s->nidle > 0) {
		t->easy = s->idle[--s->nidle];
		curl_easy_reset(t->easy); /* no option of the last request survives */
	} else {
		t->easy = curl_easy_init();
	}
	if (t->easy == NULL) {
		report(s, t, 0, "cannot create transfer", false);
		goto fail;
	}
	CURL *e = t->easy;
	curl_easy_setopt(e, CURLOPT_URL, job->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, job->headers);
	const char *method = curl_method(job);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->body ? job->body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->delivery_timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->delivery_connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Only the web; never through an environment proxy that hides the target. */
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	if (curl_multi_add_handle(s->multi, e) != CURLM_OK) {
		report(s, t, 0, "cannot start transfer", false);
		goto fail;
	}
	return;
fail:
	ep->in_flight--;
	s->in_flight--;
	bh_dest_finished(s->dests, t->dest, BH_DEST_LOCAL, bh_mono_ms());
	transfer_free(s, t);
	endpoint_release(s, ep);
}

/* ---- scheduling -------------------------------------------------------- */

static bool stale(const struct bh_sender *s, const struct bh_send_job *job)
{
	/* Past half a lease the scheduler may hand it out again: let it. */
	return bh_mono_ms() - job->queued_ms > (int64_t)s->cfg->delivery_lease_s * 500;
}

static void drop(struct bh_sender *s, const char *why, struct bh_send_job *job)
{
	held_remove(s, job->delivery_id);
	struct bh_log_ctx ctx = {.delivery = job->delivery_id,
				 .subscription = job->subscription_id,
				 .event = job->event_id};
	bh_debug_ctx(&ctx, "attempt deferred to the scheduler: %s", why);
	bh_send_job_free(job);
}

/* Queues job behind its subscription's running or rate-limited ones, or drops it. */
static void endpoint_enqueue(struct bh_sender *s, struct endpoint *ep, struct bh_send_job *job)
{
	/* Waiting for tokens past half a lease would only end in "stale": let go now. */
	if (ep->rate > 0 &&
	    (int64_t)(ep->queued + 1) * 1000 / ep->rate > (int64_t)s->cfg->delivery_lease_s * 500) {
		drop(s, "over the subscription's rate limit", job);
		endpoint_release(s, ep);
		return;
	}
	if (ep->queued >= ENDPOINT_QUEUE_MAX || s->queued_total >= QUEUED_MAX) {
		drop(s, "subscription queue full", job);
		endpoint_release(s, ep);
		return;
	}
	if (ep->queued >= SLOW_QUEUE_MAX && endpoint_slow(s, ep, bh_mono_ms())) {
		drop(s, "receiver slow", job);
		endpoint_release(s, ep);
		return;
	}
	queue_push(&ep->qhead, &ep->qtail, &ep->queued, job);
	s->queued_total++;
	bh_dest_queued(ep->dest, 1);
	/* Its own transfers ending wake it; a token or its host's slot may not. */
	if (ep->rate > 0 || bh_dest_admit(s->dests, ep->dest, bh_mono_ms()) != BH_DEST_GO)
		throttle_add(s, ep);
}

/* Places a job whose slot is not known to be free. */
static void place(struct bh_sender *s, struct bh_send_job *job)
{
	struct endpoint *ep = endpoint_get(s, job->subscription_id);
	endpoint_configure(s, ep, job);
	/*
	 * Ordered: a second job must not run after the first without knowing
	 * how the first ended; PostgreSQL hands it out again in its turn.
	 */
	if (ep->ordered && (ep->in_flight > 0 || ep->queued > 0)) {
		drop(s, "ordered subscription busy", job);
		endpoint_release(s, ep);
		return;
	}
	/* A dead host's work waits in PostgreSQL, holding neither a slot nor memory. */
	enum bh_dest_verdict host = bh_dest_admit(s->dests, ep->dest, bh_mono_ms());
	if (host == BH_DEST_DEAD) {
		drop(s, "receiving host dead, backing off", job);
		endpoint_release(s, ep);
		return;
	}
	bool busy = ep->in_flight >= ep->max_in_flight || ep->queued > 0;
	if (!busy && s->in_flight >= s->cfg->delivery_max_in_flight) {
		if (s->queued_total < QUEUED_MAX) {
			queue_push(&s->qhead, &s->qtail, &s->queued, job);
			s->queued_total++;
		} else {
			drop(s, "worker queue full", job);
		}
		endpoint_release(s, ep);
		return;
	}
	if (busy || host != BH_DEST_GO || !token_take(ep)) {
		endpoint_enqueue(s, ep, job);
		return;
	}
	start(s, ep, job);
}

void bh_sender_submit(struct bh_sender *s, struct bh_send_job *job)
{
	job->queued_ms = bh_mono_ms();
	held_add(s, job->delivery_id);
	place(s, job);
}

/* Starts what ep's queue may start now: slots and tokens permitting. */
static void pump_endpoint(struct bh_sender *s, struct endpoint *ep)
{
	while (ep->queued > 0 && ep->in_flight < ep->max_in_flight &&
	       s->in_flight < s->cfg->delivery_max_in_flight) {
		if (stale(s, ep->qhead)) {
			struct bh_send_job *job = endpoint_pop(s, ep);
			drop(s, "waited too long", job);
			continue;
		}
		enum bh_dest_verdict host = bh_dest_admit(s->dests, ep->dest, bh_mono_ms());
		if (host == BH_DEST_DEAD) {
			struct bh_send_job *job = endpoint_pop(s, ep);
			drop(s, "receiving host dead, backing off", job);
			continue;
		}
		if (host == BH_DEST_WAIT) {
			throttle_add(s, ep); /* woken when its host has room */
			break;
		}
		if (!token_take(ep))
			break;
		struct bh_send_job *job = endpoint_pop(s, ep);
		start(s, ep, job);
	}
	if (ep->queued == 0 || (ep->rate == 0 && ep->in_flight >= ep->max_in_flight))
		throttle_remove(s, ep); /* nothing to wait for but its own transfers */
	endpoint_release(s, ep);
}

/* A slot of ep (and a global one) just freed: hand it to whoever waits. */
static void pump(struct bh_sender *s, struct endpoint *ep)
{
	pump_endpoint(s, ep);
	while (s->queued > 0 && s->in_flight < s->cfg->delivery_max_in_flight) {
		struct bh_send_job *job = queue_pop(&s->qhead, &s->qtail, &s->queued);
		s->queued_total--;
		if (stale(s, job))
			drop(s, "waited too long", job);
		else
			place(s, job);
	}
}

/* Endpoints whose next token came: start their queued jobs. */
static void pump_throttled(struct bh_sender *s)
{
	struct endpoint *ep = s->throttled, *next;
	for (; ep; ep = next) {
		next = ep->tnext; /* pump_endpoint may unlink ep, never another one */
		if (token_wait_ms(ep) == 0)
			pump_endpoint(s, ep);
	}
}

int bh_sender_wake_ms(const struct bh_sender *s)
{
	int best = -1;
	for (const struct endpoint *ep = s->throttled; ep; ep = ep->tnext) {
		/* One at its or its host's cap wakes when a transfer ends, not by time. */
		if (ep->in_flight >= ep->max_in_flight ||
		    s->in_flight >= s->cfg->delivery_max_in_flight ||
		    bh_dest_admit(s->dests, ep->dest, bh_mono_ms()) == BH_DEST_WAIT)
			continue;
		int w = token_wait_ms(ep);
		if (best < 0 || w < best)
			best = w;
	}
	return best;
}

static void finish(struct bh_sender *s, CURL *easy, CURLcode code)
{
	struct transfer *t = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
	long status = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	char error[CURL_ERROR_SIZE + 64];
	const char *err = NULL;
	if (t->refused) {
		err = "connection refused by policy: address not allowed";
	} else if (t->resend_stopped) {
		err = "connection closed with no response after the request was sent "
		      "(on a reused connection; not re-sent)";
	} else if (t->headers_too_big) {
		err = "response headers too large";
	} else if (code != CURLE_OK) {
		snprintf(error, sizeof(error), "%s",
			 t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
		err = error;
	} else if (status < 200 || status > 299) {
		snprintf(error, sizeof(error), "HTTP %ld", status);
		err = error;
	}
	if (code != CURLE_OK)
		status = 0;
	report(s, t, (int)status, err, false);
	/* Refused by our policy: the host was never asked, so it is neither alive nor dead. */
	enum bh_dest_outcome outcome = t->refused			  ? BH_DEST_LOCAL
				       : status > 0 || t->headers_too_big ? BH_DEST_ANSWERED
									  : BH_DEST_FAILED;
	bh_dest_finished(s->dests, t->dest, outcome, bh_mono_ms());
	struct endpoint *ep = t->ep;
	/* A timeout is no sign of progress: the receiver stays slow. */
	if (code != CURLE_OPERATION_TIMEDOUT)
		progress(ep, bh_mono_ms());
	ep->in_flight--;
	s->in_flight--;
	transfer_free(s, t);
	pump(s, ep);
}

/* Reports every transfer that ended; their slots go to waiting jobs. */
static void collect(struct bh_sender *s)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
		if (msg->msg == CURLMSG_DONE)
			finish(s, msg->easy_handle, msg->data.result);
	}
}

void bh_sender_run(struct bh_sender *s, int timeout_ms, int wake_fd)
{
	int running = 0;
	pump_throttled(s);
	curl_multi_perform(s->multi, &running);
	collect(s);
	if (timeout_ms > 0) {
		/* Wake for the next token too; curl_multi_poll waits even with no transfer. */
		int wake = bh_sender_wake_ms(s);
		int wait = wake >= 0 && wake < timeout_ms ? wake : timeout_ms;
		struct curl_waitfd extra = {.fd = wake_fd, .events = CURL_WAIT_POLLIN};
		if (wait > 0)
			curl_multi_poll(s->multi, wake_fd >= 0 ? &extra : NULL,
					wake_fd >= 0 ? 1 : 0, wait, NULL);
		pump_throttled(s);
		curl_multi_perform(s->multi, &running);
		collect(s);
	}
}

int bh_sender_queued(const struct bh_sender *s)
{
	return s->queued_total;
}

bool bh_sender_congested(const struct bh_sender *s)
{
	/* No queue can be past the mark unless they hold that much together. */
	if (s->queued_total < ENDPOINT_QUEUE_HIGH)
		return false;
	int64_t now = bh_mono_ms();
	for (int i = 0; i < ENDPOINT_BUCKETS; i++)
		for (const struct endpoint *ep = s->buckets[i]; ep; ep = ep->next)
			if (ep->queued >= ENDPOINT_QUEUE_HIGH && !endpoint_slow(s, ep, now))
				return true;
	return false;
}

int bh_sender_in_flight(const struct bh_sender *s)
{
	return s->in_flight;
}

bool bh_sender_holds(const struct bh_sender *s, const char *delivery_id)
{
	for (const struct held *e = s->held[hash_str(delivery_id) % HELD_BUCKETS]; e; e = e->next)
		if (strcmp(e->id, delivery_id) == 0)
			return true;
	return false;
}

struct bh_sender *bh_sender_new(const struct bh_config *cfg, bh_sender_done_fn done, void *arg,
				char *errbuf, size_t errlen)
{
	struct bh_sender *s = bh_xcalloc(1, sizeof(*s));
	s->cfg = cfg;
	s->done = done;
	s->arg = arg;
	s->idle = bh_xcalloc(
		(size_t)(cfg->delivery_max_in_flight > 0 ? cfg->delivery_max_in_flight : 1),
		sizeof(*s->idle));
	s->multi = curl_multi_init();
	if (s->multi == NULL) {
		free(s->idle);
		snprintf(errbuf, errlen, "curl: cannot create a multi handle");
		free(s);
		return NULL;
	}
	/* Keep a warm connection per busy receiver so keep-alive pays off. */
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)cfg->delivery_max_in_flight);
	struct bh_dest_limits lim = {
		.global_max = cfg->delivery_max_in_flight,
		.host_max = cfg->delivery_max_in_flight_per_host,
		.dead_after = cfg->delivery_host_dead_after,
		.backoff_ms = cfg->delivery_host_backoff_s * 1000,
		.backoff_max_ms = cfg->delivery_host_backoff_max_s * 1000,
		.stall_ms = SLOW_STALL_MS,
		.drain_ms = SLOW_DRAIN_MS,
	};
	s->dests = bh_dest_table_new(&lim);
	return s;
}

void bh_sender_drop_queued(struct bh_sender *s)
{
	struct bh_send_job *job;
	while ((job = queue_pop(&s->qhead, &s->qtail, &s->queued)) != NULL) {
		held_remove(s, job->delivery_id);
		bh_send_job_free(job);
	}
	for (int i = 0; i < ENDPOINT_BUCKETS; i++) {
		struct endpoint **pp = &s->buckets[i];
		while (*pp) {
			struct endpoint *ep = *pp;
			bh_dest_queued(ep->dest, -ep->queued);
			while ((job = queue_pop(&ep->qhead, &ep->qtail, &ep->queued)) != NULL) {
				held_remove(s, job->delivery_id);
				bh_send_job_free(job);
			}
			throttle_remove(s, ep);
			if (ep->in_flight == 0) {
				*pp = ep->next;
				endpoint_destroy(s, ep);
			} else {
				pp = &ep->next;
			}
		}
	}
	s->queued_total = 0;
}

void bh_sender_free(struct bh_sender *s)
{
	if (s == NULL)
		return;
	bh_sender_drop_queued(s);
	/* Transfers still running are abandoned: their leases bring them back. */
	while (s->running)
		transfer_free(s, s->running);
	while (s->nidle > 0)
		curl_easy_cleanup(s->idle[--s->nidle]);
	free(s->idle);
	for (int i = 0; i < ENDPOINT_BUCKETS; i++) {
		while (s->buckets[i]) {
			struct endpoint *ep = s->buckets[i];
			s->buckets[i] = ep->next;
			endpoint_destroy(s, ep);
		}
	}
	bh_dest_table_free(s->dests);
	for (int i = 0; i < HELD_BUCKETS; i++) {
		while (s->held[i]) {
			struct held *e = s->held[i];
			s->held[i] = e->next;
			free(e);
		}
	}
	curl_multi_cleanup(s->multi);
	free(s);
}
