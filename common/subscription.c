#include "subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "kind_acquirer.h"
#include "kind_banksocket.h"
#include "kind_obp.h"
#include "kind_psd2.h"
#include "log.h"

/* ---------------------------------------------------------------- kinds */

static bool native_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	return bh_sub_match_filter(sub, ev);
}

/* The body is the normalized event itself (docs/DESIGN.md "Wire format"). */
static int native_render(const struct bh_sub *sub, const struct bh_event *ev,
			 struct bh_rendered *out, char *errbuf, size_t errlen)
{
	(void)sub;
	return bh_rendered_set_json(out, ev->json, ev, errbuf, errlen);
}

int bh_rendered_set_json(struct bh_rendered *out, const json_t *json, const struct bh_event *ev,
			 char *errbuf, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->body = json_dumps(json, JSON_COMPACT);
	if (out->body == NULL) {
		snprintf(errbuf, errlen, "render: cannot serialize event %s", ev->id);
		return -1;
	}
	out->len = strlen(out->body);
	out->content_type = bh_xstrdup("application/json");
	return 0;
}

static const struct bh_kind_ops native_kind = {
	.name = "native",
	.match = native_match,
	.render = native_render,
};

/*
 * Every kind a subscription row may name. A dialect adds its ops here
 * (declared in its own header); the table is constant, so threads read it
 * without locks.
 */
static const struct bh_kind_ops *const kinds[] = {
	&native_kind,	     &bh_kind_obp_account, &bh_kind_obp_notification,
	&bh_kind_banksocket, &bh_kind_acquirer,	   &bh_kind_psd2,
};

const struct bh_kind_ops *bh_kind_find(const char *name)
{
	for (size_t i = 0; i < BH_ARRAY_LEN(kinds); i++)
		if (strcmp(kinds[i]->name, name) == 0)
			return kinds[i];
	return NULL;
}

bool bh_sub_match_filter(const struct bh_sub *sub, const struct bh_event *ev)
{
	if (sub->n_event_types > 0) {
		bool wanted = false;
		for (int i = 0; i < sub->n_event_types && !wanted; i++)
			wanted = strcmp(sub->event_types[i], ev->type_name) == 0;
		if (!wanted)
			return false;
	}
	if (sub->bank_id != NULL && (ev->bank_id == NULL || strcmp(sub->bank_id, ev->bank_id) != 0))
		return false;
	if (sub->account_id != NULL &&
	    (ev->account_id == NULL || strcmp(sub->account_id, ev->account_id) != 0))
		return false;
	return true;
}

bool bh_sub_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	const struct bh_kind_ops *k = bh_kind_find(sub->kind);
	/* Internal notifications are addressed to one subscription when created. */
	return k != NULL && sub->enabled && !bh_event_type_internal(ev->type) && k->match(sub, ev);
}

int bh_sub_render(const struct bh_sub *sub, const struct bh_event *ev, struct bh_rendered *out,
		  char *errbuf, size_t errlen)
{
	const struct bh_kind_ops *k = bh_kind_find(sub->kind);
	memset(out, 0, sizeof(*out));
	if (k == NULL) {
		snprintf(errbuf, errlen, "render: unknown subscription kind \"%s\"", sub->kind);
		return -1;
	}
	if (k->render(sub, ev, out, errbuf, errlen) < 0) {
		bh_rendered_free(out);
		return -1;
	}
	return 0;
}

void bh_rendered_free(struct bh_rendered *r)
{
	free(r->body);
	free(r->content_type);
	for (int i = 0; i < r->n_extra_headers; i++)
		free(r->extra_headers[i]);
	memset(r, 0, sizeof(*r));
}

void bh_rendered_add_header(struct bh_rendered *r, const char *name, const char *value)
{
	/* Kinds add a fixed, small number of headers; overflowing is a bug in the kind. */
	if (r->n_extra_headers == (int)BH_ARRAY_LEN(r->extra_headers)) {
		bh_error("render: more than %zu extra headers; dropping %s",
			 BH_ARRAY_LEN(r->extra_headers), name);
		return;
	}
	r->extra_headers[r->n_extra_headers++] = bh_xasprintf("%s: %s", name, value);
}

/* ---------------------------------------------------------------- row decoding */

