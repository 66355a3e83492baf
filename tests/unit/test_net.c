/*
 * common/net: which endpoint URLs may be registered (bh_url_check) and
 * which addresses a delivery may connect to (bh_addr_allowed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

/* ------------------------------------------------------------ addresses */

struct addr_case {
	const char *name;
	const char *addr;
	bool plain;    /* allowed with neither flag */
	bool loopback; /* allowed with allow_loopback only */
	bool private_; /* allowed with allow_private only */
	bool both;     /* allowed with both */
};

static const struct addr_case addr_cases[] = {
	{"addr_public_ipv4_8_8_8_8_allowed", "8.8.8.8", true, true, true, true},
	{"addr_public_ipv6_allowed", "2001:4860:4860::8888", true, true, true, true},
	{"addr_loopback_127_0_0_1_needs_allow_loopback", "127.0.0.1", false, true, false, true},
	{"addr_loopback_127_8_needs_allow_loopback", "127.1.2.3", false, true, false, true},
	{"addr_loopback_ipv6_needs_allow_loopback", "::1", false, true, false, true},
	{"addr_mapped_loopback_judged_as_ipv4", "::ffff:127.0.0.1", false, true, false, true},
	{"addr_private_10_needs_allow_private", "10.1.2.3", false, false, true, true},
	{"addr_private_192_168_needs_allow_private", "192.168.1.1", false, false, true, true},
	{"addr_private_172_16_needs_allow_private", "172.16.0.1", false, false, true, true},
	{"addr_172_32_is_public", "172.32.0.1", true, true, true, true},
	{"addr_cgnat_100_64_needs_allow_private", "100.64.0.1", false, false, true, true},
	{"addr_unique_local_fc00_needs_allow_private", "fd12:3456::1", false, false, true, true},
	{"addr_mapped_private_judged_as_ipv4", "::ffff:10.0.0.1", false, false, true, true},
	{"addr_metadata_169_254_169_254_never", "169.254.169.254", false, false, false, false},
	{"addr_mapped_metadata_never", "::ffff:169.254.169.254", false, false, false, false},
	{"addr_multicast_224_0_0_1_never", "224.0.0.1", false, false, false, false},
	{"addr_ipv6_multicast_never", "ff02::1", false, false, false, false},
	{"addr_link_local_fe80_never", "fe80::1", false, false, false, false},
	{"addr_unspecified_0_0_0_0_never", "0.0.0.0", false, false, false, false},
	{"addr_unspecified_ipv6_never", "::", false, false, false, false},
	{"addr_broadcast_never", "255.255.255.255", false, false, false, false},
	/* Documentation and benchmarking ranges (RFC 5737, 3849, 9637, 2544). */
	{"addr_test_net_1_never", "192.0.2.10", false, false, false, false},
	{"addr_test_net_2_never", "198.51.100.7", false, false, false, false},
	{"addr_test_net_3_never", "203.0.113.200", false, false, false, false},
	{"addr_ipv6_documentation_2001_db8_never", "2001:db8::1", false, false, false, false},
	{"addr_ipv6_documentation_3fff_never", "3fff:abc::1", false, false, false, false},
	{"addr_benchmarking_198_18_never", "198.19.255.1", false, false, false, false},
	{"addr_6to4_relay_anycast_never", "192.88.99.1", false, false, false, false},
	/* IPv6 transition ranges: the IPv4 inside is judged. */
	{"addr_nat64_public_ipv4_allowed", "64:ff9b::8.8.8.8", true, true, true, true},
	{"addr_nat64_loopback_needs_allow_loopback", "64:ff9b::127.0.0.1", false, true, false,
	 true},
	{"addr_nat64_private_needs_allow_private", "64:ff9b::10.0.0.1", false, false, true, true},
	{"addr_nat64_metadata_never", "64:ff9b::169.254.169.254", false, false, false, false},
	{"addr_nat64_local_use_needs_allow_private", "64:ff9b:1::8.8.8.8", false, false, true,
	 true},
	{"addr_6to4_public_ipv4_allowed", "2002:808:808::1", true, true, true, true},
	{"addr_6to4_loopback_needs_allow_loopback", "2002:7f00:1::1", false, true, false, true},
	{"addr_6to4_private_needs_allow_private", "2002:c0a8:101::1", false, false, true, true},
	{"addr_6to4_unspecified_never", "2002::1", false, false, false, false},
	{"addr_ipv4_translated_loopback_judged_as_ipv4", "::ffff:0:127.0.0.1", false, true, false,
	 true},
	{"addr_ipv4_translated_public_allowed", "::ffff:0:8.8.8.8", true, true, true, true},
	{"addr_mapped_documentation_never", "::ffff:192.0.2.1", false, false, false, false},
	{"addr_teredo_never", "2001:0:4136:e378:8000:63bf:3fff:fdd2", false, false, false, false},
	{"addr_ietf_protocol_2001_2_benchmarking_never", "2001:2::1", false, false, false, false},
	{"addr_orchid_2001_10_never", "2001:10::1", false, false, false, false},
	{"addr_discard_100_never", "100::1", false, false, false, false},
	{"addr_ipv4_compatible_never", "::127.0.0.1", false, false, false, false},
	{"addr_site_local_fec0_never", "fec0::1", false, false, false, false},
	{"addr_reserved_outside_2000_3_never", "4000::1", false, false, false, false},
	{"addr_srv6_5f00_never", "5f00::1", false, false, false, false},
	{"addr_2001_outside_ietf_block_allowed", "2001:200::1", true, true, true, true},
	{"addr_public_ipv6_2606_allowed", "2606:4700:4700::1111", true, true, true, true},
	{"addr_last_global_unicast_allowed", "3ffe::1", true, true, true, true},
	{"addr_public_ipv4_next_to_test_net_3_allowed", "203.0.114.1", true, true, true, true},
};

