/*
 * common/config: defaults, the YAML file, environment overrides, and the
 * errors a bad file or variable gives ("file:line: key: message").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Every BANKHOOK_* variable is cleared so the caller's shell cannot leak in. */
static void unset_one(const char *section, const char *key, const char *type, const char *def,
		      void *arg)
{
	(void)type;
	(void)def;
	(void)arg;
	char name[128];
	snprintf(name, sizeof(name), "BANKHOOK_%s_%s", section, key);
	for (char *p = name; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	unsetenv(name);
}

static int clear_env(void **state)
{
	(void)state;
	bh_config_each_key(unset_one, NULL);
	return 0;
}

/* Writes text to a fresh temporary file; the caller unlinks and frees the name. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/bh-test-config-XXXXXX.yaml");
	int fd = mkstemps(path, 5);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* ------------------------------------------------- files that must load */

struct load_case {
	const char *name;
	const char *yaml;
	const char *env_name; /* optional override */
	const char *env_value;
	void (*check)(const struct bh_config *cfg);
};

static void check_defaults(const struct bh_config *cfg)
{
	assert_string_equal(cfg->api_host, "127.0.0.1");
	assert_int_equal(cfg->api_port, 8080);
	assert_int_equal(cfg->api_body_limit, 1048576);
	assert_int_equal(cfg->api_rate_limit_per_s, 100);
	assert_int_equal(cfg->api_rate_limit_burst, 200);
	assert_int_equal(cfg->api_max_subscriptions, 1000);
	assert_int_equal(cfg->api_max_url_bytes, 8192);
	assert_int_equal(cfg->api_max_header_bytes, 16384);
	assert_int_equal(cfg->api_connection_timeout_s, 30);
	assert_int_equal(cfg->api_max_connections_per_ip, 32);
	assert_int_equal(cfg->api_max_connections, 0); /* api.threads x 64 */
	assert_int_equal(cfg->api_header_timeout_s, 10);
	assert_int_equal(cfg->api_request_timeout_s, 60);
	assert_int_equal(cfg->api_client_rate_limit_per_s, 400);
	assert_int_equal(cfg->api_client_rate_limit_burst, 800);
	assert_int_equal(cfg->api_login_rate_per_s, 1);
	assert_int_equal(cfg->api_login_burst, 10);
	assert_int_equal(cfg->api_login_free_failures, 5);
	assert_int_equal(cfg->api_login_free_failures_per_ip, 20);
	assert_int_equal(cfg->api_login_max_backoff_s, 900);
	assert_int_equal(cfg->api_scrypt_per_s, 16);
	assert_int_equal(cfg->api_scrypt_burst, 16);
	assert_int_equal(cfg->api_max_users_per_client, 1000);
	assert_int_equal(cfg->api_max_tokens_per_client, 1000);
	assert_string_equal(cfg->db_url, "postgresql://postgres@127.0.0.1:55432/bankhook");
	assert_string_equal(cfg->kafka_brokers, "127.0.0.1:9092");
	assert_string_equal(cfg->topic_events, "bankhook.events");
	assert_string_equal(cfg->topic_dlq, "bankhook.events.dlq");
	assert_int_equal(cfg->delivery_timeout_ms, 15000);
	assert_int_equal(cfg->delivery_jitter_percent, 20);
	assert_int_equal(cfg->delivery_lease_s, 60);
	assert_false(cfg->delivery_allow_loopback);
	assert_false(cfg->delivery_allow_private);
	assert_int_equal(cfg->delivery_disable_after_s, 5 * 86400);
	static const int want[] = {0, 5, 300, 1800, 7200, 18000, 36000, 36000};
	assert_int_equal(cfg->delivery_schedule_len, 8);
	assert_memory_equal(cfg->delivery_schedule, want, sizeof(want));
	assert_int_equal(cfg->worker_http_port, 8081);
	assert_int_equal(cfg->scheduler_http_port, 8082);
	assert_string_equal(cfg->log_level, "info");
	assert_string_equal(cfg->log_format, "text");
	assert_string_equal(cfg->log_attempts, "failures");
}

static void check_file_values(const struct bh_config *cfg)
{
	assert_int_equal(cfg->api_port, 9000);
	assert_string_equal(cfg->kafka_brokers, "kafka:29092");
	assert_true(cfg->delivery_allow_loopback);
	assert_int_equal(cfg->delivery_schedule_len, 3);
	assert_int_equal(cfg->delivery_schedule[2], 2);
	assert_string_equal(cfg->log_level, "debug");
	/* keys the file does not name keep their defaults */
	assert_int_equal(cfg->worker_http_port, 8081);
}

static void check_env_port(const struct bh_config *cfg)
{
	assert_int_equal(cfg->api_port, 9100);
}

static void check_env_schedule(const struct bh_config *cfg)
{
	assert_int_equal(cfg->delivery_schedule_len, 3);
	assert_int_equal(cfg->delivery_schedule[0], 0);
	assert_int_equal(cfg->delivery_schedule[1], 1);
	assert_int_equal(cfg->delivery_schedule[2], 1);
}

static void check_env_bool(const struct bh_config *cfg)
{
	assert_true(cfg->delivery_allow_loopback);
}

static void check_env_log_attempts(const struct bh_config *cfg)
{
	assert_string_equal(cfg->log_attempts, "all");
}

static void check_comments(const struct bh_config *cfg)
{
	assert_int_equal(cfg->api_body_limit, 2048);
}

static const char file_yaml[] = "# comment\n"
				"api:\n"
				"  port: 9000\n"
				"kafka:\n"
				"  brokers: kafka:29092\n"
				"delivery:\n"
				"  allow_loopback: yes\n"
				"  schedule: \"0,1,2\"\n"
				"log:\n"
				"  level: debug\n";

static const struct load_case load_cases[] = {
	{"empty_file_gives_documented_defaults", "", NULL, NULL, check_defaults},
	{"yaml_file_values_replace_defaults", file_yaml, NULL, NULL, check_file_values},
	{"env_overrides_yaml_file", "api:\n  port: 9000\n", "BANKHOOK_API_PORT", "9100",
	 check_env_port},
	{"env_sets_schedule", "", "BANKHOOK_DELIVERY_SCHEDULE", "0,1,1", check_env_schedule},
	{"env_bool_true_enables_loopback", "", "BANKHOOK_DELIVERY_ALLOW_LOOPBACK", "true",
	 check_env_bool},
	{"env_log_attempts_all", "", "BANKHOOK_LOG_ATTEMPTS", "all", check_env_log_attempts},
	{"trailing_comments_are_ignored", "api:\n  body_limit: 2048   # bytes\n", NULL, NULL,
	 check_comments},
};

static void run_load_case(void **state)
{
	const struct load_case *c = *state;
	clear_env(NULL);
	char *path = write_temp(c->yaml);
	if (c->env_name)
		setenv(c->env_name, c->env_value, 1);
	struct bh_config cfg;
	char err[512] = "";
	int rc = bh_config_load(&cfg, path, err, sizeof(err));
	if (c->env_name)
		unsetenv(c->env_name);
	unlink(path);
	free(path);
	if (rc != 0)
		fail_msg("load failed: %s", err);
	c->check(&cfg);
	bh_config_free(&cfg);
}

/* ------------------------------------------------ files that must fail */

struct error_case {
	const char *name;
	const char *yaml;
	const char *env_name;
	const char *env_value;
	int line;              /* 0: no file:line expected */
	const char *want[3];   /* substrings the error must contain */
};

static const struct error_case error_cases[] = {
	{"unknown_key_is_error_with_file_and_line", "api:\n  port: 8080\n  prot: 8081\n", NULL,
	 NULL, 3, {"unknown key", "api.prot"}},
	{"unknown_section_is_error_with_line", "log:\n  level: info\napis:\n  port: 1\n", NULL,
	 NULL, 4, {"unknown key", "apis.port"}},
	{"bad_int_names_key", "api:\n  port: eighty\n", NULL, NULL, 2, {"api.port", "eighty"}},
	{"int_out_of_range_names_key", "api:\n  port: 70000\n", NULL, NULL, 2,
	 {"api.port", "65535"}},
	{"bad_bool_names_key", "delivery:\n  allow_loopback: maybe\n", NULL, NULL, 2,
	 {"delivery.allow_loopback", "maybe"}},
	{"list_value_is_refused", "delivery:\n  schedule: [0, 5]\n", NULL, NULL, 2, {"lists"}},
	{"bad_schedule_names_key", "delivery:\n  schedule: \"0,soon\"\n", NULL, NULL, 0,
	 {"delivery.schedule"}},
	{"bad_log_level_names_key", "log:\n  level: loud\n", NULL, NULL, 0, {"log.level"}},
	{"bad_log_attempts_names_key_and_values", "log:\n  attempts: some\n", NULL, NULL, 0,
	 {"log.attempts", "failures or all", "some"}},
	{"bad_env_int_names_variable", "", "BANKHOOK_API_PORT", "x80", 0,
	 {"BANKHOOK_API_PORT", "api.port"}},
	{"bad_env_bool_names_variable", "", "BANKHOOK_DELIVERY_ALLOW_PRIVATE", "perhaps", 0,
	 {"BANKHOOK_DELIVERY_ALLOW_PRIVATE"}},
	{"yaml_syntax_error_has_line", "api:\n  port: 1\n   bad: [\n", NULL, NULL, -1, {""}},
};

static void run_error_case(void **state)
{
	const struct error_case *c = *state;
	clear_env(NULL);
	char *path = write_temp(c->yaml);
	if (c->env_name)
		setenv(c->env_name, c->env_value, 1);
	struct bh_config cfg;
	char err[512] = "";
	int rc = bh_config_load(&cfg, path, err, sizeof(err));
	if (c->env_name)
		unsetenv(c->env_name);
	if (rc == 0) {
		bh_config_free(&cfg);
		unlink(path);
		free(path);
		fail_msg("expected an error");
	}
	bh_config_free(&cfg); /* must be safe after a failed load too */
	if (c->line != 0) {
		/* "path:line: ..."; -1 means any line as long as the path leads */
		char prefix[600];
		if (c->line > 0)
			snprintf(prefix, sizeof(prefix), "%s:%d: ", path, c->line);
		else
			snprintf(prefix, sizeof(prefix), "%s:", path);
		if (strncmp(err, prefix, strlen(prefix)) != 0)
			fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
	}
	for (size_t i = 0; i < 3 && c->want[i]; i++)
		if (strstr(err, c->want[i]) == NULL)
			fail_msg("error \"%s\" does not mention \"%s\"", err, c->want[i]);
	unlink(path);
	free(path);
}

static void missing_named_file_is_error(void **state)
{
	(void)state;
	struct bh_config cfg;
	char err[512] = "";
	int rc = bh_config_load(&cfg, "/nonexistent/bankhook.yaml", err, sizeof(err));
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, "/nonexistent/bankhook.yaml"));
	bh_config_free(&cfg);
}

