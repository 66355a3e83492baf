/*
 * The card acquirer dialect (PRODUCT.md 6.4, seed 004) under
 * /acquirer/{version-id}: create (POST) and update (PUT) a merchant's
 * notification configuration, and list them (POST /webhooks).
 *
 * One notification configuration is one subscription of kind "acquirer"
 * owned by the caller's client (common/kind_acquirer.c matches and
 * encrypts), so GET /v1/endpoints lists it too. Its code is unique per
 * client (migration 004); it is bound to the acquirer, merchant and
 * optional acceptor and terminal it was created under.
 *
 * Every call checks, in this order: the five mandatory headers, the token
 * and that x-ibm-client-id is the token's client, the path, the query,
 * the body. Every answer is {"transactionStatus":"ACTC"|"RJCT",
 * "returnStatus":{"statusCode","statusMsg","statusDescription"}} and echoes
 * TPP-Request-ID; the status codes are the table below, documented in
 * docs/DIALECTS.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "kind_acquirer.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "subscription.h"

#define TOKEN_MAX 512
#define HEADER_MAX 200
#define DESCRIPTION_MAX 512 /* statusDescription is Max512Text */
#define ACQUIRER_ID_MAX 25
#define MERCHANT_ID_MAX 10
#define ACCEPTOR_ID_MAX 10
#define TERMINAL_ID_MAX 10
#define CODE_MAX 35
#define METHOD_CODE_MAX 15
#define METHODS_MAX 32
#define NOTIFICATION_TYPE_MAX 5
#define EMAIL_MAX 256
#define ALGORITHM_MAX 70
#define VERSION_MAX 16
#define LIST_MAX 1000
#define CAS_TRIES 5 /* compare-and-swap rounds against concurrent updates */
#define TPP_REQUEST_ID "TPP-Request-ID"

/* ---------------------------------------------------------------- return status */

enum rs {
	RS_OK,
	RS_MISSING_HEADER,
	RS_INVALID_HEADER,
	RS_UNAUTHORIZED,
	RS_CLIENT_MISMATCH,
	RS_NOT_ENTITLED,
	RS_INVALID_PATH,
	RS_INVALID_QUERY,
	RS_INVALID_BODY,
	RS_MISSING_FIELD,
	RS_INVALID_FIELD,
	RS_INVALID_ENUM,
	RS_MEDIA_TYPE,
	RS_TOO_LARGE,
	RS_CONFIG_NOT_FOUND,
	RS_CONFIG_CONFLICT,
	RS_CONFIG_LIMIT,
	RS_URI_TOO_LONG,
	RS_HEADERS_TOO_LARGE,
	RS_NO_RESOURCE,
	RS_METHOD,
	RS_RATE_LIMITED,
	RS_INTERNAL,
	RS_UNAVAILABLE,
};

/* The returnStatus codes; docs/DIALECTS.md lists the same table. */
static const struct {
	const char *code;
	unsigned int http;
	const char *msg;
} rs_table[] = {
	[RS_OK] = {"000", 200, "Success"},
	[RS_MISSING_HEADER] = {"101", 400, "Missing header"},
	[RS_INVALID_HEADER] = {"102", 400, "Invalid header"},
	[RS_UNAUTHORIZED] = {"103", 401, "Unauthorized"},
	[RS_CLIENT_MISMATCH] = {"104", 401, "Client not authorized"},
	[RS_NOT_ENTITLED] = {"106", 403, "Not entitled"},
	[RS_INVALID_PATH] = {"201", 400, "Invalid path parameter"},
	[RS_INVALID_QUERY] = {"202", 400, "Invalid query parameter"},
	[RS_INVALID_BODY] = {"301", 400, "Invalid body"},
	[RS_MISSING_FIELD] = {"302", 400, "Missing field"},
	[RS_INVALID_FIELD] = {"303", 400, "Invalid field"},
	[RS_INVALID_ENUM] = {"304", 400, "Invalid value"},
	[RS_MEDIA_TYPE] = {"305", 415, "Unsupported media type"},
	[RS_TOO_LARGE] = {"306", 413, "Body too large"},
	[RS_CONFIG_NOT_FOUND] = {"401", 404, "Configuration not found"},
	[RS_CONFIG_CONFLICT] = {"402", 409, "Configuration conflict"},
	[RS_CONFIG_LIMIT] = {"403", 409, "Configuration limit reached"},
	[RS_URI_TOO_LONG] = {"203", 414, "URI too long"},
	[RS_HEADERS_TOO_LARGE] = {"105", 431, "Headers too large"},
	[RS_NO_RESOURCE] = {"404", 404, "Resource not found"},
	[RS_METHOD] = {"405", 405, "Method not allowed"},
	[RS_RATE_LIMITED] = {"429", 429, "Too many requests"},
	[RS_INTERNAL] = {"500", 500, "Internal error"},
	[RS_UNAVAILABLE] = {"503", 503, "Service unavailable"},
};

