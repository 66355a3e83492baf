/*
 * Consents: reference data binding a client (a TPP application) to accounts
 * at banks named by code (PRODUCT.md 4 and 6.2). PUT /v1/consents/{id}
 * registers or replaces one (admin only: consents are granted by the
 * bank's customers, not by the application itself); GET shows one to an
 * admin or to its client. All SQL on consents and consent_accounts lives
 * here.
 */
#include <string.h>

#include "body.h"
#include "log.h"
#include "server.h"

#define CONSENT_ID_MAX 200
#define ACCOUNT_ID_MAX 200
#define BANK_CODE_MAX 64
#define ACCOUNTS_MAX 1000

#define CONSENT_COLUMNS                                \
	"c.consent_id, c.client_id, c.accounts::text," \
	" to_char(c.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static json_t *consent_json(const PGresult *res, int row)
{
	return json_pack("{s:s, s:s, s:o, s:s}", "consent_id", PQgetvalue(res, row, 0), "client_id",
			 PQgetvalue(res, row, 1), "accounts",
			 json_loads(PQgetvalue(res, row, 2), 0, NULL), "updated_at",
			 PQgetvalue(res, row, 3));
}

/*
 * The accounts member: 0..ACCOUNTS_MAX objects {account_id, bank_code},
 * no pair twice. Returns a new array of normalized objects, or NULL with
 * the reply set.
 */
static json_t *parse_accounts(struct bh_request *req, json_t *obj)
{
	static const char *const fields[] = {"account_id", "bank_code", NULL};
	json_t *v = json_object_get(obj, "accounts");
	if (v == NULL || json_is_null(v)) {
		bh_api_reply_error(req, 400, "invalid_field", "accounts: required");
		return NULL;
	}
	if (!json_is_array(v) || json_array_size(v) > ACCOUNTS_MAX) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "accounts: must be an array of at most %d objects",
				   ACCOUNTS_MAX);
		return NULL;
	}
	json_t *out = json_array();
	size_t i;
	json_t *a;
	json_array_foreach (v, i, a) {
		char prefix[32];
		const char *account, *bank;
		snprintf(prefix, sizeof(prefix), "accounts[%zu].", i);
		if (!json_is_object(a)) {
			bh_api_reply_error(req, 400, "invalid_field",
					   "accounts[%zu]: must be an object", i);
			goto fail;
		}
		if (bh_body_only_fields(req, a, prefix, fields) < 0 ||
		    bh_body_string(req, a, prefix, "account_id", 1, ACCOUNT_ID_MAX, true,
				   &account) < 0 ||
		    bh_body_string(req, a, prefix, "bank_code", 1, BANK_CODE_MAX, true, &bank) < 0)
			goto fail;
		for (size_t j = 0; j < i; j++) {
			json_t *b = json_array_get(out, j);
			if (strcmp(json_string_value(json_object_get(b, "account_id")), account) ==
				    0 &&
			    strcmp(json_string_value(json_object_get(b, "bank_code")), bank) == 0) {
				bh_api_reply_error(
					req, 400, "invalid_field",
					"accounts[%zu]: the same account as accounts[%zu]", i, j);
				goto fail;
			}
		}
		json_array_append_new(
			out, json_pack("{s:s, s:s}", "account_id", account, "bank_code", bank));
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}

static void put_consent(struct bh_request *req)
{
	static const char *const fields[] = {"client_id", "accounts", NULL};
	const char *consent_id = bh_api_param(req, "consent_id");
	const char *client_id;
	json_t *accounts = NULL;
	char *accounts_text = NULL;
	PGresult *res = NULL;
	bool in_tx = false;
	struct bh_db *db = bh_api_db(req);

	if (!bh_body_is_id(consent_id, CONSENT_ID_MAX)) {
		bh_api_reply_error(req, 400, "invalid_parameter",
				   "consent_id: must be 1 to %d letters, digits, '.', '_' or '-'",
				   CONSENT_ID_MAX);
		goto out;
	}
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL ||
	    bh_body_string(req, obj, "", "client_id", 1, 200, false, &client_id) < 0 ||
	    (accounts = parse_accounts(req, obj)) == NULL)
		goto out;
	/* What an admin creates belongs to "system" unless the body names a client. */
	if (client_id == NULL)
		client_id = req->caller.client_id;
	accounts_text = json_dumps(accounts, JSON_COMPACT);
	const char *params[] = {consent_id, client_id, accounts_text};
	if (bh_db_begin(db) < 0) {
		bh_api_reply_db_error(req, "put consent");
		goto out;
	}
	in_tx = true;
	res = bh_db_query(db,
			  "INSERT INTO consents AS c (consent_id, client_id, accounts)"
			  " VALUES ($1, $2, $3::jsonb) ON CONFLICT (consent_id) DO UPDATE"
			  " SET client_id = excluded.client_id, accounts = excluded.accounts,"
			  " updated_at = now() RETURNING " CONSENT_COLUMNS ", (c.xmax = 0)",
			  3, params);
	if (res == NULL) {
		if (strcmp(bh_db_sqlstate(db), "23503") == 0)
			bh_api_reply_error(req, 400, "invalid_field", "client_id: no such client");
		else
			bh_api_reply_db_error(req, "put consent");
		goto out;
	}
	/* The per-account rows the transaction trigger looks up (migration 005). */
	const char *rows[] = {consent_id, accounts_text};
	if (bh_db_exec(db, "DELETE FROM consent_accounts WHERE consent_id = $1", 1, params) < 0 ||
	    bh_db_exec(db,
		       "INSERT INTO consent_accounts (consent_id, bank_code, account_id)"
		       " SELECT $1, x.bank_code, x.account_id FROM jsonb_to_recordset($2::jsonb)"
		       " AS x(account_id text, bank_code text)",
		       2, rows) < 0 ||
	    bh_db_commit(db) < 0) {
		bh_api_reply_db_error(req, "put consent accounts");
		goto out;
	}
	in_tx = false;
	bool created = PQgetvalue(res, 0, 4)[0] == 't';
	bh_info("%s consent %s of client %s", created ? "registered" : "updated", consent_id,
		client_id);
	bh_api_reply_json(req, created ? 201 : 200, consent_json(res, 0));
out:
	if (in_tx)
		bh_db_rollback(db);
	PQclear(res);
	json_decref(accounts);
	free(accounts_text);
}

static void get_consent(struct bh_request *req)
{
	const char *params[] = {bh_api_param(req, "consent_id"),
				req->caller.is_admin ? NULL : req->caller.client_id};
	/*
	 * PUT stores only such ids; anything else (bytes PostgreSQL would refuse
	 * as text, too) cannot name a consent.
	 */
	if (!bh_body_is_id(params[0], CONSENT_ID_MAX)) {
		bh_api_reply_error(req, 404, "not_found", "consent_id: no such consent");
		return;
	}
	PGresult *res =
		bh_db_query(bh_api_db(req),
			    "SELECT " CONSENT_COLUMNS " FROM consents c WHERE c.consent_id = $1"
			    " AND ($2::text IS NULL OR c.client_id = $2)",
			    2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "get consent");
		return;
	}
	if (PQntuples(res) == 1)
		bh_api_reply_json(req, 200, consent_json(res, 0));
	else
		bh_api_reply_error(req, 404, "not_found", "consent_id: no such consent");
	PQclear(res);
}

const struct bh_route bh_routes_consents[] = {
	{.method = "PUT",
	 .pattern = "/v1/consents/{consent_id}",
	 .handler = put_consent,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/consents/{consent_id}",
	 .handler = get_consent,
	 .needs_auth = true},
	{.method = NULL},
};
