#include "delivery.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "retry.h"

/* Epoch milliseconds of a timestamptz column, for bh_format_time. */
#define MS(col) "(extract(epoch from " col ") * 1000)::bigint"

/* ---- read side: the API ------------------------------------------------ */

/* Sets key to the RFC 3339 time of an epoch-ms column, or null. */
static void set_time(json_t *o, const char *key, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col)) {
		json_object_set_new(o, key, json_null());
		return;
	}
	long long ms = strtoll(PQgetvalue(res, row, col), NULL, 10);
	char when[32];
	bh_format_time(ms, when);
	json_object_set_new(o, key, json_string(when));
}

static void set_text(json_t *o, const char *key, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		json_object_set_new(o, key, json_null());
	else
		json_object_set_new(o, key, json_string(PQgetvalue(res, row, col)));
}

static void set_int(json_t *o, const char *key, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		json_object_set_new(o, key, json_null());
	else
		json_object_set_new(o, key,
				    json_integer(strtoll(PQgetvalue(res, row, col), NULL, 10)));
}

/* clang-format would split this SQL around MS() mid-column. */
/* clang-format off */
#define DELIVERY_COLUMNS                                                                    \
	"d.id, d.event_id, d.subscription_id, e.type, d.status, d.attempts, " MS(            \
		"d.next_attempt_at") ", d.last_http_status, d.last_error, " MS("d.created_at") \
		", " MS("d.updated_at") ", d.seq"
/* clang-format on */

static json_t *delivery_row_json(const PGresult *res, int row)
{
	json_t *o = json_object();
	set_text(o, "id", res, row, 0);
	set_text(o, "event_id", res, row, 1);
	set_text(o, "endpoint_id", res, row, 2);
	set_text(o, "event_type", res, row, 3);
	set_text(o, "status", res, row, 4);
	set_int(o, "attempt_count", res, row, 5);
	set_time(o, "next_attempt_at", res, row, 6);
	set_int(o, "last_http_status", res, row, 7);
	set_text(o, "last_error", res, row, 8);
	set_time(o, "created_at", res, row, 9);
	set_time(o, "updated_at", res, row, 10);
	return o;
}

/* The cursor is "d" + the hex seq of the last row shown: opaque, URL-safe. */
static int cursor_parse(const char *cursor, char *out, size_t outlen)
{
	size_t n = strlen(cursor);
	if (n < 2 || n > 17 || cursor[0] != 'd')
		return -1;
	unsigned long long seq = 0;
	for (size_t i = 1; i < n; i++) {
		char c = cursor[i];
		int v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return -1;
		seq = seq * 16 + (unsigned)v;
	}
	if (seq > (unsigned long long)INT64_MAX)
		return -1;
	snprintf(out, outlen, "%llu", seq);
	return 0;
}

json_t *bh_delivery_list_json(struct bh_db *db, const char *client_id,
			      const struct bh_delivery_filter *f, int limit, const char *cursor,
			      char *errbuf, size_t errlen)
{
	json_t *result = NULL;
	PGresult *res = NULL;
	char before[32], lim[16];
	if (limit < 1 || limit > 1000) {
		snprintf(errbuf, errlen, "limit: must be between 1 and 1000");
		goto out;
	}
	if (cursor && cursor_parse(cursor, before, sizeof(before)) < 0) {
		snprintf(errbuf, errlen, "cursor: not a cursor this list returned");
		goto out;
	}
	/* One row more than asked tells whether another page follows. */
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = {client_id,
				f ? f->endpoint_id : NULL,
				f ? f->event_id : NULL,
				f ? f->status : NULL,
				cursor ? before : NULL,
				lim};
	res = bh_db_query(db,
			  "SELECT " DELIVERY_COLUMNS
			  " FROM deliveries d JOIN events e ON e.id = d.event_id"
			  " WHERE ($1::text IS NULL OR d.client_id = $1)"
			  " AND ($2::text IS NULL OR d.subscription_id = $2)"
			  " AND ($3::text IS NULL OR d.event_id = $3)"
			  " AND ($4::text IS NULL OR d.status = $4)"
			  " AND ($5::bigint IS NULL OR d.seq < $5::bigint)"
			  " ORDER BY d.seq DESC LIMIT $6::int",
			  6, params);
	if (res == NULL) {
		snprintf(errbuf, errlen, "database: %s", bh_db_errmsg(db));
		goto out;
	}
	int rows = PQntuples(res);
	json_t *data = json_array();
	for (int i = 0; i < rows && i < limit; i++)
		json_array_append_new(data, delivery_row_json(res, i));
	result = json_object();
	json_object_set_new(result, "data", data);
	if (rows > limit) {
		unsigned long long seq = strtoull(PQgetvalue(res, limit - 1, 11), NULL, 10);
		char next[24];
		snprintf(next, sizeof(next), "d%llx", seq);
		json_object_set_new(result, "next_cursor", json_string(next));
	} else {
		json_object_set_new(result, "next_cursor", json_null());
	}
out:
	PQclear(res);
	return result;
}

json_t *bh_delivery_get_json(struct bh_db *db, const char *client_id, const char *id)
{
	json_t *result = NULL;
	PGresult *res = NULL;
	const char *params[] = {id, client_id};
	res = bh_db_query(db,
			  "SELECT " DELIVERY_COLUMNS
			  " FROM deliveries d JOIN events e ON e.id = d.event_id"
			  " WHERE d.id = $1 AND ($2::text IS NULL OR d.client_id = $2)",
			  2, params);
	if (res == NULL || PQntuples(res) != 1)
		goto out;
	json_t *o = delivery_row_json(res, 0);
	PQclear(res);
	/* clang-format off */
	res = bh_db_query(db,
			  "SELECT attempt, " MS("started_at") ", duration_ms, http_status, error,"
			  " response_body, retry_after_s FROM attempts WHERE delivery_id = $1"
			  " ORDER BY id",
			  1, params);
	/* clang-format on */
	if (res == NULL) {
		json_decref(o);
		goto out;
	}
	json_t *attempts = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *a = json_object();
		set_int(a, "attempt", res, i, 0);
		set_time(a, "started_at", res, i, 1);
		set_int(a, "duration_ms", res, i, 2);
		set_int(a, "http_status", res, i, 3);
		set_text(a, "error", res, i, 4);
		set_text(a, "response_body", res, i, 5);
		set_int(a, "retry_after_s", res, i, 6);
		json_array_append_new(attempts, a);
	}
	json_object_set_new(o, "attempts", attempts);
	result = o;
