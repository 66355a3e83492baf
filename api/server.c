#include "server.h"

#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connbudget.h"
#include "log.h"
#include "ops_http.h"

#define TOKEN_MAX 512
#define PARAM_MAX 200
#define METRICS_MAX 512
#define SWEEP_MS 100

struct bh_server {
	struct MHD_Daemon *daemon;
	struct bh_api *api;
	atomic_int in_flight; /* requests between their first call and completion */
	/* The connection budget and the thread that enforces its deadlines. */
	struct bh_connbudget *budget;
	pthread_t sweeper;
	bool sweeper_started;
	atomic_bool stopping;
};

/*
 * Per-request state, from the request line (the URI log callback) to
 * completion.
 */
struct conn_ctx {
	struct bh_buf body;
	bool started;	/* the access handler has seen this request */
	bool replied;	/* a response was queued before the body was read */
	size_t uri_len; /* the raw request-target, query string included */
	int64_t start_ms;
};

/* Searched in this order; the first route whose pattern and method match wins. */
static const struct bh_route *const route_tables[] = {
	bh_routes_ops,	      bh_routes_identity, bh_routes_endpoints, bh_routes_events,
	bh_routes_deliveries, bh_routes_banks,	  bh_routes_obp,       bh_routes_banksocket,
	bh_routes_acquirer,   bh_routes_consents, bh_routes_psd2,      bh_routes_grants,
};

void bh_routes_print(FILE *out)
{
	for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++)
		for (const struct bh_route *r = route_tables[t]; r->method != NULL; r++)
			fprintf(out, "%s %s\n", r->method, r->pattern);
}

/* ---------------------------------------------------------------- metrics */

struct metric {
	const char *route; /* a route pattern (static) or "unmatched" */
	unsigned int status;
	unsigned long long count;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric metrics[METRICS_MAX];
static int n_metrics;

/* What the connection budget did (see "connection budget" below). */
static atomic_ullong conns_refused, conns_taken, conns_timed_out;

static void metrics_count(const char *route, unsigned int status)
{
	pthread_mutex_lock(&metrics_lock);
	int i;
	for (i = 0; i < n_metrics; i++)
		if (metrics[i].status == status && strcmp(metrics[i].route, route) == 0)
			break;
	/* Routes and statuses are finite, so the table only fills on a bug; then we stop counting. */
	if (i == n_metrics && n_metrics < METRICS_MAX)
		metrics[n_metrics++] = (struct metric){.route = route, .status = status};
	if (i < n_metrics)
		metrics[i].count++;
	pthread_mutex_unlock(&metrics_lock);
}

void bh_server_metrics(struct bh_buf *out)
{
	(void)bh_buf_appendf(
		out, "# HELP bankhook_http_requests_total HTTP requests by route and status.\n"
		     "# TYPE bankhook_http_requests_total counter\n");
	pthread_mutex_lock(&metrics_lock);
	/* Route patterns are our own constants: no quotes or backslashes to escape. */
	for (int i = 0; i < n_metrics; i++)
		(void)bh_buf_appendf(
			out, "bankhook_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
			metrics[i].route, metrics[i].status, metrics[i].count);
	pthread_mutex_unlock(&metrics_lock);
	(void)bh_buf_appendf(
		out,
		"# HELP bankhook_api_connections_total Connections the budget refused at"
		" accept, closed to make room for another address, or closed past their"
		" deadline.\n"
		"# TYPE bankhook_api_connections_total counter\n"
		"bankhook_api_connections_total{outcome=\"refused\"} %llu\n"
		"bankhook_api_connections_total{outcome=\"taken\"} %llu\n"
		"bankhook_api_connections_total{outcome=\"timed_out\"} %llu\n",
		atomic_load(&conns_refused), atomic_load(&conns_taken),
		atomic_load(&conns_timed_out));
}

/* ---------------------------------------------------------------- replies */

static void reply_set(struct bh_request *req, unsigned int status, char *body, size_t len,
		      const char *type)
{
	free(req->reply_body);
	req->status = status;
	req->reply_body = body;
	req->reply_len = len;
	req->reply_type = type;
}

void bh_api_reply_json(struct bh_request *req, unsigned int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL) {
		bh_error("cannot serialize a %u reply", status);
		text = bh_xstrdup(
			"{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}");
		status = 500;
	}
	reply_set(req, status, text, strlen(text), "application/json");
}

/*
 * The OBP text for an error the shared plumbing raised on an OBP route
 * (authentication, body limits, the database): OBP clients match on the
 * OBP-nnnnn prefix, so every status gets the code OBP-API uses for it.
 */