static const char *const payment_methods[] = {"CARD", "PYBL", "PLKV", "BLIK",
					      "XPAY", "BNPL", "BNCT", "IDEL"};

/* Echoes TPP-Request-ID when the caller gave a printable one of sane length. */
static void echo_request_id(struct bh_request *req)
{
	const char *id = bh_api_header(req, TPP_REQUEST_ID);
	if (id != NULL && id[0] != '\0' && strlen(id) <= HEADER_MAX)
		bh_api_reply_header(req, TPP_REQUEST_ID, id);
}

/* Replies with the envelope for rs; extra (stolen, may be NULL) adds members. */
static void reply_status(struct bh_request *req, enum rs rs, json_t *extra, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reply_status(struct bh_request *req, enum rs rs, json_t *extra, const char *fmt, ...)
{
	char desc[DESCRIPTION_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	bh_utf8_fix(desc); /* it quotes input, maybe cut mid-character */
	json_t *body = json_pack("{s:s,s:{s:s,s:s,s:s}}", "transactionStatus",
				 rs == RS_OK ? "ACTC" : "RJCT", "returnStatus", "statusCode",
				 rs_table[rs].code, "statusMsg", rs_table[rs].msg,
				 "statusDescription", desc);
	if (extra != NULL)
		json_object_update(body, extra);
	json_decref(extra);
	echo_request_id(req);
	bh_api_reply_json(req, rs_table[rs].http, body);
}

/* Errors the server raises itself on these routes (bad JSON, body limit, ...), as RJCT. */
static void reply_error(struct bh_request *req, unsigned int status, const char *code,
			const char *msg)
{
	(void)code;
	enum rs rs;
	switch (status) {
	case 400:
		rs = RS_INVALID_BODY;
		break;
	case 401:
		rs = RS_UNAUTHORIZED;
		break;
	case 403:
		rs = RS_CLIENT_MISMATCH;
		break;
	case 404:
		rs = RS_NO_RESOURCE;
		break;
	case 405:
		rs = RS_METHOD;
		break;
	case 413:
		rs = RS_TOO_LARGE;
		break;
	case 415:
		rs = RS_MEDIA_TYPE;
		break;
	case 409: /* the server raises 409 only for api.max_subscriptions */
		rs = RS_CONFIG_LIMIT;
		break;
	case 414:
		rs = RS_URI_TOO_LONG;
		break;
	case 429:
		rs = RS_RATE_LIMITED;
		break;
	case 431:
		rs = RS_HEADERS_TOO_LARGE;
		break;
	case 503:
		rs = RS_UNAVAILABLE;
		break;
	default:
		rs = RS_INTERNAL;
	}
	reply_status(req, rs, NULL, "%s", msg);
}

/* ---------------------------------------------------------------- checks */

static bool all_digits(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/*
 * The mandatory headers and the shape of each, without the database (so
 * tests/fuzz/fuzz_acquirer.c can run it on any headers): 0 with the
 * bearer token copied into token, or -1 with the reply set.
 */
static int parse_headers(struct bh_request *req, char token[TOKEN_MAX + 1])
{
	static const char *const mandatory[] = {"Authorization", "x-ibm-client-id", TPP_REQUEST_ID,
						"User-ID", "User-Organization-ID"};
	for (size_t i = 0; i < BH_ARRAY_LEN(mandatory); i++) {
		const char *v = bh_api_header(req, mandatory[i]);
		if (v == NULL || v[0] == '\0') {
			reply_status(req, i == 0 ? RS_UNAUTHORIZED : RS_MISSING_HEADER, NULL,
				     "%s: header is mandatory.", mandatory[i]);
			return -1;
		}
		if (i > 0 && (strlen(v) > HEADER_MAX || !printable(v, strlen(v)))) {
			reply_status(req, RS_INVALID_HEADER, NULL,
				     "%s: must be at most %d printable characters.", mandatory[i],
				     HEADER_MAX);
			return -1;
		}
	}
	if (!bh_is_uuid(bh_api_header(req, TPP_REQUEST_ID))) {
		reply_status(req, RS_INVALID_HEADER, NULL, "%s: must be a UUID.", TPP_REQUEST_ID);
		return -1;
	}
	const char *auth = bh_api_header(req, "Authorization");
	const char *t = auth + 7;
	size_t n = strncasecmp(auth, "Bearer ", 7) == 0 ? strlen(t) : 0;
	if (n == 0 || n > TOKEN_MAX) {
		reply_status(req, RS_UNAUTHORIZED, NULL,
			     "Authorization: must be \"Bearer <token>\".");
		return -1;
	}
	memcpy(token, t, n + 1);
	return 0;
}

/*
 * The mandatory headers, the token, and x-ibm-client-id against the
 * token's client. 0 with req->caller filled in, or -1 with the reply set.
 */
static int check_headers(struct bh_request *req)
{
	char token[TOKEN_MAX + 1];
	if (parse_headers(req, token) < 0)
		return -1;
	int rc = bh_identity_authenticate(bh_api_db(req), token, &req->caller);
	if (rc < 0) {
		bh_api_reply_db_error(req, "authenticate");
		return -1;
	}
	if (rc > 0) {
		reply_status(req, RS_UNAUTHORIZED, NULL, "Authorization: the token is not valid.");
		return -1;
	}
	if (strcmp(bh_api_header(req, "x-ibm-client-id"), req->caller.client_id) != 0) {
		reply_status(req, RS_CLIENT_MISMATCH, NULL,
			     "x-ibm-client-id: does not belong to the token's client.");
		return -1;
	}
	return bh_api_rate_limit(req, token);
}

static int check_version(struct bh_request *req)
{
	if (!bh_body_is_id(bh_api_param(req, "version"), VERSION_MAX)) {
		reply_status(req, RS_INVALID_PATH, NULL,
			     "version-id: must be 1 to %d characters of [A-Za-z0-9._-].",
			     VERSION_MAX);
		return -1;
	}
	return 0;
}

/*
 * A text member: 302 when required and absent, 303 when not a string, of
 * the wrong length, with control characters, or (digits) not all digits.
 * path is the member's name as the description shows it. 0 with *out
 * (borrowed; NULL when optional and absent), or -1 with the reply set.
 */
static int field_text(struct bh_request *req, json_t *obj, const char *path, const char *key,
		      size_t min, size_t max, bool digits, bool required, const char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		reply_status(req, RS_MISSING_FIELD, NULL, "%s%s: is mandatory.", path, key);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (!json_is_string(v) || n < min || n > max || !printable(s, n) ||
	    (digits && !all_digits(s, max))) {
		if (min == max)
			reply_status(req, RS_INVALID_FIELD, NULL,
				     "%s%s: must be a string of exactly %zu characters.", path, key,
				     max);
		else
			reply_status(req, RS_INVALID_FIELD, NULL,
				     "%s%s: must be a string of %zu to %zu %s.", path, key, min,
				     max, digits ? "digits" : "characters");
		return -1;
	}
	*out = s;
	return 0;
}

/* obj is an object with only the allowed members; 0, or -1 with the reply set. */
static int only_fields(struct bh_request *req, json_t *obj, const char *path,
		       const char *const *allowed, size_t n_allowed)
{
	const char *key;
	json_t *v;
	if (!json_is_object(obj)) {
		reply_status(req, path[0] ? RS_INVALID_FIELD : RS_INVALID_BODY, NULL,
			     "%s: must be a JSON object.", path[0] ? path : "body");
		return -1;
	}
	json_object_foreach (obj, key, v) {
		bool ok = false;
		for (size_t i = 0; i < n_allowed && !ok; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (!ok) {
			reply_status(req, RS_INVALID_FIELD, NULL, "%s%s%.64s: unknown field.", path,
				     path[0] ? "." : "", key);
			return -1;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- create / update */

/* A validated create or update request. Strings are borrowed from req. */
struct config_req {
	const char *acquirer, *merchant, *acceptor, *terminal;
	const char *code;
	bool del;
	bool methods[BH_ARRAY_LEN(payment_methods)]; /* by index in payment_methods */
	const char *url, *key, *email, *algorithm;
};

static int parse_methods(struct bh_request *req, json_t *body, struct config_req *c)
{
	static const char *const allowed[] = {"paymentMethodNotificationCode"};
	json_t *arr = json_object_get(body, "paymentMethods");
	char path[48];
	size_t i;
	json_t *m;
	if (arr == NULL || json_is_null(arr)) {
		reply_status(req, RS_MISSING_FIELD, NULL, "paymentMethods: is mandatory.");
		return -1;
	}
	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > METHODS_MAX) {
		reply_status(req, RS_INVALID_FIELD, NULL,
			     "paymentMethods: must be an array of 1 to %d payment methods.",
			     METHODS_MAX);
		return -1;
	}
	json_array_foreach (arr, i, m) {
		const char *code;
		snprintf(path, sizeof(path), "paymentMethods[%zu]", i);
		if (only_fields(req, m, path, allowed, BH_ARRAY_LEN(allowed)) < 0)
			return -1;
		strcat(path, ".");
		if (field_text(req, m, path, "paymentMethodNotificationCode", 1, METHOD_CODE_MAX,
			       false, true, &code) < 0)
			return -1;
		size_t k;
		for (k = 0; k < BH_ARRAY_LEN(payment_methods); k++)
			if (strcmp(code, payment_methods[k]) == 0)
				break;
		if (k == BH_ARRAY_LEN(payment_methods)) {
			reply_status(req, RS_INVALID_ENUM, NULL,
				     "%spaymentMethodNotificationCode: must be one of CARD, PYBL, "
				     "PLKV, BLIK, XPAY, BNPL, BNCT, IDEL.",
				     path);
			return -1;
		}
		c->methods[k] = true;
	}
	return 0;
}

static int parse_channel(struct bh_request *req, json_t *body, struct config_req *c)
{
	static const char *const channel_fields[] = {"notificationType", "value", "security"};
	static const char *const security_fields[] = {"key", "supportEmail", "algorithm"};
	static const char ch[] = "channelTypeNotification.";
	static const char sec[] = "channelTypeNotification.security.";
	const char *type;
	char msg[256];
	const struct bh_config *cfg = req->api->cfg;
	json_t *channel = json_object_get(body, "channelTypeNotification");
	if (channel == NULL || json_is_null(channel)) {
		reply_status(req, RS_MISSING_FIELD, NULL, "channelTypeNotification: is mandatory.");
		return -1;
	}
	if (only_fields(req, channel, "channelTypeNotification", channel_fields,
			BH_ARRAY_LEN(channel_fields)) < 0 ||
	    field_text(req, channel, ch, "notificationType", 1, NOTIFICATION_TYPE_MAX, false, true,
		       &type) < 0)
		return -1;
	if (strcmp(type, "URL") != 0) {
		reply_status(req, RS_INVALID_ENUM, NULL, "%snotificationType: must be URL.", ch);
		return -1;
	}
	if (field_text(req, channel, ch, "value", 1, BH_URL_MAX, false, true, &c->url) < 0)
		return -1;
	if (bh_url_check(c->url, cfg->delivery_allow_loopback, cfg->delivery_allow_private, msg,
			 sizeof(msg)) < 0) {
		reply_status(req, RS_INVALID_FIELD, NULL, "%svalue: %s", ch, msg);
		return -1;
	}
	/* Conditional in the seed: present when notificationType is URL, the only type. */
	json_t *security = json_object_get(channel, "security");
	if (security == NULL || json_is_null(security)) {
		reply_status(req, RS_MISSING_FIELD, NULL,
			     "%ssecurity: is mandatory when notificationType is URL.", ch);
		return -1;
	}
	if (only_fields(req, security, "channelTypeNotification.security", security_fields,
			BH_ARRAY_LEN(security_fields)) < 0 ||
	    field_text(req, security, sec, "key", BH_ACQUIRER_KEY_LEN, BH_ACQUIRER_KEY_LEN, false,
		       true, &c->key) < 0 ||
	    field_text(req, security, sec, "supportEmail", 3, EMAIL_MAX, false, true, &c->email) <
		    0 ||
	    field_text(req, security, sec, "algorithm", 1, ALGORITHM_MAX, false, true,
		       &c->algorithm) < 0)
		return -1;
	/* The key is used as 32 raw bytes: ASCII only, so characters are bytes. */
	for (const char *p = c->key; *p != '\0'; p++)
		if ((unsigned char)*p > 0x7e || *p == ' ') {
			reply_status(req, RS_INVALID_FIELD, NULL,
				     "%skey: must be 32 printable ASCII characters without spaces.",
				     sec);
			return -1;
		}
	const char *at = strchr(c->email, '@');
	if (at == NULL || at == c->email || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    strpbrk(c->email, " \t") != NULL) {
		reply_status(req, RS_INVALID_FIELD, NULL,
			     "%ssupportEmail: must be an email address.", sec);
		return -1;
	}
	if (strcmp(c->algorithm, BH_ACQUIRER_ALGORITHM) != 0) {
		reply_status(req, RS_INVALID_ENUM, NULL, "%salgorithm: must be %s.", sec,
			     BH_ACQUIRER_ALGORITHM);
		return -1;
	}
	return 0;
}

/* Path, query and body of a create or update, as the seed's tables; 0 or -1 with the reply set. */
static int parse_config_req(struct bh_request *req, struct config_req *c)
{
	static const char *const fields[] = {"notificationConfigurationCode",
					     "requestOperationType", "paymentMethods",
					     "channelTypeNotification"};
	const char *op;
	memset(c, 0, sizeof(*c));
	c->acquirer = bh_api_param(req, "acquirer_id");
	c->merchant = bh_api_param(req, "merchant_id");
	c->acceptor = bh_api_query(req, "acceptorId");
	c->terminal = bh_api_query(req, "terminalId");
	if (check_version(req) < 0)
		return -1;
	if (!all_digits(c->acquirer, ACQUIRER_ID_MAX)) {
		reply_status(req, RS_INVALID_PATH, NULL, "acquirer-id: must be 1 to %d digits.",
			     ACQUIRER_ID_MAX);
		return -1;
	}
	if (!all_digits(c->merchant, MERCHANT_ID_MAX)) {
		reply_status(req, RS_INVALID_PATH, NULL, "merchant-id: must be 1 to %d digits.",
			     MERCHANT_ID_MAX);
		return -1;
	}
	if (c->acceptor != NULL && !all_digits(c->acceptor, ACCEPTOR_ID_MAX)) {
		reply_status(req, RS_INVALID_QUERY, NULL, "acceptorId: must be 1 to %d digits.",
			     ACCEPTOR_ID_MAX);
		return -1;
	}
	if (c->terminal != NULL && !all_digits(c->terminal, TERMINAL_ID_MAX)) {
		reply_status(req, RS_INVALID_QUERY, NULL, "terminalId: must be 1 to %d digits.",
			     TERMINAL_ID_MAX);
		return -1;
	}
	if (req->body == NULL) {
		reply_status(req, RS_INVALID_BODY, NULL, "body: a JSON object is required.");
		return -1;
	}
	if (only_fields(req, req->body, "", fields, BH_ARRAY_LEN(fields)) < 0 ||
	    field_text(req, req->body, "", "notificationConfigurationCode", 1, CODE_MAX, false,
		       true, &c->code) < 0 ||
	    field_text(req, req->body, "", "requestOperationType", 1, 3, false, true, &op) < 0)
		return -1;
	if (strcmp(op, "INS") != 0 && strcmp(op, "DEL") != 0) {
		reply_status(req, RS_INVALID_ENUM, NULL,
			     "requestOperationType: must be INS or DEL.");
		return -1;
	}
	c->del = strcmp(op, "DEL") == 0;
	if (parse_methods(req, req->body, c) < 0 || parse_channel(req, req->body, c) < 0)
		return -1;
	return 0;
}

/* The stored paymentMethods, in enum order, from the flags. */
static json_t *methods_json(const bool *flags)
{
	json_t *arr = json_array();
	for (size_t k = 0; k < BH_ARRAY_LEN(payment_methods); k++)
		if (flags[k])
			json_array_append_new(arr, json_string(payment_methods[k]));
	return arr;
}

/* The flags of a stored paymentMethods array. */
static void methods_flags(json_t *arr, bool *flags)
{
	size_t i;
	json_t *m;
	memset(flags, 0, sizeof(bool) * BH_ARRAY_LEN(payment_methods));
	json_array_foreach (arr, i, m)
		for (size_t k = 0; k < BH_ARRAY_LEN(payment_methods); k++)
			if (json_is_string(m) &&
			    strcmp(json_string_value(m), payment_methods[k]) == 0)
				flags[k] = true;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The options of a configuration: its binding, methods and channel. */
static json_t *config_options(const struct config_req *c, const bool *methods)
{
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:s,s:{s:s,s:s,s:s}}",
			 "notificationConfigurationCode", c->code, "acquirerId", c->acquirer,
			 "merchantId", c->merchant, "acceptorId", str_or_null(c->acceptor),
			 "terminalId", str_or_null(c->terminal), "paymentMethods",
			 methods_json(methods), "notificationType", "URL", "security", "key",
			 c->key, "supportEmail", c->email, "algorithm", c->algorithm);
}

static bool same_id(json_t *stored, const char *given)
{
	const char *s = json_string_value(stored);
	return s == NULL ? given == NULL : given != NULL && strcmp(s, given) == 0;
}

/* The stored configuration is bound to the path and query of this request. */
static bool same_binding(json_t *options, const struct config_req *c)
{
	return same_id(json_object_get(options, "acquirerId"), c->acquirer) &&
	       same_id(json_object_get(options, "merchantId"), c->merchant) &&
	       same_id(json_object_get(options, "acceptorId"), c->acceptor) &&
	       same_id(json_object_get(options, "terminalId"), c->terminal);
}

/*
 * The caller's configuration with this code: 0 with *id and *options_text
 * (malloc'ed), BH_SUB_NOT_FOUND, or -1 on a database error.
 */
static int find_config(struct bh_request *req, const char *code, char **id, char **options_text)
{
	const char *params[] = {req->caller.client_id, code};
	*id = *options_text = NULL;
	PGresult *res = bh_db_query(bh_api_db(req),
				    "SELECT s.id, s.options::text FROM subscriptions s"
				    " WHERE s.kind = 'acquirer' AND s.client_id = $1"
				    " AND s.options->>'notificationConfigurationCode' = $2",
				    2, params);
	if (res == NULL)
		return -1;
	int rc = BH_SUB_NOT_FOUND;
	if (PQntuples(res) == 1) {
		*id = bh_xstrdup(PQgetvalue(res, 0, 0));
		*options_text = bh_xstrdup(PQgetvalue(res, 0, 1));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/*
 * Creates the configuration; 0, 1 when another request created it first,
 * BH_SUB_LIMIT when the client has api.max_subscriptions already, -1 on error.
 */
static int insert_config(struct bh_request *req, const struct config_req *c)
{
	json_t *types = json_pack("[s]", "payment.updated");
	json_t *options = config_options(c, c->methods);
	char *description = bh_xasprintf("Acquirer notification configuration %s", c->code);
	struct bh_sub_new n = {
		.client_id = req->caller.client_id,
		.kind = "acquirer",
		.url = c->url,
		.description = description,
		.event_types = types,
		.http_method = "POST",
		.options = options,
		.enabled = true,
		.created_by_user_id = req->caller.user_id,
	};
	json_t *row;
	int rc = bh_sub_insert_capped(bh_api_db(req), &n, req->api->cfg->api_max_subscriptions,
				      &row);
	if (rc < 0)
		rc = strcmp(bh_db_sqlstate(req->db), "23505") == 0 ? 1 : -1;
	else if (rc == 0) {
		struct bh_log_ctx ctx = {.subscription =
						 json_string_value(json_object_get(row, "id"))};
		bh_info_ctx(&ctx, "created acquirer configuration %s for %s/%s", c->code,
			    c->acquirer, c->merchant);
	}
	json_decref(row);
	json_decref(types);
	json_decref(options);
	free(description);
	return rc;
}

/*
 * Replaces the configuration's url and options (or deletes it when
 * new_options is NULL) if its options are still old_text. 0 when done,
 * 1 when it changed in between, -1 on error.
 */
static int swap_config(struct bh_request *req, const char *id, const char *old_text,
		       const char *url, json_t *new_options)
{
	PGresult *res;
	if (new_options == NULL) {
		const char *params[] = {id, old_text};
		res = bh_db_query(bh_api_db(req),
				  "DELETE FROM subscriptions WHERE id = $1 AND options = $2::jsonb",
				  2, params);
	} else {
		char *text = json_dumps(new_options, JSON_COMPACT);
		const char *params[] = {id, old_text, url, text};
		res = bh_db_query(
			bh_api_db(req),
			"UPDATE subscriptions SET url = COALESCE($3, url), options = $4::jsonb,"
			" updated_at = now() WHERE id = $1 AND options = $2::jsonb",
			4, params);
		free(text);
	}
	if (res == NULL)
		return -1;
	int rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : 1;
	PQclear(res);
	return rc;
}

/* "CARD, BLIK" */
static void methods_text(const bool *flags, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t k = 0; k < BH_ARRAY_LEN(payment_methods); k++)
		if (flags[k])
			snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? ", " : "",
				 payment_methods[k]);
}

/*
 * POST and PUT .../acquirers/{acquirer-id}/merchants/{merchant-id}/terminal/webhook
 * INS adds the payment methods (creating the configuration if needed) and
 * sets the channel; DEL removes them, and the configuration with its last.
 * Both go through a compare-and-swap on the stored options, so concurrent
 * calls on one configuration never lose each other's methods.
 */
static void put_config(struct bh_request *req)
{
	struct config_req c;
	char *id = NULL, *old_text = NULL;
	json_t *old = NULL, *updated = NULL;
	char list[64];

	if (check_headers(req) < 0 || parse_config_req(req, &c) < 0)
		goto out;
	/*
	 * INS needs a data grant of the acquirer (or this merchant): events
	 * carry no owner, and the configuration would receive the merchant's
	 * payments. DEL only removes, so it is not checked.
	 */
	if (!c.del) {
		int granted = bh_api_grants_cover_merchant(req, c.acquirer, c.merchant);
		if (granted < 0) {
			bh_api_reply_db_error(req, "look up grants");
			goto out;
		}
		if (granted == 0) {
			reply_status(
				req, RS_NOT_ENTITLED, NULL,
				"merchant-id: no data grant of this client covers acquirer %s, "
				"merchant %s.",
				c.acquirer, c.merchant);
			goto out;
		}
	}
	for (int i = 0; i < CAS_TRIES; i++) {
		free(id);
		free(old_text);
		json_decref(old);
		json_decref(updated);
		updated = old = NULL;
		int rc = find_config(req, c.code, &id, &old_text);
		if (rc < 0) {
			bh_api_reply_db_error(req, "look up acquirer configuration");
			goto out;
		}
		if (rc == BH_SUB_NOT_FOUND && c.del) {
			reply_status(req, RS_CONFIG_NOT_FOUND, NULL,
				     "notificationConfigurationCode: no configuration %s.", c.code);
			goto out;
		}
		if (rc == BH_SUB_NOT_FOUND) {
			rc = insert_config(req, &c);
			if (rc < 0) {
				bh_api_reply_db_error(req, "create acquirer configuration");
				goto out;
			}
			if (rc == BH_SUB_LIMIT) {
				bh_api_reply_subscription_limit(req);
				goto out;
			}
			if (rc > 0)
				continue; /* created concurrently: update it instead */
			methods_text(c.methods, list, sizeof(list));
			reply_status(req, RS_OK, NULL, "Configuration %s created with %s.", c.code,
				     list);
			goto out;
		}
		old = json_loads(old_text, 0, NULL);
		if (old == NULL) {
			reply_status(req, RS_INTERNAL, NULL,
				     "The stored configuration is unreadable.");
			goto out;
		}
		if (!same_binding(old, &c)) {
			reply_status(req, c.del ? RS_CONFIG_NOT_FOUND : RS_CONFIG_CONFLICT, NULL,
				     "notificationConfigurationCode: %s belongs to another "
				     "acquirer, merchant, acceptor or terminal.",
				     c.code);
			goto out;
		}
		bool methods[BH_ARRAY_LEN(payment_methods)];
		bool any = false;
		methods_flags(json_object_get(old, "paymentMethods"), methods);
		for (size_t k = 0; k < BH_ARRAY_LEN(payment_methods); k++) {
			if (c.methods[k])
				methods[k] = !c.del;
			any = any || methods[k];
		}
		/* DEL keeps the stored channel: only INS sets it. */
		const char *url = c.url;
		if (c.del) {
			updated = json_deep_copy(old);
			json_object_set_new(updated, "paymentMethods", methods_json(methods));
			url = NULL;
		} else {
			updated = config_options(&c, methods);
		}
		rc = swap_config(req, id, old_text, url, any ? updated : NULL);
		if (rc < 0) {
			bh_api_reply_db_error(req, "update acquirer configuration");
			goto out;
		}
		if (rc > 0)
			continue;
		struct bh_log_ctx ctx = {.subscription = id};
		methods_text(methods, list, sizeof(list));
		if (!any) {
			bh_info_ctx(&ctx, "deleted acquirer configuration %s", c.code);
			reply_status(req, RS_OK, NULL,
				     "Configuration %s deleted with its last payment method.",
				     c.code);
		} else {
			bh_info_ctx(&ctx, "acquirer configuration %s now has %s", c.code, list);
			reply_status(req, RS_OK, NULL, "Configuration %s now has %s.", c.code,
				     list);
		}
		goto out;
	}
	reply_status(req, RS_UNAVAILABLE, NULL,
		     "notificationConfigurationCode: %s is being changed concurrently; try again.",
		     c.code);
out:
	free(id);
	free(old_text);
	json_decref(old);
	json_decref(updated);
}

/* ---------------------------------------------------------------- list */

/* A configuration as the seed's list shows it (plus its binding). */
static json_t *webhook_json(json_t *o)
{
	json_t *methods = json_array();
	json_t *security = json_object_get(o, "security");
	size_t i;
	json_t *m;
	json_array_foreach (json_object_get(o, "paymentMethods"), i, m)
		json_array_append_new(methods,
				      json_pack("{s:O}", "paymentMethodNotificationCode", m));
	return json_pack(
		"{s:O,s:O,s:O,s:O,s:O,s:o,s:{s:s,s:s,s:O}}", "notificationConfigurationCode",
		json_object_get(o, "notificationConfigurationCode"), "acquirerId",
		json_object_get(o, "acquirerId"), "merchantId", json_object_get(o, "merchantId"),
		"acceptorId", json_object_get(o, "acceptorId"), "terminalId",
		json_object_get(o, "terminalId"), "paymentMethods", methods,
		"channelTypeNotification", "notificationType", "URL", "value",
		json_string_value(json_object_get(o, "url")), "security", security);
}

/* A list request's binding, borrowed from req->body (acceptor, terminal NULL: any). */
struct list_req {
	const char *acquirer, *merchant, *acceptor, *terminal;
};

/* Path and body of a list; 0, or -1 with the reply set. */
static int parse_list_req(struct bh_request *req, struct list_req *l)
{
	static const char *const fields[] = {"acquirerId", "merchantId", "acceptorId",
					     "terminalId"};
	if (check_version(req) < 0)
		return -1;
	if (req->body == NULL) {
		reply_status(req, RS_INVALID_BODY, NULL, "body: a JSON object is required.");
		return -1;
	}
	if (only_fields(req, req->body, "", fields, BH_ARRAY_LEN(fields)) < 0 ||
	    field_text(req, req->body, "", "acquirerId", 1, ACQUIRER_ID_MAX, true, true,
		       &l->acquirer) < 0 ||
	    field_text(req, req->body, "", "merchantId", 1, MERCHANT_ID_MAX, true, true,
		       &l->merchant) < 0 ||
	    field_text(req, req->body, "", "acceptorId", 1, ACCEPTOR_ID_MAX, true, false,
		       &l->acceptor) < 0 ||
	    field_text(req, req->body, "", "terminalId", 1, TERMINAL_ID_MAX, true, false,
		       &l->terminal) < 0)
		return -1;
	return 0;
}

/* POST /acquirer/{version-id}/webhooks {acquirerId, merchantId, acceptorId, terminalId} */
static void list_configs(struct bh_request *req)
{
	struct list_req l;
	char limit[16];
	PGresult *res = NULL;

	if (check_headers(req) < 0 || parse_list_req(req, &l) < 0)
		goto out;
	snprintf(limit, sizeof(limit), "%d", LIST_MAX);
	const char *params[] = {
		req->caller.client_id, l.acquirer, l.merchant, l.acceptor, l.terminal, limit};
	res = bh_db_query(bh_api_db(req),
			  "SELECT s.url, s.options::text FROM subscriptions s"
			  " WHERE s.kind = 'acquirer' AND s.client_id = $1"
			  " AND s.options->>'acquirerId' = $2 AND s.options->>'merchantId' = $3"
			  " AND ($4::text IS NULL OR s.options->>'acceptorId' = $4)"
			  " AND ($5::text IS NULL OR s.options->>'terminalId' = $5)"
			  " ORDER BY s.seq LIMIT $6::int",
			  (int)BH_ARRAY_LEN(params), params);
	if (res == NULL) {
		bh_api_reply_db_error(req, "list acquirer configurations");
		goto out;
	}
	json_t *hooks = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *o = json_loads(PQgetvalue(res, i, 1), 0, NULL);
		if (o == NULL)
			continue;
		json_object_set_new(o, "url", json_string(PQgetvalue(res, i, 0)));
		json_t *w = webhook_json(o);
		if (w != NULL)
			json_array_append_new(hooks, w);
		json_decref(o);
	}
	/* The key is shown: the list is scoped to its owner, the token's client. */
	reply_status(req, RS_OK, json_pack("{s:o}", "webhooks", hooks), "%d configuration(s).",
		     PQntuples(res));
out:
	PQclear(res);
}

/* ---------------------------------------------------------------- routes */

#define CONFIG_PATH \
	"/acquirer/{version}/acquirers/{acquirer_id}/merchants/{merchant_id}/terminal/webhook"

/* Authentication is the handlers' own: the mandatory headers come first. */
const struct bh_route bh_routes_acquirer[] = {
	{.method = "POST",
	 .pattern = CONFIG_PATH,
	 .handler = put_config,
	 .reply_error = reply_error},
	{.method = "PUT",
	 .pattern = CONFIG_PATH,
	 .handler = put_config,
	 .reply_error = reply_error},
	{.method = "POST",
	 .pattern = "/acquirer/{version}/webhooks",
	 .handler = list_configs,
	 .reply_error = reply_error},
	{.method = NULL},
};