out:
	PQclear(res);
	return result;
}

/* ---- write side -------------------------------------------------------- */

static void set_opt_str(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, v ? json_string(v) : json_null());
}

/* Inserts the events; returns the ids that were new, as a result. */
static PGresult *insert_events(struct bh_db *db, const struct bh_delivery_input *in, int n)
{
	json_t *rows = json_array();
	for (int i = 0; i < n; i++) {
		const struct bh_event *ev = in[i].ev;
		char when[32];
		bh_format_time(ev->occurred_ms, when);
		json_t *r = json_object();
		json_object_set_new(r, "id", json_string(ev->id));
		json_object_set_new(r, "type", json_string(ev->type_name));
		json_object_set_new(r, "occurred_at", json_string(when));
		set_opt_str(r, "bank_id", ev->bank_id);
		set_opt_str(r, "account_id", ev->account_id);
		json_object_set(r, "body", ev->json);
		json_array_append_new(rows, r);
	}
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	const char *params[] = {text};
	/* One statement for the whole batch: jsonb_to_recordset unpacks the rows. */
	PGresult *res = bh_db_query(
		db,
		"INSERT INTO events (id, type, occurred_at, bank_id, account_id, body)"
		" SELECT id, type, occurred_at, bank_id, account_id, body FROM jsonb_to_recordset($1::jsonb)"
		" AS x(id text, type text, occurred_at timestamptz, bank_id text, account_id text,"
		" body jsonb) ON CONFLICT (id) DO NOTHING RETURNING id",
		1, params);
	free(text);
	return res;
}

int bh_delivery_create_notification(struct bh_db *db, const char *subscription_id,
				    const char *client_id, json_t *event, char delivery_id[37],
				    char *errbuf, size_t errlen)
{
	char *body = json_dumps(event, JSON_COMPACT);
	if (body == NULL) {
		snprintf(errbuf, errlen, "notification: cannot serialize");
		return -1;
	}
	bh_uuid4(delivery_id);
	const char *params[] = {json_string_value(json_object_get(event, "id")),
				json_string_value(json_object_get(event, "type")),
				json_string_value(json_object_get(event, "occurred_at")),
				body,
				delivery_id,
				subscription_id,
				client_id};
	/* One statement: the event and its delivery exist together or not at all. */
	int rc = bh_db_exec(
		db,
		"WITH e AS (INSERT INTO events (id, type, occurred_at, body)"
		" VALUES ($1, $2, $3::timestamptz, $4::jsonb) RETURNING id)"
		" INSERT INTO deliveries (id, event_id, subscription_id, client_id, status,"
		" next_attempt_at) SELECT $5, e.id, $6, $7, 'pending', now() FROM e",
		7, params);
	free(body);
	if (rc < 0)
		snprintf(errbuf, errlen, "database: insert notification: %s", bh_db_errmsg(db));
	return rc;
}

/*
 * A lookup of rows by their first column. A batch returns tens of
 * thousands of ids; scanning the result for each one would be quadratic.
 */
struct row_key {
	const char *id;
	int row;
};

struct row_index {
	struct row_key *keys; /* sorted by id */
	int n;
};

static int row_key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct row_key *)a)->id, ((const struct row_key *)b)->id);
}

/* Borrows res's strings: free the index before PQclear(res). */
static void row_index_build(struct row_index *ix, const PGresult *res)
{
	ix->n = PQntuples(res);
	ix->keys = bh_xmalloc((size_t)(ix->n ? ix->n : 1) * sizeof(*ix->keys));
	for (int i = 0; i < ix->n; i++)
		ix->keys[i] = (struct row_key){PQgetvalue(res, i, 0), i};
	qsort(ix->keys, (size_t)ix->n, sizeof(*ix->keys), row_key_cmp);
}

/* The row whose first column is id, or -1. */
static int row_index_find(const struct row_index *ix, const char *id)
{
	struct row_key key = {id, 0};
	const struct row_key *k =
		bsearch(&key, ix->keys, (size_t)ix->n, sizeof(*ix->keys), row_key_cmp);
	return k ? k->row : -1;
}

static void row_index_free(struct row_index *ix)
{
	free(ix->keys);
	ix->keys = NULL;
}

