#include "grant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the set */

static char *dup_or_null(const char *s)
{
	return s ? bh_xstrdup(s) : NULL;
}

void bh_grant_set_add(struct bh_grant_set *set, const char *client_id, const char *bank_id,
		      const char *account_id, const char *acquirer_id, const char *merchant_id)
{
	set->grants = bh_xrealloc(set->grants, ((size_t)set->n + 1) * sizeof(*set->grants));
	struct bh_grant *g = &set->grants[set->n++];
	g->client_id = bh_xstrdup(client_id);
	g->bank_id = dup_or_null(bank_id);
	g->account_id = dup_or_null(account_id);
	g->acquirer_id = dup_or_null(acquirer_id);
	g->merchant_id = dup_or_null(merchant_id);
}

static int grant_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bh_grant *)a)->client_id,
		      ((const struct bh_grant *)b)->client_id);
}

void bh_grant_set_index(struct bh_grant_set *set)
{
	if (set->n > 1)
		qsort(set->grants, (size_t)set->n, sizeof(*set->grants), grant_cmp);
}

void bh_grant_set_free(struct bh_grant_set *set)
{
	for (int i = 0; i < set->n; i++) {
		struct bh_grant *g = &set->grants[i];
		free(g->client_id);
		free(g->bank_id);
		free(g->account_id);
		free(g->acquirer_id);
		free(g->merchant_id);
	}
	free(set->grants);
	memset(set, 0, sizeof(*set));
}

/* ---------------------------------------------------------------- decisions */

/* The grants of client_id: [*first, *first + return value). */
static int client_range(const struct bh_grant_set *set, const char *client_id, int *first)
{
	int lo = 0, hi = set->n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (strcmp(set->grants[mid].client_id, client_id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	int end = lo;
	while (end < set->n && strcmp(set->grants[end].client_id, client_id) == 0)
		end++;
	*first = lo;
	return end - lo;
}

static bool is_system(const char *client_id)
{
	return strcmp(client_id, BH_GRANT_SYSTEM_CLIENT) == 0;
}

/* An optional part of a grant (NULL: all) admits value (NULL: none given). */
static bool part_admits(const char *granted, const char *value)
{
	return granted == NULL || (value != NULL && strcmp(granted, value) == 0);
}

static bool same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

bool bh_grant_entitled(const struct bh_grant_set *set, const char *client_id,
		       const struct bh_event *ev)
{
	if (is_system(client_id))
		return true;
	if (bh_event_type_internal(ev->type))
		return false;
	int first, n = client_range(set, client_id, &first);
	bool payment = ev->type == BH_EVENT_PAYMENT_UPDATED;
	const char *acquirer = payment ? bh_event_data_str(ev, "acquirer_id") : NULL;
	const char *merchant = payment ? bh_event_data_str(ev, "merchant_id") : NULL;
	for (int i = first; i < first + n; i++) {
		const struct bh_grant *g = &set->grants[i];
		if (payment) {
			if (same(g->acquirer_id, acquirer) && part_admits(g->merchant_id, merchant))
				return true;
		} else if (same(g->bank_id, ev->bank_id) &&
			   part_admits(g->account_id, ev->account_id)) {
			return true;
		}
	}
	return false;
}

bool bh_grant_covers_account(const struct bh_grant_set *set, const char *client_id,
			     const char *bank_id, const char *account_id)
{
	if (is_system(client_id) || (bank_id == NULL && account_id == NULL))
		return true;
	int first, n = client_range(set, client_id, &first);
	for (int i = first; i < first + n; i++) {
		const struct bh_grant *g = &set->grants[i];
		if (g->bank_id == NULL)
			continue;
		if (bank_id != NULL && strcmp(g->bank_id, bank_id) != 0)
			continue;
		if (account_id == NULL || part_admits(g->account_id, account_id))
			return true;
	}
	return false;
}

bool bh_grant_covers_merchant(const struct bh_grant_set *set, const char *client_id,
			      const char *acquirer_id, const char *merchant_id)
{
	if (is_system(client_id))
		return true;
	int first, n = client_range(set, client_id, &first);
	for (int i = first; i < first + n; i++) {
		const struct bh_grant *g = &set->grants[i];
		if (same(g->acquirer_id, acquirer_id) &&
		    (merchant_id == NULL || part_admits(g->merchant_id, merchant_id)))
			return true;
	}
	return false;
}

/* ---------------------------------------------------------------- loading */

static const char *col_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int bh_grant_load(struct bh_db *db, const char *client_id, struct bh_grant_set *set)
{
	const char *params[] = {client_id};
	/* consent_grants (006) is what the client's consents grant. */
	PGresult *res = bh_db_query(
		db,
		"SELECT g.client_id, g.bank_id, g.account_id, g.acquirer_id, g.merchant_id"
		" FROM grants g WHERE $1::text IS NULL OR g.client_id = $1"
		" UNION ALL SELECT cg.client_id, cg.bank_id, cg.account_id, NULL, NULL"
		" FROM consent_grants cg WHERE $1::text IS NULL OR cg.client_id = $1",
		1, params);
	if (res == NULL)
		return -1;
	bh_grant_set_free(set);
	int n = PQntuples(res);
	for (int i = 0; i < n; i++)
		bh_grant_set_add(set, PQgetvalue(res, i, 0), col_or_null(res, i, 1),
				 col_or_null(res, i, 2), col_or_null(res, i, 3),
				 col_or_null(res, i, 4));
	bh_grant_set_index(set);
	PQclear(res);
	return 0;
}

/* ---------------------------------------------------------------- the admin API */

#define GRANT_COLUMNS                                                               \
	"g.id, g.client_id, g.bank_id, g.account_id, g.acquirer_id, g.merchant_id," \
	" to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), g.seq"

static json_t *str_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

static json_t *grant_row_json(const PGresult *res, int row)
{
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:s}", "id", PQgetvalue(res, row, 0),
			 "client_id", PQgetvalue(res, row, 1), "bank_id", str_or_null(res, row, 2),
			 "account_id", str_or_null(res, row, 3), "acquirer_id",
			 str_or_null(res, row, 4), "merchant_id", str_or_null(res, row, 5),
			 "created_at", PQgetvalue(res, row, 6));
}

