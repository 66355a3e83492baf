/*
 * Data grants, admin-managed: POST/GET /v1/clients/{id}/grants, GET and
 * DELETE /v1/clients/{id}/grants/{grant_id} (PRODUCT.md 7). A grant is
 * {bank_id, optional account_id} or {acquirer_id, optional merchant_id};
 * the SQL is in common/grant.c, which also holds the rules the worker and
 * the registration checks below apply.
 */
#include <stdio.h>
#include <string.h>

#include "body.h"
#include "grant.h"
#include "log.h"
#include "server.h"

#define GRANT_ID_MAX 200

static void create_grant(struct bh_request *req)
{
	static const char *const fields[] = {"bank_id", "account_id", "acquirer_id", "merchant_id",
					     NULL};
	const char *client_id = bh_api_param(req, "id");
	const char *bank, *account, *acquirer, *merchant;
	json_t *row = NULL;
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL ||
	    bh_body_string(req, obj, "", "bank_id", 1, GRANT_ID_MAX, false, &bank) < 0 ||
	    bh_body_string(req, obj, "", "account_id", 1, GRANT_ID_MAX, false, &account) < 0 ||
	    bh_body_string(req, obj, "", "acquirer_id", 1, GRANT_ID_MAX, false, &acquirer) < 0 ||
	    bh_body_string(req, obj, "", "merchant_id", 1, GRANT_ID_MAX, false, &merchant) < 0)
		return;
	if (bank != NULL && acquirer != NULL) {
		bh_api_reply_error(
			req, 400, "invalid_field",
			"acquirer_id: a grant names a bank_id or an acquirer_id, not both");
		return;
	}
	if (bank == NULL && acquirer == NULL) {
		bh_api_reply_error(req, 400, "missing_field",
				   "bank_id: required (or acquirer_id for an acquirer grant)");
		return;
	}
	if (account != NULL && bank == NULL) {
		bh_api_reply_error(
			req, 400, "invalid_field",
			"account_id: only with bank_id (acquirer grants name merchant_id)");
		return;
	}
	if (merchant != NULL && acquirer == NULL) {
		bh_api_reply_error(
			req, 400, "invalid_field",
			"merchant_id: only with acquirer_id (bank grants name account_id)");
		return;
	}
	int rc =
		bh_grant_insert(bh_api_db(req), client_id, bank, account, acquirer, merchant, &row);
	if (rc == BH_GRANT_CONFLICT) {
		bh_api_reply_error(req, 409, "conflict", "id: client %s holds this grant already",
				   client_id);
		return;
	}
	if (rc == BH_GRANT_NO_CLIENT) {
		bh_api_reply_error(req, 404, "not_found", "id: no such client");
		return;
	}
	if (rc < 0) {
		bh_api_reply_db_error(req, "create grant");
		return;
	}
	bh_info("granted %s %s%s%s to client %s", bank ? "bank" : "acquirer",
		bank ? bank : acquirer, (account || merchant) ? "/" : "",
		account ? account : (merchant ? merchant : ""), client_id);
	bh_api_reply_json(req, 201, row);
}

static void list_grants(struct bh_request *req)
{
	char err[256];
	int limit;
	if (bh_api_query_limit(req, &limit) < 0)
		return;
	json_t *page = bh_grant_list_json(bh_api_db(req), bh_api_param(req, "id"), limit,
					  bh_api_query(req, "cursor"), err, sizeof(err));
	if (page == NULL) {
		if (strncmp(err, "cursor:", 7) == 0)
			bh_api_reply_error(req, 400, "invalid_parameter", "%s", err);
		else
			bh_api_reply_db_error(req, "list grants");
		return;
	}
	bh_api_reply_json(req, 200, page);
}

static void get_grant(struct bh_request *req)
{
	json_t *row = NULL;
	int rc = bh_grant_get_json(bh_api_db(req), bh_api_param(req, "id"),
				   bh_api_param(req, "grant_id"), &row);
	if (rc < 0) {
		bh_api_reply_db_error(req, "get grant");
		return;
	}
	if (rc == BH_GRANT_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "grant_id: no such grant of this client");
		return;
	}
	bh_api_reply_json(req, 200, row);
}

/* Revoking takes effect in the workers within a second (subscriptions_version). */
static void delete_grant(struct bh_request *req)
{
	const char *client_id = bh_api_param(req, "id");
	const char *id = bh_api_param(req, "grant_id");
	int rc = bh_grant_delete(bh_api_db(req), client_id, id);
	if (rc < 0) {
		bh_api_reply_db_error(req, "delete grant");
		return;
	}
	if (rc == BH_GRANT_NOT_FOUND) {
		bh_api_reply_error(req, 404, "not_found", "grant_id: no such grant of this client");
		return;
	}
	bh_info("revoked grant %s of client %s", id, client_id);
	bh_api_reply_empty(req, 204);
}

/* ---------------------------------------------------------------- registration checks */

/* The caller's grants for a check; the caller is not admin. 0 or -1. */
static int caller_grants(struct bh_request *req, struct bh_grant_set *set)
{
	if (bh_grant_load(bh_api_db(req), req->caller.client_id, set) < 0) {
		bh_grant_set_free(set);
		return -1;
	}
	return 0;
}

int bh_api_grants_cover_account(struct bh_request *req, const char *bank_id, const char *account_id)
{
	struct bh_grant_set set = {0};
	if (req->caller.is_admin ||
	    bh_grant_covers_account(&set, req->caller.client_id, bank_id, account_id))
		return 1; /* admin, system, or no filter: no grant to read */
	if (caller_grants(req, &set) < 0)
		return -1;
	int rc = bh_grant_covers_account(&set, req->caller.client_id, bank_id, account_id) ? 1 : 0;
	bh_grant_set_free(&set);
	return rc;
}

int bh_api_grants_cover_merchant(struct bh_request *req, const char *acquirer_id,
				 const char *merchant_id)
{
	struct bh_grant_set set = {0};
	if (req->caller.is_admin ||
	    bh_grant_covers_merchant(&set, req->caller.client_id, acquirer_id, merchant_id))
		return 1;
	if (caller_grants(req, &set) < 0)
		return -1;
	int rc = bh_grant_covers_merchant(&set, req->caller.client_id, acquirer_id, merchant_id)
			 ? 1
			 : 0;
	bh_grant_set_free(&set);
	return rc;
}

const struct bh_route bh_routes_grants[] = {
	{.method = "POST",
	 .pattern = "/v1/clients/{id}/grants",
	 .handler = create_grant,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/clients/{id}/grants",
	 .handler = list_grants,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "GET",
	 .pattern = "/v1/clients/{id}/grants/{grant_id}",
	 .handler = get_grant,
	 .role = "admin",
	 .needs_auth = true},
	{.method = "DELETE",
	 .pattern = "/v1/clients/{id}/grants/{grant_id}",
	 .handler = delete_grant,
	 .role = "admin",
	 .needs_auth = true},
	{.method = NULL},
};