int bh_delivery_store_events(struct bh_db *db, const struct bh_delivery_input *in, int n,
			     int lease_s, struct bh_delivery_created **out, int *nout, char *errbuf,
			     size_t errlen)
{
	int rc = -1;
	PGresult *ins = NULL, *res = NULL;
	struct bh_delivery_created *created = NULL;
	json_t *rows = NULL;
	char *text = NULL;
	bool *fresh = NULL;
	int ncreated = 0;
	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	if (bh_db_begin(db) < 0) {
		snprintf(errbuf, errlen, "database: begin: %s", bh_db_errmsg(db));
		return -1;
	}
	ins = insert_events(db, in, n);
	if (ins == NULL) {
		snprintf(errbuf, errlen, "database: insert events: %s", bh_db_errmsg(db));
		goto out;
	}
	/*
	 * An event is new when the insert returned its id and no earlier
	 * message of this batch carried the same id.
	 */
	fresh = bh_xcalloc((size_t)n, sizeof(bool));
	int total = 0;
	struct row_index new_events;
	row_index_build(&new_events, ins);
	for (int i = 0; i < n; i++) {
		if (row_index_find(&new_events, in[i].ev->id) < 0)
			continue;
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = fresh[j] && strcmp(in[j].ev->id, in[i].ev->id) == 0;
		fresh[i] = !seen;
		if (fresh[i])
			total += in[i].nsubs;
	}
	row_index_free(&new_events);
	if (total > 0) {
		created = bh_xcalloc((size_t)total, sizeof(*created));
		rows = json_array();
		for (int i = 0; i < n; i++) {
			for (int s = 0; fresh[i] && s < in[i].nsubs; s++) {
				struct bh_delivery_created *c = &created[ncreated++];
				bh_uuid4(c->id);
				c->input = i;
				c->sub = in[i].subs[s];
				json_array_append_new(rows,
						      json_pack("{s:s, s:s, s:s, s:s}", "id", c->id,
								"event_id", in[i].ev->id,
								"subscription_id", c->sub->id,
								"client_id", c->sub->client_id));
			}
		}
		text = json_dumps(rows, JSON_COMPACT);
		char lease[16];
		snprintf(lease, sizeof(lease), "%d", lease_s);
		const char *params[] = {text, lease};
		/*
		 * The join skips subscriptions deleted since the worker loaded
		 * them, so a stale cache cannot fail the batch on the foreign key.
		 */
		res = bh_db_query(
			db,
			"INSERT INTO deliveries (id, event_id, subscription_id, client_id, status,"
			" next_attempt_at) SELECT x.id, x.event_id, x.subscription_id, x.client_id,"
			" 'pending', CASE WHEN s.ordered THEN now()"
			"   ELSE now() + make_interval(secs => $2::int) END"
			" FROM jsonb_to_recordset($1::jsonb) AS x(id text, event_id text,"
			" subscription_id text, client_id text)"
			" JOIN subscriptions s ON s.id = x.subscription_id"
			" ON CONFLICT (event_id, subscription_id) DO NOTHING"
			/* now() is the transaction's time: only ordered rows equal it */
			" RETURNING id, next_attempt_at <= now()",
			2, params);
		if (res == NULL) {
			snprintf(errbuf, errlen, "database: insert deliveries: %s",
				 bh_db_errmsg(db));
			goto out;
		}
		/* Keep only the rows that were inserted. */
		int kept = 0;
		struct row_index inserted;
		row_index_build(&inserted, res);
		for (int i = 0; i < ncreated; i++) {
			int row = row_index_find(&inserted, created[i].id);
			if (row < 0)
				continue;
			created[i].ordered = strcmp(PQgetvalue(res, row, 1), "t") == 0;
			created[kept++] = created[i];
		}
		row_index_free(&inserted);
		ncreated = kept;
	}
	if (bh_db_commit(db) < 0) {
		snprintf(errbuf, errlen, "database: commit: %s", bh_db_errmsg(db));
		goto out;
	}
	*out = created;
	created = NULL; /* now owned by the caller */
	*nout = ncreated;
	rc = 0;
out:
	if (rc < 0)
		bh_db_rollback(db);
	PQclear(ins);
	PQclear(res);
	json_decref(rows);
	free(text);
	free(fresh);
	free(created);
	return rc;
}

int bh_delivery_load_many(struct bh_db *db, const char *const *ids, int n,
			  struct bh_delivery_row **out, int *nout)
{
	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_string(ids[i]));
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	const char *params[] = {text};
	PGresult *res =
		bh_db_query(db,
			    "SELECT d.id, d.event_id, d.subscription_id, d.status, d.attempts,"
			    " e.body::text FROM deliveries d JOIN events e ON e.id = d.event_id"
			    " WHERE d.id IN (SELECT jsonb_array_elements_text($1::jsonb))",
			    1, params);
	free(text);
	if (res == NULL)
		return -1;
	int rows = PQntuples(res);
	struct bh_delivery_row *r = bh_xcalloc((size_t)(rows ? rows : 1), sizeof(*r));
	for (int i = 0; i < rows; i++) {
		r[i].id = bh_xstrdup(PQgetvalue(res, i, 0));
		r[i].event_id = bh_xstrdup(PQgetvalue(res, i, 1));
		r[i].subscription_id = bh_xstrdup(PQgetvalue(res, i, 2));
		r[i].status = bh_xstrdup(PQgetvalue(res, i, 3));
		r[i].attempts = atoi(PQgetvalue(res, i, 4));
		r[i].event_body = bh_xstrdup(PQgetvalue(res, i, 5));
	}
	PQclear(res);
	*out = r;
	*nout = rows;
	return 0;
}

int bh_delivery_load(struct bh_db *db, const char *id, struct bh_delivery_row *out)
{
	memset(out, 0, sizeof(*out));
	const char *params[] = {id};
	PGresult *res =
		bh_db_query(db,
			    "SELECT d.id, d.event_id, d.subscription_id, d.status, d.attempts,"
			    " e.body::text FROM deliveries d JOIN events e ON e.id = d.event_id"
			    " WHERE d.id = $1",
			    1, params);
	if (res == NULL)
		return -1;
	int found = PQntuples(res) == 1;
	if (found) {
		out->id = bh_xstrdup(PQgetvalue(res, 0, 0));
		out->event_id = bh_xstrdup(PQgetvalue(res, 0, 1));
		out->subscription_id = bh_xstrdup(PQgetvalue(res, 0, 2));
		out->status = bh_xstrdup(PQgetvalue(res, 0, 3));
		out->attempts = atoi(PQgetvalue(res, 0, 4));
		out->event_body = bh_xstrdup(PQgetvalue(res, 0, 5));
	}
	PQclear(res);
	return found;
}

