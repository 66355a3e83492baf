#include "ops_http.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Far more than any metrics page we print; a bug cannot eat memory. */
#define METRICS_CAP (256 * 1024)

struct bh_ops_http {
	struct MHD_Daemon *daemon;
	bh_ops_ready_fn ready;
	bh_ops_metrics_fn metrics;
	void *arg;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
			     const char *body, size_t len)
{
	/* MUST_COPY: body may live on our stack or in a buffer freed next. */
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	(void)version;
	(void)upload_data;
	struct bh_ops_http *h = cls;
	/* First call per request only announces it; answer on the second. */
	if (*req_cls == NULL) {
		*req_cls = h;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0; /* bodies are ignored */
		return MHD_YES;
	}
	static const char text[] = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, "method not allowed\n", 19);
	if (strcmp(url, "/healthz") == 0)
		return reply(conn, MHD_HTTP_OK, text, "ok\n", 3);
	if (strcmp(url, "/readyz") == 0) {
		if (h->ready == NULL || h->ready(h->arg))
			return reply(conn, MHD_HTTP_OK, text, "ready\n", 6);
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text, "not ready\n", 10);
	}
	if (strcmp(url, "/metrics") == 0) {
		struct bh_buf b;
		bh_buf_init(&b, METRICS_CAP);
		if (h->metrics)
			h->metrics(&b, h->arg);
		enum MHD_Result rc = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4",
					   b.data ? b.data : "", b.len);
		bh_buf_free(&b);
		return rc;
	}
	return reply(conn, MHD_HTTP_NOT_FOUND, text, "not found\n", 10);
}

int bh_ops_http_start(int port, bh_ops_ready_fn ready, bh_ops_metrics_fn metrics, void *arg,
		      struct bh_ops_http **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	if (port == 0)
		return 0;
	struct bh_ops_http *h = bh_xcalloc(1, sizeof(*h));
	h->ready = ready;
	h->metrics = metrics;
	h->arg = arg;
	h->daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
		/* the logger first: libmicrohttpd warns about the options before it */
		handle, h, MHD_OPTION_EXTERNAL_LOGGER, bh_ops_http_log_mhd, NULL,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)10, MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(errbuf, errlen, "ops http: cannot listen on port %d", port);
		free(h);
		return -1;
	}
	bh_info("ops http listening on port %d", port);
	*out = h;
	return 0;
}

void bh_ops_http_stop(struct bh_ops_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}

void bh_ops_http_log_mhd(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	bh_warn("microhttpd: %s", msg);
}
