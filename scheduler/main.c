/*
 * bankhook-scheduler: everything driven by time. Several may run; the one
 * holding a PostgreSQL advisory lock leads, the others stand by and try
 * again every tick. The leader hands due deliveries to the workers through
 * bankhook.deliveries, disables subscriptions that keep failing, and
 * deletes attempts and events past their retention.
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "delivery.h"
#include "idempotency.h"
#include "kafka.h"
#include "log.h"
#include "ops_http.h"
#include "psd2.h"
#include "util.h"

/* Advisory lock key of the leader: "bankhook" in ASCII, as an int8. */
#define LEADER_LOCK_KEY "7089068696050560875"
#define PRODUCE_TIMEOUT_MS 10000 /* a job not acknowledged by then fails */
#define DISABLE_EVERY_MS 10000	 /* auto-disable check period */
#define DUE_COUNT_EVERY_MS 2000	 /* bankhook_retries_due refresh */
#define RETENTION_EVERY_MS 60000 /* retention pass period */
#define PSD2_EVERY_MS 1000	 /* hourly activation and transaction windows */
/*
 * Retention deletes at most this many rows per statement (events fewer:
 * each takes its deliveries and their attempts along), and one pass stops
 * after RETENTION_BUDGET_MS so dispatching is never held up for long; a
 * backlog then goes on at the next tick instead of a minute later.
 */
#define RETENTION_ATTEMPTS_BATCH 5000
#define RETENTION_EVENTS_BATCH 500
#define RETENTION_BUDGET_MS 1000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested)
		_exit(1);
	stop_requested = 1;
}

struct metrics {
	atomic_llong retries_due;
	atomic_int leader;
	atomic_llong dispatched;
	atomic_llong disabled;
	atomic_llong disabled_now;
	atomic_llong purged_attempts;
	atomic_llong purged_events;
	atomic_bool db_ok;
};

struct scheduler {
	struct bh_config cfg;
	/*
	 * The lock lives on a connection of its own, used raw: bh_db's
	 * transparent reconnect would silently drop the lock with the session.
	 */
	PGconn *lock_conn;
	bool leader;
	struct bh_db *db;
	struct bh_kafka_producer *producer;
	struct bh_ops_http *ops;
	struct bh_psd2_refresh *psd2; /* refresh thread; acts only while leading */
	struct bh_psd2_metrics pm;
	int64_t next_psd2;
	int64_t tick_at_ms; /* psd2-tick --at */
	struct metrics m;
};

/* ---- ops listener ------------------------------------------------------ */

static bool scheduler_ready(void *arg)
{
	struct scheduler *s = arg;
	return atomic_load(&s->m.db_ok) && bh_kafka_ping(s->producer, 1000);
}

