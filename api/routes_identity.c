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
#include "connbudget.h"
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

/* ---------------------------------------------------------------- authentication throttling */

/*
 * Keys of api->login_limit: "u:" username, "a:" address, "c:" client id.
 * The SHA-256 of the key is what the limiter keeps.
 */
#define KEY_MAX 1100

/* 0 when wait_s is 0; else -1 with a 429 naming field and why, and Retry-After: wait_s. */
static int throttled(struct bh_request *req, int wait_s, const char *field, const char *why)
{
	if (wait_s == 0)
		return 0;
	bh_warn("%s %s: %s: %s; 429 for %d s", req->method, req->path, field, why, wait_s);
	bh_api_reply_error(req, 429, "rate_limited", "%s: %s; retry after %d s.", field, why,
			   wait_s);
	bh_api_reply_retry_after(req, wait_s);
	return -1;
}

/* The process-wide budget of scrypt runs (api.scrypt_per_s). */
static int scrypt_allowed(struct bh_request *req)
{
	return throttled(req, bh_ratelimit_take(req->api->scrypt_limit, "scrypt", bh_mono_ms()),
			 "password",
			 "the server is over its budget of password checks a second"
			 " (api.scrypt_per_s)");
}

static void key_of(char *out, const char *prefix, const char *value)
{
	snprintf(out, KEY_MAX, "%s%.1024s", prefix, value);
}

int bh_identity_login_allowed(struct bh_request *req, const char *username)
{
	struct bh_ratelimit *rl = req->api->login_limit;
	char ukey[KEY_MAX], akey[KEY_MAX], addr[BH_CONNBUDGET_ADDR_MAX];
	int64_t now = bh_mono_ms();
	bh_api_client_address(req, addr, sizeof(addr));
	key_of(ukey, "u:", username);
	key_of(akey, "a:", addr);
	if (throttled(req, bh_ratelimit_blocked(rl, ukey, now), "username",
		      "too many failed logins for this username (api.login_free_failures)") < 0 ||
	    throttled(req, bh_ratelimit_blocked(rl, akey, now), "address",
		      "too many failed logins from this address"
		      " (api.login_free_failures_per_ip)") < 0 ||
	    throttled(req, bh_ratelimit_take(rl, ukey, now), "username",
		      "too many logins for this username (api.login_rate_per_s)") < 0)
		return -1;
	return scrypt_allowed(req);
}

void bh_identity_login_result(struct bh_request *req, const char *username, bool ok)
{
	struct bh_ratelimit *rl = req->api->login_limit;
	char ukey[KEY_MAX], akey[KEY_MAX], addr[BH_CONNBUDGET_ADDR_MAX];
	int64_t now = bh_mono_ms();
	key_of(ukey, "u:", username);
	if (ok) {
		/* Only the username: one good account must not clear an address's record. */
		bh_ratelimit_succeed(rl, ukey);
		return;
	}
	const struct bh_config *cfg = req->api->cfg;
	bh_api_client_address(req, addr, sizeof(addr));
	key_of(akey, "a:", addr);
	(void)bh_ratelimit_fail(rl, ukey, cfg->api_login_free_failures,
				cfg->api_login_max_backoff_s, now);
	(void)bh_ratelimit_fail(rl, akey, cfg->api_login_free_failures_per_ip,
				cfg->api_login_max_backoff_s, now);
}

int bh_identity_password_allowed(struct bh_request *req, const char *client_id)
{
	char ckey[KEY_MAX];
	key_of(ckey, "c:", client_id);
	if (throttled(req, bh_ratelimit_take(req->api->login_limit, ckey, bh_mono_ms()), "password",
		      "too many passwords set for this client (api.login_rate_per_s)") < 0)
		return -1;
	return scrypt_allowed(req);
}

/* ---------------------------------------------------------------- per-client caps */

/* bh_db_insert_capped's insert step: one statement, its result kept. */
struct sql_insert {
	const char *sql;
	int nparams;
	const char *const *params;
	PGresult *res;
};