/* -------------------------------------------------------------- schedule */

struct schedule_case {
	const char *name;
	const char *text;
	int len; /* -1: must be refused */
	int want[8];
};

static const struct schedule_case schedule_cases[] = {
	{"schedule_parses_default_list", "0,5,300,1800,7200,18000,36000,36000", 8,
	 {0, 5, 300, 1800, 7200, 18000, 36000, 36000}},
	{"schedule_parses_single_attempt", "0", 1, {0}},
	{"schedule_allows_spaces_around_commas", " 0 , 1 ,2", 3, {0, 1, 2}},
	{"schedule_refuses_empty", "", -1, {0}},
	{"schedule_refuses_words", "0,five", -1, {0}},
	{"schedule_refuses_negative", "0,-5", -1, {0}},
	{"schedule_refuses_over_a_week", "0,604801", -1, {0}},
	{"schedule_refuses_empty_element", "0,,5", -1, {0}},
	{"schedule_refuses_other_separator", "0;5", -1, {0}},
	{"schedule_refuses_more_than_max_attempts",
	 "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", -1, {0}},
};

static void run_schedule_case(void **state)
{
	const struct schedule_case *c = *state;
	int out[BH_SCHEDULE_MAX];
	int n = 0;
	char err[256] = "";
	int rc = bh_config_parse_schedule(c->text, out, &n, err, sizeof(err));
	if (c->len < 0) {
		assert_int_equal(rc, -1);
		assert_non_null(strstr(err, "delivery.schedule"));
		return;
	}
	if (rc != 0)
		fail_msg("refused: %s", err);
	assert_int_equal(n, c->len);
	assert_memory_equal(out, c->want, sizeof(int) * (size_t)n);
}

/* ------------------------------------------------------------------ main */


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(load_cases, run_load_case);
	TABLE(error_cases, run_error_case);
	ONE(missing_named_file_is_error);
	TABLE(schedule_cases, run_schedule_case);
	return _cmocka_run_group_tests("config", tests, n, clear_env, NULL);
}
