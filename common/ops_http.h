/*
 * The operations listener of the worker and the scheduler: GET /healthz
 * (200 while the process runs), GET /readyz (200 or 503 as the ready
 * callback says) and GET /metrics (Prometheus text from the metrics
 * callback). Served by libmicrohttpd's own thread, so both callbacks run on
 * that thread: they must only read state the main loop publishes safely
 * (atomics), never touch its database connection.
 */
#ifndef BH_COMMON_OPS_HTTP_H
#define BH_COMMON_OPS_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct bh_ops_http;

/* True when the process can do its work; NULL callback = always ready. */
typedef bool (*bh_ops_ready_fn)(void *arg);
/* Appends Prometheus text exposition to out. */
typedef void (*bh_ops_metrics_fn)(struct bh_buf *out, void *arg);

/*
 * Listens on port (all interfaces, so container health checks reach it).
 * Port 0 turns the listener off: 0 with *out NULL. Otherwise 0 with *out
 * set (free with bh_ops_http_stop), or -1 with the reason in errbuf.
 */
int bh_ops_http_start(int port, bh_ops_ready_fn ready, bh_ops_metrics_fn metrics, void *arg,
		      struct bh_ops_http **out, char *errbuf, size_t errlen) BH_MUSTCHECK;
/* Stops the listener and frees it; NULL is fine. */
void bh_ops_http_stop(struct bh_ops_http *h);

/*
 * libmicrohttpd's own messages as our warning lines (JSON when asked): the
 * MHD_OPTION_EXTERNAL_LOGGER of every listener, the api's included.
 */
void bh_ops_http_log_mhd(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#endif
