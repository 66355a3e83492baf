/*
 * Token buckets keyed by an opaque string (the api keys them by bearer
 * token, by client, and for logins by username and source address): `rate` tokens a second refill a bucket of `burst`; a request
 * takes one. A fixed number of slots bounds memory however many keys are
 * seen: a new key takes the slot of the key seen least recently among a
 * few neighbours. Keys are stored as SHA-256 digests, never in clear.
 * Thread-safe.
 */
#ifndef BH_COMMON_RATELIMIT_H
#define BH_COMMON_RATELIMIT_H

#include <stdint.h>

struct bh_ratelimit;

/* rate > 0 and burst >= 1; slots >= 1. */
struct bh_ratelimit *bh_ratelimit_new(int rate_per_s, int burst, int slots);
void bh_ratelimit_free(struct bh_ratelimit *rl);

/*
 * Takes one token from key's bucket at time now_ms (a monotonic clock).
 * 0 when taken; otherwise the whole seconds (>= 1) until one is available,
 * for a Retry-After header.
 */
int bh_ratelimit_take(struct bh_ratelimit *rl, const char *key, int64_t now_ms);

/*
 * Exponential back-off on consecutive failures, in the same slots (the
 * api's login throttle). bh_ratelimit_fail counts a failure of key: the
 * first free_failures cost nothing; each one after blocks the key for
 * 1 s, 2 s, 4 s, ... up to max_s (>= 1). Failures more than max_s apart
 * start the count again. Returns the seconds key is now blocked (0: none).
 */
int bh_ratelimit_fail(struct bh_ratelimit *rl, const char *key, int free_failures, int max_s,
		      int64_t now_ms);
/* 0 when key is not blocked at now_ms, else the whole seconds (>= 1) left. */
int bh_ratelimit_blocked(struct bh_ratelimit *rl, const char *key, int64_t now_ms);
/* A success: key's failures are forgotten and any block lifted. */
void bh_ratelimit_succeed(struct bh_ratelimit *rl, const char *key);

#endif
