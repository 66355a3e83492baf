#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void out_of_memory(size_t n)
{
	fprintf(stderr, "bankhook: out of memory allocating %zu bytes\n", n);
	abort();
}

void *bh_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		out_of_memory(n);
	return p;
}

void *bh_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		out_of_memory(n * size);
	return p;
}

void *bh_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		out_of_memory(n);
	return q;
}

char *bh_xstrdup(const char *s)
{
	return bh_xstrndup(s, strlen(s));
}

char *bh_xstrndup(const char *s, size_t n)
{
	char *p = bh_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *bh_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory(0);
	return s;
}

void bh_buf_init(struct bh_buf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
}

static int buf_reserve(struct bh_buf *b, size_t extra)
{
	if (b->len + extra > b->cap) {
		b->too_big = true;
		return -1;
	}
	if (b->len + extra + 1 > b->alloc) {
		size_t want = b->alloc ? b->alloc * 2 : 256;
		while (want < b->len + extra + 1)
			want *= 2;
		if (want > b->cap + 1)
			want = b->cap + 1;
		b->data = bh_xrealloc(b->data, want);
		b->alloc = want;
	}
	return 0;
}

int bh_buf_append(struct bh_buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int bh_buf_appendf(struct bh_buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory(0);
	int rc = bh_buf_append(b, s, (size_t)n);
	free(s);
	return rc;
}

void bh_buf_reset(struct bh_buf *b)
{
	b->len = 0;
	b->too_big = false;
	if (b->data)
		b->data[0] = '\0';
}

void bh_buf_free(struct bh_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

int64_t bh_now_ms(void)
{
	return bh_now_us() / 1000;
}

int64_t bh_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t bh_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec bh_mono_deadline(int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

void bh_random_bytes(void *out, size_t n)
{
	unsigned char *p = out;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "bankhook: getrandom failed: %s\n", strerror(errno));
			abort();
		}
		p += got;
		n -= (size_t)got;
	}
}

void bh_uuid4(char out[37])
{
	unsigned char b[16];
	bh_random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

bool bh_is_uuid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

double bh_random_uniform(double lo, double hi)
{
	uint64_t r;
	bh_random_bytes(&r, sizeof(r));
	return lo + (hi - lo) * ((double)(r >> 11) / (double)(1ULL << 53));
}

int bh_parse_int(const char *s, long long min, long long max, long long *out)
{
	if (s == NULL || *s == '\0')
		return -1;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && !(p == s && *p == '-'))
			return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void bh_format_time(int64_t ms, char out[32])
{
	/* Floor division: a time before 1970 still has a fraction in 0..999. */
	int64_t secs = ms / 1000, frac = ms % 1000;
	if (frac < 0) {
		frac += 1000;
		secs--;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	/* %04d, not strftime's %Y: year 1 must read "0001" for PostgreSQL and receivers. */
	char text[96]; /* room for any int year; BH_TIME_*_MS times take 24 bytes */
	snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
	snprintf(out, 32, "%.31s", text);
}

/* n digits at p as a number, or -1 when one of them is not a digit. */
static int fixed_digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int bh_parse_time(const char *s, int64_t *ms)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (s == NULL || strnlen(s, 20) < 19 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
		return -1;
	int year = fixed_digits(s, 4), mon = fixed_digits(s + 5, 2), day = fixed_digits(s + 8, 2);
	int hh = fixed_digits(s + 11, 2), mi = fixed_digits(s + 14, 2),
	    ss = fixed_digits(s + 17, 2);
	/* Refused, never normalised: 2026-02-30 is not 2026-03-02; no leap second. */
	if (year < 0 || mon < 1 || mon > 12 || day < 1 || hh < 0 || hh > 23 || mi < 0 || mi > 59 ||
	    ss < 0 || ss > 59)
		return -1;
	if (day > mdays[mon - 1] + (mon == 2 && leap_year(year)))
		return -1;
	const char *p = s + 19;
	int frac_ms = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			frac_ms *= 10;
	}
	long offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		/* Left to right, so a short string ends the reading at its NUL. */
		int oh = fixed_digits(p + 1, 2);
		int om = oh >= 0 && p[3] == ':' ? fixed_digits(p + 4, 2) : -1;
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -1;
		offset_s = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	int64_t t =
		(days_from_civil(year, mon, day) * 86400 + hh * 3600 + mi * 60 + ss - offset_s) *
			1000 +
		frac_ms;
	/* Years 1..9999 once in UTC: "0001-01-01T00:00:00+01:00" is year 0 and refused. */
	if (t < BH_TIME_MIN_MS || t > BH_TIME_MAX_MS)
		return -1;
	*ms = t;
	return 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static size_t utf8_seq_len(const unsigned char *p)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF) /* also stops at the terminating NUL */
			return 0;
	return n;
}

bool bh_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq_len(p);
		if (n == 0)
			return false;
		p += n;
	}
	return true;
}

void bh_utf8_fix(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq_len(p);
		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}