static char *col_dup(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : bh_xstrdup(PQgetvalue(res, row, col));
}

/*
 * Parses a PostgreSQL text[] literal such as {a,"b c"} into a JSON array
 * of strings. NULL elements are skipped (the column holds none).
 */
static json_t *pg_array_to_json(const char *s)
{
	json_t *arr = json_array();
	struct bh_buf item;
	bh_buf_init(&item, strlen(s) + 1);
	if (*s != '{')
		goto out;
	s++;
	while (*s != '\0' && *s != '}') {
		bool quoted = *s == '"';
		bh_buf_reset(&item);
		if (quoted) {
			for (s++; *s != '\0' && *s != '"'; s++) {
				if (*s == '\\' && s[1] != '\0')
					s++;
				(void)bh_buf_append(&item, s, 1);
			}
			if (*s == '"')
				s++;
		} else {
			size_t n = strcspn(s, ",}");
			(void)bh_buf_append(&item, s, n);
			s += n;
		}
		if (quoted || strcmp(item.data ? item.data : "", "NULL") != 0)
			json_array_append_new(arr, json_string(item.data ? item.data : ""));
		if (*s == ',')
			s++;
	}
out:
	bh_buf_free(&item);
	return arr;
}

/* A jsonb column as JSON; {} when NULL or unparsable. */
static json_t *col_json(const PGresult *res, int row, int col)
{
	json_t *v = NULL;
	if (!PQgetisnull(res, row, col))
		v = json_loads(PQgetvalue(res, row, col), 0, NULL);
	return v ? v : json_object();
}

/* PostgreSQL's "2026-11-25 10:15:00.123+00" as RFC 3339 "2026-11-25T10:15:00.123Z". */
static json_t *col_time(const PGresult *res, int row, int col)
{
	char buf[64], out[32];
	int64_t ms;
	if (PQgetisnull(res, row, col))
		return json_null();
	snprintf(buf, sizeof(buf) - 4, "%s", PQgetvalue(res, row, col));
	char *sp = strchr(buf, ' ');
	if (sp != NULL)
		*sp = 'T';
	/* The offset is "+HH" unless it has minutes; RFC 3339 wants "+HH:MM". */
	size_t n = strlen(buf);
	if (n > 3 && (buf[n - 3] == '+' || buf[n - 3] == '-'))
		strcat(buf, ":00");
	if (bh_parse_time(buf, &ms) < 0)
		return json_string(PQgetvalue(res, row, col));
	bh_format_time(ms, out);
	return json_string(out);
}

static json_t *col_str_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

/*
 * A dialect's own secret in options (the acquirer's AES key) is the
 * client's, shown back only through that dialect's API, as its contract
 * says; the native view, which operators read, never carries it.
 */
static json_t *redact_options(json_t *options)
{
	json_t *security = json_object_get(options, "security");
	if (json_is_object(security) && json_object_get(security, "key") != NULL)
		json_object_set_new(security, "key", json_string("[redacted]"));
	return options;
}

json_t *bh_sub_row_json(const PGresult *res, int row)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(PQgetvalue(res, row, 0)));
	json_object_set_new(o, "client_id", json_string(PQgetvalue(res, row, 1)));
	json_object_set_new(o, "kind", json_string(PQgetvalue(res, row, 2)));
	json_object_set_new(o, "url", json_string(PQgetvalue(res, row, 3)));
	json_object_set_new(o, "description", json_string(PQgetvalue(res, row, 4)));
	json_object_set_new(o, "event_types", pg_array_to_json(PQgetvalue(res, row, 5)));
	json_object_set_new(o, "filter",
			    json_pack("{s:o,s:o}", "bank_id", col_str_or_null(res, row, 6),
				      "account_id", col_str_or_null(res, row, 7)));
	json_object_set_new(o, "headers", col_json(res, row, 8));
	json_object_set_new(o, "http_method", json_string(PQgetvalue(res, row, 9)));
	json_object_set_new(o, "options", redact_options(col_json(res, row, 10)));
	json_object_set_new(o, "enabled", json_boolean(PQgetvalue(res, row, 11)[0] == 't'));
	json_object_set_new(o, "disabled_reason", col_str_or_null(res, row, 12));
	json_object_set_new(o, "created_at", col_time(res, row, 13));
	json_object_set_new(o, "updated_at", col_time(res, row, 14));
	json_object_set_new(o, "ordered", json_boolean(PQgetvalue(res, row, 17)[0] == 't'));
	json_object_set_new(o, "rate_limit_per_s",
			    PQgetisnull(res, row, 18)
				    ? json_null()
				    : json_integer(strtoll(PQgetvalue(res, row, 18), NULL, 10)));
	return o;
}

