/*
 * libFuzzer target: where deliveries may go (common/net.c). The first
 * byte picks allow_loopback / allow_private; the rest is the URL. Also
 * feeds the bytes as an IPv4 and an IPv6 socket address to
 * bh_addr_allowed. Besides crashes and sanitizer reports, it checks
 * net.h's contract: an accepted URL is http(s), at most BH_URL_MAX bytes,
 * without user:password, whitespace or control characters; a literal IP
 * host passes bh_addr_allowed; more permission never refuses more; a
 * refusal's message is valid UTF-8 (it is sent in JSON replies).
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness.h"
#include "net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(const char *url)
{
	size_t len = strlen(url);
	if (len == 0 || len > BH_URL_MAX)
		fuzz_fail("accepted a URL of %zu bytes", len);
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			fuzz_fail("accepted a URL with whitespace or a control character");
	const char *rest = strncasecmp(url, "https://", 8) == 0	 ? url + 8
			   : strncasecmp(url, "http://", 7) == 0 ? url + 7
								 : NULL;
	if (rest == NULL)
		fuzz_fail("accepted a URL that is not http(s): %s", url);
	size_t auth = strcspn(rest, "/?#");
	if (auth == 0 || memchr(rest, '@', auth) != NULL)
		fuzz_fail("accepted a URL without a host or with user info: %s", url);
}

static void check_addr(const uint8_t *b, size_t n, bool lo, bool pr)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	if (n >= 4) {
		memcpy(&in.sin_addr, b, 4);
		bool any = bh_addr_allowed((struct sockaddr *)&in, true, true);
		if (bh_addr_allowed((struct sockaddr *)&in, lo, pr) && !any)
			fuzz_fail("IPv4: allowed with fewer permissions but not with all");
		/* ::ffff:a.b.c.d is judged as a.b.c.d. */
		in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&in6.sin6_addr.s6_addr[12], b, 4);
		if (bh_addr_allowed((struct sockaddr *)&in6, lo, pr) !=
		    bh_addr_allowed((struct sockaddr *)&in, lo, pr))
			fuzz_fail("IPv4-mapped IPv6 judged unlike its IPv4 address");
	}
	if (n >= 16) {
		memcpy(&in6.sin6_addr, b, 16);
		bool any = bh_addr_allowed((struct sockaddr *)&in6, true, true);
		if (bh_addr_allowed((struct sockaddr *)&in6, lo, pr) && !any)
			fuzz_fail("IPv6: allowed with fewer permissions but not with all");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 3 * BH_URL_MAX)
		return -1;
	bh_url_set_resolver(fuzz_no_dns); /* names are not resolved here */
	bool lo = data[0] & 1, pr = data[0] & 2;
	char *url = bh_xstrndup((const char *)data + 1, size - 1);
	char err[256] = "";
	int rc = bh_url_check(url, lo, pr, err, sizeof(err));
	if (rc == 0) {
		check_accepted(url);
		/* More permission never refuses what less permission accepts. */
		if (bh_url_check(url, true, true, err, sizeof(err)) < 0)
			fuzz_fail("accepted with fewer permissions, refused with all: %s", err);
	} else {
		json_t *j = json_string(err);
		if (err[0] == '\0' || j == NULL)
			fuzz_fail("refusal message empty or not valid UTF-8: %s", err);
		json_decref(j);
	}
	check_addr(data + 1, size - 1, lo, pr);
	free(url);
	return 0;
}