static int sql_insert_step(struct bh_db *db, void *ctx)
{
	struct sql_insert *s = ctx;
	s->res = bh_db_query(db, s->sql, s->nparams, s->params);
	return s->res != NULL ? 0 : -1;
}

/*
 * Runs insert_sql unless client_id already has `max` rows by count_sql
 * (bh_db_insert_capped): 0 with the insert's result in *out, 1 over the
 * cap, -1 on a database error.
 */
static int insert_capped(struct bh_db *db, const char *client_id, const char *count_sql, int max,
			 const char *insert_sql, int nparams, const char *const *params,
			 PGresult **out)
{
	struct sql_insert s = {.sql = insert_sql, .nparams = nparams, .params = params};
	int rc = bh_db_insert_capped(db, client_id, count_sql, max, sql_insert_step, &s);
	if (rc != 0) {
		PQclear(s.res);
		s.res = NULL;
	}
	*out = s.res;
	return rc;
}

int bh_identity_token_insert(struct bh_request *req, const char *id, const char *user_id,
			     const char *hash, char *created_at, size_t created_len)
{
	struct bh_db *db = bh_api_db(req);
	const char *uparams[] = {user_id};
	PGresult *res = bh_db_query(db, "SELECT client_id FROM users WHERE id = $1", 1, uparams);
	if (res == NULL)
		return -1;
	char *client_id = PQntuples(res) == 1 ? bh_xstrdup(PQgetvalue(res, 0, 0)) : NULL;
	PQclear(res);
	if (client_id == NULL)
		return -1;
	const char *params[] = {id, user_id, hash};
	/* Only the hash is stored: the token is shown in the reply and never again. */
	int rc = insert_capped(db, client_id,
			       "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id"
			       " WHERE u.client_id = $1",
			       req->api->cfg->api_max_tokens_per_client,
			       "INSERT INTO tokens (id, user_id, token_hash) VALUES ($1, $2, $3)"
			       " RETURNING " SQL_TIME("created_at"),
			       3, params, &res);
	if (rc == 0 && created_at != NULL)
		snprintf(created_at, created_len, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	free(client_id);
	return rc;
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
	if (password != NULL) {
		if (bh_identity_password_allowed(req, client_id) < 0)
			goto out;
		hash = bh_password_hash(password);
	}
	const char *params[] = {id, client_id, username, email ? email : "", hash};
	int rc = insert_capped(bh_api_db(req), client_id,
			       "SELECT count(*) FROM users WHERE client_id = $1",
			       req->api->cfg->api_max_users_per_client,
			       "INSERT INTO users (id, client_id, username, email, password_hash)"
			       " VALUES ($1, $2, $3, $4, $5)"
			       " RETURNING id, client_id, username, " SQL_TIME("created_at"),
			       5, params, &res);
	if (rc == 1) {
		bh_api_reply_error(req, 409, "user_limit",
				   "api.max_users_per_client: this client already has the limit of"
				   " %d users; no more can be created.",
				   req->api->cfg->api_max_users_per_client);
		goto out;
	}
	if (rc < 0) {
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
	res = NULL;
	bh_uuid4(id);
	token = bh_token_new("bh_");
	bh_token_hash(token, hash);
	char created_at[40];
	int rc = bh_identity_token_insert(req, id, user_id, hash, created_at, sizeof(created_at));
	if (rc == 1) {
		bh_api_reply_error(req, 409, "token_limit",
				   "api.max_tokens_per_client: this client already has the limit of"
				   " %d tokens; delete one first.",
				   req->api->cfg->api_max_tokens_per_client);
		goto out;
	}
	if (rc < 0) {
		bh_api_reply_db_error(req, "create token");
		goto out;
	}
	bh_info("created token %s for user %s", id, user_id);
	bh_api_reply_json(req, 201,
			  json_pack("{s:s,s:s,s:s,s:s}", "id", id, "token", token, "user_id",
				    user_id, "created_at", created_at));
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
