#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

/* ---- the address policy -------------------------------------------------- */

/*
 * Who may reach a range. EMBEDDED (IPv6 only): the range carries an IPv4
 * address at v4_at, and that address is judged instead.
 */
enum range_policy { NEVER, LOOPBACK, PRIVATE, EMBEDDED };

/* IPv4 ranges, host order, from the IANA special-purpose registry. */
struct v4_range {
	uint32_t net;
	int prefix;
	enum range_policy policy;
};

static const struct v4_range v4_ranges[] = {
	{0x00000000, 8, NEVER},	   /* 0.0.0.0/8 "this network" */
	{0x7f000000, 8, LOOPBACK}, /* 127.0.0.0/8 */
	{0x0a000000, 8, PRIVATE},  /* 10.0.0.0/8 */
	{0xac100000, 12, PRIVATE}, /* 172.16.0.0/12 */
	{0xc0a80000, 16, PRIVATE}, /* 192.168.0.0/16 */
	{0x64400000, 10, PRIVATE}, /* 100.64.0.0/10 carrier-grade NAT */
	{0xa9fe0000, 16, NEVER},   /* 169.254.0.0/16 link-local, cloud metadata */
	{0xc0000000, 24, NEVER},   /* 192.0.0.0/24 IETF protocol assignments */
	{0xc0000200, 24, NEVER},   /* 192.0.2.0/24 documentation (TEST-NET-1) */
	{0xc0586300, 24, NEVER},   /* 192.88.99.0/24 6to4 relay anycast, deprecated */
	{0xc6120000, 15, NEVER},   /* 198.18.0.0/15 benchmarking */
	{0xc6336400, 24, NEVER},   /* 198.51.100.0/24 documentation (TEST-NET-2) */
	{0xcb007100, 24, NEVER},   /* 203.0.113.0/24 documentation (TEST-NET-3) */
	{0xe0000000, 4, NEVER},	   /* 224.0.0.0/4 multicast */
	{0xf0000000, 4, NEVER},	   /* 240.0.0.0/4 reserved, broadcast */
};

/*
 * IPv6 ranges, first match wins (so the longer prefixes of a block come
 * first). Outside them only global unicast (2000::/3) is public.
 */
struct v6_range {
	uint8_t net[16];
	int prefix;
	enum range_policy policy;
	int v4_at; /* EMBEDDED: the byte where the IPv4 address starts */
};

static const struct v6_range v6_ranges[] = {
	{{0}, 128, NEVER, 0},				/* ::/128 unspecified */
	{{[15] = 1}, 128, LOOPBACK, 0},			/* ::1/128 */
	{{[10] = 0xff, [11] = 0xff}, 96, EMBEDDED, 12}, /* ::ffff:0:0/96 IPv4-mapped */
	{{[8] = 0xff, [9] = 0xff}, 96, EMBEDDED, 12},	/* ::ffff:0:0:0/96 IPv4-translated */
	{{0}, 96, NEVER, 0},				/* ::/96 IPv4-compatible, deprecated */
	{{0x00, 0x64, 0xff, 0x9b}, 96, EMBEDDED, 12},	/* 64:ff9b::/96 NAT64 */
	{{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, PRIVATE, 0}, /* 64:ff9b:1::/48 local NAT64 */
	{{0x01, 0x00}, 64, NEVER, 0},				/* 100::/64 discard */
	{{0x01, 0x00, 0, 0, 0, 0, 0, 0x01}, 64, NEVER, 0},	/* 100:0:0:1::/64 dummy */
	{{0x20, 0x01, 0x0d, 0xb8}, 32, NEVER, 0},		/* 2001:db8::/32 documentation */
	/* 2001::/23 IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID */
	{{0x20, 0x01}, 23, NEVER, 0},
	{{0x20, 0x02}, 16, EMBEDDED, 2}, /* 2002::/16 6to4 */
	{{0x3f, 0xff}, 20, NEVER, 0},	 /* 3fff::/20 documentation */
	{{0xfc}, 7, PRIVATE, 0},	 /* fc00::/7 unique local */
	{{0xfe, 0x80}, 10, NEVER, 0},	 /* fe80::/10 link-local */
	{{0xfe, 0xc0}, 10, NEVER, 0},	 /* fec0::/10 site-local, deprecated */
	{{0xff}, 8, NEVER, 0},		 /* ff00::/8 multicast */
};

static bool policy_allows(enum range_policy p, bool allow_loopback, bool allow_private)
{
	switch (p) {
	case LOOPBACK:
		return allow_loopback;
	case PRIVATE:
		return allow_private;
	case NEVER:
	case EMBEDDED:
		break;
	}
	return false;
}

static bool v4_allowed(uint32_t addr, bool allow_loopback, bool allow_private)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(v4_ranges); i++) {
		uint32_t mask = 0xffffffffu << (32 - v4_ranges[i].prefix);
		if ((addr & mask) == v4_ranges[i].net)
			return policy_allows(v4_ranges[i].policy, allow_loopback, allow_private);
	}
	return true;
}

