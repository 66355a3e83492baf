/*
 * Configuration: one YAML file of sections and scalar keys, every key
 * overridable by the environment variable BANKHOOK_<SECTION>_<KEY>. The
 * keys, their types and defaults are one table in config.c; an unknown key
 * or a bad value is an error reported as "file:line: message".
 */
#ifndef BH_COMMON_CONFIG_H
#define BH_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define BH_SCHEDULE_MAX 32

struct bh_config {
	/* api */
	char *api_host;
	int api_port;
	int api_threads;
	int api_body_limit;
	char *api_admin_token;
	bool api_test_endpoints; /* test-only routes (clock ticks); never in production */
	char *api_openapi_path;	 /* served at GET /openapi.yaml; relative to the working dir */
	/* abuse limits (docs/DESIGN.md "Abuse limits") */
	int api_rate_limit_per_s;  /* per-token refill rate; 0: no rate limit */
	int api_rate_limit_burst;  /* per-token bucket size */
	int api_max_subscriptions; /* per client, over every dialect */
	int api_max_url_bytes;
	int api_max_header_bytes;     /* all request headers together */
	int api_connection_timeout_s; /* an idle connection is closed after this */
	int api_max_connections_per_ip;
	/* connection budget (docs/DESIGN.md "Connection budget") */
	int api_max_connections; /* open at once (0: api.threads x 64); see max_connections_per_ip */
	int api_header_timeout_s;  /* to receive a request's head, however it trickles */
	int api_request_timeout_s; /* to receive its head and body */
	/* authentication abuse (docs/DESIGN.md "Authentication throttling") */
	int api_client_rate_limit_per_s; /* per client, over all its tokens; 0: none */
	int api_client_rate_limit_burst;
	int api_login_rate_per_s; /* logins per username, password sets per client */
	int api_login_burst;
	int api_login_free_failures;	    /* failed logins of a username before its back-off */
	int api_login_free_failures_per_ip; /* failed logins from an address before its back-off */
	int api_login_max_backoff_s;
	int api_scrypt_per_s; /* password hashes and checks, process-wide */
	int api_scrypt_burst;
	int api_max_users_per_client;
	int api_max_tokens_per_client;
	/* publishing (docs/DESIGN.md "Publishing: batch and idempotency") */
	int api_publish_rate_limit_per_s; /* publish routes, per token; 0: unlimited */
	int api_publish_rate_limit_burst;
	int api_batch_body_limit; /* POST /v1/events/batch's body limit */
	/* database */
	char *db_url;
	char *db_migrations_dir;
	int db_pool_size;
	/* kafka */
	char *kafka_brokers;
	char *kafka_group;
	char *topic_events;
	char *topic_deliveries;
	char *topic_refresh;
	char *topic_dlq;
	int kafka_partitions;
	/* delivery */
	int delivery_timeout_ms;
	int delivery_connect_timeout_ms;
	char *delivery_schedule_text;
	int delivery_schedule[BH_SCHEDULE_MAX]; /* seconds before attempt 1..n */
	int delivery_schedule_len;
	int delivery_jitter_percent;
	int delivery_lease_s;
	int delivery_max_in_flight;
	int delivery_max_in_flight_per_endpoint;
	int delivery_max_in_flight_per_host;
	int delivery_host_dead_after;
	int delivery_host_backoff_s;
	int delivery_host_backoff_max_s;
	bool delivery_allow_loopback;
	bool delivery_allow_private;
	int delivery_disable_after_s;
	/* worker */
	int worker_http_port;
	/* scheduler */
	int scheduler_http_port;
	int scheduler_tick_ms;
	int scheduler_batch;
	/* retention (scheduler): older attempts / events are deleted */
	int retention_attempts_days;
	int retention_events_days;
	/* psd2: application webhooks and /refresh (PRODUCT.md 6.2) */
	char *psd2_own_bank_code;      /* the bank itself: its accounts get transactionEvents */
	int psd2_aggregation_window_s; /* one transactionEvent per consent per window */
	int psd2_connector_timeout_ms; /* one call to a bank's connector */
	int psd2_connector_attempts;   /* calls before a bank's part is FAILED */
	int psd2_connector_retry_ms;   /* wait before the second call, doubling after */
	bool psd2_test_clock; /* allows `bankhook-scheduler psd2-tick`; never in production */
	/* log */
	char *log_level;
	char *log_format;
	char *log_attempts; /* failures (a success at debug) | all (a success at info) */
};

/*
 * Fills `cfg` with defaults, then the YAML file at `path` (NULL: the default
 * deploy/bankhook.yaml if it exists), then the environment. Returns 0, or -1
 * with "file:line: message" in errbuf. Free with bh_config_free().
 */
int bh_config_load(struct bh_config *cfg, const char *path, char *errbuf,
		   size_t errlen) BH_MUSTCHECK;
void bh_config_free(struct bh_config *cfg);

/* Parses "0,5,300" into seconds; 0 or -1 with a message. */
int bh_config_parse_schedule(const char *text, int *out, int *out_len, char *errbuf,
			     size_t errlen) BH_MUSTCHECK;

/* Calls fn for each key of the table: for docs and tests. */
void bh_config_each_key(void (*fn)(const char *section, const char *key, const char *type,
				   const char *default_value, void *arg),
			void *arg);

#endif