int bh_grant_insert(struct bh_db *db, const char *client_id, const char *bank_id,
		    const char *account_id, const char *acquirer_id, const char *merchant_id,
		    json_t **out)
{
	char id[37];
	bh_uuid4(id);
	const char *params[] = {id, client_id, bank_id, account_id, acquirer_id, merchant_id};
	*out = NULL;
	PGresult *res = bh_db_query(db,
				    "INSERT INTO grants AS g (id, client_id, bank_id, account_id,"
				    " acquirer_id, merchant_id) VALUES ($1, $2, $3, $4, $5, $6)"
				    " RETURNING " GRANT_COLUMNS,
				    (int)BH_ARRAY_LEN(params), params);
	if (res == NULL) {
		if (bh_db_is_unique_violation(db))
			return BH_GRANT_CONFLICT;
		if (strcmp(bh_db_sqlstate(db), "23503") == 0)
			return BH_GRANT_NO_CLIENT;
		return -1;
	}
	*out = grant_row_json(res, 0);
	PQclear(res);
	return 0;
}

json_t *bh_grant_list_json(struct bh_db *db, const char *client_id, int limit, const char *cursor,
			   char *errbuf, size_t errlen)
{
	return bh_db_seq_page_json(db,
				   "SELECT " GRANT_COLUMNS " FROM grants g WHERE g.client_id = $1"
				   " AND ($2::bigint IS NULL OR g.seq < $2::bigint)"
				   " ORDER BY g.seq DESC LIMIT $3::int",
				   client_id, limit, cursor, grant_row_json, 7, errbuf, errlen);
}

int bh_grant_get_json(struct bh_db *db, const char *client_id, const char *id, json_t **out)
{
	const char *params[] = {id, client_id};
	*out = NULL;
	PGresult *res = bh_db_query(
		db, "SELECT " GRANT_COLUMNS " FROM grants g WHERE g.id = $1 AND g.client_id = $2",
		2, params);
	if (res == NULL)
		return -1;
	int rc = BH_GRANT_NOT_FOUND;
	if (PQntuples(res) == 1) {
		*out = grant_row_json(res, 0);
		rc = 0;
	}
	PQclear(res);
	return rc;
}

int bh_grant_delete(struct bh_db *db, const char *client_id, const char *id)
{
	const char *params[] = {id, client_id};
	PGresult *res =
		bh_db_query(db, "DELETE FROM grants WHERE id = $1 AND client_id = $2", 2, params);
	if (res == NULL)
		return -1;
	int rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : BH_GRANT_NOT_FOUND;
	PQclear(res);
	return rc;
}