static void reply_error_obp(struct bh_request *req, unsigned int status, const char *msg)
{
	switch (status) {
	case 401:
		bh_api_reply_obp(req, status,
				 "OBP-20001: User not logged in. Authentication is required!");
		break;
	case 404:
	case 405:
		bh_api_reply_obp(
			req, status,
			"OBP-10404: 404 Not Found. The server could not find the requested URI."
			" Please double check your URL, headers and body.");
		break;
	case 429:
		bh_api_reply_obp(req, status, "OBP-10018: Too Many Requests.");
		break;
	case 409:
		/* bankhook's own: OBP-API has no webhook limit (docs/DIALECTS.md) */
		bh_api_reply_obp(req, status, "OBP-39001: Webhook limit reached. %s", msg);
		break;
	case 414:
	case 431:
		bh_api_reply_obp(req, status, "OBP-10001: Incorrect request. %s", msg);
		break;
	default:
		if (status >= 400 && status < 500)
			bh_api_reply_obp(req, status, "OBP-10001: Incorrect json format. %s", msg);
		else
			bh_api_reply_obp(req, status, "OBP-50000: Unknown Error.");
	}
}

void bh_api_reply_error(struct bh_request *req, unsigned int status, const char *code,
			const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote input, maybe cut mid-character: JSON needs UTF-8. */
	bh_utf8_fix(msg);
	if (req->obp) {
		reply_error_obp(req, status, msg);
		return;
	}
	if (req->reply_error != NULL) {
		req->reply_error(req, status, code, msg);
		return;
	}
	bh_api_reply_json(req, status,
			  json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

void bh_api_reply_obp(struct bh_request *req, unsigned int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bh_utf8_fix(msg);
	bh_api_reply_json(req, status, json_pack("{s:i,s:s}", "code", (int)status, "message", msg));
}

void bh_api_reply_text(struct bh_request *req, unsigned int status, const char *content_type,
		       const char *text, size_t len)
{
	reply_set(req, status, bh_xstrndup(text, len), len, content_type);
}

void bh_api_reply_header(struct bh_request *req, const char *name, const char *value)
{
	for (const char *p = value; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return;
	int i;
	for (i = 0; i < req->n_reply_headers; i++)
		if (strcasecmp(req->reply_header_names[i], name) == 0)
			break;
	if (i == BH_API_MAX_REPLY_HEADERS) {
		bh_error("%s %s: more than %d reply headers; dropping %s", req->method, req->path,
			 BH_API_MAX_REPLY_HEADERS, name);
		return;
	}
	if (i == req->n_reply_headers) {
		req->reply_header_names[i] = bh_xstrdup(name);
		req->n_reply_headers++;
	}
	free(req->reply_header_values[i]);
	req->reply_header_values[i] = bh_xstrdup(value);
}

void bh_api_reply_empty(struct bh_request *req, unsigned int status)
{
	reply_set(req, status, NULL, 0, NULL);
}

void bh_api_reply_db_error(struct bh_request *req, const char *what)
{
	bh_error("%s %s: %s: database: %s %s", req->method, req->path, what,
		 req->db ? bh_db_sqlstate(req->db) : "", req->db ? bh_db_errmsg(req->db) : "");
	bh_api_reply_error(req, 503, "dependency_unavailable",
			   "The database is unavailable; try again later.");
}

/* ---------------------------------------------------------------- request accessors */

const char *bh_api_param(const struct bh_request *req, const char *name)
{
	for (int i = 0; i < req->n_params; i++)
		if (strcmp(req->param_names[i], name) == 0)
			return req->param_values[i];
	return "";
}

const char *bh_api_query(const struct bh_request *req, const char *key)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *bh_api_header(const struct bh_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct bh_db *bh_api_db(struct bh_request *req)
{
	/* Taken lazily so /healthz and /metrics never wait for the pool. */
	if (req->db == NULL)
		req->db = bh_db_pool_get(req->api->pool);
	return req->db;
}

int bh_api_query_limit(struct bh_request *req, int *out)
{
	const char *s = bh_api_query(req, "limit");
	long long n = 50;
	if (s != NULL && bh_parse_int(s, 1, 1000, &n) < 0) {
		bh_api_reply_error(req, 400, "invalid_parameter",
				   "limit: must be an integer from 1 to 1000");
		return -1;
	}
	*out = (int)n;
	return 0;
}

/* ---------------------------------------------------------------- routing */

static void params_free(struct bh_request *req)
{
	for (int i = 0; i < req->n_params; i++) {
		free(req->param_names[i]);
		free(req->param_values[i]);
	}
	req->n_params = 0;
}

/*
 * Matches path against a pattern of literal segments and {name} segments;
 * a {name} takes one non-empty segment. Fills req's params on success.
 */
static bool route_match(const char *pattern, const char *path, struct bh_request *req)
{
	const char *p = pattern, *s = path;
	params_free(req);
	while (*p != '\0' && *s != '\0') {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			size_t vlen = strcspn(s, "/");
			if (close == NULL || vlen == 0 || vlen > PARAM_MAX ||
			    req->n_params == BH_API_MAX_PARAMS)
				goto fail;
			req->param_names[req->n_params] =
				bh_xstrndup(p + 1, (size_t)(close - p - 1));
			req->param_values[req->n_params] = bh_xstrndup(s, vlen);
			req->n_params++;
			p = close + 1;
			s += vlen;
			continue;
		}
		if (*p != *s)
			goto fail;
		p++;
		s++;
	}
	if (*p == '\0' && *s == '\0')
		return true;
fail:
	params_free(req);
	return false;
}

/*
 * The route for method and path. When the path exists only with other
 * methods, NULL and *allow lists them (malloc'ed); when it does not exist
 * at all, NULL and *allow NULL.
 */
static const struct bh_route *route_find(struct bh_request *req, char **allow)
{
	struct bh_buf methods;
	const struct bh_route *found = NULL;
	bh_buf_init(&methods, 256);
	*allow = NULL;
	for (size_t t = 0; t < BH_ARRAY_LEN(route_tables) && found == NULL; t++) {
		for (const struct bh_route *r = route_tables[t]; r->method != NULL; r++) {
			if (!route_match(r->pattern, req->path, req))
				continue;
			/* HEAD is GET without the body, which libmicrohttpd drops itself. */
			if (strcmp(r->method, req->method) == 0 ||
			    (strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
				found = r;
				break;
			}
			(void)bh_buf_appendf(&methods, "%s%s", methods.len ? ", " : "", r->method);
		}
	}
	if (found == NULL) {
		params_free(req);
		if (methods.len > 0) {
			*allow = methods.data;
			methods.data = NULL; /* now owned by the caller */
		}
	}
	bh_buf_free(&methods);
	return found;
}

/*
 * The error envelope for a path no route matched: that of the routes
 * whose pattern has the same first segment ("/banksocket/..."), if any.
 */
static bh_error_fn path_reply_error(const char *path)
{
	size_t n = strcspn(path + (path[0] == '/'), "/") + (path[0] == '/');
	for (size_t t = 0; t < BH_ARRAY_LEN(route_tables); t++)
		for (const struct bh_route *r = route_tables[t]; r->method != NULL; r++)
			if (r->reply_error != NULL && strncmp(r->pattern, path, n) == 0 &&
			    r->pattern[n] == '/')
				return r->reply_error;
	return NULL;
}

/* ---------------------------------------------------------------- checks */

static bool has_role(const struct bh_caller *c, const char *role)
{
	size_t i;
	json_t *v;
	if (c->is_admin)
		return true;
	json_array_foreach (c->roles, i, v)
		if (strcmp(json_string_value(v), role) == 0)
			return true;
	return false;
}

/*
 * The token of a DirectLogin parameter list ("token=abc" or
 * token="abc", possibly among other parameters), copied into out; 0 or -1.
 */
static int directlogin_token(const char *h, char *out, size_t outlen)
{
	while (*h != '\0') {
		h += strspn(h, " \t,");
		size_t klen = strcspn(h, "= \t,");
		const char *v = h + klen;
		v += strspn(v, " \t");
		if (*v != '=') {
			h = v + strcspn(v, ",");
			continue;
		}
		v++;
		v += strspn(v, " \t");
		bool quoted = *v == '"';
		v += quoted;
		size_t vlen = strcspn(v, quoted ? "\"" : " \t,");
		if (klen == 5 && strncasecmp(h, "token", 5) == 0) {
			if (vlen == 0 || vlen >= outlen)
				return -1;
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return 0;
		}
		h = v + vlen + (quoted && v[vlen] == '"');
	}
	return -1;
}

/*
 * The caller's token: "Authorization: Bearer <t>", or as OBP clients send
 * it, "Authorization: DirectLogin token=<t>" or "DirectLogin: token=<t>".
 * 0, or -1 when none is given or it is malformed.
 */
static int request_token(struct bh_request *req, char *out, size_t outlen)
{
	const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
		const char *t = h + 7;
		t += strspn(t, " ");
		size_t n = strlen(t);
		if (n == 0 || n >= outlen)
			return -1;
		memcpy(out, t, n + 1);
		return 0;
	}
	if (h != NULL && strncasecmp(h, "DirectLogin ", 12) == 0)
		return directlogin_token(h + 12, out, outlen);
	h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "DirectLogin");
	if (h != NULL)
		return directlogin_token(h, out, outlen);
	return -1;
}

/* 0 with the caller filled in, or -1 with the reply set. */
static int authenticate(struct bh_request *req)
{
	char token[TOKEN_MAX + 1];
	if (request_token(req, token, sizeof(token)) < 0) {
		bh_api_reply_error(req, 401, "unauthorized",
				   "Authorization: a header \"Bearer <token>\" is required.");
		return -1;
	}
	int rc = bh_identity_authenticate(bh_api_db(req), token, &req->caller);
	if (rc < 0) {
		bh_api_reply_db_error(req, "authenticate");
		return -1;
	}
	if (rc > 0) {
		bh_api_reply_error(req, 401, "unauthorized",
				   "Authorization: the token is not valid.");
		return -1;
	}
	return bh_api_rate_limit(req, token);
}

void bh_api_reply_retry_after(struct bh_request *req, int wait_s)
{
	char retry[16];
	snprintf(retry, sizeof(retry), "%d", wait_s);
	bh_api_reply_header(req, "Retry-After", retry);
}

int bh_api_rate_limit(struct bh_request *req, const char *token)
{
	const struct bh_config *cfg = req->api->cfg;
	int64_t now = bh_mono_ms();
	/*
	 * Publishing is a core system's traffic, not management calls: it has
	 * its own bucket, so a bank publishing through the API is not held
	 * to the limit meant for tenants' management calls (issue 13).
	 */
	if (req->publish && has_role(&req->caller, "event_publisher")) {
		if (req->api->publish_ratelimit == NULL)
			return 0;
		int wait_s = bh_ratelimit_take(req->api->publish_ratelimit, token, now);
		if (wait_s > 0) {
			bh_api_reply_error(
				req, 429, "rate_limited",
				"Authorization: this token is over the publish rate limit of %d"
				" requests a second (api.publish_rate_limit_per_s, burst %d);"
				" retry after %d s.",
				cfg->api_publish_rate_limit_per_s,
				cfg->api_publish_rate_limit_burst, wait_s);
			bh_api_reply_retry_after(req, wait_s);
			return -1;
		}
		return 0;
	}
	if (req->api->ratelimit != NULL) {
		int wait_s = bh_ratelimit_take(req->api->ratelimit, token, now);
		if (wait_s > 0) {
			bh_api_reply_error(
				req, 429, "rate_limited",
				"Authorization: this token is over the API rate limit of %d requests"
				" a second (burst %d); retry after %d s.",
				cfg->api_rate_limit_per_s, cfg->api_rate_limit_burst, wait_s);
			bh_api_reply_retry_after(req, wait_s);
			return -1;
		}
	}
	/* The client's bucket too: minting more tokens does not buy more requests. */
	if (req->api->client_ratelimit != NULL && req->caller.client_id != NULL) {
		int wait_s =
			bh_ratelimit_take(req->api->client_ratelimit, req->caller.client_id, now);
		if (wait_s > 0) {
			bh_api_reply_error(
				req, 429, "rate_limited",
				"Authorization: this client is over the API rate limit of %d requests"
				" a second over all its tokens (api.client_rate_limit_per_s, burst %d);"
				" retry after %d s.",
				cfg->api_client_rate_limit_per_s, cfg->api_client_rate_limit_burst,
				wait_s);
			bh_api_reply_retry_after(req, wait_s);
			return -1;
		}
	}
	return 0;
}

/* The numeric address of conn's peer, or "unknown". */
static void peer_address(struct MHD_Connection *conn, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
	socklen_t len = sa != NULL && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
								: sizeof(struct sockaddr_in);
	if (sa == NULL ||
	    getnameinfo(sa, len, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, outlen, "unknown");
}

void bh_api_client_address(const struct bh_request *req, char *out, size_t outlen)
{
	peer_address(req->conn, out, outlen);
}

void bh_api_reply_subscription_limit(struct bh_request *req)
{
	bh_api_reply_error(req, 409, "subscription_limit",
			   "api.max_subscriptions: this client already has the limit of %d"
			   " subscriptions (webhooks, endpoints, configurations, in every"
			   " dialect); delete one first.",
			   req->api->cfg->api_max_subscriptions);
}

/* The body limit of route r (NULL: no route matched). */
static int body_limit(const struct bh_config *cfg, const struct bh_route *r)
{
	return r != NULL && r->batch_body ? cfg->api_batch_body_limit : cfg->api_body_limit;
}

/* "application/json", optionally followed by parameters. */
static bool is_json_type(const char *ct)
{
	static const char want[] = "application/json";
	if (ct == NULL || strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	char c = ct[sizeof(want) - 1];
	return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

/* Parses the body of POST/PUT/PATCH; 0, or -1 with the reply set. */
static int parse_body(struct bh_request *req, const struct bh_buf *body)
{
	bool has_body_method = strcmp(req->method, "POST") == 0 ||
			       strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
	if (!has_body_method || body->len == 0)
		return 0;
	const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	/* OBP clients do not always say application/json; OBP-API reads the body anyway. */
	if (!req->obp && !is_json_type(ct)) {
		bh_api_reply_error(req, 415, "unsupported_media_type",
				   "Content-Type: must be application/json.");
		return -1;
	}
	json_error_t jerr;
	req->body = json_loadb(body->data, body->len, JSON_REJECT_DUPLICATES, &jerr);
	if (req->body == NULL && req->obp) {
		req->body_invalid = true; /* answered by the handler, after bank and role checks */
		return 0;
	}
	if (req->body == NULL) {
		bh_api_reply_error(req, 400, "invalid_json",
				   "body: not valid JSON: %s at line %d column %d.", jerr.text,
				   jerr.line, jerr.column);
		return -1;
	}
	return 0;
}

/* Stops at the first query argument whose name or value is not UTF-8. */
static enum MHD_Result find_non_utf8_arg(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	(void)kind;
	if (bh_utf8_valid(key) && (value == NULL || bh_utf8_valid(value)))
		return MHD_YES;
	*(const char **)cls = key;
	return MHD_NO;
}

/* Routes, authenticates and runs the handler; the reply is left in req. */
static const char *dispatch(struct bh_request *req, const struct bh_buf *body)
{
	char *allow = NULL;
	const struct bh_route *r = route_find(req, &allow);
	req->obp = r != NULL ? r->obp : strncmp(req->path, "/obp/", 5) == 0;
	req->reply_error = r != NULL ? r->reply_error : path_reply_error(req->path);
	req->publish = r != NULL && r->publish;
	req->route = r != NULL ? r->pattern : NULL;
	if (r == NULL) {
		if (allow != NULL) {
			req->reply_allow = allow;
			bh_api_reply_error(req, 405, "method_not_allowed",
					   "method: %s is not allowed here; use %s.", req->method,
					   allow);
		} else {
			bh_api_reply_error(req, 404, "not_found", "path: no such resource: %s",
					   req->path);
		}
		return "unmatched";
	}
	/*
	 * Every id, code and name is UTF-8 text, and PostgreSQL refuses a
	 * parameter that is not (which would be a 503): such a path names
	 * nothing, so it is an unknown resource, answered before any query.
	 * (A %00 never gets here: libmicrohttpd ends the decoded path at it.)
	 */
	for (int i = 0; i < req->n_params; i++) {
		if (!bh_utf8_valid(req->param_values[i])) {
			bh_api_reply_error(req, 404, "not_found",
					   "%s: no such resource (not UTF-8).",
					   req->param_names[i]);
			return r->pattern;
		}
	}
	/* The same for the query: filters and cursors would reach PostgreSQL too. */
	const char *bad_arg = NULL;
	(void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, find_non_utf8_arg,
					&bad_arg);
	if (bad_arg != NULL) {
		bh_api_reply_error(req, 400, "invalid_parameter", "%.100s: not UTF-8.", bad_arg);
		return r->pattern;
	}
	if (body->too_big) {
		bh_api_reply_error(req, 413, "body_too_large",
				   "body: larger than the limit of %d bytes (%s).",
				   body_limit(req->api->cfg, r),
				   r->batch_body ? "api.batch_body_limit" : "api.body_limit");
		return r->pattern;
	}
	if (r->needs_auth && authenticate(req) < 0)
		return r->pattern;
	if (r->role != NULL && !has_role(&req->caller, r->role)) {
		bh_api_reply_error(req, 403, "forbidden", "role: this call needs role %s.",
				   r->role);
		return r->pattern;
	}
	if (parse_body(req, body) < 0)
		return r->pattern;
	r->handler(req);
	if (req->status == 0) {
		bh_error("%s %s: handler set no reply", req->method, req->path);
		bh_api_reply_error(req, 500, "internal", "Internal error.");
	}
	return r->pattern;
}

/* ---------------------------------------------------------------- libmicrohttpd glue */

static enum MHD_Result queue_reply(struct MHD_Connection *conn, struct bh_request *req)
{
	struct MHD_Response *resp;
	if (req->reply_body != NULL) {
		/* MUST_FREE: the body is malloc'ed and now belongs to the response. */
		resp = MHD_create_response_from_buffer(req->reply_len, req->reply_body,
						       MHD_RESPMEM_MUST_FREE);
		req->reply_body = NULL;
	} else {
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	}
	if (resp == NULL)
		return MHD_NO;
	if (req->reply_type != NULL)
		(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->reply_type);
	if (req->reply_allow != NULL)
		(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->reply_allow);
	(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	for (int i = 0; i < req->n_reply_headers; i++)
		(void)MHD_add_response_header(resp, req->reply_header_names[i],
					      req->reply_header_values[i]);
	enum MHD_Result ret = MHD_queue_response(conn, req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void request_free(struct bh_request *req)
{
	if (req->db != NULL)
		bh_db_pool_put(req->api->pool, req->db);
	params_free(req);
	json_decref(req->body);
	bh_caller_free(&req->caller);
	free(req->reply_body);
	free(req->reply_allow);
	for (int i = 0; i < req->n_reply_headers; i++) {
		free(req->reply_header_names[i]);
		free(req->reply_header_values[i]);
	}
}

/*
 * Replies with an error before the body is read (the request line, the
 * headers or the declared length are over a limit), in the envelope of
 * the route the path would reach.
 */
static enum MHD_Result reply_early(struct bh_server *srv, struct MHD_Connection *conn,
				   const char *method, const char *url, unsigned int status,
				   const char *code, const char *msg)
{
	struct bh_request req = {.api = srv->api, .method = method, .path = url, .conn = conn};
	char *allow = NULL;
	const struct bh_route *r = route_find(&req, &allow);
	free(allow);
	req.obp = r != NULL && r->obp;
	req.reply_error = r != NULL ? r->reply_error : path_reply_error(url);
	bh_api_reply_error(&req, status, code, "%s", msg);
	enum MHD_Result ret = queue_reply(conn, &req);
	metrics_count(r ? r->pattern : "unmatched", status);
	request_free(&req);
	bh_info("%s %.200s -> %u (%s)", method, url, status, code);
	return ret;
}

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	(void)kind;
	/* "name: value\r\n", as the client sent it (near enough) */
	*(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* The first call for a request: checks its size limits; MHD_YES to go on reading. */
static enum MHD_Result request_start(struct bh_server *srv, struct MHD_Connection *conn,
				     struct conn_ctx *ctx, const char *method, const char *url)
{
	const struct bh_config *cfg = srv->api->cfg;
	char msg[160];
	if (ctx->uri_len > (size_t)cfg->api_max_url_bytes) {
		ctx->replied = true;
		snprintf(msg, sizeof(msg), "url: longer than the limit of %d bytes.",
			 cfg->api_max_url_bytes);
		return reply_early(srv, conn, method, url, 414, "uri_too_long", msg);
	}
	size_t header_bytes = 0;
	(void)MHD_get_connection_values(conn, MHD_HEADER_KIND, sum_header, &header_bytes);
	if (header_bytes > (size_t)cfg->api_max_header_bytes) {
		ctx->replied = true;
		snprintf(msg, sizeof(msg), "headers: larger than the limit of %d bytes together.",
			 cfg->api_max_header_bytes);
		return reply_early(srv, conn, method, url, 431, "headers_too_large", msg);
	}
	/* The route decides the body's cap: the batch route takes more. */
	struct bh_request probe = {.api = srv->api, .method = method, .path = url, .conn = conn};
	char *allow = NULL;
	const struct bh_route *r = route_find(&probe, &allow);
	free(allow);
	params_free(&probe);
	int limit = body_limit(cfg, r);
	ctx->body.cap = (size_t)limit;
	const char *cl =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	long long n;
	if (cl != NULL && bh_parse_int(cl, 0, LLONG_MAX, &n) == 0 && n > limit) {
		ctx->replied = true;
		snprintf(msg, sizeof(msg), "body: larger than the limit of %d bytes (%s).", limit,
			 r != NULL && r->batch_body ? "api.batch_body_limit" : "api.body_limit");
		return reply_early(srv, conn, method, url, 413, "body_too_large", msg);
	}
	return MHD_YES;
}

/* ---------------------------------------------------------------- connection budget */

/* The budget's close: runs with the budget locked, so fd is still this connection's. */
static void budget_close(int fd, void *arg)
{
	(void)arg;
	/* libmicrohttpd's thread then reads end-of-file and closes the connection itself. */
	(void)shutdown(fd, SHUT_RDWR);
}

/* The accept policy: the per-address cap and the fair share of a full budget. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct bh_server *srv = cls;
	char text[BH_CONNBUDGET_ADDR_MAX];
	if (getnameinfo(addr, addrlen, text, sizeof(text), NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(text, sizeof(text), "unknown");
	int admitted = bh_connbudget_admit(srv->budget, text);
	if (admitted == 2)
		atomic_fetch_add(&conns_taken, 1);
	if (admitted > 0)
		return MHD_YES;
	atomic_fetch_add(&conns_refused, 1);
	bh_debug("refusing a connection from %s: over its share of the connection budget", text);
	return MHD_NO;
}

/* The budget's id of conn's connection (stored as id + 1 in its socket context), or -1. */
static int conn_id(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci == NULL || ci->socket_context == NULL ? -1
							: (int)(intptr_t)ci->socket_context - 1;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct bh_server *srv = cls;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		bh_connbudget_close(srv->budget, (int)(intptr_t)*socket_context - 1);
		*socket_context = NULL;
		return;
	}
	const union MHD_ConnectionInfo *fd =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	char text[BH_CONNBUDGET_ADDR_MAX];
	peer_address(conn, text, sizeof(text));
	if (fd == NULL)
		return;
	int id = bh_connbudget_open(srv->budget, fd->connect_fd, text, bh_mono_ms());
	if (id < 0) {
		(void)shutdown(fd->connect_fd, SHUT_RDWR); /* the table is full: not ours to keep */
		return;
	}
	*socket_context = (void *)(intptr_t)(id + 1);
}

/* Closes connections past their deadline, every SWEEP_MS, until the server stops. */
static void *sweep_loop(void *arg)
{
	struct bh_server *srv = arg;
	while (!atomic_load(&srv->stopping)) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = SWEEP_MS * 1000 * 1000};
		nanosleep(&ts, NULL);
		int n = bh_connbudget_sweep(srv->budget, bh_mono_ms());
		atomic_fetch_add(&conns_timed_out, (unsigned long long)n);
		if (n > 0)
			bh_info("closed %d connection(s) past api.header_timeout_s /"
				" api.request_timeout_s",
				n);
	}
	return NULL;
}

/* The URI log callback: runs once the request line is read, before the headers. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)conn;
	struct bh_server *srv = cls;
	struct conn_ctx *ctx = bh_xcalloc(1, sizeof(*ctx));
	bh_buf_init(&ctx->body, (size_t)srv->api->cfg->api_body_limit);
	ctx->uri_len = strlen(uri);
	ctx->start_ms = bh_mono_ms();
	return ctx; /* becomes *con_cls; freed in on_completed */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	(void)version;
	struct bh_server *srv = cls;
	struct conn_ctx *ctx = *con_cls;
	if (ctx == NULL) { /* the URI callback always sets it; not if MHD changes that */
		ctx = on_uri(srv, url, conn);
		*con_cls = ctx;
	}
	if (!ctx->started) {
		ctx->started = true;
		atomic_fetch_add(&srv->in_flight, 1);
		bh_connbudget_phase(srv->budget, conn_id(conn), BH_CONN_BODY, bh_mono_ms());
		return request_start(srv, conn, ctx, method, url);
	}
	if (*upload_data_size > 0) {
		/* Past the cap the rest is read and dropped, then answered with 413. */
		if (!ctx->replied && !ctx->body.too_big)
			(void)bh_buf_append(&ctx->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (ctx->replied)
		return MHD_YES;

	bh_connbudget_phase(srv->budget, conn_id(conn), BH_CONN_HANDLING, bh_mono_ms());
	struct bh_request req = {.api = srv->api, .method = method, .path = url, .conn = conn};
	const char *route = dispatch(&req, &ctx->body);
	unsigned int status = req.status;
	enum MHD_Result ret = queue_reply(conn, &req);
	ctx->replied = true;
	request_free(&req);
	metrics_count(route, status);

	bool quiet = strcmp(route, "/healthz") == 0 || strcmp(route, "/readyz") == 0 ||
		     strcmp(route, "/metrics") == 0;
	bh_log_write(quiet ? BH_LOG_DEBUG : BH_LOG_INFO, NULL, __FILE__, __LINE__,
		     "%s %s -> %u (%lld ms)", method, url, status,
		     (long long)(bh_mono_ms() - ctx->start_ms));
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	struct bh_server *srv = cls;
	struct conn_ctx *ctx = *con_cls;
	/* A kept-alive connection's next request has its own deadlines, from now. */
	bh_connbudget_phase(srv->budget, conn_id(conn), BH_CONN_HEAD, bh_mono_ms());
	if (ctx == NULL)
		return;
	bh_buf_free(&ctx->body);
	if (ctx->started)
		atomic_fetch_sub(&srv->in_flight, 1);
	free(ctx);
	*con_cls = NULL;
}

struct bh_server *bh_server_start(struct bh_api *api, char *errbuf, size_t errlen)
{
	struct bh_server *srv = bh_xcalloc(1, sizeof(*srv));
	struct sockaddr_storage ss;
	char port[16];
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;

	srv->api = api;
	atomic_init(&srv->in_flight, 0);
	atomic_init(&srv->stopping, false);
	snprintf(port, sizeof(port), "%d", api->cfg->api_port);
	int gai = getaddrinfo(api->cfg->api_host, port, &hints, &ai);
	if (gai != 0) {
		snprintf(errbuf, errlen, "api.host %s: %s", api->cfg->api_host, gai_strerror(gai));
		goto fail;
	}
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	freeaddrinfo(ai);
	/*
	 * One thread per connection because handlers block on PostgreSQL and
	 * on Kafka acknowledgements (up to the producer timeout): in a shared
	 * polling thread one slow acknowledgement would stall every other
	 * connection of that thread, /healthz included. The connection limit
	 * bounds the threads; ITC is what MHD_quiesce_daemon needs.
	 *
	 * Slow clients: the connection budget (common/connbudget.h) decides
	 * at accept whether a connection may open (the per-address cap, the
	 * fair share of a full budget) and a sweeper thread closes those that
	 * take longer than the deadlines to send a request, however they
	 * trickle; an idle connection is also closed after the idle timeout.
	 * libmicrohttpd's own limit is above the budget by the connections
	 * the budget may be closing at once. The memory limit lets a request
	 * line and headers up to our own limits through to request_start
	 * (which answers in the route's envelope); beyond it libmicrohttpd
	 * answers 414/431 by itself.
	 */
	const struct bh_config *cfg = api->cfg;
	int max_conns =
		cfg->api_max_connections > 0 ? cfg->api_max_connections : cfg->api_threads * 64;
	int hard_limit = max_conns + max_conns / 4 + 16;
	srv->budget = bh_connbudget_new(max_conns, cfg->api_max_connections_per_ip, hard_limit,
					cfg->api_header_timeout_s * 1000,
					cfg->api_request_timeout_s * 1000, budget_close, NULL);
	size_t mem_limit =
		(size_t)cfg->api_max_url_bytes + (size_t)cfg->api_max_header_bytes + 32 * 1024;
	srv->daemon = MHD_start_daemon(
		flags, (uint16_t)api->cfg->api_port, on_accept, srv, on_request, srv,
		MHD_OPTION_EXTERNAL_LOGGER, bh_ops_http_log_mhd, NULL, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_URI_LOG_CALLBACK,
		on_uri, srv, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)hard_limit,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->api_connection_timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem_limit, MHD_OPTION_END);
	if (srv->daemon == NULL) {
		snprintf(errbuf, errlen, "cannot listen on %s:%d (address in use?)",
			 api->cfg->api_host, api->cfg->api_port);
		goto fail;
	}
	if (pthread_create(&srv->sweeper, NULL, sweep_loop, srv) != 0) {
		snprintf(errbuf, errlen, "cannot start the connection sweeper thread");
		MHD_stop_daemon(srv->daemon);
		goto fail;
	}
	srv->sweeper_started = true;
	return srv;
fail:
	bh_connbudget_free(srv->budget);
	free(srv);
	return NULL;
}

void bh_server_stop(struct bh_server *srv, int drain_ms)
{
	if (srv == NULL)
		return;
	/* Stop accepting first, so the drain below can end. */
	MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
	int64_t deadline = bh_mono_ms() + drain_ms;
	while (atomic_load(&srv->in_flight) > 0 && bh_mono_ms() < deadline) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (atomic_load(&srv->in_flight) > 0)
		bh_warn("stopping with %d requests still in flight", atomic_load(&srv->in_flight));
	/* The sweeper first: it may shut down connections the daemon owns. */
	atomic_store(&srv->stopping, true);
	if (srv->sweeper_started)
		pthread_join(srv->sweeper, NULL);
	MHD_stop_daemon(srv->daemon);
	/* Ours since the quiesce; closed only now that no daemon thread polls it. */
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	bh_connbudget_free(srv->budget);
	free(srv);
}