void bh_delivery_row_free(struct bh_delivery_row *row)
{
	free(row->id);
	free(row->event_id);
	free(row->subscription_id);
	free(row->status);
	free(row->event_body);
	memset(row, 0, sizeof(*row));
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s)
{
	size_t n;
	unsigned min;
	unsigned cp;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0) {
		n = 2, min = 0x80, cp = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		n = 3, min = 0x800, cp = s[0] & 0x0F;
	} else if ((s[0] & 0xF8) == 0xF0) {
		n = 4, min = 0x10000, cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

/*
 * A copy of what a receiver sent that PostgreSQL accepts as text: the
 * snippet may be binary, or cut inside a character at 1 KiB, and a
 * rejected INSERT would leave the attempt unrecorded forever.
 */
static char *utf8_clean(const char *s)
{
	if (s == NULL)
		return NULL;
	size_t len = strlen(s);
	char *out = bh_xmalloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq((const unsigned char *)s + i);
		if (n == 0) {
			out[o++] = '?';
			i++;
		} else {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return out;
}

/* Appends id to a JSON array of strings unless it is there already. */
static void add_unique(json_t *arr, const char *id)
{
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v) {
		if (strcmp(json_string_value(v), id) == 0)
			return;
	}
	json_array_append_new(arr, json_string(id));
}

static void remove_str(json_t *arr, const char *id)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		if (strcmp(json_string_value(json_array_get(arr, i)), id) == 0) {
			json_array_remove(arr, i);
			return;
		}
	}
}

/* Runs sql with one JSON parameter; 0 or -1. */
static int exec_json(struct bh_db *db, const char *sql, json_t *arg)
{
	char *text = json_dumps(arg, JSON_COMPACT);
	const char *params[] = {text};
	int rc = bh_db_exec(db, sql, 1, params);
	free(text);
	return rc;
}

/* The attempt as the retry policy sees it. */
static struct bh_attempt_outcome outcome_of(const struct bh_attempt_result *r)
{
	return (struct bh_attempt_outcome){.http_status = r->http_status,
					   .error = r->error != NULL,
					   .permanent = r->permanent,
					   .retry_after_s = r->retry_after_s};
}

static bool attempt_succeeded(const struct bh_attempt_result *r)
{
	struct bh_attempt_outcome o = outcome_of(r);
	return bh_retry_succeeded(&o);
}

/* Where a decision leaves the delivery row (the subscription is done apart). */
static enum bh_delivery_state state_of(enum bh_retry_action a)
{
	switch (a) {
	case BH_RETRY_SUCCEEDED:
		return BH_DELIVERY_SUCCEEDED;
	case BH_RETRY_AT:
		return BH_DELIVERY_PENDING;
	case BH_RETRY_FAILED:
	case BH_RETRY_DISABLE:
		break;
	}
	return BH_DELIVERY_FAILED;
}

static int rec_ptr_cmp(const void *a, const void *b)
{
	const struct bh_attempt_record *x = *(const struct bh_attempt_record *const *)a;
	const struct bh_attempt_record *y = *(const struct bh_attempt_record *const *)b;
	return strcmp(x->delivery_id, y->delivery_id);
}

/*
 * The common case, in one statement: successes, each of a delivery that
 * appears once in the batch. A success ends a delivery whatever its row
 * says, so nothing is read first: the update locks and moves the row, and
 * the attempt takes the number the update returned. Rows go in id order,
 * as in the general path, so concurrent workers lock alike (for these
 * sizes the plan is a nested loop over the input; were it not, a deadlock
 * would only send the batch down the caller's one-by-one path). Sets each
 * state: SUCCEEDED, or FAILED when the row is gone. 0 or -1.
 */
static int record_successes(struct bh_db *db, struct bh_attempt_record **recs, int n)
{
	qsort(recs, (size_t)n, sizeof(*recs), rec_ptr_cmp);
	json_t *rows = json_array();
	for (int i = 0; i < n; i++) {
		const struct bh_attempt_result *r = &recs[i]->r;
		char started[32];
		bh_format_time(r->started_ms, started);
		char *response = utf8_clean(r->response);
		json_t *a = json_pack("{s:s, s:s, s:i, s:i}", "id", recs[i]->delivery_id,
				      "started_at", started, "duration_ms", r->duration_ms,
				      "http_status", r->http_status);
		json_object_set_new(a, "response_body",
				    response ? json_string(response) : json_null());
		free(response);
		json_array_append_new(rows, a);
	}
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	const char *params[] = {text};
	PGresult *res = bh_db_query(
		db,
		"WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text,"
		"  started_at timestamptz, duration_ms int, http_status int, response_body text)),"
		" u AS (UPDATE deliveries d SET attempts = d.attempts + 1, status = 'succeeded',"
		"  next_attempt_at = NULL, last_http_status = x.http_status, last_error = NULL,"
		"  updated_at = now() FROM x WHERE d.id = x.id RETURNING d.id, d.attempts)"
		" INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, http_status,"
		"  response_body) SELECT u.id, u.attempts, x.started_at, x.duration_ms,"
		"  x.http_status, x.response_body FROM u JOIN x ON x.id = u.id RETURNING delivery_id",
		1, params);
	free(text);
	if (res == NULL)
		return -1;
	struct row_index recorded;
	row_index_build(&recorded, res);
	for (int i = 0; i < n; i++) {
		/* Deleted with its subscription meanwhile: nothing to record. */
		recs[i]->state = row_index_find(&recorded, recs[i]->delivery_id) >= 0
					 ? BH_DELIVERY_SUCCEEDED
					 : BH_DELIVERY_FAILED;
	}
	row_index_free(&recorded);
	PQclear(res);
	return 0;
}

int bh_delivery_record_attempts(struct bh_db *db, const struct bh_config *cfg,
				struct bh_attempt_record *recs, int n, char *errbuf, size_t errlen)
{
	static const char *const names[] = {"pending", "succeeded", "failed"};
	struct bh_retry_policy policy;
	bh_retry_policy_from_config(&policy, cfg);
	int rc = -1;
	PGresult *locked = NULL;
	int *extra = NULL;
	char **status = NULL;
	bool *fast = bh_xcalloc((size_t)(n ? n : 1), sizeof(bool));
	struct bh_attempt_record **fast_recs = bh_xcalloc((size_t)(n ? n : 1), sizeof(*fast_recs));
	int nfast = 0;
	json_t *ids = json_array(), *attempts = json_array(), *finals = json_object();
	json_t *gone = json_array(), *ok = json_array(), *failing = json_array();
	json_t *seen = json_object(); /* hashed: a flush may carry thousands of ids */
	struct row_index by_id = {0};

