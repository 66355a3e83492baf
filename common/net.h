/*
 * Where deliveries may go. Endpoint URLs are checked when they are
 * registered (bh_url_check: scheme, host, length), and the address a
 * transfer actually connects to is checked again at connect time
 * (bh_addr_allowed), so a name that resolves to an internal address later
 * (DNS rebinding) is refused too.
 */
#ifndef BH_COMMON_NET_H
#define BH_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "util.h"

#define BH_URL_MAX 2048

/*
 * Checks an endpoint URL: http or https, a host, at most BH_URL_MAX
 * characters, no user:password part, no whitespace or control characters.
 * When the host is a literal IP address it must pass bh_addr_allowed.
 * 0, or -1 with a sentence in errbuf (without the field name: the caller
 * prefixes it, e.g. "url: ...").
 */
int bh_url_check(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
		 size_t errlen) BH_MUSTCHECK;

/*
 * True when a delivery may connect to this address. Loopback (127/8, ::1)
 * needs allow_loopback; private (10/8, 172.16/12, 192.168/16, 100.64/10,
 * fc00::/7) needs allow_private; unspecified, link-local (169.254/16,
 * fe80::/10), multicast, broadcast and reserved ranges are always refused.
 * IPv4-mapped IPv6 addresses are judged as their IPv4 address.
 */
bool bh_addr_allowed(const struct sockaddr *sa, bool allow_loopback, bool allow_private);

#endif
