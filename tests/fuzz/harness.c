#include "harness.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net.h"

/* Headers match case-insensitively, query arguments exactly, as in libmicrohttpd. */
const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind,
					const char *key)
{
	const struct fuzz_conn *c = (const struct fuzz_conn *)(const void *)connection;
	if (c == NULL || key == NULL)
		return NULL;
	if (kind == MHD_HEADER_KIND) {
		for (int i = 0; i < c->n_headers; i++)
			if (strcasecmp(c->header_names[i], key) == 0)
				return c->header_values[i];
	} else if (kind == MHD_GET_ARGUMENT_KIND) {
		for (int i = 0; i < c->n_args; i++)
			if (strcmp(c->arg_names[i], key) == 0)
				return c->arg_values[i];
	}
	return NULL;
}

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz invariant broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

bool fuzz_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* "name<sep>value" into two malloc'ed strings; false when sep is absent. */
static bool split(const char *line, const char *sep, char **name, char **value)
{
	const char *at = strstr(line, sep);
	if (at == NULL)
		return false;
	*name = bh_xstrndup(line, (size_t)(at - line));
	const char *v = at + strlen(sep);
	*value = bh_xstrdup(v);
	return true;
}

int fuzz_no_dns(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	(void)node;
	(void)service;
	(void)hints;
	*res = NULL;
	return EAI_NONAME;
}

void fuzz_req_init(struct fuzz_req *fr, const uint8_t *data, size_t size, const char *method,
		   const char *path, bool allow_loopback, bool allow_private)
{
	bh_url_set_resolver(fuzz_no_dns);
	memset(fr, 0, sizeof(*fr));
	fr->input = bh_xmalloc(size + 1);
	memcpy(fr->input, data, size);
	fr->input[size] = '\0';

	fr->cfg.delivery_allow_loopback = allow_loopback;
	fr->cfg.delivery_allow_private = allow_private;
	fr->cfg.api_body_limit = 1024 * 1024;
	fr->api.cfg = &fr->cfg;
	fr->req.api = &fr->api;
	fr->req.method = method;
	fr->req.path = path;
	fr->req.conn = &fr->conn;

	/* Lines end at '\n' (or a NUL, which a header or query could not carry either). */
	char *p = fr->input, *end = fr->input + size;
	char *nl = memchr(p, '\n', (size_t)(end - p));
	fr->selector = bh_xstrndup(p, nl ? (size_t)(nl - p) : strnlen(p, (size_t)(end - p)));
	p = nl ? nl + 1 : end;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = bh_xstrndup(p, len);
		p = nl ? nl + 1 : end;
		if (line[0] == '\0') {
			free(line);
			break; /* the body follows */
		}
		char *name, *value;
		struct fuzz_conn *c = &fr->conn;
		if (strncmp(line, "H ", 2) == 0 && c->n_headers < FUZZ_REQ_MAX_FIELDS &&
		    split(line + 2, ": ", &name, &value)) {
			c->header_names[c->n_headers] = name;
			c->header_values[c->n_headers++] = value;
		} else if (strncmp(line, "Q ", 2) == 0 && c->n_args < FUZZ_REQ_MAX_FIELDS &&
			   split(line + 2, "=", &name, &value)) {
			c->arg_names[c->n_args] = name;
			c->arg_values[c->n_args++] = value;
		} else if (strncmp(line, "P ", 2) == 0 && fr->req.n_params < BH_API_MAX_PARAMS &&
			   split(line + 2, "=", &name, &value)) {
			fr->req.param_names[fr->req.n_params] = name;
			fr->req.param_values[fr->req.n_params++] = value;
		}
		free(line);
	}
	fr->body = p;
	fr->body_len = (size_t)(end - p);
	fr->body_is_json = true;
	if (fr->body_len > 0) {
		/* As server.c's parse_body. */
		json_error_t jerr;
		fr->req.body = json_loadb(fr->body, fr->body_len, JSON_REJECT_DUPLICATES, &jerr);
		fr->body_is_json = fr->req.body != NULL;
	}
}

void fuzz_req_free(struct fuzz_req *fr)
{
	struct bh_request *r = &fr->req;
	for (int i = 0; i < r->n_params; i++) {
		free(r->param_names[i]);
		free(r->param_values[i]);
	}
	json_decref(r->body);
	bh_caller_free(&r->caller);
	free(r->reply_body);
	free(r->reply_allow);
	for (int i = 0; i < r->n_reply_headers; i++) {
		free(r->reply_header_names[i]);
		free(r->reply_header_values[i]);
	}
	for (int i = 0; i < fr->conn.n_headers; i++) {
		free(fr->conn.header_names[i]);
		free(fr->conn.header_values[i]);
	}
	for (int i = 0; i < fr->conn.n_args; i++) {
		free(fr->conn.arg_names[i]);
		free(fr->conn.arg_values[i]);
	}
	free(fr->selector);
	free(fr->input);
	memset(fr, 0, sizeof(*fr));
}

json_t *fuzz_req_expect_error(const struct fuzz_req *fr)
{
	const struct bh_request *r = &fr->req;
	if (r->status < 400 || r->status > 499)
		fuzz_fail("validation failed with status %u, not a 4xx", r->status);
	if (r->reply_body == NULL)
		fuzz_fail("validation failed without a reply body");
	json_error_t jerr;
	json_t *reply = json_loadb(r->reply_body, r->reply_len, 0, &jerr);
	if (!json_is_object(reply))
		fuzz_fail("error reply is not a JSON object: %.*s", (int)r->reply_len,
			  r->reply_body);
	return reply;
}

void fuzz_req_expect_no_reply(const struct fuzz_req *fr)
{
	if (fr->req.status != 0 || fr->req.reply_body != NULL)
		fuzz_fail("validation passed but set a %u reply", fr->req.status);
}