	/* Ids seen twice go the general way, which numbers their attempts in turn. */
	for (int i = 0; i < n; i++) {
		json_t *first = json_object_get(seen, recs[i].delivery_id);
		if (first) {
			fast[json_integer_value(first)] = false;
			continue;
		}
		json_object_set_new(seen, recs[i].delivery_id, json_integer(i));
		fast[i] = attempt_succeeded(&recs[i].r);
	}
	for (int i = 0; i < n; i++) {
		if (fast[i])
			fast_recs[nfast++] = &recs[i];
		else if (json_integer_value(json_object_get(seen, recs[i].delivery_id)) == i)
			json_array_append_new(ids, json_string(recs[i].delivery_id));
	}
	if (bh_db_begin(db) < 0) {
		snprintf(errbuf, errlen, "database: begin: %s", bh_db_errmsg(db));
		goto out;
	}
	if (nfast > 0 && record_successes(db, fast_recs, nfast) < 0) {
		snprintf(errbuf, errlen, "database: record successes: %s", bh_db_errmsg(db));
		goto out;
	}
	/* Locked in id order, so two workers recording together cannot deadlock. */
	char *text = json_dumps(ids, JSON_COMPACT);
	const char *p1[] = {text};
	locked =
		json_array_size(ids) == 0
			? NULL
			: bh_db_query(
				  db,
				  "SELECT id, attempts, status, schedule_base FROM deliveries WHERE id IN"
				  " (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id FOR UPDATE",
				  1, p1);
	free(text);
	if (json_array_size(ids) > 0 && locked == NULL) {
		snprintf(errbuf, errlen, "database: %s", bh_db_errmsg(db));
		goto out;
	}
	int rows = locked ? PQntuples(locked) : 0;
	extra = bh_xcalloc((size_t)(rows ? rows : 1), sizeof(int));
	status = bh_xcalloc((size_t)(rows ? rows : 1), sizeof(char *));
	for (int i = 0; i < rows; i++)
		status[i] = PQgetvalue(locked, i, 2);
	if (locked)
		row_index_build(&by_id, locked);

	for (int i = 0; i < n; i++) {
		struct bh_attempt_record *rec = &recs[i];
		const struct bh_attempt_result *r = &rec->r;
		if (fast[i])
			continue;
		int row = locked ? row_index_find(&by_id, rec->delivery_id) : -1;
		if (row < 0) {
			/* Deleted with its subscription meanwhile: nothing to record. */
			rec->state = BH_DELIVERY_FAILED;
			continue;
		}
		int n_attempt = atoi(PQgetvalue(locked, row, 1)) + ++extra[row];
		struct bh_attempt_outcome o = outcome_of(r);
		struct bh_retry_position at = {
			/* Attempts since the last manual retry or replay: where the schedule is. */
			.step = n_attempt - atoi(PQgetvalue(locked, row, 3)),
			/* Two attempts can overlap when a lease ran out mid-transfer. */
			.finished = strcmp(status[row], "pending") != 0,
			.failing_since_ms = 0, /* not read here: the scheduler's sweep */
			.now_ms = bh_now_ms(),
			.jitter = bh_random_uniform(0.0, 1.0)};
		struct bh_retry_decision dec = bh_retry_decide(&policy, &o, &at);
		enum bh_delivery_state next = state_of(dec.action);
		double delay = dec.action == BH_RETRY_AT ? dec.delay_s : 0;
		int retry_after = dec.retry_after_s;
		if (strcmp(status[row], "succeeded") != 0)
			status[row] = (char *)names[next];
		rec->state = next;

		char started[32];
		bh_format_time(r->started_ms, started);
		char *error = utf8_clean(r->error), *response = utf8_clean(r->response);
		json_t *a = json_pack("{s:s, s:i, s:s, s:i}", "delivery_id", rec->delivery_id,
				      "attempt", n_attempt, "started_at", started, "duration_ms",
				      r->duration_ms);
		json_object_set_new(a, "http_status",
				    r->http_status ? json_integer(r->http_status) : json_null());
		json_object_set_new(a, "error", error ? json_string(error) : json_null());
		json_object_set_new(a, "response_body",
				    response ? json_string(response) : json_null());
		json_object_set_new(a, "retry_after_s",
				    retry_after ? json_integer(retry_after) : json_null());
		json_array_append_new(attempts, a);
		/* The delivery's row ends as its last attempt of the batch left it. */
		json_t *f = json_pack("{s:s, s:i, s:s, s:f}", "id", rec->delivery_id, "add",
				      extra[row], "status", status[row], "delay", delay);
		json_object_set_new(f, "http_status",
				    r->http_status ? json_integer(r->http_status) : json_null());
		json_object_set_new(f, "error", error ? json_string(error) : json_null());
		json_object_set_new(finals, rec->delivery_id, f);
		free(error);
		free(response);
	}
	/* A subscription's last outcome in the batch decides its health. */
	for (int i = 0; i < n; i++) {
		const struct bh_attempt_record *rec = &recs[i];
		struct bh_attempt_outcome o = outcome_of(&rec->r);
		switch (bh_retry_health(&o)) {
		case BH_RETRY_HEALTH_GONE:
			add_unique(gone, rec->subscription_id);
			break;
		case BH_RETRY_HEALTH_OK:
			remove_str(failing, rec->subscription_id);
			add_unique(ok, rec->subscription_id);
			break;
		case BH_RETRY_HEALTH_FAILING:
			remove_str(ok, rec->subscription_id);
			add_unique(failing, rec->subscription_id);
			break;
		}
	}