static bool v6_in(const uint8_t *a, const struct v6_range *r)
{
	int full = r->prefix / 8, rest = r->prefix % 8;
	if (memcmp(a, r->net, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (r->net[full] & mask);
}

static bool v6_allowed(const struct in6_addr *in6, bool allow_loopback, bool allow_private)
{
	const uint8_t *b = in6->s6_addr;
	for (size_t i = 0; i < BH_ARRAY_LEN(v6_ranges); i++) {
		const struct v6_range *r = &v6_ranges[i];
		if (!v6_in(b, r))
			continue;
		if (r->policy == EMBEDDED) {
			const uint8_t *v = b + r->v4_at;
			uint32_t v4 = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
				      (uint32_t)v[2] << 8 | v[3];
			return v4_allowed(v4, allow_loopback, allow_private);
		}
		return policy_allows(r->policy, allow_loopback, allow_private);
	}
	return (b[0] & 0xe0) == 0x20; /* 2000::/3 global unicast; the rest is reserved */
}

bool bh_addr_allowed(const struct sockaddr *sa, bool allow_loopback, bool allow_private)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		return v4_allowed(ntohl(in->sin_addr.s_addr), allow_loopback, allow_private);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		return v6_allowed(&in6->sin6_addr, allow_loopback, allow_private);
	}
	return false; /* Unix sockets and the like are never a webhook target */
}

/* ---- resolution ---------------------------------------------------------- */

/*
 * One name being resolved on a thread of its own, so the caller can stop
 * waiting (getaddrinfo has no timeout). Shared by the caller and the
 * thread; the last of the two to let go frees it.
 */
struct resolve {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	bool done;
	int rc;
	struct addrinfo *res;
	bh_getaddrinfo_fn resolver;
	char host[];
};

/* Resolver threads still running, those the callers gave up on included. */
static atomic_int resolving;
static bh_getaddrinfo_fn resolver = getaddrinfo;

void bh_url_set_resolver(bh_getaddrinfo_fn fn)
{
	resolver = fn ? fn : getaddrinfo;
}