static bool allowed(const char *text, bool lo, bool priv)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
		return bh_addr_allowed((struct sockaddr *)&in, lo, priv);
	if (inet_pton(AF_INET6, text, &in6.sin6_addr) == 1)
		return bh_addr_allowed((struct sockaddr *)&in6, lo, priv);
	fail_msg("test table has a bad address %s", text);
	return false;
}

static void run_addr_case(void **state)
{
	const struct addr_case *c = *state;
	assert_int_equal(allowed(c->addr, false, false), c->plain);
	assert_int_equal(allowed(c->addr, true, false), c->loopback);
	assert_int_equal(allowed(c->addr, false, true), c->private_);
	assert_int_equal(allowed(c->addr, true, true), c->both);
}

static void addr_unix_socket_never(void **state)
{
	(void)state;
	struct sockaddr sa = {.sa_family = AF_UNIX};
	assert_false(bh_addr_allowed(&sa, true, true));
}

/* ----------------------------------------------------------------- URLs */

struct url_case {
	const char *name;
	const char *url; /* NULL: use the long URL built in main */
	bool allow_loopback;
	bool ok;
	const char *err_has; /* for refusals: a word the message must contain */
};

static char long_url[BH_URL_MAX + 64];
static char max_url[BH_URL_MAX + 1];