static void scheduler_metrics(struct bh_buf *b, void *arg)
{
	struct metrics *m = &((struct scheduler *)arg)->m;
	struct bh_psd2_metrics *pm = &((struct scheduler *)arg)->pm;
	(void)bh_buf_appendf(
		b,
		"# HELP bankhook_refresh_tasks_total Refresh tasks started, and bank parts by outcome.\n"
		"# TYPE bankhook_refresh_tasks_total counter\n"
		"bankhook_refresh_tasks_total{status=\"started\"} %lld\n"
		"bankhook_refresh_tasks_total{status=\"bank_finished\"} %lld\n"
		"bankhook_refresh_tasks_total{status=\"bank_failed\"} %lld\n"
		"# HELP bankhook_psd2_transaction_events_total transactionEvents created.\n"
		"# TYPE bankhook_psd2_transaction_events_total counter\n"
		"bankhook_psd2_transaction_events_total %lld\n"
		"# HELP bankhook_psd2_activations_total Webhook settings put in force.\n"
		"# TYPE bankhook_psd2_activations_total counter\n"
		"bankhook_psd2_activations_total %lld\n",
		(long long)atomic_load(&pm->tasks_started),
		(long long)atomic_load(&pm->parts_finished),
		(long long)atomic_load(&pm->parts_failed),
		(long long)atomic_load(&pm->transaction_events),
		(long long)atomic_load(&pm->activations));
	(void)bh_buf_appendf(
		b,
		"# HELP bankhook_retries_due Pending deliveries whose attempt is due.\n"
		"# TYPE bankhook_retries_due gauge\n"
		"bankhook_retries_due %lld\n"
		"# HELP bankhook_scheduler_leader 1 while this scheduler leads.\n"
		"# TYPE bankhook_scheduler_leader gauge\n"
		"bankhook_scheduler_leader %d\n"
		"# HELP bankhook_jobs_dispatched_total Delivery jobs sent to workers.\n"
		"# TYPE bankhook_jobs_dispatched_total counter\n"
		"bankhook_jobs_dispatched_total %lld\n"
		"# HELP bankhook_subscriptions_disabled_total Subscriptions disabled for failing.\n"
		"# TYPE bankhook_subscriptions_disabled_total counter\n"
		"bankhook_subscriptions_disabled_total %lld\n"
		"# HELP bankhook_subscriptions_disabled Subscriptions disabled now, for any reason.\n"
		"# TYPE bankhook_subscriptions_disabled gauge\n"
		"bankhook_subscriptions_disabled %lld\n"
		"# HELP bankhook_retention_deleted_total Rows deleted by retention.\n"
		"# TYPE bankhook_retention_deleted_total counter\n"
		"bankhook_retention_deleted_total{table=\"attempts\"} %lld\n"
		"bankhook_retention_deleted_total{table=\"events\"} %lld\n",
		(long long)atomic_load(&m->retries_due), atomic_load(&m->leader),
		(long long)atomic_load(&m->dispatched), (long long)atomic_load(&m->disabled),
		(long long)atomic_load(&m->disabled_now),
		(long long)atomic_load(&m->purged_attempts),
		(long long)atomic_load(&m->purged_events));
}

/* ---- leadership -------------------------------------------------------- */

/* Runs one statement on the lock connection: true when it answered 't'. */
static bool lock_query_true(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		  strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return ok;
}

static void leadership_lose(struct scheduler *s, const char *why)
{
	if (s->leader)
		bh_warn("leadership lost: %s", why);
	s->leader = false;
	atomic_store(&s->m.leader, 0);
	PQfinish(s->lock_conn);
	s->lock_conn = NULL;
}

/*
 * Makes sure we know whether we lead: checks the lock connection of a
 * leader, or tries to take the lock while standing by.
 */
static void leadership_check(struct scheduler *s)
{
	if (s->lock_conn == NULL) {
		s->lock_conn = PQconnectdb(s->cfg.db_url);
		if (PQstatus(s->lock_conn) != CONNECTION_OK) {
			PQfinish(s->lock_conn);
			s->lock_conn = NULL;
			return;
		}
	}
	if (s->leader) {
		/* A broken session has released the lock on the server's side. */
		if (!lock_query_true(s->lock_conn, "SELECT true"))
			leadership_lose(s, "lock connection broken");
		return;
	}
	PGresult *res = PQexec(s->lock_conn, "SELECT pg_try_advisory_lock(" LEADER_LOCK_KEY ")");
	ExecStatusType st = PQresultStatus(res);
	bool got = st == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (st != PGRES_TUPLES_OK) {
		leadership_lose(s, "lock query failed");
		return;
	}
	if (got) {
		s->leader = true;
		atomic_store(&s->m.leader, 1);
		bh_info("leading");
	}
}

static void leadership_release(struct scheduler *s)
{
	if (s->lock_conn == NULL)
		return;
	if (s->leader &&
	    lock_query_true(s->lock_conn, "SELECT pg_advisory_unlock(" LEADER_LOCK_KEY ")"))
		bh_info("leadership released");
	s->leader = false;
	atomic_store(&s->m.leader, 0);
	PQfinish(s->lock_conn);
	s->lock_conn = NULL;
}

/* ---- due deliveries ---------------------------------------------------- */

