/*
 * Identity: clients (tenants), their users, entitlements (roles) and bearer
 * tokens. All SQL on clients, users, entitlements and tokens lives here,
 * authentication included. A caller without role admin reaches only its
 * own client's rows; anything else answers 404 so ids cannot be probed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "crypto.h"
#include "log.h"
#include "server.h"

/* Timestamps leave the database as RFC 3339 UTC. */
#define SQL_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* ---------------------------------------------------------------- authentication */

int bh_identity_authenticate(struct bh_db *db, const char *token, struct bh_caller *caller)
{
	char hash[65];
	int rc = -1;
	bh_token_hash(token, hash);
	const char *params[] = {hash};
	PGresult *res =
		bh_db_query(db,
			    "SELECT u.id, u.client_id,"
			    " COALESCE(json_agg(e.role) FILTER (WHERE e.bank_id = ''), '[]')::text"
			    " FROM tokens t JOIN users u ON u.id = t.user_id"
			    " LEFT JOIN entitlements e ON e.user_id = u.id"
			    " WHERE t.token_hash = $1 GROUP BY u.id, u.client_id",
			    1, params);
	if (res == NULL)
		goto out;
	rc = 1;
	if (PQntuples(res) != 1)
		goto out;
	caller->user_id = bh_xstrdup(PQgetvalue(res, 0, 0));
	caller->client_id = bh_xstrdup(PQgetvalue(res, 0, 1));
	caller->roles = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	if (!json_is_array(caller->roles)) {
		json_decref(caller->roles);
		caller->roles = json_array();
	}
	size_t i;
	json_t *v;
	json_array_foreach (caller->roles, i, v)
		caller->is_admin = caller->is_admin || strcmp(json_string_value(v), "admin") == 0;
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int bh_identity_bootstrap_admin(struct bh_db *db, const char *token)
{
	char hash[65];
	bh_token_hash(token, hash);
	const char *params[] = {hash};
	return bh_db_exec(db,
			  "INSERT INTO tokens (id, user_id, token_hash)"
			  " VALUES ('bootstrap-admin', 'admin', $1)"
			  " ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
			  1, params);
}

void bh_caller_free(struct bh_caller *caller)
{
	free(caller->user_id);
	free(caller->client_id);
	json_decref(caller->roles);
	memset(caller, 0, sizeof(*caller));
}

/* ---------------------------------------------------------------- helpers */

/* True when the caller may act for client_id: admin, or a user of it. */
static bool may_act_for(const struct bh_request *req, const char *client_id)
{
	return req->caller.is_admin || strcmp(req->caller.client_id, client_id) == 0;
}

/* ---------------------------------------------------------------- POST /v1/clients */

static void create_client(struct bh_request *req)
{
	static const char *const fields[] = {"id", "name", NULL};
	const char *id, *name;
	char gen_id[37], secret[33];
	unsigned char raw[16];
	json_t *obj = bh_body_object(req, fields, false);
	if (obj == NULL || bh_body_string(req, obj, "", "id", 1, 64, false, &id) < 0 ||
	    bh_body_string(req, obj, "", "name", 0, 200, false, &name) < 0)
		return;
	if (id != NULL && !bh_body_is_id(id, 64)) {
		bh_api_reply_error(req, 400, "invalid_field",
				   "id: must be 1 to 64 letters, digits, '.', '_' or '-'");
		return;
	}
	if (id == NULL) {
		bh_uuid4(gen_id);
		id = gen_id;
	}
	bh_random_bytes(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(secret + 2 * i, 3, "%02x", raw[i]);
	const char *params[] = {id, name ? name : "", secret};
	PGresult *res = bh_db_query(bh_api_db(req),
				    "INSERT INTO clients (id, name, api_secret) VALUES ($1, $2, $3)"
				    " RETURNING id, name, api_secret, " SQL_TIME("created_at"),
				    3, params);
	if (res == NULL) {
		if (bh_db_is_unique_violation(req->db))
			bh_api_reply_error(req, 409, "conflict",
					   "id: a client \"%s\" already exists", id);
		else
			bh_api_reply_db_error(req, "create client");
		return;
	}
	bh_info("created client %s", id);
	bh_api_reply_json(req, 201,
			  json_pack("{s:s,s:s,s:s,s:s}", "id", PQgetvalue(res, 0, 0), "name",
				    PQgetvalue(res, 0, 1), "api_secret", PQgetvalue(res, 0, 2),
				    "created_at", PQgetvalue(res, 0, 3)));
	PQclear(res);
}

/* ---------------------------------------------------------------- POST /v1/clients/{id}/users */

static void create_user(struct bh_request *req)
{
	static const char *const fields[] = {"username", "password", "email", NULL};
	const char *client_id = bh_api_param(req, "id");
	const char *username, *password, *email;
	char id[37];
	char *hash = NULL;
	PGresult *res = NULL;

	if (!may_act_for(req, client_id)) {
		bh_api_reply_error(req, 404, "not_found", "id: no such client");
		goto out;
	}
	json_t *obj = bh_body_object(req, fields, false);
	if (obj == NULL || bh_body_string(req, obj, "", "username", 1, 100, false, &username) < 0 ||
	    bh_body_string(req, obj, "", "password", 8, 1024, false, &password) < 0 ||
	    bh_body_string(req, obj, "", "email", 0, 254, false, &email) < 0)
		goto out;
	if (email != NULL && email[0] != '\0' && strchr(email, '@') == NULL) {
		bh_api_reply_error(req, 400, "invalid_field", "email: must be an email address");
		goto out;
	}
	bh_uuid4(id);
	if (password != NULL)
		hash = bh_password_hash(password);
	const char *params[] = {id, client_id, username, email ? email : "", hash};
	res = bh_db_query(bh_api_db(req),
			  "INSERT INTO users (id, client_id, username, email, password_hash)"
			  " VALUES ($1, $2, $3, $4, $5)"
			  " RETURNING id, client_id, username, " SQL_TIME("created_at"),
			  5, params);
	if (res == NULL) {
		if (bh_db_is_unique_violation(req->db))
			bh_api_reply_error(req, 409, "conflict", "username: \"%s\" is taken",
					   username ? username : "");
		else if (strcmp(bh_db_sqlstate(req->db), "23503") == 0)
			bh_api_reply_error(req, 404, "not_found", "id: no such client");
		else
			bh_api_reply_db_error(req, "create user");
		goto out;
	}
	bh_info("created user %s of client %s", id, client_id);
	bh_api_reply_json(
		req, 201,
		json_pack("{s:s,s:s,s:o,s:s}", "id", PQgetvalue(res, 0, 0), "client_id",
			  PQgetvalue(res, 0, 1), "username",
			  PQgetisnull(res, 0, 2) ? json_null() : json_string(PQgetvalue(res, 0, 2)),
			  "created_at", PQgetvalue(res, 0, 3)));
out:
	PQclear(res);
	free(hash);
}

/* ---------------------------------------------------------------- POST /v1/users/{id}/entitlements */

static void create_entitlement(struct bh_request *req)
{
	static const char *const fields[] = {"role", "bank_id", NULL};
	const char *user_id = bh_api_param(req, "id");
	const char *role, *bank_id;
	char id[37];
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || bh_body_string(req, obj, "", "role", 1, 100, true, &role) < 0 ||
	    bh_body_string(req, obj, "", "bank_id", 0, 200, false, &bank_id) < 0)
		return;
	bh_uuid4(id);
	const char *params[] = {id, user_id, role, bank_id ? bank_id : ""};
	PGresult *res =
		bh_db_query(bh_api_db(req),
			    "INSERT INTO entitlements (id, user_id, role, bank_id)"
			    " VALUES ($1, $2, $3, $4)"
			    " RETURNING id, user_id, role, bank_id, " SQL_TIME("created_at"),
			    4, params);
	if (res == NULL) {
		if (bh_db_is_unique_violation(req->db))
			bh_api_reply_error(req, 409, "conflict",
					   "role: the user already holds %s at this bank", role);
		else if (strcmp(bh_db_sqlstate(req->db), "23503") == 0)
			bh_api_reply_error(req, 404, "not_found", "id: no such user");
		else
			bh_api_reply_db_error(req, "create entitlement");
		return;
	}
	bh_info("granted %s to user %s", role, user_id);
	bh_api_reply_json(req, 201,
			  json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", PQgetvalue(res, 0, 0), "user_id",
				    PQgetvalue(res, 0, 1), "role", PQgetvalue(res, 0, 2), "bank_id",
				    PQgetvalue(res, 0, 3), "created_at", PQgetvalue(res, 0, 4)));
	PQclear(res);
}

