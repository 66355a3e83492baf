/*
 * Operations endpoints, unauthenticated so probes and Prometheus need no
 * token: /healthz (the process answers), /readyz (PostgreSQL and Kafka
 * answer), /metrics (Prometheus text), /openapi.yaml (the API description,
 * read from api.openapi_path on each request so a deploy can replace it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "server.h"

#define KAFKA_PING_MS 2000
#define METRICS_MAX_BYTES (256 * 1024)
#define OPENAPI_MAX_BYTES (1024 * 1024)

static void healthz(struct bh_request *req)
{
	bh_api_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void readyz(struct bh_request *req)
{
	bool db_ok = bh_db_ping(bh_api_db(req));
	bool kafka_ok = bh_kafka_ping(req->api->producer, KAFKA_PING_MS);
	json_t *body = json_pack(
		"{s:s,s:s,s:s}", "status", db_ok && kafka_ok ? "ok" : "unavailable", "database",
		db_ok ? "ok" : "unreachable", "kafka", kafka_ok ? "ok" : "unreachable");
	bh_api_reply_json(req, db_ok && kafka_ok ? 200 : 503, body);
}

static void metrics(struct bh_request *req)
{
	struct bh_buf out;
	bh_buf_init(&out, METRICS_MAX_BYTES);
	(void)bh_buf_appendf(&out, "# HELP bankhook_up The process is up.\n"
				   "# TYPE bankhook_up gauge\n"
				   "bankhook_up{process=\"api\"} 1\n");
	bh_server_metrics(&out);
	bh_api_reply_text(req, 200, "text/plain; version=0.0.4", out.data ? out.data : "", out.len);
	bh_buf_free(&out);
}

static void openapi(struct bh_request *req)
{
	const char *path = req->api->cfg->api_openapi_path;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		bh_warn("GET /openapi.yaml: cannot open %s (api.openapi_path): %s", path,
			strerror(errno));
		bh_api_reply_error(req, 404, "not_found", "no API description is installed");
		return;
	}
	/* Sized by the file, capped; one byte more tells whether it grew meanwhile. */
	struct stat st;
	char *text = NULL;
	size_t n = 0;
	bool bad = fstat(fileno(f), &st) < 0 || st.st_size > OPENAPI_MAX_BYTES;
	if (!bad) {
		text = bh_xmalloc((size_t)st.st_size + 1);
		n = fread(text, 1, (size_t)st.st_size + 1, f);
		bad = ferror(f) || n > (size_t)st.st_size;
	}
	fclose(f);
	if (bad) {
		bh_error("GET /openapi.yaml: %s is unreadable or over %d bytes", path,
			 OPENAPI_MAX_BYTES);
		bh_api_reply_error(req, 500, "internal", "the API description cannot be read");
	} else {
		bh_api_reply_text(req, 200, "application/yaml", text, n);
	}
	free(text);
}

const struct bh_route bh_routes_ops[] = {
	{.method = "GET", .pattern = "/healthz", .handler = healthz},
	{.method = "GET", .pattern = "/readyz", .handler = readyz},
	{.method = "GET", .pattern = "/metrics", .handler = metrics},
	{.method = "GET", .pattern = "/openapi.yaml", .handler = openapi},
	{.method = NULL},
};
