/*
 * Per-destination concurrency with feedback, and dead destinations backed
 * off (the contract is in destination.h). A destination lives in a small
 * hash table while an endpoint or a transfer refers to it, or while it has
 * failures to remember: a dead host that nobody currently sends to must
 * still be dead when its next delivery comes back from PostgreSQL.
 */
#include "destination.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEST_BUCKETS 1024

struct bh_dest {
	struct bh_dest *next; /* in its bucket */
	int refs;
	int in_flight;
	int window;	     /* transfers it may have running, 1 .. host_max */
	int fails;	     /* transfers in a row that got no answer */
	int64_t dead_until;  /* monotonic ms; 0: alive */
	int backoff_ms;	     /* the next dead period */
	int64_t progress_ms; /* last answer, or when the first running transfer started */
	int64_t failed_ms;   /* last failure */
	int queued;	     /* jobs for it waiting in the sender */
	struct bh_pace pace; /* of its answers */
	char key[];
};

struct bh_dest_table {
	struct bh_dest_limits lim;
	struct bh_dest *buckets[DEST_BUCKETS];
	int in_flight;	   /* over every destination */
	int hosts_running; /* destinations with in_flight > 0 */
	int count;
};

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

static int max_int(int a, int b)
{
	return a > b ? a : b;
}

void bh_pace_tick(struct bh_pace *p, int64_t now_ms)
{
	if (p->window_ms == 0)
		p->window_ms = now_ms;
	p->done++;
	if (now_ms - p->window_ms >= 1000) {
		double pace = p->done * 1000.0 / (double)(now_ms - p->window_ms);
		p->per_s = p->per_s < 0 ? pace : (p->per_s + pace) / 2;
		p->window_ms = now_ms;
		p->done = 0;
	}
}

bool bh_pace_behind(const struct bh_pace *p, int n, int drain_ms)
{
	return p->per_s >= 0 && n > p->per_s * drain_ms / 1000.0;
}

int bh_dest_key(const char *url, char *key, size_t keylen)
{
	const char *sep = strstr(url, "://");
	if (sep == NULL || sep == url)
		return -1;
	char scheme[16];
	size_t slen = (size_t)(sep - url);
	if (slen >= sizeof(scheme))
		return -1;
	for (size_t i = 0; i < slen; i++)
		scheme[i] = (char)tolower((unsigned char)url[i]);
	scheme[slen] = '\0';

	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	/* Registration refuses user:password; skip one anyway, it names no host. */
	const char *at = memchr(auth, '@', alen);
	if (at) {
		alen -= (size_t)(at + 1 - auth);
		auth = at + 1;
	}
	size_t hlen;
	const char *port_text = NULL;
	if (alen > 0 && auth[0] == '[') {
		const char *close = memchr(auth, ']', alen);
		if (close == NULL)
			return -1;
		hlen = (size_t)(close - auth) + 1;
		if (hlen < alen) {
			if (auth[hlen] != ':')
				return -1;
			port_text = auth + hlen + 1;
		}
	} else {
		const char *colon = memchr(auth, ':', alen);
		hlen = colon ? (size_t)(colon - auth) : alen;
		if (colon)
			port_text = colon + 1;
	}
	if (hlen == 0)
		return -1;
	long port = strcmp(scheme, "https") == 0 ? 443 : strcmp(scheme, "http") == 0 ? 80 : 0;
	if (port_text && port_text < auth + alen) {
		port = 0;
		for (const char *p = port_text; p < auth + alen; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			port = port * 10 + (*p - '0');
			if (port > 65535)
				return -1;
		}
	}
	/* A trailing dot names the same host. */
	if (hlen > 1 && auth[hlen - 1] == '.' && auth[0] != '[')
		hlen--;
	int n = snprintf(key, keylen, "%s://%.*s:%ld", scheme, (int)hlen, auth, port);
	if (n < 0 || (size_t)n >= keylen)
		return -1;
	for (char *p = key + slen + 3; *p && p < key + slen + 3 + hlen; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

struct bh_dest_table *bh_dest_table_new(const struct bh_dest_limits *lim)
{
	struct bh_dest_table *t = bh_xcalloc(1, sizeof(*t));
	t->lim = *lim;
	t->lim.global_max = max_int(t->lim.global_max, 1);
	t->lim.host_max = max_int(t->lim.host_max, 1);
	t->lim.dead_after = max_int(t->lim.dead_after, 1);
	t->lim.backoff_ms = max_int(t->lim.backoff_ms, 1);
	t->lim.backoff_max_ms = max_int(t->lim.backoff_max_ms, t->lim.backoff_ms);
	return t;
}

void bh_dest_table_free(struct bh_dest_table *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < DEST_BUCKETS; i++) {
		while (t->buckets[i]) {
			struct bh_dest *d = t->buckets[i];
			t->buckets[i] = d->next;
			free(d);
		}
	}
	free(t);
}

static unsigned hash_key(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % DEST_BUCKETS;
}

/* Nothing refers to d and it has nothing worth remembering. */
static bool forgettable(const struct bh_dest_table *t, const struct bh_dest *d, int64_t now)
{
	if (d->refs > 0 || d->in_flight > 0 || d->queued > 0)
		return false;
	if (d->fails == 0)
		return true;
	/* A failing host is remembered for a maximal back-off past its last failure. */
	return d->dead_until <= now && now - d->failed_ms > t->lim.backoff_max_ms;
}

struct bh_dest *bh_dest_get(struct bh_dest_table *t, const char *key, int64_t now_ms)
{
	struct bh_dest **pp = &t->buckets[hash_key(key)];
	while (*pp) {
		struct bh_dest *d = *pp;
		/* Lazy sweep: failing hosts nobody sent to for long go here (key's too). */
		if (forgettable(t, d, now_ms)) {
			*pp = d->next;
			t->count--;
			free(d);
			continue;
		}
		if (strcmp(d->key, key) == 0) {
			d->refs++;
			return d;
		}
		pp = &d->next;
	}
	size_t n = strlen(key) + 1;
	struct bh_dest *d = bh_xcalloc(1, sizeof(*d) + n);
	memcpy(d->key, key, n);
	d->refs = 1;
	d->window = min_int(BH_DEST_INITIAL_WINDOW, t->lim.host_max);
	d->backoff_ms = t->lim.backoff_ms;
	d->pace.per_s = -1;
	unsigned h = hash_key(key);
	d->next = t->buckets[h];
	t->buckets[h] = d;
	t->count++;
	return d;
}

struct bh_dest *bh_dest_hold(struct bh_dest *d)
{
	d->refs++;
	return d;
}

void bh_dest_put(struct bh_dest_table *t, struct bh_dest *d, int64_t now_ms)
{
	if (d == NULL)
		return;
	d->refs--;
	if (!forgettable(t, d, now_ms))
		return;
	struct bh_dest **pp = &t->buckets[hash_key(d->key)];
	while (*pp && *pp != d)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = d->next;
		t->count--;
		free(d);
	}
}

