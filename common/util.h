/*
 * Small helpers every bankhook module uses: allocation that aborts on
 * failure, a growable buffer with a hard cap, time and random values.
 */
#ifndef BH_COMMON_UTIL_H
#define BH_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define BH_VERSION "0.1.0"
#define BH_MUSTCHECK __attribute__((warn_unused_result))
#define BH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation failure is not recoverable in a server: these abort. */
void *bh_xmalloc(size_t n);
void *bh_xcalloc(size_t n, size_t size);
void *bh_xrealloc(void *p, size_t n);
char *bh_xstrdup(const char *s);
char *bh_xstrndup(const char *s, size_t n);
char *bh_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A byte buffer that refuses to grow past `cap`: every buffer fed from
 * outside (request bodies, response snippets) is one of these.
 * `data` is always NUL-terminated.
 */
struct bh_buf {
	char *data;
	size_t len;
	size_t alloc;
	size_t cap;
	bool too_big; /* an append was refused because of cap */
};

void bh_buf_init(struct bh_buf *b, size_t cap);
/* Returns 0, or -1 (and sets too_big) when the cap would be exceeded. */
int bh_buf_append(struct bh_buf *b, const void *p, size_t n);
int bh_buf_appendf(struct bh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bh_buf_reset(struct bh_buf *b);
void bh_buf_free(struct bh_buf *b);

/* Wall clock in milliseconds / microseconds since the epoch. */
int64_t bh_now_ms(void);
int64_t bh_now_us(void);
/* Monotonic clock in milliseconds. */
int64_t bh_mono_ms(void);
/*
 * The monotonic time timeout_ms from now, for pthread_cond_timedwait on a
 * condition whose clock is CLOCK_MONOTONIC (a wall-clock step cannot stall it).
 */
struct timespec bh_mono_deadline(int timeout_ms);

/* Cryptographically strong random bytes; aborts if the system has none. */
void bh_random_bytes(void *out, size_t n);
/* A random RFC 4122 version 4 UUID, 36 characters + NUL. */
void bh_uuid4(char out[37]);
/* True for a canonical 8-4-4-4-12 hex UUID. */
bool bh_is_uuid(const char *s);
/* Uniform in [lo, hi]. */
double bh_random_uniform(double lo, double hi);

/* Parses a whole decimal integer in [min, max]; 0 or -1. */
int bh_parse_int(const char *s, long long min, long long max, long long *out) BH_MUSTCHECK;

/*
 * The times bankhook accepts, in UNIX ms: 0001-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z. Within PostgreSQL's timestamptz range, and
 * four-digit years, which every renderer and receiver formats.
 */
#define BH_TIME_MIN_MS (-62135596800000LL)
#define BH_TIME_MAX_MS (253402300799999LL)

/* Formats a UNIX time in ms as RFC 3339 UTC with milliseconds (four-digit year). */
void bh_format_time(int64_t ms, char out[32]);
/*
 * Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)" to ms; 0,
 * or -1 when malformed, not a calendar date or time (2026-02-30, 24:00,
 * :60 are refused, never normalised), or outside BH_TIME_MIN_MS ..
 * BH_TIME_MAX_MS once converted to UTC.
 */
int bh_parse_time(const char *s, int64_t *ms) BH_MUSTCHECK;

/*
 * Makes s valid UTF-8 in place: every byte that does not start a complete,
 * well-formed sequence (a stray byte, a sequence cut by a "%.40s", an
 * overlong form, a surrogate) becomes '?'. Text quoting request input goes
 * through it before it reaches a JSON string, which must be UTF-8.
 */
void bh_utf8_fix(char *s);
/* Whether s is entirely well-formed UTF-8 (the same rules as bh_utf8_fix). */
bool bh_utf8_valid(const char *s);

#endif
