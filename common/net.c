#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* IPv4 ranges, host order: address, prefix length, and who may reach it. */
enum range_policy { NEVER, LOOPBACK, PRIVATE };

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
	{0xc6120000, 15, NEVER},   /* 198.18.0.0/15 benchmarking */
	{0xe0000000, 4, NEVER},	   /* 224.0.0.0/4 multicast */
	{0xf0000000, 4, NEVER},	   /* 240.0.0.0/4 reserved, broadcast */
};

static bool policy_allows(enum range_policy p, bool allow_loopback, bool allow_private)
{
	switch (p) {
	case LOOPBACK:
		return allow_loopback;
	case PRIVATE:
		return allow_private;
	case NEVER:
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

static bool v6_allowed(const struct in6_addr *a, bool allow_loopback, bool allow_private)
{
	const uint8_t *b = a->s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a)) {
		uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
			      b[15];
		return v4_allowed(v4, allow_loopback, allow_private);
	}
	if (IN6_IS_ADDR_LOOPBACK(a))
		return allow_loopback;
	if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_MULTICAST(a) ||
	    IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_V4COMPAT(a))
		return false;
	if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 unique local */
		return allow_private;
	return true;
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

/* Checks a literal IP host ("127.0.0.1" or "[::1]" without brackets). */
static int check_literal_host(const char *host, bool allow_loopback, bool allow_private,
			      char *errbuf, size_t errlen)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	const struct sockaddr *sa = NULL;
	if (inet_pton(AF_INET, host, &in.sin_addr) == 1)
		sa = (const struct sockaddr *)&in;
	else if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
		sa = (const struct sockaddr *)&in6;
	if (sa && !bh_addr_allowed(sa, allow_loopback, allow_private)) {
		snprintf(errbuf, errlen,
			 "host %s is a loopback, private, link-local or multicast address, "
			 "which deliveries may not target",
			 host);
		return -1;
	}
	return 0;
}

int bh_url_check(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
		 size_t errlen)
{
	size_t len = strlen(url);
	if (len == 0) {
		snprintf(errbuf, errlen, "must not be empty");
		return -1;
	}
	if (len > BH_URL_MAX) {
		snprintf(errbuf, errlen, "longer than %d characters", BH_URL_MAX);
		return -1;
	}
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			snprintf(errbuf, errlen, "must not contain spaces or control characters");
			return -1;
		}

	const char *rest;
	if (strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else {
		snprintf(errbuf, errlen, "must be an http:// or https:// URL");
		return -1;
	}

	/* The authority runs to the first '/', '?' or '#'. */
	size_t auth_len = strcspn(rest, "/?#");
	if (memchr(rest, '@', auth_len)) {
		snprintf(errbuf, errlen, "must not contain a user name or password");
		return -1;
	}

	char host[256];
	const char *port = NULL;
	size_t host_len;
	if (auth_len > 0 && rest[0] == '[') {
		const char *close = memchr(rest, ']', auth_len);
		if (close == NULL) {
			snprintf(errbuf, errlen, "has an unterminated [IPv6] host");
			return -1;
		}
		host_len = (size_t)(close - rest - 1);
		if (host_len == 0 || host_len >= sizeof(host)) {
			snprintf(errbuf, errlen, "has an invalid [IPv6] host");
			return -1;
		}
		memcpy(host, rest + 1, host_len);
		host[host_len] = '\0';
		struct in6_addr tmp;
		if (inet_pton(AF_INET6, host, &tmp) != 1) {
			snprintf(errbuf, errlen, "has an invalid [IPv6] host");
			return -1;
		}
		if (close + 1 < rest + auth_len) {
			if (close[1] != ':') {
				snprintf(errbuf, errlen, "has garbage after the [IPv6] host");
				return -1;
			}
			port = close + 2;
		}
	} else {
		const char *colon = memchr(rest, ':', auth_len);
		host_len = colon ? (size_t)(colon - rest) : auth_len;
		if (colon)
			port = colon + 1;
		if (host_len == 0) {
			snprintf(errbuf, errlen, "must name a host");
			return -1;
		}
		if (host_len >= sizeof(host)) {
			snprintf(errbuf, errlen, "host name longer than 255 characters");
			return -1;
		}
		memcpy(host, rest, host_len);
		host[host_len] = '\0';
		for (const char *p = host; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') {
				/* A byte past ASCII alone would not be valid UTF-8 in a reply. */
				if ((unsigned char)*p < 0x7f)
					snprintf(errbuf, errlen,
						 "host contains the invalid character '%c'", *p);
				else
					snprintf(errbuf, errlen,
						 "host contains the invalid byte 0x%02X",
						 (unsigned char)*p);
				return -1;
			}
	}

	if (port) {
		size_t port_len = (size_t)(rest + auth_len - port);
		char digits[8];
		long long n;
		if (port_len == 0 || port_len >= sizeof(digits)) {
			snprintf(errbuf, errlen, "has an invalid port");
			return -1;
		}
		memcpy(digits, port, port_len);
		digits[port_len] = '\0';
		if (bh_parse_int(digits, 1, 65535, &n) < 0) {
			snprintf(errbuf, errlen, "port must be a number from 1 to 65535");
			return -1;
		}
	}

	return check_literal_host(host, allow_loopback, allow_private, errbuf, errlen);
}