/*
 * Claims one batch of due deliveries and produces a job for each. The
 * claim commits only after Kafka acknowledged every job; otherwise it rolls
 * back and the deliveries stay due. Returns how many were dispatched, or -1.
 */
static int dispatch_batch(struct scheduler *s)
{
	int rc = -1;
	struct bh_delivery_claim *c = NULL;
	int n = 0;
	if (bh_db_begin(s->db) < 0) {
		bh_warn("database: begin: %s", bh_db_errmsg(s->db));
		return -1;
	}
	if (bh_delivery_claim_due(s->db, s->cfg.scheduler_batch, s->cfg.delivery_lease_s, &c, &n) <
	    0) {
		bh_warn("database: claim due deliveries: %s", bh_db_errmsg(s->db));
		goto out;
	}
	int queued = 0;
	for (int i = 0; i < n; i++) {
		json_t *job = json_pack("{s:s, s:s, s:s}", "delivery_id", c[i].delivery_id,
					"subscription_id", c[i].subscription_id, "event_id",
					c[i].event_id);
		char *text = json_dumps(job, JSON_COMPACT);
		json_decref(job);
		/* Keyed by subscription: one subscription's jobs stay in order. */
		int prc = bh_kafka_produce(s->producer, s->cfg.topic_deliveries,
					   c[i].subscription_id, text, strlen(text));
		free(text);
		if (prc < 0)
			break;
		queued++;
	}
	int failed = n > 0 ? bh_kafka_flush(s->producer, PRODUCE_TIMEOUT_MS + 1000) : 0;
	if (queued < n || failed != 0) {
		/* failed < 0: the flush timed out, so how many got through is unknown */
		if (queued < n || failed > 0)
			bh_warn("kafka did not take %d of %d delivery jobs; claims rolled back",
				queued < n ? n - queued : failed, n);
		else
			bh_warn("kafka did not acknowledge %d delivery jobs in time; claims rolled back",
				n);
		goto out;
	}
	if (bh_db_commit(s->db) < 0) {
		/* Jobs went out but the claim did not: they are re-sent, and skipped. */
		bh_warn("database: commit claims: %s", bh_db_errmsg(s->db));
		goto out;
	}
	atomic_fetch_add(&s->m.dispatched, n);
	if (n > 0)
		bh_debug("dispatched %d delivery jobs", n);
	rc = n;
out:
	if (rc < 0)
		bh_db_rollback(s->db);
	bh_delivery_claims_free(c, n);
	return rc;
}

/*
 * One retention pass: full batches until nothing is left or the budget is
 * spent. Returns true when it stopped with work left.
 */
static bool retention_pass(struct scheduler *s)
{
	int64_t until = bh_mono_ms() + RETENTION_BUDGET_MS;
	bool attempts_left = true, events_left = true;
	while (!stop_requested && (attempts_left || events_left) && bh_mono_ms() < until) {
		if (attempts_left) {
			long long n = bh_delivery_purge_attempts(
				s->db, s->cfg.retention_attempts_days, RETENTION_ATTEMPTS_BATCH);
			if (n < 0)
				bh_warn("retention: attempts: %s", bh_db_errmsg(s->db));
			else
				atomic_fetch_add(&s->m.purged_attempts, n);
			attempts_left = n == RETENTION_ATTEMPTS_BATCH;
		}
		if (events_left) {
			long long n = bh_delivery_purge_events(s->db, s->cfg.retention_events_days,
							       RETENTION_EVENTS_BATCH);
			if (n < 0)
				bh_warn("retention: events: %s", bh_db_errmsg(s->db));
			else
				atomic_fetch_add(&s->m.purged_events, n);
			events_left = n == RETENTION_EVENTS_BATCH;
			/* Refresh tasks follow the events' retention (their notifications go with those). */
			long long t = bh_psd2_purge_tasks(s->db, s->cfg.retention_events_days,
							  RETENTION_EVENTS_BATCH);
			if (t < 0)
				bh_warn("retention: refresh tasks: %s", bh_db_errmsg(s->db));
			events_left = events_left || t == RETENTION_EVENTS_BATCH;
			/* Idempotency answers past their 24 hours (reads ignore them already). */
			long long k = bh_idem_purge(s->db, RETENTION_EVENTS_BATCH);
			if (k < 0)
				bh_warn("retention: idempotency keys: %s", bh_db_errmsg(s->db));
			events_left = events_left || k == RETENTION_EVENTS_BATCH;
		}
	}
	return attempts_left || events_left;
}

