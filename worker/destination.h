/*
 * Per-destination queue state: how many transfers one receiving host
 * (scheme, host, port) may have running, learnt from how it answers, after
 * Postfix's qmgr_queue.c and qmgr_feedback.c. Pure policy: no libcurl, no
 * I/O, the clock passed in; worker/sender.c asks it before every start and
 * tells it how every transfer ended.
 *
 * Each destination has a concurrency window. It starts at
 * BH_DEST_INITIAL_WINDOW, grows by one for every answer (any HTTP status:
 * the host is alive, whatever it thinks of the request) up to the per-host
 * cap, and halves on every transfer that got no answer (timeout, refused or
 * reset connection), never below one. After dead_after such failures in a
 * row the destination is dead for a back-off: its deliveries are not
 * started, nor held here, but left pending in PostgreSQL. When the back-off
 * ends one probe may run (window 1); an answer revives the destination, a
 * failure kills it again for twice the back-off (capped). A host with
 * transfers running and none answered for stall_ms gets no new transfer
 * until one answers: one busy a moment ago may have a wide window, and a
 * sudden silence must not fill it.
 *
 * The global slots are shared fairly among hosts: a host may always have
 * a newcomer's share running (global / (hosts running + 1)), and more than
 * that only while more than that share stays free, so a host that starts
 * sending later always finds room. Alone, a host gets at most half the
 * slots; with n hosts running, together at most n / (n + 1) of them.
 */
#ifndef BH_WORKER_DESTINATION_H
#define BH_WORKER_DESTINATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define BH_DEST_INITIAL_WINDOW 10
/* "https://" + a host of at most 253 characters (or a bracketed IPv6) + ":65535" */
#define BH_DEST_KEY_MAX 280

/*
 * Transfers ended per second, over one-second windows, smoothed: a
 * receiver's pace. Zero-initialise, then set per_s to -1 (not known yet).
 */
struct bh_pace {
	int64_t window_ms; /* start of the current window; 0: none yet */
	int done;	   /* ended in it */
	double per_s;	   /* of the last complete windows, smoothed; < 0: not known */
};

/* One transfer ended at now_ms. */
void bh_pace_tick(struct bh_pace *p, int64_t now_ms);
/* True when n jobs would take more than drain_ms at this pace (false while unknown). */
bool bh_pace_behind(const struct bh_pace *p, int n, int drain_ms);

struct bh_dest_limits {
	int global_max;	    /* delivery.max_in_flight */
	int host_max;	    /* delivery.max_in_flight_per_host */
	int dead_after;	    /* consecutive failures that mark a host dead */
	int backoff_ms;	    /* the first dead period */
	int backoff_max_ms; /* dead periods double up to this */
	int stall_ms;	    /* running and unanswered this long: stalled */
	int drain_ms;	    /* a backlog longer than this at the host's pace: slow */
};

enum bh_dest_verdict {
	BH_DEST_GO,   /* start it now */
	BH_DEST_WAIT, /* at the host's window, its share or the global cap: a slot will free */
	BH_DEST_DEAD, /* backing off: leave it to PostgreSQL */
};

enum bh_dest_outcome {
	BH_DEST_ANSWERED, /* a response came, whatever its status */
	BH_DEST_FAILED,	  /* no response: timeout, refused, reset */
	BH_DEST_LOCAL,	  /* ended here without reaching the host (policy, signing): no feedback */
};

struct bh_dest_table;
struct bh_dest;

/*
 * Writes the destination key of url ("http://host:port", scheme and host
 * lower-cased, the scheme's port when none is given) into key. 0, or -1
 * when url has no scheme and host or the key would exceed keylen.
 */
int bh_dest_key(const char *url, char *key, size_t keylen) BH_MUSTCHECK;

/* The limits are copied. */
struct bh_dest_table *bh_dest_table_new(const struct bh_dest_limits *lim);
/* Frees every destination, referenced or not. */
void bh_dest_table_free(struct bh_dest_table *t);

/* The destination of key, created if unknown, with one more reference. */
struct bh_dest *bh_dest_get(struct bh_dest_table *t, const char *key, int64_t now_ms);
/* One more reference to d (for a transfer that outlives its endpoint's). */
struct bh_dest *bh_dest_hold(struct bh_dest *d);
/*
 * Drops a reference. A destination nobody references, with nothing running
 * and no failure to remember, is forgotten; a failing or dead one is kept
 * until a maximal back-off after its last failure.
 */
void bh_dest_put(struct bh_dest_table *t, struct bh_dest *d, int64_t now_ms);

/* May one more transfer to d start now? */
enum bh_dest_verdict bh_dest_admit(const struct bh_dest_table *t, const struct bh_dest *d,
				   int64_t now_ms);
/* A transfer to d started (after BH_DEST_GO). */
void bh_dest_started(struct bh_dest_table *t, struct bh_dest *d, int64_t now_ms);
/* A transfer to d ended so: the feedback. */
void bh_dest_finished(struct bh_dest_table *t, struct bh_dest *d, enum bh_dest_outcome outcome,
		      int64_t now_ms);

/* True while d is dead, or has transfers running and none answered for stall_ms. */
bool bh_dest_stalled(const struct bh_dest_table *t, const struct bh_dest *d, int64_t now_ms);
/*
 * Jobs for d waiting in the sender's queues went up or down by delta: its
 * backlog, which bh_dest_slow weighs against its pace.
 */
void bh_dest_queued(struct bh_dest *d, int delta);
/*
 * Stalled, or running at its window with a backlog that would take more
 * than drain_ms at the pace it answers (scaled to what that pace would be
 * at the per-host cap: a window still growing is not the host's fault).
 * The sender then keeps only a few of its jobs and leaves the rest to
 * PostgreSQL, rather than stop reading for everyone.
 */
bool bh_dest_slow(const struct bh_dest_table *t, const struct bh_dest *d, int64_t now_ms);

/* For tests and metrics. */
const char *bh_dest_name(const struct bh_dest *d);
int bh_dest_window(const struct bh_dest *d);
int bh_dest_in_flight(const struct bh_dest *d);
int bh_dest_total_in_flight(const struct bh_dest_table *t);
int bh_dest_hosts_running(const struct bh_dest_table *t);
/* Monotonic ms until which d is dead; 0 when it is not. */
int64_t bh_dest_dead_until(const struct bh_dest *d);
/* Destinations remembered. */
int bh_dest_count(const struct bh_dest_table *t);

#endif
