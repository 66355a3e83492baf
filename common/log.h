/*
 * Logging: one line per event of note, to stderr, with process, level and
 * file:line. Text for people, or one JSON object per line for machines
 * (--log-format json). The _ctx variants add delivery / subscription /
 * event / task ids so a line can be followed through the system: as
 * "delivery=... subscription=..." in text, and as the members delivery_id,
 * endpoint_id (the subscription), event_id and task_id in JSON.
 */
#ifndef BH_COMMON_LOG_H
#define BH_COMMON_LOG_H

enum bh_log_level { BH_LOG_DEBUG, BH_LOG_INFO, BH_LOG_WARN, BH_LOG_ERROR };

/* Ids a log line is about; any may be NULL. */
struct bh_log_ctx {
	const char *delivery;
	const char *subscription;
	const char *event;
	const char *task;
};

void bh_log_init(const char *process);
void bh_log_set_level(enum bh_log_level level);
void bh_log_set_json(int json);
/* Parses "debug|info|warn|error"; 0 or -1. */
int bh_log_parse_level(const char *s, enum bh_log_level *out);

void bh_log_write(enum bh_log_level level, const struct bh_log_ctx *ctx, const char *file, int line,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define bh_debug(...) bh_log_write(BH_LOG_DEBUG, NULL, __FILE__, __LINE__, __VA_ARGS__)
#define bh_info(...) bh_log_write(BH_LOG_INFO, NULL, __FILE__, __LINE__, __VA_ARGS__)
#define bh_warn(...) bh_log_write(BH_LOG_WARN, NULL, __FILE__, __LINE__, __VA_ARGS__)
#define bh_error(...) bh_log_write(BH_LOG_ERROR, NULL, __FILE__, __LINE__, __VA_ARGS__)
#define bh_info_ctx(ctx, ...) bh_log_write(BH_LOG_INFO, (ctx), __FILE__, __LINE__, __VA_ARGS__)
#define bh_warn_ctx(ctx, ...) bh_log_write(BH_LOG_WARN, (ctx), __FILE__, __LINE__, __VA_ARGS__)
#define bh_debug_ctx(ctx, ...) bh_log_write(BH_LOG_DEBUG, (ctx), __FILE__, __LINE__, __VA_ARGS__)

#endif