	if (json_array_size(attempts) > 0 &&
	    exec_json(
		    db,
		    "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, http_status,"
		    " error, response_body, retry_after_s) SELECT delivery_id, attempt, started_at,"
		    " duration_ms, http_status, error, response_body, retry_after_s"
		    " FROM jsonb_to_recordset($1::jsonb) AS"
		    " x(delivery_id text, attempt int, started_at timestamptz, duration_ms int,"
		    " http_status int, error text, response_body text, retry_after_s int)",
		    attempts) < 0) {
		snprintf(errbuf, errlen, "database: insert attempts: %s", bh_db_errmsg(db));
		goto out;
	}
	json_t *final_rows = json_array();
	const char *key;
	json_t *value;
	json_object_foreach (finals, key, value)
		json_array_append(final_rows, value);
	int frc =
		json_array_size(final_rows) == 0
			? 0
			: exec_json(
				  db,
				  "UPDATE deliveries d SET attempts = d.attempts + x.add,"
				  " status = CASE WHEN d.status = 'succeeded' THEN d.status ELSE x.status END,"
				  " next_attempt_at = CASE WHEN x.status = 'pending'"
				  "   THEN now() + make_interval(secs => x.delay) ELSE NULL END,"
				  " last_http_status = x.http_status, last_error = x.error,"
				  " updated_at = now()"
				  " FROM jsonb_to_recordset($1::jsonb) AS x(id text, add int, status text,"
				  " delay double precision, http_status int, error text) WHERE d.id = x.id",
				  final_rows);
	json_decref(final_rows);
	if (frc < 0) {
		snprintf(errbuf, errlen, "database: update deliveries: %s", bh_db_errmsg(db));
		goto out;
	}
	/*
	 * Subscription rows are locked in id order too. Only the health
	 * columns change, which the version trigger ignores, so workers do not
	 * reload for it; and a success writes at most once a second.
	 */
	if ((json_array_size(gone) > 0 &&
	     exec_json(db,
		       "UPDATE subscriptions s SET enabled = false, updated_at = now(),"
		       " disabled_reason = 'endpoint answered 410 Gone'"
		       " FROM (SELECT id FROM subscriptions WHERE enabled AND id IN"
		       "  (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id FOR UPDATE) l"
		       " WHERE s.id = l.id",
		       gone) < 0) ||
	    (json_array_size(ok) > 0 &&
	     exec_json(db,
		       "UPDATE subscriptions s SET last_success_at = now(), failing_since = NULL"
		       " FROM (SELECT id FROM subscriptions WHERE id IN"
		       "  (SELECT jsonb_array_elements_text($1::jsonb))"
		       "  AND (failing_since IS NOT NULL OR last_success_at IS NULL"
		       "   OR last_success_at < now() - interval '1 second')"
		       "  ORDER BY id FOR UPDATE) l WHERE s.id = l.id",
		       ok) < 0) ||
	    (json_array_size(failing) > 0 &&
	     exec_json(db,
		       "UPDATE subscriptions s SET failing_since = now()"
		       " FROM (SELECT id FROM subscriptions WHERE failing_since IS NULL AND id IN"
		       "  (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id FOR UPDATE) l"
		       " WHERE s.id = l.id",
		       failing) < 0)) {
		snprintf(errbuf, errlen, "database: update subscriptions: %s", bh_db_errmsg(db));
		goto out;
	}
	if (bh_db_commit(db) < 0) {
		snprintf(errbuf, errlen, "database: commit: %s", bh_db_errmsg(db));
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		bh_db_rollback(db);
	if (locked)
		row_index_free(&by_id);
	PQclear(locked);
	free(fast);
	free(fast_recs);
	free(extra);
	free(status);
	json_decref(seen);
	json_decref(ids);
	json_decref(attempts);
	json_decref(finals);
	json_decref(gone);
	json_decref(ok);
	json_decref(failing);
	return rc;
}

int bh_delivery_record_attempt(struct bh_db *db, const struct bh_config *cfg,
			       const char *delivery_id, const char *subscription_id,
			       const struct bh_attempt_result *r, enum bh_delivery_state *state,
			       char *errbuf, size_t errlen)
{
	struct bh_attempt_record rec = {
		.delivery_id = delivery_id, .subscription_id = subscription_id, .r = *r};
	int rc = bh_delivery_record_attempts(db, cfg, &rec, 1, errbuf, errlen);
	if (rc == 0 && state)
		*state = rec.state;
	return rc;
}

int bh_delivery_fail(struct bh_db *db, const char *delivery_id, const char *reason)
{
	const char *params[] = {delivery_id, reason};
	return bh_db_exec(
		db,
		"UPDATE deliveries SET status = 'failed', next_attempt_at = NULL,"
		" last_error = $2, updated_at = now() WHERE id = $1 AND status = 'pending'",
		2, params);
}

int bh_delivery_claim_due(struct bh_db *db, int limit, int lease_s, struct bh_delivery_claim **out,
			  int *nout)
{
	char lim[16], lease[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	snprintf(lease, sizeof(lease), "%d", lease_s);
	const char *params[] = {lim, lease};
	*out = NULL;
	*nout = 0;
	PGresult *res = bh_db_query(
		db,
		"UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => $2::int)"
		" FROM (SELECT c.id FROM deliveries c WHERE c.status = 'pending'"
		"       AND c.next_attempt_at <= now()"
		/* ordered: only the head of the line (cheap: one PK probe otherwise) */
		"       AND NOT (EXISTS (SELECT 1 FROM subscriptions s"
		"                        WHERE s.id = c.subscription_id AND s.ordered)"
		"            AND EXISTS (SELECT 1 FROM deliveries p"
		"                        WHERE p.subscription_id = c.subscription_id"
		"                        AND p.status = 'pending' AND p.seq < c.seq))"
		"       ORDER BY c.next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED) due"
		" WHERE d.id = due.id RETURNING d.id, d.subscription_id, d.event_id",
		2, params);
	if (res == NULL)
		return -1;
	int n = PQntuples(res);
	if (n > 0) {
		struct bh_delivery_claim *c = bh_xcalloc((size_t)n, sizeof(*c));
		for (int i = 0; i < n; i++) {
			c[i].delivery_id = bh_xstrdup(PQgetvalue(res, i, 0));
			c[i].subscription_id = bh_xstrdup(PQgetvalue(res, i, 1));
			c[i].event_id = bh_xstrdup(PQgetvalue(res, i, 2));
		}
		*out = c;
		*nout = n;
	}
	PQclear(res);
	return 0;
}

void bh_delivery_claims_free(struct bh_delivery_claim *c, int n)
{
	for (int i = 0; c && i < n; i++) {
		free(c[i].delivery_id);
		free(c[i].subscription_id);
		free(c[i].event_id);
	}
	free(c);
}

long long bh_delivery_count_due(struct bh_db *db)
{
	PGresult *res = bh_db_query(db,
				    "SELECT count(*) FROM deliveries"
				    " WHERE status = 'pending' AND next_attempt_at <= now()",
				    0, NULL);
	if (res == NULL)
		return -1;
	long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

int bh_delivery_disable_failing(struct bh_db *db, int after_s)
{
	char after[16];
	snprintf(after, sizeof(after), "%d", after_s);
	const char *params[] = {after};
	PGresult *res = bh_db_query(
		db,
		"UPDATE subscriptions SET enabled = false, updated_at = now(),"
		" disabled_reason = 'failing without a successful delivery since ' ||"
		" to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
		" WHERE enabled AND failing_since < now() - make_interval(secs => $1::int)"
		" RETURNING id",
		1, params);
	if (res == NULL)
		return -1;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		struct bh_log_ctx ctx = {.subscription = PQgetvalue(res, i, 0)};
		bh_warn_ctx(&ctx, "subscription disabled: failing for more than %d s", after_s);
	}
	PQclear(res);
	return n;
}

long long bh_delivery_count_disabled_subs(struct bh_db *db)
{
	PGresult *res =
		bh_db_query(db, "SELECT count(*) FROM subscriptions WHERE NOT enabled", 0, NULL);
	if (res == NULL)
		return -1;
	long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

/* ---- ordered subscriptions ---------------------------------------------- */

/* ids as one JSON array parameter (caller frees). */
static char *ids_param(const char *const *ids, int n)
{
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_string(ids[i]));
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return text;
}

int bh_delivery_claim_next(struct bh_db *db, const char *const *sub_ids, int n, int lease_s,
			   struct bh_delivery_row **out, int *nout)
{
	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	char *text = ids_param(sub_ids, n);
	char lease[16];
	snprintf(lease, sizeof(lease), "%d", lease_s);
	const char *params[] = {text, lease};
	/*
	 * The head of each line, if due, locked with SKIP LOCKED: a scheduler
	 * claiming it right now keeps it, and nobody waits on a row lock. The
	 * lock re-reads the row, so a claim committed meanwhile (next_attempt_at
	 * moved ahead) is not claimed twice.
	 */
	PGresult *res = bh_db_query(
		db,
		"WITH heads AS ("
		"  SELECT h.id FROM (SELECT DISTINCT jsonb_array_elements_text($1::jsonb) AS sid) s"
		"  CROSS JOIN LATERAL (SELECT id FROM deliveries WHERE subscription_id = s.sid"
		"    AND status = 'pending' ORDER BY seq LIMIT 1) h),"
		" l AS (SELECT d.id FROM deliveries d JOIN heads ON heads.id = d.id"
		"  WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
		"  FOR UPDATE OF d SKIP LOCKED),"
		" c AS (UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => $2::int)"
		"  FROM l WHERE d.id = l.id"
		"  RETURNING d.id, d.event_id, d.subscription_id, d.status, d.attempts)"
		" SELECT c.id, c.event_id, c.subscription_id, c.status, c.attempts, e.body::text"
		" FROM c JOIN events e ON e.id = c.event_id",
		2, params);
	free(text);
	if (res == NULL)
		return -1;
	int rows = PQntuples(res);
	struct bh_delivery_row *r = bh_xcalloc((size_t)(rows ? rows : 1), sizeof(*r));
	for (int i = 0; i < rows; i++) {
		r[i].id = bh_xstrdup(PQgetvalue(res, i, 0));
		r[i].event_id = bh_xstrdup(PQgetvalue(res, i, 1));
		r[i].subscription_id = bh_xstrdup(PQgetvalue(res, i, 2));
		r[i].status = bh_xstrdup(PQgetvalue(res, i, 3));
		r[i].attempts = atoi(PQgetvalue(res, i, 4));
		r[i].event_body = bh_xstrdup(PQgetvalue(res, i, 5));
	}
	PQclear(res);
	*out = r;
	*nout = rows;
	return 0;
}

int bh_delivery_blocked(struct bh_db *db, const char *const *ids, int n, bool *blocked)
{
	for (int i = 0; i < n; i++)
		blocked[i] = false;
	if (n == 0)
		return 0;
	char *text = ids_param(ids, n);
	const char *params[] = {text};
	PGresult *res = bh_db_query(
		db,
		"SELECT d.id FROM deliveries d"
		" WHERE d.id IN (SELECT jsonb_array_elements_text($1::jsonb))"
		" AND EXISTS (SELECT 1 FROM deliveries p WHERE p.subscription_id = d.subscription_id"
		"             AND p.status = 'pending' AND p.seq < d.seq)",
		1, params);
	free(text);
	if (res == NULL)
		return -1;
	struct row_index pending_before;
	row_index_build(&pending_before, res);
	for (int i = 0; i < n; i++)
		blocked[i] = row_index_find(&pending_before, ids[i]) >= 0;
	row_index_free(&pending_before);
	PQclear(res);
	return 0;
}

/* ---- operator controls -------------------------------------------------- */

int bh_delivery_retry(struct bh_db *db, const char *client_id, const char *id, char *errbuf,
		      size_t errlen)
{
	const char *params[] = {id, client_id};
	/*
	 * One statement: the row is locked, its status read and, unless it is
	 * pending, moved back to pending with the schedule restarted.
	 */
	PGresult *res = bh_db_query(
		db,
		"WITH t AS (SELECT id, status FROM deliveries"
		"  WHERE id = $1 AND ($2::text IS NULL OR client_id = $2) FOR UPDATE),"
		" u AS (UPDATE deliveries d SET status = 'pending', next_attempt_at = now(),"
		"  schedule_base = d.attempts, updated_at = now()"
		"  FROM t WHERE d.id = t.id AND t.status <> 'pending' RETURNING d.id)"
		" SELECT t.status, (SELECT count(*) FROM u) FROM t",
		2, params);
	if (res == NULL) {
		snprintf(errbuf, errlen, "database: %s", bh_db_errmsg(db));
		return -1;
	}
	int rc = 0;
	if (PQntuples(res) != 1)
		rc = 1;
	else if (strcmp(PQgetvalue(res, 0, 0), "pending") == 0)
		rc = 2;
	PQclear(res);
	if (rc == 0) {
		struct bh_log_ctx ctx = {.delivery = id};
		bh_info_ctx(&ctx, "delivery re-queued by hand; retry schedule restarted");
	}
	return rc;
}

int bh_delivery_replay(struct bh_db *db, const char *client_id, const char *subscription_id,
		       int64_t since_ms, int64_t until_ms, bool only_failed, long long *count,
		       char *errbuf, size_t errlen)
{
	char since[24], until[24];
	snprintf(since, sizeof(since), "%" PRId64, since_ms);
	snprintf(until, sizeof(until), "%" PRId64, until_ms);
	const char *params[] = {subscription_id, client_id, since_ms < 0 ? NULL : since,
				until_ms < 0 ? NULL : until, BH_DB_BOOL(only_failed)};
	*count = 0;
	PGresult *res = bh_db_query(
		db,
		"WITH s AS (SELECT id FROM subscriptions"
		"  WHERE id = $1 AND ($2::text IS NULL OR client_id = $2)),"
		" u AS (UPDATE deliveries d SET status = 'pending', next_attempt_at = now(),"
		"  schedule_base = d.attempts, updated_at = now()"
		"  FROM s WHERE d.subscription_id = s.id AND d.status <> 'pending'"
		"  AND ($3::bigint IS NULL"
		"   OR d.created_at >= timestamptz 'epoch' + $3::bigint * interval '1 millisecond')"
		"  AND ($4::bigint IS NULL"
		"   OR d.created_at < timestamptz 'epoch' + $4::bigint * interval '1 millisecond')"
		"  AND (NOT $5::boolean OR d.status = 'failed') RETURNING 1)"
		" SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM u)",
		5, params);
	if (res == NULL) {
		snprintf(errbuf, errlen, "database: %s", bh_db_errmsg(db));
		return -1;
	}
	int rc = strcmp(PQgetvalue(res, 0, 0), "0") == 0 ? 1 : 0;
	*count = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (rc == 0) {
		struct bh_log_ctx ctx = {.subscription = subscription_id};
		bh_info_ctx(&ctx, "replay: %lld deliveries re-queued", *count);
	}
	return rc;
}

json_t *bh_event_get_json(struct bh_db *db, const char *client_id, const char *id)
{
	json_t *result = NULL;
	PGresult *ev = NULL, *res = NULL;
	const char *params[] = {id, client_id};
	/* clang-format off */
	ev = bh_db_query(db,
			 "SELECT id, type, " MS("occurred_at") ", bank_id, account_id, body::text, " MS(
				 "received_at") " FROM events WHERE id = $1",
			 1, params);
	/* clang-format on */
	if (ev == NULL || PQntuples(ev) != 1)
		goto out;
	res = bh_db_query(db,
			  "SELECT " DELIVERY_COLUMNS
			  " FROM deliveries d JOIN events e ON e.id = d.event_id"
			  " WHERE d.event_id = $1 AND ($2::text IS NULL OR d.client_id = $2)"
			  " ORDER BY d.seq",
			  2, params);
	/* A client sees an event only through its own deliveries of it. */
	if (res == NULL || (client_id && PQntuples(res) == 0))
		goto out;
	json_t *o = json_object();
	set_text(o, "id", ev, 0, 0);
	set_text(o, "type", ev, 0, 1);
	set_time(o, "occurred_at", ev, 0, 2);
	set_text(o, "bank_id", ev, 0, 3);
	set_text(o, "account_id", ev, 0, 4);
	json_t *body = json_loads(PQgetvalue(ev, 0, 5), 0, NULL);
	json_object_set_new(o, "event", body ? body : json_null());
	set_time(o, "received_at", ev, 0, 6);
	json_t *ds = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(ds, delivery_row_json(res, i));
	json_object_set_new(o, "deliveries", ds);
	result = o;
out:
	PQclear(ev);
	PQclear(res);
	return result;
}

/* ---- retention ---------------------------------------------------------- */

/* Runs a DELETE with (days, batch); how many rows went, or -1. */
static long long purge(struct bh_db *db, const char *sql, int days, int batch)
{
	char d[16], b[16];
	snprintf(d, sizeof(d), "%d", days);
	snprintf(b, sizeof(b), "%d", batch);
	const char *params[] = {d, b};
	PGresult *res = bh_db_query(db, sql, 2, params);
	if (res == NULL)
		return -1;
	long long n = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return n;
}

long long bh_delivery_purge_attempts(struct bh_db *db, int days, int batch)
{
	return purge(db,
		     "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts"
		     " WHERE started_at < now() - make_interval(days => $1::int) LIMIT $2::int)",
		     days, batch);
}

long long bh_delivery_purge_events(struct bh_db *db, int days, int batch)
{
	/* SKIP LOCKED: never wait behind a worker recording an old delivery. */
	return purge(db,
		     "DELETE FROM events WHERE id IN (SELECT e.id FROM events e"
		     " WHERE e.received_at < now() - make_interval(days => $1::int)"
		     " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
		     "                 AND d.status = 'pending')"
		     " LIMIT $2::int FOR UPDATE SKIP LOCKED)",
		     days, batch);
}
