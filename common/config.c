#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "log.h"

enum conf_type { CONF_STR, CONF_INT, CONF_BOOL };

struct conf_key {
	const char *section;
	const char *key;
	enum conf_type type;
	size_t offset;
	const char *default_value;
	long long min, max; /* for CONF_INT */
};

#define STR(sec, k, field, def)                                                \
	{                                                                      \
		sec, k, CONF_STR, offsetof(struct bh_config, field), def, 0, 0 \
	}
#define INT(sec, k, field, def, lo, hi)                                          \
	{                                                                        \
		sec, k, CONF_INT, offsetof(struct bh_config, field), def, lo, hi \
	}
#define BOOL(sec, k, field, def)                                                \
	{                                                                       \
		sec, k, CONF_BOOL, offsetof(struct bh_config, field), def, 0, 0 \
	}

static const struct conf_key conf_keys[] = {
	STR("api", "host", api_host, "127.0.0.1"),
	INT("api", "port", api_port, "8080", 0, 65535),
	INT("api", "threads", api_threads, "4", 1, 256),
	INT("api", "body_limit", api_body_limit, "1048576", 1024, 64 * 1024 * 1024),
	STR("api", "admin_token", api_admin_token, ""),
	BOOL("api", "test_endpoints", api_test_endpoints, "false"),
	STR("api", "openapi_path", api_openapi_path, "docs/openapi.yaml"),
	INT("api", "rate_limit_per_s", api_rate_limit_per_s, "100", 0, 1000000),
	INT("api", "rate_limit_burst", api_rate_limit_burst, "200", 1, 1000000),
	INT("api", "max_subscriptions", api_max_subscriptions, "1000", 1, 10000000),
	INT("api", "max_url_bytes", api_max_url_bytes, "8192", 256, 1024 * 1024),
	INT("api", "max_header_bytes", api_max_header_bytes, "16384", 1024, 1024 * 1024),
	INT("api", "connection_timeout_s", api_connection_timeout_s, "30", 1, 3600),
	INT("api", "max_connections_per_ip", api_max_connections_per_ip, "32", 1, 100000),
	/* connection budget and authentication throttling (issue 12) */
	INT("api", "max_connections", api_max_connections, "0", 0, 100000),
	INT("api", "header_timeout_s", api_header_timeout_s, "10", 1, 3600),
	INT("api", "request_timeout_s", api_request_timeout_s, "60", 1, 3600),
	INT("api", "client_rate_limit_per_s", api_client_rate_limit_per_s, "400", 0, 1000000),
	INT("api", "client_rate_limit_burst", api_client_rate_limit_burst, "800", 1, 1000000),
	INT("api", "login_rate_per_s", api_login_rate_per_s, "1", 1, 1000000),
	INT("api", "login_burst", api_login_burst, "10", 1, 1000000),
	INT("api", "login_free_failures", api_login_free_failures, "5", 1, 1000),
	INT("api", "login_free_failures_per_ip", api_login_free_failures_per_ip, "20", 1, 100000),
	INT("api", "login_max_backoff_s", api_login_max_backoff_s, "900", 1, 86400),
	INT("api", "scrypt_per_s", api_scrypt_per_s, "16", 1, 10000),
	INT("api", "scrypt_burst", api_scrypt_burst, "16", 1, 100000),
	INT("api", "max_users_per_client", api_max_users_per_client, "1000", 1, 10000000),
	INT("api", "max_tokens_per_client", api_max_tokens_per_client, "1000", 1, 10000000),
	/* publishing (docs/DESIGN.md "Publishing: batch and idempotency") */
	INT("api", "publish_rate_limit_per_s", api_publish_rate_limit_per_s, "0", 0, 10000000),
	INT("api", "publish_rate_limit_burst", api_publish_rate_limit_burst, "1000", 1, 10000000),
	INT("api", "batch_body_limit", api_batch_body_limit, "8388608", 1024, 64 * 1024 * 1024),
	STR("database", "url", db_url, "postgresql://postgres@127.0.0.1:55432/bankhook"),
	STR("database", "migrations_dir", db_migrations_dir, "deploy/migrations"),
	INT("database", "pool_size", db_pool_size, "8", 1, 256),
	STR("kafka", "brokers", kafka_brokers, "127.0.0.1:9092"),
	STR("kafka", "group", kafka_group, "bankhook-worker"),
	STR("kafka", "topic_events", topic_events, "bankhook.events"),
	STR("kafka", "topic_deliveries", topic_deliveries, "bankhook.deliveries"),
	STR("kafka", "topic_refresh", topic_refresh, "bankhook.refresh"),
	STR("kafka", "topic_dlq", topic_dlq, "bankhook.events.dlq"),
	INT("kafka", "partitions", kafka_partitions, "4", 1, 1024),
	INT("delivery", "timeout_ms", delivery_timeout_ms, "15000", 100, 300000),
	INT("delivery", "connect_timeout_ms", delivery_connect_timeout_ms, "5000", 100, 300000),
	STR("delivery", "schedule", delivery_schedule_text, "0,5,300,1800,7200,18000,36000,36000"),
	INT("delivery", "jitter_percent", delivery_jitter_percent, "20", 0, 100),
	INT("delivery", "lease_s", delivery_lease_s, "60", 1, 86400),
	INT("delivery", "max_in_flight", delivery_max_in_flight, "512", 1, 100000),
	INT("delivery", "max_in_flight_per_endpoint", delivery_max_in_flight_per_endpoint, "10", 1,
	    10000),
	INT("delivery", "max_in_flight_per_host", delivery_max_in_flight_per_host, "256", 1,
	    100000),
	INT("delivery", "host_dead_after", delivery_host_dead_after, "5", 1, 10000),
	INT("delivery", "host_backoff_s", delivery_host_backoff_s, "10", 1, 86400),
	INT("delivery", "host_backoff_max_s", delivery_host_backoff_max_s, "300", 1, 86400),
	BOOL("delivery", "allow_loopback", delivery_allow_loopback, "false"),
	BOOL("delivery", "allow_private", delivery_allow_private, "false"),
	INT("delivery", "disable_after_s", delivery_disable_after_s, "432000", 1, 365 * 86400),
	INT("worker", "http_port", worker_http_port, "8081", 0, 65535),
	INT("scheduler", "http_port", scheduler_http_port, "8082", 0, 65535),
	INT("scheduler", "tick_ms", scheduler_tick_ms, "500", 10, 60000),
	INT("scheduler", "batch", scheduler_batch, "1000", 1, 100000),
	INT("retention", "attempts_days", retention_attempts_days, "30", 1, 36500),
	INT("retention", "events_days", retention_events_days, "30", 1, 36500),
	STR("psd2", "own_bank_code", psd2_own_bank_code, "TB"),
	INT("psd2", "aggregation_window_s", psd2_aggregation_window_s, "60", 1, 86400),
	INT("psd2", "connector_timeout_ms", psd2_connector_timeout_ms, "10000", 100, 300000),
	INT("psd2", "connector_attempts", psd2_connector_attempts, "3", 1, 10),
	INT("psd2", "connector_retry_ms", psd2_connector_retry_ms, "2000", 0, 3600000),
	BOOL("psd2", "test_clock", psd2_test_clock, "false"),
	STR("log", "level", log_level, "info"),
	STR("log", "format", log_format, "text"),
	STR("log", "attempts", log_attempts, "failures"),
};

