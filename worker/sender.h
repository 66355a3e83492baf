/*
 * The worker's HTTP client: many deliveries in flight on one thread over
 * the libcurl multi interface, with a global cap and a per-subscription cap
 * so one slow receiver cannot hold everyone's slots. Jobs over a cap wait
 * in a local queue; past that queue's bound, or once they waited half a
 * lease, or beyond a few when the receiver is slow (it stopped answering,
 * or its queue would take more than 10 s at its pace), they are dropped
 * and stay 'pending' in PostgreSQL, where the scheduler hands them out
 * again when the lease runs out. A receiver that keeps up is not dropped
 * from: bh_sender_congested tells the caller to stop reading instead.
 *
 * Per subscription the sender also keeps a token bucket when the job says
 * rate_limit_per_s (jobs over the rate wait in that subscription's queue,
 * as long as the wait stays under half a lease, and are left to the
 * scheduler beyond that), and for an ordered subscription it runs one job
 * at a time and never queues a second one behind it: what comes next
 * depends on how the running one ends, which only PostgreSQL knows.
 * Rate limits are per worker process.
 *
 * Every start is also asked of the job's receiving host (scheme, host,
 * port; worker/destination.h): its concurrency window, learnt from how it
 * answers, and its fair share of the global slots. A job over those waits
 * in its subscription's queue as above; a job for a host marked dead is
 * dropped at once, to wait in PostgreSQL for its lease, so fifty
 * subscriptions at one dead host hold one window of slots, not all of them.
 */
#ifndef BH_WORKER_SENDER_H
#define BH_WORKER_SENDER_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

/* One request to send; every field is owned by the job. */
struct bh_send_job {
	char *delivery_id;
	char *subscription_id;
	char *event_id;
	char *url;
	char *method;
	char *secret;
	char *previous_secret;      /* NULL unless rotating */
	struct curl_slist *headers; /* Content-Type and what the kind adds */
	struct curl_slist *custom;  /* the subscription's own, sent last */
	char *body;
	size_t body_len;
	bool ordered;         /* at most one of its subscription in flight, no queue */
	int rate_limit_per_s; /* of its subscription; 0: none */
	int64_t queued_ms; /* monotonic, set by bh_sender_submit */
	struct bh_send_job *next;
};

/* How one transfer ended; pointers are valid during the callback only. */
struct bh_send_result {
	const struct bh_send_job *job;
	int64_t started_ms; /* wall clock */
	int duration_ms;
	int http_status;      /* 0 without a response */
	const char *error;    /* NULL for a 2xx */
	const char *response; /* first 1 KiB of the body, or NULL */
	bool permanent;       /* cannot succeed on retry (bad secret) */
	int retry_after_s;    /* Retry-After of a 429/503 answer, seconds; 0: none */
};

typedef void (*bh_sender_done_fn)(const struct bh_send_result *r, void *arg);

struct bh_sender;

/* NULL with the reason in errbuf. done is called from bh_sender_run. */
struct bh_sender *bh_sender_new(const struct bh_config *cfg, bh_sender_done_fn done, void *arg,
				char *errbuf, size_t errlen);
/* Takes ownership of job: starts it, queues it, or drops it (see above). */
void bh_sender_submit(struct bh_sender *s, struct bh_send_job *job);
/*
 * Drives transfers, reporting each finished one. With timeout_ms > 0 it
 * first waits that long at most for a socket, a rate-limit token or
 * wake_fd (-1: none) to become readable; the caller drains wake_fd.
 */
void bh_sender_run(struct bh_sender *s, int timeout_ms, int wake_fd);
int bh_sender_in_flight(const struct bh_sender *s);
/* Jobs waiting here for a slot or a token, over every subscription. */
int bh_sender_queued(const struct bh_sender *s);
/*
 * True while a subscription that keeps up holds a long queue: the caller
 * stops reading Kafka until it shrinks, rather than have its jobs dropped
 * to wait for the lease. A slow subscription never congests (its jobs past
 * a few are left to PostgreSQL instead).
 */
bool bh_sender_congested(const struct bh_sender *s);
/*
 * Milliseconds until a job held back by a rate limit may start (0: now),
 * or -1 when none waits: the caller's poll timeout, so nothing busy-loops.
 */
int bh_sender_wake_ms(const struct bh_sender *s);
/*
 * True when this delivery is running or waiting here already: a job the
 * scheduler re-sent because a slow transfer outlived its lease is skipped.
 */
bool bh_sender_holds(const struct bh_sender *s, const char *delivery_id);
/* Drops every queued job (they stay pending in PostgreSQL). */
void bh_sender_drop_queued(struct bh_sender *s);
/* Aborts transfers still running (unreported) and frees everything. */
void bh_sender_free(struct bh_sender *s);

struct bh_send_job *bh_send_job_new(void);
void bh_send_job_free(struct bh_send_job *job);

#endif
