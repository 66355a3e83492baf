#include "db.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct bh_db {
	PGconn *conn;
	char *url;
	bool in_tx;
	char sqlstate[6];
	char errmsg[512];
};

struct bh_db_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct bh_db **free_list;
	int nfree;
	int size;
};

struct bh_db *bh_db_connect(const char *url, char *errbuf, size_t errlen)
{
	PGconn *conn = PQconnectdb(url);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(errbuf, errlen, "database: %s", PQerrorMessage(conn));
		/* libpq messages end in a newline; a log line must not. */
		errbuf[strcspn(errbuf, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	struct bh_db *db = bh_xcalloc(1, sizeof(*db));
	db->conn = conn;
	db->url = bh_xstrdup(url);
	return db;
}

void bh_db_close(struct bh_db *db)
{
	if (db == NULL)
		return;
	PQfinish(db->conn);
	free(db->url);
	free(db);
}

PGconn *bh_db_conn(struct bh_db *db)
{
	return db->conn;
}

static void record_error(struct bh_db *db, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state ? state : "08000");
	snprintf(db->errmsg, sizeof(db->errmsg), "%s", PQerrorMessage(db->conn));
	db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
}

PGresult *bh_db_query(struct bh_db *db, const char *sql, int nparams, const char *const *params)
{
	db->sqlstate[0] = '\0';
	db->errmsg[0] = '\0';
	for (int attempt = 0; attempt < 2; attempt++) {
		if (PQstatus(db->conn) != CONNECTION_OK) {
			if (db->in_tx)
				break;
			PQreset(db->conn);
			if (PQstatus(db->conn) != CONNECTION_OK)
				break;
		}
		PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			return res;
		record_error(db, res);
		PQclear(res);
		/* Retry only when the connection broke and no transaction is open. */
		if (PQstatus(db->conn) == CONNECTION_OK || db->in_tx)
			return NULL;
	}
	if (db->sqlstate[0] == '\0')
		record_error(db, NULL);
	return NULL;
}

int bh_db_exec(struct bh_db *db, const char *sql, int nparams, const char *const *params)
{
	PGresult *res = bh_db_query(db, sql, nparams, params);
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

int bh_db_begin(struct bh_db *db)
{
	if (bh_db_exec(db, "BEGIN", 0, NULL) < 0)
		return -1;
	db->in_tx = true;
	return 0;
}

int bh_db_commit(struct bh_db *db)
{
	int rc = bh_db_exec(db, "COMMIT", 0, NULL);
	db->in_tx = false;
	return rc;
}

void bh_db_rollback(struct bh_db *db)
{
	if (PQstatus(db->conn) == CONNECTION_OK) {
		PGresult *res = PQexec(db->conn, "ROLLBACK");
		PQclear(res);
	}
	db->in_tx = false;
}

json_t *bh_db_seq_page_json(struct bh_db *db, const char *sql, const char *owner, int limit,
			    const char *cursor, json_t *(*row_json)(const PGresult *res, int row),
			    int seq_col, char *errbuf, size_t errlen)
{
	long long after = 0;
	char limit_text[16];
	/* The cursor is the seq of the last row shown; opaque to clients. */
	if (cursor != NULL && bh_parse_int(cursor, 1, (1LL << 62), &after) < 0) {
		snprintf(errbuf, errlen, "cursor: must be the next_cursor of a previous page");
		return NULL;
	}
	snprintf(limit_text, sizeof(limit_text), "%d", limit + 1);
	const char *params[] = {owner, cursor, limit_text};
	PGresult *res = bh_db_query(db, sql, 3, params);
	if (res == NULL) {
		snprintf(errbuf, errlen, "database: %s", bh_db_errmsg(db));
		return NULL;
	}
	int n = PQntuples(res);
	json_t *data = json_array();
	for (int i = 0; i < n && i < limit; i++)
		json_array_append_new(data, row_json(res, i));
	/* One row more than asked for says whether another page exists. */
	json_t *next = n > limit ? json_string(PQgetvalue(res, limit - 1, seq_col)) : json_null();
	PQclear(res);
	return json_pack("{s:o,s:o}", "data", data, "next_cursor", next);
}

int bh_db_insert_capped(struct bh_db *db, const char *client_id, const char *count_sql,
			long long max, int (*insert)(struct bh_db *db, void *ctx), void *ctx)
{
	const char *params[] = {client_id};
	if (bh_db_begin(db) < 0)
		return -1;
	PGresult *res =
		bh_db_query(db, "SELECT 1 FROM clients WHERE id = $1 FOR NO KEY UPDATE", 1, params);
	if (res == NULL)
		goto fail;
	PQclear(res);
	res = bh_db_query(db, count_sql, 1, params);
	if (res == NULL)
		goto fail;
	long long count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (count >= max) {
		bh_db_rollback(db);
		return 1;
	}
	if (insert(db, ctx) < 0)
		goto fail;
	return bh_db_commit(db) < 0 ? -1 : 0;
fail:
	bh_db_rollback(db); /* keeps the failed statement's sqlstate */
	return -1;
}

const char *bh_db_sqlstate(const struct bh_db *db)
{
	return db->sqlstate;
}

const char *bh_db_errmsg(const struct bh_db *db)
{
	return db->errmsg;
}

bool bh_db_is_unique_violation(const struct bh_db *db)
{
	return strcmp(db->sqlstate, "23505") == 0;
}

enum bh_db_failure bh_db_failure_of(const char *sqlstate)
{
	static const char *const refused[] = {"22", "23", "54", "P0"};
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return BH_DB_UNAVAILABLE;
	for (size_t i = 0; i < BH_ARRAY_LEN(refused); i++)
		if (strncmp(sqlstate, refused[i], 2) == 0)
			return BH_DB_REFUSED;
	return BH_DB_UNAVAILABLE;
}

bool bh_db_ping(struct bh_db *db)
{
	return bh_db_exec(db, "SELECT 1", 0, NULL) == 0;
}

struct bh_db_pool *bh_db_pool_new(const char *url, int size, char *errbuf, size_t errlen)
{
	struct bh_db_pool *pool = bh_xcalloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->freed, NULL);
	pool->free_list = bh_xcalloc((size_t)size, sizeof(struct bh_db *));
	pool->size = size;
	for (int i = 0; i < size; i++) {
		struct bh_db *db = bh_db_connect(url, errbuf, errlen);
		if (db == NULL) {
			bh_db_pool_free(pool);
			return NULL;
		}
		pool->free_list[pool->nfree++] = db;
	}
	return pool;
}

struct bh_db *bh_db_pool_get(struct bh_db_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	while (pool->nfree == 0)
		pthread_cond_wait(&pool->freed, &pool->lock);
	struct bh_db *db = pool->free_list[--pool->nfree];
	pthread_mutex_unlock(&pool->lock);
	return db;
}

void bh_db_pool_put(struct bh_db_pool *pool, struct bh_db *db)
{
	if (db->in_tx)
		bh_db_rollback(db);
	pthread_mutex_lock(&pool->lock);
	pool->free_list[pool->nfree++] = db;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->lock);
}