static const char *const type_names[] = {"string", "integer", "boolean"};

void bh_config_each_key(void (*fn)(const char *, const char *, const char *, const char *, void *),
			void *arg)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(conf_keys); i++)
		fn(conf_keys[i].section, conf_keys[i].key, type_names[conf_keys[i].type],
		   conf_keys[i].default_value, arg);
}

static const struct conf_key *find_key(const char *section, const char *key)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(conf_keys); i++)
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].key, key) == 0)
			return &conf_keys[i];
	return NULL;
}

/* Stores one value; on error writes a message (without location) to errbuf. */
static int set_value(struct bh_config *cfg, const struct conf_key *k, const char *value,
		     char *errbuf, size_t errlen)
{
	char *base = (char *)cfg;
	switch (k->type) {
	case CONF_STR: {
		char **slot = (char **)(base + k->offset);
		free(*slot);
		*slot = bh_xstrdup(value);
		return 0;
	}
	case CONF_INT: {
		long long v;
		if (bh_parse_int(value, k->min, k->max, &v) < 0) {
			snprintf(errbuf, errlen,
				 "%s.%s: expected an integer from %lld to %lld, got \"%s\"",
				 k->section, k->key, k->min, k->max, value);
			return -1;
		}
		*(int *)(base + k->offset) = (int)v;
		return 0;
	}
	case CONF_BOOL: {
		bool *slot = (bool *)(base + k->offset);
		if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0 ||
		    strcasecmp(value, "yes") == 0 || strcasecmp(value, "on") == 0)
			*slot = true;
		else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
			 strcasecmp(value, "no") == 0 || strcasecmp(value, "off") == 0)
			*slot = false;
		else {
			snprintf(errbuf, errlen, "%s.%s: expected true or false, got \"%s\"",
				 k->section, k->key, value);
			return -1;
		}
		return 0;
	}
	}
	return -1;
}

