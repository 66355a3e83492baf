#include "log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static const char *log_process = "bankhook";
static enum bh_log_level log_min_level = BH_LOG_INFO;
static int log_json;
/* One writer at a time, so lines from api threads never interleave. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void bh_log_init(const char *process)
{
	log_process = process;
}

void bh_log_set_level(enum bh_log_level level)
{
	log_min_level = level;
}

void bh_log_set_json(int json)
{
	log_json = json;
}

int bh_log_parse_level(const char *s, enum bh_log_level *out)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum bh_log_level)i;
			return 0;
		}
	}
	return -1;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/*
 * A JSON string of s. Messages quote outside input (a URL, a receiver's
 * error), which need not be UTF-8; jansson refuses such a string, and the
 * line would lose its message, so bytes that do not decode become '?'.
 */
static json_t *json_text(const char *s)
{
	json_t *v = json_string(s);
	if (v != NULL)
		return v;
	char *copy = bh_xstrdup(s);
	bh_utf8_fix(copy);
	v = json_string(copy);
	free(copy);
	return v;
}

void bh_log_write(enum bh_log_level level, const struct bh_log_ctx *ctx, const char *file, int line,
		  const char *fmt, ...)
{
	if (level < log_min_level)
		return;

	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char when[32];
	bh_format_time(bh_now_ms(), when);

	/*
	 * Named as the API names them (a subscription is an endpoint there),
	 * so a JSON log line joins with GET /v1/deliveries output.
	 */
	static const char *const json_keys[] = {"delivery_id", "endpoint_id", "event_id",
						"task_id"};
	static const char *const text_keys[] = {"delivery", "subscription", "event", "task"};
	const char *ctx_vals[4] = {NULL, NULL, NULL, NULL};
	if (ctx) {
		ctx_vals[0] = ctx->delivery;
		ctx_vals[1] = ctx->subscription;
		ctx_vals[2] = ctx->event;
		ctx_vals[3] = ctx->task;
	}

	pthread_mutex_lock(&log_lock);
	if (log_json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "time", when, "process",
				      log_process, "level", level_names[level], "src",
				      base_name(file), "line", (json_int_t)line);
		json_object_set_new(o, "msg", json_text(msg));
		for (int i = 0; i < 4; i++)
			if (ctx_vals[i])
				json_object_set_new(o, json_keys[i], json_text(ctx_vals[i]));
		char *s = json_dumps(o, JSON_COMPACT);
		fprintf(stderr, "%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
	} else {
		fprintf(stderr, "%s %s %s %s:%d ", when, log_process, level_names[level],
			base_name(file), line);
		for (int i = 0; i < 4; i++)
			if (ctx_vals[i])
				fprintf(stderr, "%s=%s ", text_keys[i], ctx_vals[i]);
		/* One event, one line: a quoted CR or LF must not start a forged one. */
		for (char *p = msg; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		fprintf(stderr, "%s\n", msg);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
