/*
 * Token buckets keyed by an opaque string (the api keys them by bearer
 * token): `rate` tokens a second refill a bucket of `burst`; a request
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

#endif