/* ---------------------------------------------------------------- tokens */

static void create_token(struct bh_request *req)
{
	static const char *const fields[] = {"user_id", NULL};
	const char *user_id;
	char id[37], hash[65];
	char *token = NULL;
	PGresult *res = NULL;

	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || bh_body_string(req, obj, "", "user_id", 1, 200, true, &user_id) < 0)
		goto out;
	const char *uparams[] = {user_id};
	res = bh_db_query(bh_api_db(req), "SELECT client_id FROM users WHERE id = $1", 1, uparams);
	if (res == NULL) {
		bh_api_reply_db_error(req, "look up user");
		goto out;
	}
	if (PQntuples(res) != 1 || !may_act_for(req, PQgetvalue(res, 0, 0))) {
		bh_api_reply_error(req, 404, "not_found", "user_id: no such user");
		goto out;
	}
	PQclear(res);
	bh_uuid4(id);
	token = bh_token_new("bh_");
	bh_token_hash(token, hash);
	const char *params[] = {id, user_id, hash};
	/* Only the hash is stored: the token is shown in this reply and never again. */
	res = bh_db_query(bh_api_db(req),
			  "INSERT INTO tokens (id, user_id, token_hash) VALUES ($1, $2, $3)"
			  " RETURNING " SQL_TIME("created_at"),
			  3, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "create token");
		goto out;
	}
	bh_info("created token %s for user %s", id, user_id);
	bh_api_reply_json(req, 201,
			  json_pack("{s:s,s:s,s:s,s:s}", "id", id, "token", token, "user_id",
				    user_id, "created_at", PQgetvalue(res, 0, 0)));
