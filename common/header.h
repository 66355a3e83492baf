/*
 * The request headers a subscription may not set, in one place: the API
 * refuses them at registration (api/routes_endpoints.c, 400 naming the
 * header) and the worker skips them when it builds a request (worker/
 * main.c job_build), so both agree on what a receiver gets. Reserved are:
 *   - what bankhook sets itself on every delivery (worker/sender.c): the
 *     Standard Webhooks headers (every "webhook-" name, so the signature's
 *     future fields are covered too), Content-Type, User-Agent, and Expect
 *     (sent empty, so no "100-continue" round trip stalls a large body);
 *   - the framing and connection-specific fields (RFC 9110 7.6.1, RFC
 *     9112): Content-Length, Transfer-Encoding, Host, Connection,
 *     Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade. libcurl owns the
 *     connection; a second value of these breaks or smuggles the request.
 */
#ifndef BH_COMMON_HEADER_H
#define BH_COMMON_HEADER_H

#include <stdbool.h>

/* Whether a subscription may not set header `name` (any case). */
bool bh_header_reserved(const char *name);

#endif
