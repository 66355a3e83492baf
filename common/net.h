/*
 * Where deliveries may go. Endpoint URLs are checked when they are
 * registered (bh_url_check: syntax by libcurl's URL parser, then the host's
 * addresses by the same policy as delivery), and the address a transfer
 * actually connects to is checked again at connect time (bh_addr_allowed),
 * so a name that resolves to an internal address later (DNS rebinding) is
 * refused too.
 */
#ifndef BH_COMMON_NET_H
#define BH_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <netdb.h>
#include <sys/socket.h>

#include "util.h"

#define BH_URL_MAX 2048

/* A name that does not resolve within this is accepted (see bh_url_check). */
#define BH_RESOLVE_TIMEOUT_MS 2000
/* Resolutions running at once, abandoned ones included; past it names are not resolved. */
#define BH_RESOLVE_THREADS_MAX 32

/*
 * Checks an endpoint URL as libcurl will read it at delivery: http or
 * https, a host, at most BH_URL_MAX characters, no user:password part, no
 * interface (zone id), no whitespace or control characters, a port from 1
 * to 65535. Then the host: a literal address (in any spelling libcurl
 * accepts: "127.1", "0x7f000001", "[::ffff:127.0.0.1]") must pass
 * bh_addr_allowed; "localhost" and "*.localhost" (trailing dot or not) are
 * loopback; any other name is resolved (getaddrinfo, at most
 * BH_RESOLVE_TIMEOUT_MS) and every address must pass. A name that does not
 * resolve, or not in time, is accepted: the connect-time check still
 * applies (docs/DESIGN.md, "Registration-time URL checks"). Blocks the
 * calling thread for the resolution.
 * 0, or -1 with a sentence in errbuf (without the field name: the caller
 * prefixes it, e.g. "url: ...").
 */
int bh_url_check(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
		 size_t errlen) BH_MUSTCHECK;

/* getaddrinfo's signature: the resolver bh_url_check calls. */
typedef int (*bh_getaddrinfo_fn)(const char *node, const char *service,
				 const struct addrinfo *hints, struct addrinfo **res);

/*
 * Replaces the resolver of bh_url_check (NULL: getaddrinfo again), for
 * unit tests and fuzz targets, which must not query DNS. Call it before
 * any check runs; its results are freed with freeaddrinfo.
 */
void bh_url_set_resolver(bh_getaddrinfo_fn fn);

/*
 * True when a delivery may connect to this address. Loopback (127/8, ::1)
 * needs allow_loopback; private (10/8, 172.16/12, 192.168/16, 100.64/10,
 * fc00::/7, local-use NAT64 64:ff9b:1::/48) needs allow_private;
 * unspecified, link-local (169.254/16, fe80::/10), multicast, broadcast,
 * documentation (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32,
 * 3fff::/20), benchmarking, discard (100::/64), IETF protocol assignments
 * (192.0.0/24, 2001::/23 with Teredo) and reserved ranges (IPv6 outside
 * 2000::/3) are always refused. Addresses that embed an IPv4 address are
 * judged as that address: IPv4-mapped (::ffff:0:0/96), IPv4-translated
 * (::ffff:0:0:0/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
 */
bool bh_addr_allowed(const struct sockaddr *sa, bool allow_loopback, bool allow_private);

#endif