/* ---------------------------------------------------------------- loading for delivery */

#define LOAD_SQL                                                                           \
	"SELECT s.id, s.client_id, s.kind, s.url, s.http_method, s.secret,"                \
	" CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,"      \
	" s.event_types::text, s.bank_id, s.account_id, s.headers::text, s.options::text," \
	" c.api_secret, s.enabled, s.ordered, COALESCE(s.rate_limit_per_s, 0),"            \
	" CASE WHEN s.previous_secret_expires_at > now()"                                  \
	"  THEN (extract(epoch from s.previous_secret_expires_at) * 1000)::bigint END"     \
	" FROM subscriptions s JOIN clients c ON c.id = s.client_id"

static void sub_from_row(const PGresult *res, int row, struct bh_sub *sub)
{
	memset(sub, 0, sizeof(*sub));
	sub->id = col_dup(res, row, 0);
	sub->client_id = col_dup(res, row, 1);
	sub->kind = col_dup(res, row, 2);
	sub->url = col_dup(res, row, 3);
	sub->http_method = col_dup(res, row, 4);
	sub->secret = col_dup(res, row, 5);
	sub->previous_secret = col_dup(res, row, 6);
	json_t *types = pg_array_to_json(PQgetvalue(res, row, 7));
	sub->n_event_types = (int)json_array_size(types);
	sub->event_types = bh_xcalloc((size_t)sub->n_event_types + 1, sizeof(char *));
	for (int i = 0; i < sub->n_event_types; i++)
		sub->event_types[i] =
			bh_xstrdup(json_string_value(json_array_get(types, (size_t)i)));
	json_decref(types);
	sub->bank_id = col_dup(res, row, 8);
	sub->account_id = col_dup(res, row, 9);
	sub->headers = col_json(res, row, 10);
	sub->options = col_json(res, row, 11);
	sub->client_api_secret = col_dup(res, row, 12);
	sub->enabled = PQgetvalue(res, row, 13)[0] == 't';
	sub->ordered = PQgetvalue(res, row, 14)[0] == 't';
	sub->rate_limit_per_s = (int)strtol(PQgetvalue(res, row, 15), NULL, 10);
	if (sub->previous_secret != NULL && !PQgetisnull(res, row, 16))
		sub->previous_secret_expires_ms = strtoll(PQgetvalue(res, row, 16), NULL, 10);
}

void bh_sub_free(struct bh_sub *sub)
{
	if (sub == NULL)
		return;
	free(sub->id);
	free(sub->client_id);
	free(sub->kind);
	free(sub->url);
	free(sub->http_method);
	free(sub->secret);
	free(sub->previous_secret);
	for (int i = 0; i < sub->n_event_types; i++)
		free(sub->event_types[i]);
	free(sub->event_types);
	free(sub->bank_id);
	free(sub->account_id);
	json_decref(sub->headers);
	json_decref(sub->options);
	free(sub->client_api_secret);
	memset(sub, 0, sizeof(*sub));
}

void bh_sub_set_free(struct bh_sub_set *set)
{
	for (int i = 0; i < set->n; i++)
		bh_sub_free(&set->subs[i]);
	free(set->subs);
	memset(set, 0, sizeof(*set));
}

long long bh_sub_version(struct bh_db *db)
{
	long long v = -1;
	PGresult *res = bh_db_query(db, "SELECT version FROM subscriptions_version", 0, NULL);
	if (res == NULL)
		goto out;
	if (PQntuples(res) == 1)
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
out:
	return v;
}

