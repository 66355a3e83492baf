/*
 * The benchmark's webhook receiver: answers every POST with 204 as fast as
 * libmicrohttpd allows and measures event-to-delivery latency. Events the
 * benchmark sends carry "bench_sent_us": <UNIX microseconds> in their data;
 * the receiver notes now - sent for each request it gets.
 *
 *   bankhook-bench-receiver PORT
 *   GET  /stats   {"count":N,"p50_ms":..,"p99_ms":..,"max_ms":..}
 *   POST /reset   forgets what was counted
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* A bounded sample: enough for every request of one benchmark phase. */
#define MAX_SAMPLES (1 << 20)
#define BODY_CAP 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t *samples_us;
static size_t n_samples;
static unsigned long long n_requests;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void record(const char *body, size_t len)
{
	static const char key[] = "\"bench_sent_us\":";
	int64_t now = bh_now_us();
	const char *p = memmem(body, len, key, sizeof(key) - 1);
	int64_t sent = p ? strtoll(p + sizeof(key) - 1, NULL, 10) : 0;
	pthread_mutex_lock(&lock);
	n_requests++;
	if (sent > 0 && n_samples < MAX_SAMPLES)
		samples_us[n_samples++] = now - sent;
	pthread_mutex_unlock(&lock);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static char *stats_json(void)
{
	pthread_mutex_lock(&lock);
	size_t n = n_samples;
	int64_t *copy = bh_xmalloc((n ? n : 1) * sizeof(*copy));
	memcpy(copy, samples_us, n * sizeof(*copy));
	unsigned long long count = n_requests;
	pthread_mutex_unlock(&lock);
	qsort(copy, n, sizeof(*copy), cmp_i64);
	double p50 = n ? (double)copy[n / 2] / 1000.0 : 0;
	double p99 = n ? (double)copy[(n * 99) / 100] / 1000.0 : 0;
	double max = n ? (double)copy[n - 1] / 1000.0 : 0;
	free(copy);
	return bh_xasprintf("{\"count\":%llu,\"samples\":%zu,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
			    "\"max_ms\":%.2f}\n",
			    count, n, p50, p99, max);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text,
								 MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **state)
{
	(void)cls;
	(void)version;
	struct bh_buf *body = *state;
	if (body == NULL) {
		body = bh_xmalloc(sizeof(*body));
		bh_buf_init(body, BODY_CAP);
		*state = body;
		return MHD_YES;
	}
	if (*upload_size) {
		(void)bh_buf_append(body, upload, *upload_size); /* over the cap: truncated */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") == 0 && strcmp(url, "/stats") == 0)
		return reply(conn, MHD_HTTP_OK, stats_json());
	if (strcmp(method, "POST") == 0 && strcmp(url, "/reset") == 0) {
		pthread_mutex_lock(&lock);
		n_samples = 0;
		n_requests = 0;
		pthread_mutex_unlock(&lock);
		return reply(conn, MHD_HTTP_OK, bh_xstrdup("{}\n"));
	}
	record(body->data, body->len);
	return reply(conn, MHD_HTTP_NO_CONTENT, bh_xstrdup(""));
}

static void request_done(void *cls, struct MHD_Connection *conn, void **state,
			 enum MHD_RequestTerminationCode code)
{
	(void)cls;
	(void)conn;
	(void)code;
	struct bh_buf *body = *state;
	if (body) {
		bh_buf_free(body);
		free(body);
		*state = NULL;
	}
}

int main(int argc, char **argv)
{
	long long port;
	if (argc != 2 || bh_parse_int(argv[1], 1, 65535, &port) < 0) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	samples_us = bh_xmalloc(MAX_SAMPLES * sizeof(*samples_us));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
		handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
		MHD_OPTION_THREAD_POOL_SIZE, 2, MHD_OPTION_CONNECTION_LIMIT, 4000,
		MHD_OPTION_CONNECTION_TIMEOUT, 60, MHD_OPTION_NOTIFY_COMPLETED, request_done,
		NULL, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "receiver: cannot listen on 127.0.0.1:%lld\n", port);
		return 1;
	}
	printf("receiver listening on 127.0.0.1:%lld\n", port);
	fflush(stdout);
	while (!stop)
		usleep(100 * 1000);
	MHD_stop_daemon(d);
	free(samples_us);
	return 0;
}
