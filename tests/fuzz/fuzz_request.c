/*
 * libFuzzer target: the api's request plumbing before any handler
 * (api/server.c, included so its static functions are reachable): route
 * matching with path parameters, the 404 / 405 answer to an unmatched
 * path (dispatch), the bearer / DirectLogin token, and the JSON body as
 * parse_body reads it. The selector line is "METHOD PATH";
 * headers and body as in harness.h. Besides crashes and sanitizer
 * reports, it checks that a matched route really is the path (the
 * pattern with its parameters substituted gives the path back), that
 * parameters are single non-empty segments within PARAM_MAX, that a token
 * never overruns its buffer, and that an unmatched path or a refused body
 * gets a 4xx JSON reply (405 with Allow exactly when other methods match).
 */
#include "server.c"

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The pattern with req's parameters put in, which must give the path back. */
static void check_route(const struct bh_route *r, const struct bh_request *req)
{
	if (strcmp(r->method, req->method) != 0 &&
	    !(strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
		fuzz_fail("route %s %s matched method %s", r->method, r->pattern, req->method);
	struct bh_buf b;
	bh_buf_init(&b, 64 * 1024);
	int k = 0;
	for (const char *p = r->pattern; *p != '\0';) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (k >= req->n_params || close == NULL ||
			    strncmp(req->param_names[k], p + 1, (size_t)(close - p - 1)) != 0)
				fuzz_fail("parameters do not follow the pattern %s", r->pattern);
			const char *v = req->param_values[k++];
			if (v[0] == '\0' || strchr(v, '/') != NULL || strlen(v) > PARAM_MAX)
				fuzz_fail("parameter \"%s\" is not one segment within the cap", v);
			(void)bh_buf_append(&b, v, strlen(v));
			p = close + 1;
		} else {
			(void)bh_buf_append(&b, p++, 1);
		}
	}
	(void)bh_buf_append(&b, "", 1);
	if (k != req->n_params || strcmp(b.data, req->path) != 0)
		fuzz_fail("route %s rebuilt as %s, not the path %s", r->pattern, b.data, req->path);
	bh_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_req fr;
	char *allow = NULL;
	char token[TOKEN_MAX + 1];
	if (size > 64 * 1024)
		return -1;
	fuzz_req_init(&fr, data, size, "GET", "/", false, false);
	/* Selector "METHOD PATH": libmicrohttpd hands both over as C strings. */
	char *sp = strchr(fr.selector, ' ');
	if (sp != NULL) {
		*sp = '\0';
		fr.req.method = fr.selector;
		fr.req.path = sp + 1;
	}
	const struct bh_route *r = route_find(&fr.req, &allow);
	if (r != NULL) {
		check_route(r, &fr.req);
		fr.req.obp = r->obp;
		fr.req.reply_error = r->reply_error;
	} else {
		if (fr.req.n_params != 0)
			fuzz_fail("no route, but parameters left set");
		/* Allow lists the other methods of the path, never the one asked for. */
		for (const char *m = allow; m != NULL && *m != '\0';) {
			size_t n = strcspn(m, ",");
			if (n == 0 ||
			    (strlen(fr.req.method) == n && strncmp(m, fr.req.method, n) == 0))
				fuzz_fail("Allow \"%s\" for method %s", allow, fr.req.method);
			m += n;
			m += strspn(m, ", ");
		}
		/* dispatch() answers an unmatched path itself (404 / 405), before any database. */
		struct bh_buf none = {0};
		(void)dispatch(&fr.req, &none);
		json_t *reply = fuzz_req_expect_error(&fr);
		json_decref(reply);
		if ((fr.req.status == 405) != (allow != NULL) ||
		    (allow != NULL &&
		     (fr.req.reply_allow == NULL || strcmp(fr.req.reply_allow, allow) != 0)))
			fuzz_fail("unmatched %s %s answered %u (Allow %s)", fr.req.method,
				  fr.req.path, fr.req.status, allow ? allow : "none");
		free(fr.req.reply_body);
		fr.req.reply_body = NULL;
		fr.req.status = 0;
	}
	free(allow);

	if (request_token(&fr.req, token, sizeof(token)) == 0 &&
	    (token[0] == '\0' || strlen(token) > TOKEN_MAX))
		fuzz_fail("token of %zu bytes taken", strlen(token));

	/* parse_body reads the raw body; the harness's own parse is dropped first. */
	json_decref(fr.req.body);
	fr.req.body = NULL;
	struct bh_buf body = {.data = (char *)fr.body, .len = fr.body_len};
	if (parse_body(&fr.req, &body) < 0) {
		json_decref(fuzz_req_expect_error(&fr));
	} else if (fr.req.body == NULL && fr.body_len > 0 && !fr.req.body_invalid &&
		   (strcmp(fr.req.method, "POST") == 0 || strcmp(fr.req.method, "PUT") == 0 ||
		    strcmp(fr.req.method, "PATCH") == 0)) {
		fuzz_fail("a body was neither parsed nor refused");
	}
	fuzz_req_free(&fr);
	return 0;
}