static const struct url_case url_cases[] = {
	{"url_https_with_path_ok", "https://hooks.example.com/bankhook?x=1", false, true, NULL},
	/* Found by fuzz_obp: the byte itself in the message was not valid UTF-8 (a 500). */
	{"url_non_ascii_host_byte_named_in_hex", "http://ex\xc3\xa4mple.com/", false, false,
	 "invalid byte 0xC3"},
	{"url_http_with_port_ok", "http://example.com:8443/in", false, true, NULL},
	{"url_scheme_is_case_insensitive", "HTTPS://example.com/", false, true, NULL},
	{"url_ipv6_literal_public_ok", "http://[2606:4700::1111]:80/x", false, true, NULL},
	{"url_ipv6_documentation_literal_refused", "http://[2001:db8::1]:80/x", true, false,
	 "2001:db8::1"},
	/* Every spelling of loopback libcurl accepts, refused (issue 12, finding 7). */
	{"url_localhost_refused", "http://localhost:9999/hook", false, false, "localhost"},
	{"url_localhost_upper_case_refused", "http://LocalHost/", false, false, "loopback"},
	{"url_localhost_trailing_dot_refused", "http://localhost./hook", false, false, "loopback"},
	{"url_sub_localhost_refused", "http://api.localhost/hook", false, false, "loopback"},
	{"url_localhost_ok_when_allowed", "http://localhost:9999/hook", true, true, NULL},
	{"url_notlocalhost_is_a_name", "http://notlocalhost.invalid/", false, true, NULL},
	{"url_short_ipv4_127_1_refused", "http://127.1/", false, false, "127.0.0.1"},
	{"url_octal_ipv4_refused", "http://0177.0.0.1/", false, false, "127.0.0.1"},
	{"url_decimal_ipv4_refused", "http://2130706433/", false, false, "127.0.0.1"},
	{"url_hex_ipv4_refused", "http://0x7f000001/", false, false, "127.0.0.1"},
	{"url_zero_host_refused", "http://0/", false, false, "0.0.0.0"},
	{"url_zero_host_refused_even_with_loopback", "http://0:8080/", true, false, "0.0.0.0"},
	{"url_mapped_loopback_literal_refused", "http://[::ffff:127.0.0.1]/", false, false,
	 "loopback"},
	{"url_nat64_loopback_literal_refused", "http://[64:ff9b::7f00:1]/", false, false,
	 "loopback"},
	{"url_percent_encoded_localhost_refused", "http://%6c%6fcalhost/", false, false,
	 "loopback"},
	{"url_zone_id_refused", "http://[fe80::1%25eth0]/", true, false, "interface"},
	{"url_port_zero_refused", "http://example.com:0/", false, false, "port"},
	{"url_unresolvable_name_accepted", "https://no-such-host.invalid/hook", false, true, NULL},
	{"url_loopback_ok_when_allowed", "http://127.0.0.1:9999/hook", true, true, NULL},
	{"url_loopback_refused_by_default", "http://127.0.0.1:9999/hook", false, false, "127.0.0.1"},
	{"url_ipv6_loopback_refused_by_default", "http://[::1]/hook", false, false, "::1"},
	{"url_metadata_address_refused_even_with_loopback", "http://169.254.169.254/latest", true,
	 false, "169.254.169.254"},
	{"url_ftp_refused", "ftp://example.com/file", false, false, "http"},
	{"url_without_scheme_refused", "example.com/hook", false, false, "http"},
	{"url_no_host_refused", "https:///path", false, false, "host"},
	{"url_no_host_before_port_refused", "http://:80/", false, false, "host"},
	{"url_userinfo_refused", "https://user:pw@example.com/", false, false, "password"},
	{"url_user_only_refused", "https://user@example.com/", false, false, "user"},
	{"url_with_space_refused", "https://exa mple.com/", false, false, "spaces"},
	{"url_with_newline_refused", "https://example.com/\r\nX-Injected: 1", false, false,
	 "control"},
	{"url_empty_refused", "", false, false, "empty"},
	{"url_bad_port_refused", "http://example.com:99999/", false, false, "port"},
	{"url_non_numeric_port_refused", "http://example.com:http/", false, false, "port"},
	{"url_unterminated_ipv6_refused", "http://[::1/", true, false, "IPv6"},
	{"url_too_long_refused", NULL, false, false, "2048"},
	{"url_at_max_length_ok", max_url, false, true, NULL},
};

/* Checks url: accepted when ok, else refused with err_has in the message. */
static void expect_url(const char *url, bool lo, bool priv, bool ok, const char *err_has)
{
	char err[256] = "";
	int rc = bh_url_check(url, lo, priv, err, sizeof(err));
	if (ok) {
		if (rc != 0)
			fail_msg("refused: %s", err);
		return;
	}
	assert_int_equal(rc, -1);
	if (strstr(err, err_has) == NULL)
		fail_msg("error \"%s\" does not mention \"%s\"", err, err_has);
}

