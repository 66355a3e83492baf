/*
 * A request for the api's validation functions, built from a fuzzer's
 * input without libmicrohttpd or a database. The input is text:
 *
 *   <selector line>            which call of the target to run
 *   H Name: value              a request header (any number of lines)
 *   Q key=value                a query-string argument
 *   P name=value               a path parameter ({name} of the route)
 *   <empty line>
 *   <body>                     everything after the empty line
 *
 * The headers and query reach the code under test through
 * MHD_lookup_connection_value, which harness.c defines: the
 * executable's definition wins over libmicrohttpd's at link time, so
 * bh_api_header() and bh_api_query() read them unchanged.
 */
#ifndef BH_TESTS_FUZZ_HARNESS_H
#define BH_TESTS_FUZZ_HARNESS_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define FUZZ_REQ_MAX_FIELDS 16

struct fuzz_conn {
	int n_headers, n_args;
	char *header_names[FUZZ_REQ_MAX_FIELDS], *header_values[FUZZ_REQ_MAX_FIELDS];
	char *arg_names[FUZZ_REQ_MAX_FIELDS], *arg_values[FUZZ_REQ_MAX_FIELDS];
};

struct fuzz_req {
	struct bh_config cfg;
	struct bh_api api;
	struct fuzz_conn conn;
	struct bh_request req;
	char *selector;	  /* the first line */
	const char *body; /* the raw body (points into a copy of the input) */
	size_t body_len;
	bool body_is_json; /* the body parsed (or was empty); req.body set when non-empty */
	char *input;	   /* NUL-terminated copy of the input */
};

/*
 * A resolver for bh_url_set_resolver that resolves nothing (EAI_NONAME):
 * fuzz inputs never reach DNS. fuzz_req_init installs it.
 */
int fuzz_no_dns(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res);

/*
 * Parses data into fr: method and path as given, delivery.allow_loopback
 * and allow_private from the flags, the body parsed as the server does
 * (JSON, duplicates refused). Free with fuzz_req_free().
 */
void fuzz_req_init(struct fuzz_req *fr, const uint8_t *data, size_t size, const char *method,
		   const char *path, bool allow_loopback, bool allow_private);
void fuzz_req_free(struct fuzz_req *fr);

/*
 * Aborts (a finding) unless the request holds an error reply: a 4xx
 * status and a JSON body. Returns the parsed reply (the caller's).
 */
json_t *fuzz_req_expect_error(const struct fuzz_req *fr);
/* Aborts unless no reply was set (the validation passed). */
void fuzz_req_expect_no_reply(const struct fuzz_req *fr);

/* True when s has no byte below 0x20 and no DEL. */
bool fuzz_printable(const char *s);

/* Prints the message and aborts: how a harness reports a broken invariant. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