int bh_sub_load_enabled(struct bh_db *db, struct bh_sub_set *set)
{
	int rc = -1;
	PGresult *res = NULL;
	/*
	 * The version is read first: a change committed between the two
	 * queries leaves us with a version older than our rows, so the next
	 * check reloads rather than missing the change.
	 */
	long long version = bh_sub_version(db);
	if (version < 0)
		goto out;
	res = bh_db_query(db, LOAD_SQL " WHERE s.enabled ORDER BY s.seq", 0, NULL);
	if (res == NULL)
		goto out;
	bh_sub_set_free(set);
	set->n = PQntuples(res);
	set->subs = bh_xcalloc((size_t)set->n + 1, sizeof(struct bh_sub));
	for (int i = 0; i < set->n; i++)
		sub_from_row(res, i, &set->subs[i]);
	set->version = version;
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int bh_sub_load_one(struct bh_db *db, const char *id, struct bh_sub *out)
{
	int rc = -1;
	const char *params[] = {id};
	memset(out, 0, sizeof(*out));
	PGresult *res = bh_db_query(db, LOAD_SQL " WHERE s.id = $1", 1, params);
	if (res == NULL || PQntuples(res) != 1)
		goto out;
	sub_from_row(res, 0, out);
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/* ---------------------------------------------------------------- writes and the native API */

/* Epoch milliseconds of a timestamptz column. */
#define MS_COL(col) "(extract(epoch from " col ") * 1000)::bigint"

/* JSON text of v for a ::json parameter, or NULL (SQL NULL) when v is NULL. */
static char *json_param(const json_t *v)
{
	return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

json_t *bh_sub_insert(struct bh_db *db, const struct bh_sub_new *n)
{
	char id[37];
	json_t *row = NULL;
	bh_uuid4(id);
	char *secret = bh_webhook_secret_new();
	char *types = json_param(n->event_types);
	char *headers = json_param(n->headers);
	char *options = json_param(n->options);
	char rate[16];
	snprintf(rate, sizeof(rate), "%d", n->rate_limit_per_s);
	const char *params[] = {
		id,
		n->client_id,
		n->kind,
		n->url,
		n->description,
		types,
		n->bank_id,
		n->account_id,
		headers,
		n->http_method,
		options,
		BH_DB_BOOL(n->enabled),
		secret,
		n->created_by_user_id,
		BH_DB_BOOL(n->ordered),
		n->rate_limit_per_s > 0 ? rate : NULL,
	};
	PGresult *res = bh_db_query(
		db,
		"INSERT INTO subscriptions AS s (id, client_id, kind, url, description, event_types,"
		" bank_id, account_id, headers, http_method, options, enabled, secret,"
		" created_by_user_id, ordered, rate_limit_per_s)"
		" VALUES ($1, $2, COALESCE($3, 'native'), $4, COALESCE($5, ''),"
		" ARRAY(SELECT json_array_elements_text(COALESCE($6::json, '[]'))), $7, $8,"
		" COALESCE($9::jsonb, '{}'), COALESCE($10, 'POST'), COALESCE($11::jsonb, '{}'),"
		" $12::boolean, $13, $14, $15::boolean, $16::integer)"
		" RETURNING " BH_SUB_COLUMNS,
		(int)BH_ARRAY_LEN(params), params);
	if (res == NULL)
		goto out;
	row = bh_sub_row_json(res, 0);
	json_object_set_new(row, "secret", json_string(secret));
	PQclear(res);
out:
	free(secret);
	free(types);
	free(headers);
	free(options);
	return row;
}

int bh_sub_psd2_set(struct bh_db *db, const char *client_id, bool enabled, const char *url,
		    const char *header, const char *reason)
{
	int rc = -1;
	json_t *headers = NULL;
	char *headers_text = NULL;
	if (header != NULL) {
		headers = header[0] ? json_pack("{s:s}", "Authorization", header) : json_object();
		headers_text = json_dumps(headers, JSON_COMPACT);
	}
	const char *params[] = {client_id, BH_DB_BOOL(enabled), url, headers_text, reason};
	PGresult *res = bh_db_query(
		db,
		"UPDATE subscriptions SET enabled = $2::boolean, url = COALESCE($3, url),"
		" headers = COALESCE($4::jsonb, headers),"
		" disabled_reason = CASE WHEN $2::boolean THEN NULL ELSE $5 END,"
		" failing_since = CASE WHEN $2::boolean AND NOT enabled THEN NULL"
		" ELSE failing_since END, updated_at = now()"
		" WHERE client_id = $1 AND kind = 'psd2' RETURNING id",
		5, params);
	if (res == NULL)
		goto out;
	bool found = PQntuples(res) > 0;
	PQclear(res);
	if (!found && url != NULL) {
		struct bh_sub_new n = {.client_id = client_id,
				       .kind = "psd2",
				       .url = url,
				       .description = "PSD2 application webhook",
				       .headers = headers,
				       .enabled = true};
		json_t *row = bh_sub_insert(db, &n);
		if (row == NULL)
			goto out;
		json_decref(row);
		/* Created disabled: record why. */
		const char *p2[] = {client_id, reason};
		if (!enabled &&
		    bh_db_exec(db,
			       "UPDATE subscriptions SET enabled = false, disabled_reason = $2"
			       " WHERE client_id = $1 AND kind = 'psd2'",
			       2, p2) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(headers);
	free(headers_text);
	return rc;
}

/* bh_db_insert_capped's insert step: the row as JSON into ctx. */
struct sub_insert_ctx {
	const struct bh_sub_new *n;
	json_t *row;
};

static int sub_insert_step(struct bh_db *db, void *ctx)
{
	struct sub_insert_ctx *c = ctx;
	c->row = bh_sub_insert(db, c->n);
	return c->row != NULL ? 0 : -1;
}

int bh_sub_insert_capped(struct bh_db *db, const struct bh_sub_new *n, int max, json_t **out)
{
	struct sub_insert_ctx c = {.n = n};
	int rc = bh_db_insert_capped(db, n->client_id,
				     "SELECT count(*) FROM subscriptions WHERE client_id = $1", max,
				     sub_insert_step, &c);
	if (rc != 0) {
		json_decref(c.row); /* inserted, then the commit failed */
		c.row = NULL;
	}
	*out = c.row;
	return rc == 1 ? BH_SUB_LIMIT : rc;
}

json_t *bh_sub_list_json(struct bh_db *db, const char *client_id, int limit, const char *cursor,
			 char *errbuf, size_t errlen)
{
	return bh_db_seq_page_json(db,
				   "SELECT " BH_SUB_COLUMNS " FROM subscriptions s"
				   " WHERE ($1::text IS NULL OR s.client_id = $1)"
				   " AND ($2::bigint IS NULL OR s.seq < $2::bigint)"
				   " ORDER BY s.seq DESC LIMIT $3::int",
				   client_id, limit, cursor, bh_sub_row_json, 15, errbuf, errlen);
}

int bh_sub_get_json(struct bh_db *db, const char *client_id, const char *id, json_t **out)
{
	const char *params[] = {id, client_id};
	*out = NULL;
	PGresult *res = bh_db_query(db,
				    "SELECT " BH_SUB_COLUMNS ", s.secret FROM subscriptions s"
				    " WHERE s.id = $1 AND ($2::text IS NULL OR s.client_id = $2)",
				    2, params);
	if (res == NULL)
		return -1;
	int rc = BH_SUB_NOT_FOUND;
	if (PQntuples(res) == 1) {
		*out = bh_sub_row_json(res, 0);
		json_object_set_new(*out, "secret", json_string(PQgetvalue(res, 0, 19)));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

int bh_sub_update(struct bh_db *db, const char *client_id, const char *id,
		  const struct bh_sub_patch *p, json_t **out)
{
	int rc = -1;
	char *types = json_param(p->event_types);
	char *headers = json_param(p->headers);
	char rate[16];
	snprintf(rate, sizeof(rate), "%d", p->rate_limit_per_s);
	const char *params[] = {
		id,
		client_id,
		BH_DB_BOOL(p->url != NULL),
		p->url,
		BH_DB_BOOL(p->description != NULL),
		p->description,
		BH_DB_BOOL(p->event_types != NULL),
		types,
		BH_DB_BOOL(p->set_bank_id),
		p->bank_id,
		BH_DB_BOOL(p->set_account_id),
		p->account_id,
		BH_DB_BOOL(p->headers != NULL),
		headers,
		BH_DB_BOOL(p->set_enabled),
		BH_DB_BOOL(p->enabled),
		BH_DB_BOOL(p->set_ordered),
		BH_DB_BOOL(p->ordered),
		BH_DB_BOOL(p->set_rate_limit),
		p->rate_limit_per_s > 0 ? rate : NULL,
	};
	*out = NULL;
	/*
	 * Re-enabling a disabled subscription starts afresh: the auto-disable
	 * clock must not fire again at once. "enabled": true on one already
	 * enabled (a client sending back the whole object) leaves its clock
	 * running, or a failing receiver could never be disabled. SET reads
	 * the old row, so s.enabled is the state before this update.
	 */
	PGresult *res = bh_db_query(
		db,
		"UPDATE subscriptions AS s SET"
		" url = CASE WHEN $3::boolean THEN $4 ELSE s.url END,"
		" description = CASE WHEN $5::boolean THEN $6 ELSE s.description END,"
		" event_types = CASE WHEN $7::boolean"
		"   THEN ARRAY(SELECT json_array_elements_text($8::json)) ELSE s.event_types END,"
		" bank_id = CASE WHEN $9::boolean THEN $10 ELSE s.bank_id END,"
		" account_id = CASE WHEN $11::boolean THEN $12 ELSE s.account_id END,"
		" headers = CASE WHEN $13::boolean THEN $14::jsonb ELSE s.headers END,"
		" enabled = CASE WHEN $15::boolean THEN $16::boolean ELSE s.enabled END,"
		" disabled_reason = CASE WHEN $15::boolean AND $16::boolean THEN NULL"
		"   ELSE s.disabled_reason END,"
		" failing_since = CASE WHEN $15::boolean AND $16::boolean AND NOT s.enabled THEN NULL"
		"   ELSE s.failing_since END,"
		" ordered = CASE WHEN $17::boolean THEN $18::boolean ELSE s.ordered END,"
		" rate_limit_per_s = CASE WHEN $19::boolean THEN $20::integer"
		"   ELSE s.rate_limit_per_s END,"
		" updated_at = now()"
		" WHERE s.id = $1 AND ($2::text IS NULL OR s.client_id = $2)"
		" RETURNING " BH_SUB_COLUMNS,
		(int)BH_ARRAY_LEN(params), params);
	if (res == NULL)
		goto out;
	rc = BH_SUB_NOT_FOUND;
	if (PQntuples(res) == 1) {
		*out = bh_sub_row_json(res, 0);
		rc = 0;
	}
	PQclear(res);
out:
	free(types);
	free(headers);
	return rc;
}

int bh_sub_delete(struct bh_db *db, const char *client_id, const char *id)
{
	const char *params[] = {id, client_id};
	PGresult *res = bh_db_query(db,
				    "DELETE FROM subscriptions s"
				    " WHERE s.id = $1 AND ($2::text IS NULL OR s.client_id = $2)",
				    2, params);
	if (res == NULL)
		return -1;
	int rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : BH_SUB_NOT_FOUND;
	PQclear(res);
	return rc;
}

int bh_sub_rotate_secret(struct bh_db *db, const char *client_id, const char *id, json_t **out)
{
	int rc = -1;
	char ttl[16];
	char *secret = bh_webhook_secret_new();
	snprintf(ttl, sizeof(ttl), "%d", BH_SUB_PREVIOUS_SECRET_S);
	const char *params[] = {id, client_id, secret, ttl};
	*out = NULL;
	/*
	 * One statement, so two concurrent rotations cannot both keep the same
	 * previous secret: the row lock orders them. The change of secret
	 * bumps subscriptions_version (trigger), so workers reload and sign
	 * with both.
	 */
	PGresult *res = bh_db_query(
		db,
		"UPDATE subscriptions AS s SET previous_secret = s.secret, secret = $3,"
		" previous_secret_expires_at = now() + make_interval(secs => $4::integer),"
		" updated_at = now()"
		" WHERE s.id = $1 AND ($2::text IS NULL OR s.client_id = $2)"
		" RETURNING s.client_id, " MS_COL("s.previous_secret_expires_at"),
		(int)BH_ARRAY_LEN(params), params);
	if (res == NULL)
		goto out;
	rc = BH_SUB_NOT_FOUND;
	if (PQntuples(res) == 1) {
		char when[32];
		bh_format_time(strtoll(PQgetvalue(res, 0, 1), NULL, 10), when);
		*out = json_pack("{s:s,s:s,s:s}", "secret", secret, "previous_secret_expires_at",
				 when, "client_id", PQgetvalue(res, 0, 0));
		rc = 0;
	}
	PQclear(res);
out:
	free(secret);
	return rc;
}