static void scheduler_tick(struct scheduler *s, int64_t *next_disable, int64_t *next_count,
			   int64_t *next_retention)
{
	leadership_check(s);
	atomic_store(&s->m.db_ok, bh_db_ping(s->db));
	if (!s->leader)
		return;
	/* Before dispatching, so the deliveries they create go out this tick. */
	if (bh_mono_ms() >= s->next_psd2) {
		int a = bh_psd2_activate_due(s->db, -1);
		if (a > 0)
			atomic_fetch_add(&s->pm.activations, a);
		int e = bh_psd2_flush_transactions(s->db, &s->cfg);
		if (e > 0)
			atomic_fetch_add(&s->pm.transaction_events, e);
		s->next_psd2 = bh_mono_ms() + PSD2_EVERY_MS;
	}
	/* Until nothing is due, a full batch at a time. */
	int n;
	while (!stop_requested && (n = dispatch_batch(s)) == s->cfg.scheduler_batch)
		;
	int64_t now = bh_mono_ms();
	if (now >= *next_count) {
		atomic_store(&s->m.retries_due, bh_delivery_count_due(s->db));
		long long disabled = bh_delivery_count_disabled_subs(s->db);
		if (disabled >= 0)
			atomic_store(&s->m.disabled_now, disabled);
		*next_count = now + DUE_COUNT_EVERY_MS;
	}
	if (now >= *next_disable) {
		int d = bh_delivery_disable_failing(s->db, s->cfg.delivery_disable_after_s);
		if (d > 0)
			atomic_fetch_add(&s->m.disabled, d);
		*next_disable = now + DISABLE_EVERY_MS;
	}
	if (now >= *next_retention) {
		bool more = retention_pass(s);
		*next_retention = more ? 0 : now + RETENTION_EVERY_MS;
	}
}

static void scheduler_run(struct scheduler *s)
{
	int64_t next_disable = 0, next_count = 0, next_retention = 0;
	while (!stop_requested) {
		int64_t start = bh_mono_ms();
		scheduler_tick(s, &next_disable, &next_count, &next_retention);
		bh_kafka_poll(s->producer);
		/* Sleep the rest of the tick in short steps, to notice signals. */
		while (!stop_requested && bh_mono_ms() - start < s->cfg.scheduler_tick_ms)
			usleep(10 * 1000);
	}
}

/* ---- init and teardown ------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bankhook-scheduler [--config FILE] [--log-format text|json]\n"
			"       bankhook-scheduler [--config FILE] psd2-tick --at RFC3339-TIME\n"
			"         (tests only, needs psd2.test_clock: apply the webhook settings\n"
			"         pending at TIME as if the clock said so, then exit)\n");
}

/*
 * `psd2-tick --at TIME`: the test-only activation tick. It runs the same
 * activation the leader runs every second, with TIME for the clock, so an
 * end-to-end test can see a setting change nothing before "its" hour and
 * take effect on it without waiting for one. Refused unless the
 * configuration says psd2.test_clock: true (false by default and in
 * deploy/bankhook.yaml), so a production scheduler cannot be driven to
 * activate early. Row locks keep it safe beside a running leader.
 */