int bh_config_parse_schedule(const char *text, int *out, int *out_len, char *errbuf, size_t errlen)
{
	int n = 0;
	const char *p = text;
	while (*p) {
		while (*p == ' ')
			p++;
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v > 7 * 86400) {
			snprintf(
				errbuf, errlen,
				"delivery.schedule: expected comma-separated seconds (0..604800), got \"%s\"",
				text);
			return -1;
		}
		if (n == BH_SCHEDULE_MAX) {
			snprintf(errbuf, errlen, "delivery.schedule: at most %d attempts",
				 BH_SCHEDULE_MAX);
			return -1;
		}
		out[n++] = (int)v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p != '\0') {
			snprintf(errbuf, errlen,
				 "delivery.schedule: expected comma-separated seconds, got \"%s\"",
				 text);
			return -1;
		}
	}
	if (n == 0) {
		snprintf(errbuf, errlen, "delivery.schedule: needs at least one attempt");
		return -1;
	}
	*out_len = n;
	return 0;
}

/* Reads "section: {key: scalar}" mappings; anything else is an error. */
static int load_yaml(struct bh_config *cfg, const char *path, FILE *f, char *errbuf, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int rc = -1;
	int depth = 0; /* 0 document, 1 top mapping, 2 section mapping */
	char section[64] = "";
	char key[64] = "";
	bool want_key = true;
	char msg[512];

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev)) {
			snprintf(errbuf, errlen, "%s:%zu: %s", path, parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "YAML syntax error");
			goto out;
		}
		size_t line = ev.start_mark.line + 1;
		yaml_event_type_t type = ev.type;
		if (type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		switch (type) {
		case YAML_MAPPING_START_EVENT:
			if (depth == 0 || (depth == 1 && !want_key)) {
				depth++;
				want_key = true;
			} else {
				snprintf(errbuf, errlen, "%s:%zu: %s.%s: expected a scalar value",
					 path, line, section, key);
				yaml_event_delete(&ev);
				goto out;
			}
			break;
		case YAML_MAPPING_END_EVENT:
			depth--;
			want_key = true;
			break;
		case YAML_SEQUENCE_START_EVENT:
			snprintf(errbuf, errlen,
				 "%s:%zu: lists are not supported here (write \"a,b,c\")", path,
				 line);
			yaml_event_delete(&ev);
			goto out;
		case YAML_SCALAR_EVENT: {
			const char *value = (const char *)ev.data.scalar.value;
			if (depth == 1) {
				if (want_key) {
					snprintf(section, sizeof(section), "%s", value);
					want_key = false;
				} else {
					snprintf(errbuf, errlen,
						 "%s:%zu: section \"%s\" must be a mapping", path,
						 line, section);
					yaml_event_delete(&ev);
					goto out;
				}
			} else if (depth == 2) {
				if (want_key) {
					snprintf(key, sizeof(key), "%s", value);
					want_key = false;
				} else {
					const struct conf_key *k = find_key(section, key);
					if (k == NULL) {
						snprintf(errbuf, errlen,
							 "%s:%zu: unknown key %s.%s", path, line,
							 section, key);
						yaml_event_delete(&ev);
						goto out;
					}
					if (set_value(cfg, k, value, msg, sizeof(msg)) < 0) {
						snprintf(errbuf, errlen, "%s:%zu: %s", path, line,
							 msg);
						yaml_event_delete(&ev);
						goto out;
					}
					want_key = true;
				}
			} else if (depth == 0 && value[0] != '\0') {
				snprintf(errbuf, errlen, "%s:%zu: expected a mapping of sections",
					 path, line);
				yaml_event_delete(&ev);
				goto out;
			}
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	rc = 0;
out:
	yaml_parser_delete(&parser);
	return rc;
}

static int apply_env(struct bh_config *cfg, char *errbuf, size_t errlen)
{
	char msg[512];
	for (size_t i = 0; i < BH_ARRAY_LEN(conf_keys); i++) {
		char name[128];
		snprintf(name, sizeof(name), "BANKHOOK_%s_%s", conf_keys[i].section,
			 conf_keys[i].key);
		for (char *p = name; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		const char *v = getenv(name);
		if (v == NULL)
			continue;
		if (set_value(cfg, &conf_keys[i], v, msg, sizeof(msg)) < 0) {
			snprintf(errbuf, errlen, "%s: %s", name, msg);
			return -1;
		}
	}
	return 0;
}

int bh_config_load(struct bh_config *cfg, const char *path, char *errbuf, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < BH_ARRAY_LEN(conf_keys); i++)
		if (set_value(cfg, &conf_keys[i], conf_keys[i].default_value, errbuf, errlen) < 0)
			return -1;

	const char *file = path ? path : "deploy/bankhook.yaml";
	FILE *f = fopen(file, "r");
	if (f == NULL && path != NULL) {
		snprintf(errbuf, errlen, "%s:0: cannot open: %s", file, strerror(errno));
		return -1;
	}
	if (f) {
		int rc = load_yaml(cfg, file, f, errbuf, errlen);
		fclose(f);
		if (rc < 0)
			return -1;
	}
	if (apply_env(cfg, errbuf, errlen) < 0)
		return -1;

	char msg[512];
	if (bh_config_parse_schedule(cfg->delivery_schedule_text, cfg->delivery_schedule,
				     &cfg->delivery_schedule_len, msg, sizeof(msg)) < 0) {
		snprintf(errbuf, errlen, "%s: %s", file, msg);
		return -1;
	}
	enum bh_log_level lvl;
	if (bh_log_parse_level(cfg->log_level, &lvl) < 0) {
		snprintf(errbuf, errlen,
			 "%s: log.level: expected debug, info, warn or error, got \"%s\"", file,
			 cfg->log_level);
		return -1;
	}
	if (strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0) {
		snprintf(errbuf, errlen, "%s: log.format: expected text or json, got \"%s\"", file,
			 cfg->log_format);
		return -1;
	}
	if (strcmp(cfg->log_attempts, "failures") != 0 && strcmp(cfg->log_attempts, "all") != 0) {
		snprintf(errbuf, errlen, "%s: log.attempts: expected failures or all, got \"%s\"",
			 file, cfg->log_attempts);
		return -1;
	}
	return 0;
}

void bh_config_free(struct bh_config *cfg)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(conf_keys); i++)
		if (conf_keys[i].type == CONF_STR) {
			char **slot = (char **)((char *)cfg + conf_keys[i].offset);
			free(*slot);
			*slot = NULL;
		}
}
