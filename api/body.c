#include "body.h"

#include <string.h>

static bool allowed_has(const char *const *allowed, const char *key)
{
	for (; *allowed != NULL; allowed++)
		if (strcmp(*allowed, key) == 0)
			return true;
	return false;
}

int bh_body_only_fields(struct bh_request *req, json_t *obj, const char *prefix,
			const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach (obj, key, v) {
		if (!allowed_has(allowed, key)) {
			/* Keys are capped at 100 bytes so a huge key cannot bloat the reply. */
			bh_api_reply_error(req, 400, "invalid_field", "%s%.100s: unknown field",
					   prefix, key);
			return -1;
		}
	}
	return 0;
}

json_t *bh_body_object(struct bh_request *req, const char *const *allowed, bool required)
{
	if (req->body == NULL) {
		if (required) {
			bh_api_reply_error(req, 400, "invalid_body",
					   "body: a JSON object is required");
			return NULL;
		}
		req->body = json_object(); /* freed with the request */
	}
	if (!json_is_object(req->body)) {
		bh_api_reply_error(req, 400, "invalid_body", "body: must be a JSON object");
		return NULL;
	}
	if (bh_body_only_fields(req, req->body, "", allowed) < 0)
		return NULL;
	return req->body;
}

int bh_body_string(struct bh_request *req, json_t *obj, const char *prefix, const char *key,
		   size_t min, size_t max, bool required, const char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		bh_api_reply_error(req, 400, "invalid_field", "%s%s: required", prefix, key);
		return -1;
	}
	if (!json_is_string(v)) {
		bh_api_reply_error(req, 400, "invalid_field", "%s%s: must be a string", prefix,
				   key);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n < min || n > max) {
		bh_api_reply_error(req, 400, "invalid_field", "%s%s: must be %zu to %zu characters",
				   prefix, key, min, max);
		return -1;
	}
	/* JSON allows \u0000 and control characters; C strings and headers do not. */
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			bh_api_reply_error(req, 400, "invalid_field",
					   "%s%s: must not contain control characters", prefix,
					   key);
			return -1;
		}
	}
	*out = s;
	return 0;
}

int bh_body_bool(struct bh_request *req, json_t *obj, const char *key, bool *present, bool *out)
{
	json_t *v = json_object_get(obj, key);
	*present = v != NULL;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		bh_api_reply_error(req, 400, "invalid_field", "%s: must be a boolean", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

bool bh_body_is_id(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}
