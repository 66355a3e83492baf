/*
 * PostgreSQL access over libpq: a connection that reconnects after the
 * server restarts, a small pool for the api's threads, transactions, and
 * the numbered-migration runner. Query results are plain PGresult: the
 * caller PQclear()s them.
 */
#ifndef BH_COMMON_DB_H
#define BH_COMMON_DB_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "util.h"

struct bh_db;
struct bh_db_pool;

/* Connects; NULL with the reason in errbuf. */
struct bh_db *bh_db_connect(const char *url, char *errbuf, size_t errlen);
void bh_db_close(struct bh_db *db);

/*
 * Runs one statement with text parameters (NULL entries are SQL NULL).
 * Returns the result on success (caller PQclear()s), or NULL: then
 * bh_db_sqlstate() and bh_db_errmsg() say why. A broken connection is
 * reset once and the statement retried when not inside a transaction.
 */
PGresult *bh_db_query(struct bh_db *db, const char *sql, int nparams,
		      const char *const *params) BH_MUSTCHECK;
/* The same for statements whose result is not needed; 0 or -1. */
int bh_db_exec(struct bh_db *db, const char *sql, int nparams,
	       const char *const *params) BH_MUSTCHECK;

int bh_db_begin(struct bh_db *db) BH_MUSTCHECK;
int bh_db_commit(struct bh_db *db) BH_MUSTCHECK;
void bh_db_rollback(struct bh_db *db);

/*
 * Per-client caps (subscriptions, users, tokens): in one transaction, runs
 * insert(db, ctx) unless client_id already has `max` rows by count_sql
 * ($1 is the client id). Locking the client's row makes a second creation
 * for the client wait until this one commits, so the count (a statement
 * of its own) sees it and the cap holds under races; NO KEY UPDATE leaves
 * foreign-key checks on the row unblocked. insert returns 0 or -1. 0 once
 * committed, 1 over the cap (nothing written), -1 on a database error
 * (bh_db_sqlstate() says why). Not within a caller's transaction.
 */
/*
 * One page of a list ordered by a seq column, newest first: sql takes $1
 * (the owner, passed through), $2 (the cursor: the seq of the last row
 * shown, or NULL) and $3 (limit + 1), and returns each row's seq in column
 * seq_col; row_json turns a row into the list's item. Returns
 * {"data":[...],"next_cursor":...}, or NULL with errbuf starting
 * "cursor:" for a cursor no page gave, else "database: ...".
 */
json_t *bh_db_seq_page_json(struct bh_db *db, const char *sql, const char *owner, int limit,
			    const char *cursor, json_t *(*row_json)(const PGresult *res, int row),
			    int seq_col, char *errbuf, size_t errlen) BH_MUSTCHECK;

int bh_db_insert_capped(struct bh_db *db, const char *client_id, const char *count_sql,
			long long max, int (*insert)(struct bh_db *db, void *ctx),
			void *ctx) BH_MUSTCHECK;

/* SQLSTATE of the last failure ("" if none) and its message. */
const char *bh_db_sqlstate(const struct bh_db *db);
const char *bh_db_errmsg(const struct bh_db *db);
bool bh_db_is_unique_violation(const struct bh_db *db);

/*
 * What a failed statement says about the rows that went into it (pure, on
 * the SQLSTATE): BH_DB_REFUSED when the server refused the data itself
 * (class 22 data exception, 23 integrity constraint, 54 program limit such
 * as an index row too large, P0 raised by a PL/pgSQL trigger), which the
 * same rows will meet again;
 * BH_DB_UNAVAILABLE for everything else (connection lost "08", admin
 * shutdown "57", out of resources "53", serialization "40", ...), which
 * waiting cures. Unknown states count as unavailable: waiting loses nothing.
 */
enum bh_db_failure { BH_DB_UNAVAILABLE, BH_DB_REFUSED };
enum bh_db_failure bh_db_failure_of(const char *sqlstate);
/* True when the server answers a trivial query. */
bool bh_db_ping(struct bh_db *db);
PGconn *bh_db_conn(struct bh_db *db);

/* A fixed-size pool; get blocks until a connection is free. */
struct bh_db_pool *bh_db_pool_new(const char *url, int size, char *errbuf, size_t errlen);
struct bh_db *bh_db_pool_get(struct bh_db_pool *pool);
void bh_db_pool_put(struct bh_db_pool *pool, struct bh_db *db);
void bh_db_pool_free(struct bh_db_pool *pool);

/*
 * Applies every NNN_name.sql in dir not yet recorded in schema_migrations,
 * in number order, each in its own transaction. 0 or -1 with errbuf.
 */
int bh_db_migrate(struct bh_db *db, const char *dir, char *errbuf, size_t errlen) BH_MUSTCHECK;

/* Text helpers for building parameters. */
#define BH_DB_BOOL(b) ((b) ? "t" : "f")

#endif
