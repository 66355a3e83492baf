/*
 * bankhook-api: the HTTP API over PostgreSQL and Kafka.
 *
 *   bankhook-api [--config FILE] [--log-format text|json]   serve
 *   bankhook-api [--config FILE] migrate                    apply migrations, exit
 *   bankhook-api [--config FILE] create-topics              create Kafka topics, exit
 *   bankhook-api routes                                     print the route table, exit
 *   bankhook-api config-keys                                print the configuration keys, exit
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "server.h"

#define PRODUCER_TIMEOUT_MS 10000
/* Rate-limit buckets: more tokens in use at once than this share slots by recency. */
#define RATELIMIT_SLOTS 4096
#define DRAIN_MS 20000

/* Set by the signal handler only; the main loop notices it. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	/* A second signal means "now": skip the drain. */
	if (stop_requested)
		_exit(1);
	stop_requested = 1;
}

struct options {
	const char *config_path;
	const char *log_format;
	const char *command; /* NULL: serve */
};

static int parse_args(int argc, char **argv, struct options *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			o->config_path = argv[++i];
		} else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc) {
			o->log_format = argv[++i];
			if (strcmp(o->log_format, "text") != 0 &&
			    strcmp(o->log_format, "json") != 0)
				return -1;
		} else if (o->command == NULL && (strcmp(argv[i], "migrate") == 0 ||
						  strcmp(argv[i], "create-topics") == 0 ||
						  strcmp(argv[i], "routes") == 0 ||
						  strcmp(argv[i], "config-keys") == 0)) {
			o->command = argv[i];
		} else {
			return -1;
		}
	}
	return 0;
}

/* One "section key type default" line (tab-separated) per key: for docs and tests. */
static void print_key(const char *section, const char *key, const char *type,
		      const char *default_value, void *arg)
{
	fprintf((FILE *)arg, "%s\t%s\t%s\t%s\n", section, key, type, default_value);
}

static int run_migrate(const struct bh_config *cfg)
{
	char err[512];
	int rc = 1;
	struct bh_db *db = bh_db_connect(cfg->db_url, err, sizeof(err));
	if (db == NULL) {
		bh_error("%s", err);
		goto out;
	}
	if (bh_db_migrate(db, cfg->db_migrations_dir, err, sizeof(err)) < 0) {
		bh_error("%s", err);
		goto out;
	}
	bh_info("migrations up to date");
	rc = 0;
out:
	bh_db_close(db);
	return rc;
}

static int run_create_topics(const struct bh_config *cfg)
{
	char err[512];
	if (bh_kafka_create_topics(cfg, err, sizeof(err)) < 0) {
		bh_error("%s", err);
		return 1;
	}
	bh_info("topics ready");
	return 0;
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A client that hangs up mid-reply must not kill the process. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static int serve(const struct bh_config *cfg)
{
	char err[512];
	int rc = 1;
	struct bh_api api = {.cfg = cfg};
	struct bh_server *srv = NULL;

	/* 1. the database pool: every request but /healthz needs it */
	api.pool = bh_db_pool_new(cfg->db_url, cfg->db_pool_size, err, sizeof(err));
	if (api.pool == NULL) {
		bh_error("%s", err);
		goto out;
	}
	/* 2. the producer POST /v1/events waits on */
	api.producer = bh_kafka_producer_new(cfg, PRODUCER_TIMEOUT_MS, err, sizeof(err));
	if (api.producer == NULL) {
		bh_error("%s", err);
		goto out;
	}
	/* 3. the rate limits: per token and per client (0: none), publishing, logins, scrypt runs */
	if (cfg->api_rate_limit_per_s > 0)
		api.ratelimit = bh_ratelimit_new(cfg->api_rate_limit_per_s,
						 cfg->api_rate_limit_burst, RATELIMIT_SLOTS);
	if (cfg->api_client_rate_limit_per_s > 0)
		api.client_ratelimit =
			bh_ratelimit_new(cfg->api_client_rate_limit_per_s,
					 cfg->api_client_rate_limit_burst, RATELIMIT_SLOTS);
	if (cfg->api_publish_rate_limit_per_s > 0)
		api.publish_ratelimit =
			bh_ratelimit_new(cfg->api_publish_rate_limit_per_s,
					 cfg->api_publish_rate_limit_burst, RATELIMIT_SLOTS);
	api.login_limit =
		bh_ratelimit_new(cfg->api_login_rate_per_s, cfg->api_login_burst, RATELIMIT_SLOTS);
	api.scrypt_limit = bh_ratelimit_new(cfg->api_scrypt_per_s, cfg->api_scrypt_burst, 1);
	/* 4. the bootstrap admin token, before anyone can present it */
	if (cfg->api_admin_token[0] != '\0') {
		struct bh_db *db = bh_db_pool_get(api.pool);
		int brc = bh_identity_bootstrap_admin(db, cfg->api_admin_token);
		if (brc < 0)
			bh_error("cannot store the bootstrap admin token: %s", bh_db_errmsg(db));
		bh_db_pool_put(api.pool, db);
		if (brc < 0)
			goto out;
	}
	/* 5. the listener, last, so no request arrives before the rest is ready */
	srv = bh_server_start(&api, err, sizeof(err));
	if (srv == NULL) {
		bh_error("%s", err);
		goto out;
	}
	bh_info("api listening on http://%s:%d", cfg->api_host, cfg->api_port);

	/* run: sleep in short steps until a signal asks us to stop */
	while (!stop_requested) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	bh_info("stopping: finishing requests in flight");
	rc = 0;
out:
	/* free, in reverse: listener (draining requests), limiters, producer, pool */
	bh_server_stop(srv, DRAIN_MS);
	bh_ratelimit_free(api.scrypt_limit);
	bh_ratelimit_free(api.login_limit);
	bh_ratelimit_free(api.publish_ratelimit);
	bh_ratelimit_free(api.client_ratelimit);
	bh_ratelimit_free(api.ratelimit);
	bh_kafka_producer_free(api.producer);
	bh_db_pool_free(api.pool);
	return rc;
}

int main(int argc, char **argv)
{
	struct options opt;
	struct bh_config cfg;
	char err[512];
	enum bh_log_level level;
	int rc;

	/* init: arguments, configuration, logging, signals */
	bh_log_init("api");
	if (parse_args(argc, argv, &opt) < 0) {
		fprintf(stderr, "usage: bankhook-api [--config FILE] [--log-format text|json] "
				"[migrate|create-topics|routes|config-keys]\n");
		return 2;
	}
	if (opt.command != NULL && strcmp(opt.command, "routes") == 0) {
		bh_routes_print(stdout);
		return 0;
	}
	if (opt.command != NULL && strcmp(opt.command, "config-keys") == 0) {
		bh_config_each_key(print_key, stdout);
		return 0;
	}
	if (bh_config_load(&cfg, opt.config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "bankhook-api: %s\n", err);
		bh_config_free(&cfg); /* whatever was filled in before the error */
		return 2;
	}
	if (bh_log_parse_level(cfg.log_level, &level) == 0)
		bh_log_set_level(level);
	bh_log_set_json(strcmp(opt.log_format ? opt.log_format : cfg.log_format, "json") == 0);
	install_signals();

	/* run: one command, or serve until stopped */
	if (opt.command != NULL && strcmp(opt.command, "migrate") == 0)
		rc = run_migrate(&cfg);
	else if (opt.command != NULL)
		rc = run_create_topics(&cfg);
	else
		rc = serve(&cfg);

	/* free */
	bh_config_free(&cfg);
	return rc;
}