enum bh_dest_verdict bh_dest_admit(const struct bh_dest_table *t, const struct bh_dest *d,
				   int64_t now_ms)
{
	if (d->dead_until > now_ms)
		return BH_DEST_DEAD;
	if (d->in_flight >= d->window)
		return BH_DEST_WAIT;
	/* It stopped answering: no more until one answers (or it is dead). */
	if (d->in_flight > 0 && now_ms - d->progress_ms > t->lim.stall_ms)
		return BH_DEST_WAIT;
	int global = t->lim.global_max;
	if (t->in_flight >= global)
		return BH_DEST_WAIT;
	/* Past a newcomer's share, leave that share free for one. */
	int newcomer = max_int(global / (t->hosts_running + 1), 1);
	if (d->in_flight >= newcomer && global - t->in_flight <= newcomer)
		return BH_DEST_WAIT;
	return BH_DEST_GO;
}

void bh_dest_started(struct bh_dest_table *t, struct bh_dest *d, int64_t now_ms)
{
	if (d->in_flight == 0) {
		t->hosts_running++;
		d->progress_ms = now_ms; /* the stall clock starts now */
	}
	d->in_flight++;
	t->in_flight++;
}

void bh_dest_finished(struct bh_dest_table *t, struct bh_dest *d, enum bh_dest_outcome outcome,
		      int64_t now_ms)
{
	d->in_flight--;
	t->in_flight--;
	if (d->in_flight == 0)
		t->hosts_running--;
	switch (outcome) {
	case BH_DEST_ANSWERED:
		bh_pace_tick(&d->pace, now_ms);
		d->progress_ms = now_ms;
		d->fails = 0;
		d->dead_until = 0;
		d->backoff_ms = t->lim.backoff_ms;
		d->window = min_int(d->window + 1, t->lim.host_max);
		break;
	case BH_DEST_FAILED:
		d->fails++;
		d->failed_ms = now_ms;
		d->window = max_int(d->window / 2, 1);
		/* Transfers that were running when it died do not kill it again. */
		if (d->fails >= t->lim.dead_after && d->dead_until <= now_ms) {
			d->dead_until = now_ms + d->backoff_ms;
			d->backoff_ms = min_int(d->backoff_ms * 2, t->lim.backoff_max_ms);
			d->window = 1; /* the probe when the back-off ends */
		}
		break;
	case BH_DEST_LOCAL:
		break;
	}
}

bool bh_dest_stalled(const struct bh_dest_table *t, const struct bh_dest *d, int64_t now_ms)
{
	if (d->dead_until > now_ms)
		return true;
	return d->in_flight > 0 && now_ms - d->progress_ms > t->lim.stall_ms;
}

void bh_dest_queued(struct bh_dest *d, int delta)
{
	d->queued += delta;
}

bool bh_dest_slow(const struct bh_dest_table *t, const struct bh_dest *d, int64_t now_ms)
{
	if (bh_dest_stalled(t, d, now_ms))
		return true;
	/* Below its window, the worker's slots or CPU set its pace, not the host. */
	if (d->in_flight < d->window)
		return false;
	/*
	 * At its window, its pace would grow with the window up to the cap:
	 * judged at the cap, so a host warming up is not called slow.
	 */
	int at_cap = (int)((int64_t)d->queued * d->window / t->lim.host_max);
	return bh_pace_behind(&d->pace, at_cap, t->lim.drain_ms);
}

const char *bh_dest_name(const struct bh_dest *d)
{
	return d->key;
}

int bh_dest_window(const struct bh_dest *d)
{
	return d->window;
}

int bh_dest_in_flight(const struct bh_dest *d)
{
	return d->in_flight;
}

int bh_dest_total_in_flight(const struct bh_dest_table *t)
{
	return t->in_flight;
}

int bh_dest_hosts_running(const struct bh_dest_table *t)
{
	return t->hosts_running;
}

int64_t bh_dest_dead_until(const struct bh_dest *d)
{
	return d->dead_until;
}

int bh_dest_count(const struct bh_dest_table *t)
{
	return t->count;
}