out:
	PQclear(res);
	free(token);
}

static void delete_token(struct bh_request *req)
{
	const char *params[] = {bh_api_param(req, "id"),
				req->caller.is_admin ? NULL : req->caller.client_id};
	PGresult *res = bh_db_query(bh_api_db(req),
				    "DELETE FROM tokens t USING users u"
				    " WHERE t.id = $1 AND u.id = t.user_id"
				    " AND ($2::text IS NULL OR u.client_id = $2)",
				    2, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "delete token");
		return;
	}
	if (strcmp(PQcmdTuples(res), "1") == 0) {
		bh_info("deleted token %s", params[0]);
		bh_api_reply_empty(req, 204);
	} else {
		bh_api_reply_error(req, 404, "not_found", "id: no such token");
	}
	PQclear(res);
}

const struct bh_route bh_routes_identity[] = {
	{.method = "POST",
	 .pattern = "/v1/clients",
	 .handler = create_client,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "POST",
	 .pattern = "/v1/clients/{id}/users",
	 .handler = create_user,
	 .needs_auth = true},
	{.method = "POST",
	 .pattern = "/v1/users/{id}/entitlements",
	 .handler = create_entitlement,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "POST", .pattern = "/v1/tokens", .handler = create_token, .needs_auth = true},
	{.method = "DELETE",
	 .pattern = "/v1/tokens/{id}",
	 .handler = delete_token,
	 .needs_auth = true},
	{.method = NULL},
};