static void run_url_case(void **state)
{
	const struct url_case *c = *state;
	expect_url(c->url ? c->url : long_url, c->allow_loopback, false, c->ok, c->err_has);
}

/* ----------------------------------------------------------- resolution */

/*
 * The resolver the URL checks see here: no DNS. A few names stand for
 * what DNS could answer; any other name does not resolve.
 */
static int numeric(const char *addr, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST};
	return getaddrinfo(addr, NULL, &hints, res);
}

static int fake_resolver(const char *node, const char *service, const struct addrinfo *hints,
			 struct addrinfo **res)
{
	(void)service;
	(void)hints;
	*res = NULL;
	if (strcmp(node, "internal.test") == 0)
		return numeric("127.0.0.1", res);
	if (strcmp(node, "public.test") == 0)
		return numeric("2606:4700::1111", res);
	if (strcmp(node, "nat64-metadata.test") == 0)
		return numeric("64:ff9b::a9fe:a9fe", res);
	if (strcmp(node, "mixed.test") == 0) {
		/* a public address first, a private one second: each node freed on its own */
		struct addrinfo *first = NULL, *second = NULL;
		if (numeric("8.8.8.8", &first) != 0 || numeric("10.0.0.1", &second) != 0)
			return EAI_FAIL;
		first->ai_next = second;
		*res = first;
		return 0;
	}
	if (strcmp(node, "slow.test") == 0)
		sleep(3); /* longer than BH_RESOLVE_TIMEOUT_MS */
	return EAI_NONAME;
}

/* Names, as the fake resolver answers them, under both flags. */
struct resolve_case {
	const char *name;
	const char *url;
	bool allow_loopback, allow_private;
	bool ok;
	const char *err_has;
};

static const struct resolve_case resolve_cases[] = {
	{"name_resolving_to_loopback_refused", "http://internal.test/", false, false, false,
	 "internal.test resolves to 127.0.0.1"},
	{"name_resolving_to_loopback_ok_when_allowed", "http://internal.test/", true, false, true,
	 NULL},
	{"name_with_one_private_address_refused", "https://mixed.test/h", false, false, false,
	 "10.0.0.1"},
	{"name_with_one_private_address_ok_when_allowed", "https://mixed.test/h", false, true, true,
	 NULL},
	{"name_resolving_to_nat64_metadata_refused_with_both", "http://nat64-metadata.test/", true,
	 true, false, "64:ff9b::a9fe:a9fe"},
	{"name_resolving_to_public_address_ok", "https://public.test:8443/h", false, false, true,
	 NULL},
	{"name_not_resolving_ok", "https://nxdomain.test/h", false, false, true, NULL},
};

static void run_resolve_case(void **state)
{
	const struct resolve_case *c = *state;
	expect_url(c->url, c->allow_loopback, c->allow_private, c->ok, c->err_has);
}

static void slow_name_accepted_within_the_timeout(void **state)
{
	(void)state;
	char err[256] = "";
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(bh_url_check("https://slow.test/h", false, false, err, sizeof(err)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= BH_RESOLVE_TIMEOUT_MS - 50);
	assert_true(ms < BH_RESOLVE_TIMEOUT_MS + 1000);
}

/* ------------------------------------------------------------------ main */


int main(void)
{
	/* "https://example.com/aaaa..." one character over, and exactly at, the limit */
	strcpy(long_url, "https://example.com/");
	memset(long_url + strlen(long_url), 'a', BH_URL_MAX + 1 - strlen(long_url));
	long_url[BH_URL_MAX + 1] = '\0';
	memcpy(max_url, long_url, BH_URL_MAX);
	max_url[BH_URL_MAX] = '\0';

	bh_url_set_resolver(fake_resolver);
	struct CMUnitTest tests[160];
	size_t n = 0;
	TABLE(addr_cases, run_addr_case);
	ONE(addr_unix_socket_never);
	TABLE(url_cases, run_url_case);
	TABLE(resolve_cases, run_resolve_case);
	ONE(slow_name_accepted_within_the_timeout);
	return _cmocka_run_group_tests("net", tests, n, NULL, NULL);
}