void bh_db_pool_free(struct bh_db_pool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->nfree; i++)
		bh_db_close(pool->free_list[i]);
	free(pool->free_list);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->freed);
	free(pool);
}

static int migration_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 8 && d->d_name[0] >= '0' && d->d_name[0] <= '9' &&
	       strcmp(d->d_name + n - 4, ".sql") == 0;
}

static char *read_file(const char *path, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct bh_buf b;
	bh_buf_init(&b, 16 * 1024 * 1024);
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (bh_buf_append(&b, chunk, n) < 0)
			break;
	fclose(f);
	if (b.too_big || b.data == NULL) {
		snprintf(errbuf, errlen, "%s: empty or larger than 16 MiB", path);
		bh_buf_free(&b);
		return NULL;
	}
	return b.data;
}

int bh_db_migrate(struct bh_db *db, const char *dir, char *errbuf, size_t errlen)
{
	struct dirent **names = NULL;
	int rc = -1;
	int n = scandir(dir, &names, migration_filter, alphasort);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	/*
	 * The advisory lock makes concurrent migrators (several api replicas
	 * starting at once) apply each file exactly once.
	 */
	if (bh_db_exec(db,
		       "CREATE TABLE IF NOT EXISTS schema_migrations ("
		       " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		       0, NULL) < 0 ||
	    bh_db_exec(db, "SELECT pg_advisory_lock(7262001)", 0, NULL) < 0) {
		snprintf(errbuf, errlen, "migrate: %s", bh_db_errmsg(db));
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		const char *params[1] = {name};
		PGresult *res = bh_db_query(
			db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params);
		if (res == NULL) {
			snprintf(errbuf, errlen, "migrate: %s", bh_db_errmsg(db));
			goto unlock;
		}
		bool applied = PQntuples(res) > 0;
		PQclear(res);
		if (applied)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		char *sql = read_file(path, errbuf, errlen);
		if (sql == NULL)
			goto unlock;
		/* Simple-query protocol: a migration file may hold many statements. */
		if (bh_db_begin(db) < 0) {
			free(sql);
			snprintf(errbuf, errlen, "migrate: %s", bh_db_errmsg(db));
			goto unlock;
		}
		PGresult *r = PQexec(bh_db_conn(db), sql);
		free(sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(errbuf, errlen, "%s: %s", path, PQresultErrorMessage(r));
			errbuf[strcspn(errbuf, "\n")] = '\0';
			PQclear(r);
			bh_db_rollback(db);
			goto unlock;
		}
		PQclear(r);
		if (bh_db_exec(db, "INSERT INTO schema_migrations (version) VALUES ($1)", 1,
			       params) < 0 ||
		    bh_db_commit(db) < 0) {
			snprintf(errbuf, errlen, "migrate: %s", bh_db_errmsg(db));
			bh_db_rollback(db);
			goto unlock;
		}
		bh_info("applied migration %s", name);
	}
	rc = 0;
unlock:
	if (bh_db_exec(db, "SELECT pg_advisory_unlock(7262001)", 0, NULL) < 0)
		bh_warn("migrate: unlock failed: %s", bh_db_errmsg(db));
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}