static void resolve_unref(struct resolve *r)
{
	pthread_mutex_lock(&r->lock);
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (!last)
		return;
	if (r->res)
		freeaddrinfo(r->res);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void *resolve_thread(void *arg)
{
	struct resolve *r = arg;
	/* As libcurl asks: any family, stream sockets. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int rc = r->resolver(r->host, NULL, &hints, &res);
	pthread_mutex_lock(&r->lock);
	r->rc = rc;
	r->res = rc == 0 ? res : NULL;
	r->done = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	atomic_fetch_sub(&resolving, 1);
	resolve_unref(r);
	return NULL;
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a =
		sa->sa_family == AF_INET
			? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
			: (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/*
 * Resolves host within BH_RESOLVE_TIMEOUT_MS and judges every address.
 * 0 when all are allowed, or when the name did not resolve in time (see
 * net.h); -1 with the first refused address in refused.
 */
static int resolve_check(const char *host, bool allow_loopback, bool allow_private, char *refused,
			 size_t refused_len)
{
	if (atomic_fetch_add(&resolving, 1) >= BH_RESOLVE_THREADS_MAX) {
		atomic_fetch_sub(&resolving, 1);
		bh_warn("url check: %d names resolving already; %s not resolved",
			BH_RESOLVE_THREADS_MAX, host);
		return 0;
	}
	size_t n = strlen(host) + 1;
	struct resolve *r = bh_xcalloc(1, sizeof(*r) + n);
	memcpy(r->host, host, n);
	r->resolver = resolver;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	r->refs = 2; /* this caller and the thread */

	pthread_t tid;
	pthread_attr_t tattr;
	pthread_attr_init(&tattr);
	pthread_attr_setdetachstate(&tattr, PTHREAD_CREATE_DETACHED);
	int err = pthread_create(&tid, &tattr, resolve_thread, r);
	pthread_attr_destroy(&tattr);
	if (err != 0) {
		atomic_fetch_sub(&resolving, 1);
		r->refs = 1;
		resolve_unref(r);
		bh_warn("url check: cannot start a resolver thread: %s", strerror(err));
		return 0;
	}

	struct timespec deadline = bh_mono_deadline(BH_RESOLVE_TIMEOUT_MS);
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	while (!r->done && pthread_cond_timedwait(&r->cond, &r->lock, &deadline) != ETIMEDOUT)
		;
	if (!r->done)
		bh_debug("url check: %s did not resolve within %d ms", host, BH_RESOLVE_TIMEOUT_MS);
	else if (r->rc != 0)
		bh_debug("url check: %s does not resolve: %s", host, gai_strerror(r->rc));
	else
		for (const struct addrinfo *ai = r->res; ai && rc == 0; ai = ai->ai_next)
			if (!bh_addr_allowed(ai->ai_addr, allow_loopback, allow_private)) {
				addr_text(ai->ai_addr, refused, refused_len);
				rc = -1;
			}
	pthread_mutex_unlock(&r->lock);
	resolve_unref(r);
	return rc;
}

/* ---- URLs ---------------------------------------------------------------- */

#define REFUSED_KINDS \
	"a loopback, private, link-local, multicast, documentation or reserved address"

/* "localhost", "x.localhost", with or without the final dot: always loopback (RFC 6761). */
static bool is_localhost_name(const char *host)
{
	size_t n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	static const char name[] = "localhost";
	size_t k = sizeof(name) - 1;
	if (n < k || strncasecmp(host + n - k, name, k) != 0)
		return false;
	return n == k || host[n - k - 1] == '.';
}

/* The literal IP address host as a sockaddr in ss; false when it is a name. */
static bool literal_addr(const char *host, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* Letters, digits, '-', '.', '_' only; -1 naming the first other byte. */
static int check_host_chars(const char *host, size_t len, char *errbuf, size_t errlen)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_')
			continue;
		/* A byte past ASCII alone would not be valid UTF-8 in a reply. */
		if (c < 0x7f)
			snprintf(errbuf, errlen, "host contains the invalid character '%c'", c);
		else
			snprintf(errbuf, errlen, "host contains the invalid byte 0x%02X", c);
		return -1;
	}
	return 0;
}

static const char *curl_url_error(CURLUcode uc)
{
	switch (uc) {
	case CURLUE_BAD_SCHEME:
	case CURLUE_UNSUPPORTED_SCHEME:
		return "must be an http:// or https:// URL";
	case CURLUE_NO_HOST:
		return "must name a host";
	case CURLUE_BAD_PORT_NUMBER:
		return "port must be a number from 1 to 65535";
	case CURLUE_BAD_IPV6:
		return "has an invalid [IPv6] host";
	case CURLUE_BAD_HOSTNAME:
		return "host is not a valid host name";
	case CURLUE_BAD_LOGIN:
	case CURLUE_BAD_USER:
	case CURLUE_BAD_PASSWORD:
		return "must not contain a user name or password";
	default:
		return NULL;
	}
}

/*
 * The syntax part of bh_url_check, with libcurl's URL parser (the one the
 * delivery uses): on 0, host is the host as libcurl will look it up,
 * percent-decoded, numeric IPv4 forms ("127.1", "0x7f000001") written out,
 * an IPv6 literal without its brackets.
 */
static int url_parse(const char *url, char *host, size_t hostlen, char *errbuf, size_t errlen)
{
	int rc = -1;
	CURLU *u = NULL;
	char *scheme = NULL, *h = NULL, *user = NULL, *password = NULL, *port = NULL, *zone = NULL;
	size_t len = strlen(url);
	if (len == 0) {
		snprintf(errbuf, errlen, "must not be empty");
		goto out;
	}
	if (len > BH_URL_MAX) {
		snprintf(errbuf, errlen, "longer than %d characters", BH_URL_MAX);
		goto out;
	}
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			snprintf(errbuf, errlen, "must not contain spaces or control characters");
			goto out;
		}
	const char *rest;
	if (strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else {
		snprintf(errbuf, errlen, "must be an http:// or https:// URL");
		goto out;
	}
	/* Bytes past ASCII in the authority, named before libcurl's generic refusal. */
	size_t auth_len = strcspn(rest, "/?#");
	if (auth_len == 0) { /* libcurl would take "https:///path" as host "path" */
		snprintf(errbuf, errlen, "must name a host");
		goto out;
	}
	for (size_t i = 0; i < auth_len; i++)
		if ((unsigned char)rest[i] >= 0x7f) {
			snprintf(errbuf, errlen, "host contains the invalid byte 0x%02X",
				 (unsigned char)rest[i]);
			goto out;
		}

	u = curl_url();
	if (u == NULL) {
		snprintf(errbuf, errlen, "cannot be parsed (out of memory)");
		goto out;
	}
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		const char *why = curl_url_error(uc);
		if (why)
			snprintf(errbuf, errlen, "%s", why);
		else
			snprintf(errbuf, errlen, "is not a valid URL (%s)", curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		snprintf(errbuf, errlen, "must be an http:// or https:// URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
		snprintf(errbuf, errlen, "must not contain a user name or password");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
		snprintf(errbuf, errlen, "must not name a network interface (%%%s)", zone);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
		long long n;
		if (bh_parse_int(port, 1, 65535, &n) < 0) {
			snprintf(errbuf, errlen, "port must be a number from 1 to 65535");
			goto out;
		}
	}
	if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || h[0] == '\0') {
		snprintf(errbuf, errlen, "must name a host");
		goto out;
	}
	const char *name = h;
	size_t name_len = strlen(h);
	if (h[0] == '[') { /* libcurl checked the IPv6 literal */
		name++;
		name_len -= 2;
	} else if (check_host_chars(h, name_len, errbuf, errlen) < 0) {
		goto out;
	}
	if (name_len >= hostlen) {
		snprintf(errbuf, errlen, "host name longer than %zu characters", hostlen - 1);
		goto out;
	}
	memcpy(host, name, name_len);
	host[name_len] = '\0';
	rc = 0;
out:
	curl_free(scheme);
	curl_free(h);
	curl_free(user);
	curl_free(password);
	curl_free(port);
	curl_free(zone);
	curl_url_cleanup(u);
	return rc;
}

int bh_url_check(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
		 size_t errlen)
{
	char host[256];
	if (url_parse(url, host, sizeof(host), errbuf, errlen) < 0)
		return -1;

	struct sockaddr_storage ss;
	if (literal_addr(host, &ss)) {
		if (bh_addr_allowed((const struct sockaddr *)&ss, allow_loopback, allow_private))
			return 0;
		snprintf(errbuf, errlen,
			 "host %s is " REFUSED_KINDS ", which deliveries may not target", host);
		return -1;
	}
	/* Loopback by definition (RFC 6761), whatever DNS or /etc/hosts say today. */
	if (is_localhost_name(host)) {
		if (allow_loopback)
			return 0;
		snprintf(errbuf, errlen,
			 "host %s is a loopback name, which deliveries may not target", host);
		return -1;
	}
	char refused[INET6_ADDRSTRLEN];
	if (resolve_check(host, allow_loopback, allow_private, refused, sizeof(refused)) < 0) {
		snprintf(errbuf, errlen,
			 "host %s resolves to %s, " REFUSED_KINDS
			 ", which deliveries may not target",
			 host, refused);
		return -1;
	}
	return 0;
}