static int psd2_tick(struct scheduler *s)
{
	char err[512];
	if (!s->cfg.psd2_test_clock) {
		bh_error("psd2-tick refused: psd2.test_clock is false (a test-only command)");
		return 2;
	}
	struct bh_db *db = bh_db_connect(s->cfg.db_url, err, sizeof(err));
	if (db == NULL) {
		bh_error("%s", err);
		return 1;
	}
	int n = bh_psd2_activate_due(db, s->tick_at_ms);
	bh_db_close(db);
	if (n < 0)
		return 1;
	printf("%d\n", n);
	return 0;
}

/* 0: serve; 1: a command (psd2-tick) to run instead; -1: failed. */
static int scheduler_init(struct scheduler *s, int argc, char **argv)
{
	const char *config_path = NULL, *log_format = NULL, *at = NULL;
	bool tick = false;
	char err[512];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "psd2-tick") == 0) {
			tick = true;
		} else if (strcmp(argv[i], "--at") == 0 && i + 1 < argc) {
			at = argv[++i];
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc) {
			log_format = argv[++i];
		} else {
			usage();
			return -1;
		}
	}
	if (log_format && strcmp(log_format, "text") != 0 && strcmp(log_format, "json") != 0) {
		usage();
		return -1;
	}
	/* 1. configuration and logging */
	bh_log_init("scheduler");
	if (bh_config_load(&s->cfg, config_path, err, sizeof(err)) < 0) {
		bh_error("%s", err);
		return -1;
	}
	enum bh_log_level level;
	if (bh_log_parse_level(s->cfg.log_level, &level) == 0)
		bh_log_set_level(level);
	bh_log_set_json(strcmp(log_format ? log_format : s->cfg.log_format, "json") == 0);
	if (tick || at) {
		if (!tick || at == NULL || bh_parse_time(at, &s->tick_at_ms) < 0 ||
		    s->tick_at_ms < 0) {
			usage();
			return -1;
		}
		return 1;
	}
	/* 2. signals */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* 3. PostgreSQL (work connection; the lock one opens in the loop) */
	s->db = bh_db_connect(s->cfg.db_url, err, sizeof(err));
	if (s->db == NULL) {
		bh_error("%s", err);
		return -1;
	}
	atomic_store(&s->m.db_ok, true);
	/* 4. Kafka producer for delivery jobs */
	s->producer = bh_kafka_producer_new(&s->cfg, PRODUCE_TIMEOUT_MS, err, sizeof(err));
	if (s->producer == NULL) {
		bh_error("%s", err);
		return -1;
	}
	/* 5. ops listener */
	if (bh_ops_http_start(s->cfg.scheduler_http_port, scheduler_ready, scheduler_metrics, s,
			      &s->ops, err, sizeof(err)) < 0) {
		bh_error("%s", err);
		return -1;
	}
	/* 6. refresh thread (PSD2 /refresh tasks; idle unless leading) */
	s->psd2 = bh_psd2_refresh_start(&s->cfg, &s->m.leader, &s->pm, err, sizeof(err));
	if (s->psd2 == NULL) {
		bh_error("%s", err);
		return -1;
	}
	bh_info("scheduler %s standing by for leadership", BH_VERSION);
	return 0;
}

/* Reverse order of scheduler_init; safe on a partly initialized scheduler. */
static void scheduler_free(struct scheduler *s)
{
	/* The connector call in flight finishes (bounded by its timeout) and is recorded. */
	bh_psd2_refresh_stop(s->psd2);
	leadership_release(s);
	bh_ops_http_stop(s->ops);
	bh_kafka_producer_free(s->producer);
	bh_db_close(s->db);
	bh_config_free(&s->cfg);
}

int main(int argc, char **argv)
{
	static struct scheduler s; /* static: zeroed */
	int rc = 1;
	/* init: config, signals, database, Kafka, ops listener, refresh thread */
	int init = scheduler_init(&s, argc, argv);
	if (init == 0) {
		/* run: tick until SIGINT/SIGTERM */
		scheduler_run(&s);
		bh_info("stopping");
		rc = 0;
	} else if (init == 1) {
		rc = psd2_tick(&s);
	}
	/* free: release the lock first so a standby takes over at once */
	scheduler_free(&s);
	return rc;
}
