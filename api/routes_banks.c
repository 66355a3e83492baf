/*
 * Banks: reference data the dialects look up (OBP checks that BANK_ID
 * exists; the refresh tasks call a bank's connector). PUT
 * /v1/banks/{bank_id} registers or replaces one, admin only. All SQL on
 * the banks table lives here.
 */
#include <string.h>

#include "body.h"
#include "log.h"
#include "net.h"
#include "server.h"

#define BANK_ID_MAX 200
#define CONNECTOR_URL_MAX 2048

int bh_banks_exists(struct bh_db *db, const char *bank_id)
{
	const char *params[] = {bank_id};
	PGresult *res = bh_db_query(db, "SELECT 1 FROM banks WHERE bank_id = $1", 1, params);
	if (res == NULL)
		return -1;
	int rc = PQntuples(res) == 1 ? 1 : 0;
	PQclear(res);
	return rc;
}

/*
 * The connector is called by the scheduler, from inside the operator's
 * network, and only an admin sets it; so loopback and private addresses
 * are accepted here (not as for client webhooks), but the URL is read as
 * libcurl reads it and link-local, metadata and reserved addresses are
 * refused like everywhere else.
 */
static int check_connector_url(struct bh_request *req, const char *url)
{
	char msg[256];
	if (bh_url_check(url, true, true, msg, sizeof(msg)) < 0) {
		bh_api_reply_error(req, 400, "invalid_field", "connector_url: %s", msg);
		return -1;
	}
	return 0;
}

static void put_bank(struct bh_request *req)
{
	static const char *const fields[] = {"name", "code", "connector_url", NULL};
	const char *bank_id = bh_api_param(req, "bank_id");
	const char *name, *code, *connector_url;
	PGresult *res = NULL;

	if (!bh_body_is_id(bank_id, BANK_ID_MAX)) {
		bh_api_reply_error(req, 400, "invalid_parameter",
				   "bank_id: must be 1 to %d letters, digits, '.', '_' or '-'",
				   BANK_ID_MAX);
		goto out;
	}
	json_t *obj = bh_body_object(req, fields, true);
	if (obj == NULL || bh_body_string(req, obj, "", "name", 0, 200, false, &name) < 0 ||
	    bh_body_string(req, obj, "", "code", 0, 64, false, &code) < 0 ||
	    bh_body_string(req, obj, "", "connector_url", 0, CONNECTOR_URL_MAX, false,
			   &connector_url) < 0)
		goto out;
	if (connector_url != NULL && connector_url[0] != '\0' &&
	    check_connector_url(req, connector_url) < 0)
		goto out;
	const char *params[] = {bank_id, name ? name : "", code ? code : "",
				connector_url ? connector_url : ""};
	/* xmax = 0 only for a freshly inserted row: that tells 201 from 200. */
	res = bh_db_query(bh_api_db(req),
			  "INSERT INTO banks AS b (bank_id, name, code, connector_url)"
			  " VALUES ($1, $2, $3, $4)"
			  " ON CONFLICT (bank_id) DO UPDATE SET name = excluded.name,"
			  " code = excluded.code, connector_url = excluded.connector_url,"
			  " updated_at = now()"
			  " RETURNING b.bank_id, b.name, b.code, b.connector_url,"
			  " to_char(b.updated_at AT TIME ZONE 'UTC',"
			  " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), (b.xmax = 0)",
			  4, params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "put bank");
		goto out;
	}
	bool created = PQgetvalue(res, 0, 5)[0] == 't';
	bh_info("%s bank %s", created ? "registered" : "updated", bank_id);
	bh_api_reply_json(req, created ? 201 : 200,
			  json_pack("{s:s,s:s,s:s,s:s,s:s}", "bank_id", PQgetvalue(res, 0, 0),
				    "name", PQgetvalue(res, 0, 1), "code", PQgetvalue(res, 0, 2),
				    "connector_url", PQgetvalue(res, 0, 3), "updated_at",
				    PQgetvalue(res, 0, 4)));
out:
	PQclear(res);
}

const struct bh_route bh_routes_banks[] = {
	{.method = "PUT",
	 .pattern = "/v1/banks/{bank_id}",
	 .handler = put_bank,
	 .role = "admin",
	 .needs_auth = true},
	{.method = NULL},
};
