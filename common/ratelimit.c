#include "ratelimit.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* How many slots from a key's home slot may hold it. */
#define PROBE 8

struct slot {
	unsigned char digest[SHA256_DIGEST_LENGTH];
	bool used;
	double tokens;
	int64_t last_ms; /* last refill, also "last seen" for eviction */
	int failures;	 /* consecutive, for the back-off */
	int64_t last_fail_ms;
	int64_t blocked_until_ms;
};

struct bh_ratelimit {
	pthread_mutex_t lock;
	double rate_per_ms;
	double burst;
	int n_slots;
	struct slot *slots;
};

struct bh_ratelimit *bh_ratelimit_new(int rate_per_s, int burst, int slots)
{
	struct bh_ratelimit *rl = bh_xcalloc(1, sizeof(*rl));
	pthread_mutex_init(&rl->lock, NULL);
	rl->rate_per_ms = rate_per_s / 1000.0;
	rl->burst = burst;
	rl->n_slots = slots;
	rl->slots = bh_xcalloc((size_t)slots, sizeof(struct slot));
	return rl;
}

void bh_ratelimit_free(struct bh_ratelimit *rl)
{
	if (rl == NULL)
		return;
	pthread_mutex_destroy(&rl->lock);
	free(rl->slots);
	free(rl);
}

/* The key's slot: its own, else a free one, else the least recently seen near it. */
static struct slot *slot_for(struct bh_ratelimit *rl, const unsigned char *digest)
{
	uint64_t h;
	memcpy(&h, digest, sizeof(h));
	struct slot *victim = NULL;
	for (int i = 0; i < PROBE && i < rl->n_slots; i++) {
		struct slot *s = &rl->slots[(h + (uint64_t)i) % (uint64_t)rl->n_slots];
		if (s->used && memcmp(s->digest, digest, sizeof(s->digest)) == 0)
			return s;
		if (victim == NULL || (victim->used && (!s->used || s->last_ms < victim->last_ms)))
			victim = s;
	}
	/* A fresh bucket is full: an evicted key that comes back starts full too. */
	memcpy(victim->digest, digest, sizeof(victim->digest));
	victim->used = true;
	victim->tokens = rl->burst;
	victim->last_ms = -1;
	victim->failures = 0;
	victim->blocked_until_ms = 0;
	return victim;
}

static struct slot *slot_for_key(struct bh_ratelimit *rl, const char *key)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)key, strlen(key), digest);
	return slot_for(rl, digest);
}

/* Whole seconds (>= 1) for a wait of ms > 0. */
static int wait_seconds(double ms)
{
	int s = (int)((ms + 999.0) / 1000.0);
	return s < 1 ? 1 : s;
}

int bh_ratelimit_take(struct bh_ratelimit *rl, const char *key, int64_t now_ms)
{
	pthread_mutex_lock(&rl->lock);
	struct slot *s = slot_for_key(rl, key);
	if (s->last_ms >= 0 && now_ms > s->last_ms) {
		s->tokens += (double)(now_ms - s->last_ms) * rl->rate_per_ms;
		if (s->tokens > rl->burst)
			s->tokens = rl->burst;
	}
	if (s->last_ms < now_ms)
		s->last_ms = now_ms;
	int wait_s = 0;
	if (s->tokens >= 1.0) {
		s->tokens -= 1.0;
	} else {
		wait_s = wait_seconds((1.0 - s->tokens) / rl->rate_per_ms);
	}
	pthread_mutex_unlock(&rl->lock);
	return wait_s;
}

int bh_ratelimit_blocked(struct bh_ratelimit *rl, const char *key, int64_t now_ms)
{
	pthread_mutex_lock(&rl->lock);
	struct slot *s = slot_for_key(rl, key);
	int wait_s = 0;
	if (s->blocked_until_ms > now_ms)
		wait_s = wait_seconds((double)(s->blocked_until_ms - now_ms));
	pthread_mutex_unlock(&rl->lock);
	return wait_s;
}

int bh_ratelimit_fail(struct bh_ratelimit *rl, const char *key, int free_failures, int max_s,
		      int64_t now_ms)
{
	int64_t max_ms = (int64_t)max_s * 1000;
	pthread_mutex_lock(&rl->lock);
	struct slot *s = slot_for_key(rl, key);
	int wait_s = 0;
	/* Failures a whole maximum back-off apart are not consecutive any more. */
	if (s->failures > 0 && now_ms - s->last_fail_ms > max_ms)
		s->failures = 0;
	s->failures++;
	s->last_fail_ms = now_ms;
	if (s->failures <= free_failures)
		goto out;
	/* 1 s after the first failure over the allowance, doubling each time, capped */
	int over = s->failures - free_failures - 1;
	int64_t ms = over >= 30 ? max_ms : (int64_t)1000 << over;
	if (ms > max_ms)
		ms = max_ms;
	s->blocked_until_ms = now_ms + ms;
	wait_s = wait_seconds((double)ms);
out:
	pthread_mutex_unlock(&rl->lock);
	return wait_s;
}

void bh_ratelimit_succeed(struct bh_ratelimit *rl, const char *key)
{
	pthread_mutex_lock(&rl->lock);
	struct slot *s = slot_for_key(rl, key);
	s->failures = 0;
	s->blocked_until_ms = 0;
	pthread_mutex_unlock(&rl->lock);
}
