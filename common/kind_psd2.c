/*
 * PSD2 application webhooks: the "psd2" kind and the dialect's pure rules
 * (activation hour, endpoint and header checks, payloads, the account
 * diff of a refresh). No I/O here: the unit tests call all of it.
 */
#include "kind_psd2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define HOUR_MS INT64_C(3600000)

/* Deliveries of this kind are created for it; no incoming event matches. */
static bool psd2_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	(void)sub;
	(void)ev;
	return false;
}

/* The notification's data is the body, exactly as the seed shows it. */
static int psd2_render(const struct bh_sub *sub, const struct bh_event *ev, struct bh_rendered *out,
		       char *errbuf, size_t errlen)
{
	(void)sub;
	memset(out, 0, sizeof(*out));
	if (ev->type != BH_EVENT_TPP_NOTIFICATION) {
		snprintf(errbuf, errlen, "render: event %s is not an application notification",
			 ev->id);
		return -1;
	}
	return bh_rendered_set_json(out, ev->data, ev, errbuf, errlen);
}

const struct bh_kind_ops bh_kind_psd2 = {
	.name = BH_PSD2_KIND,
	.match = psd2_match,
	.render = psd2_render,
};

int64_t bh_psd2_activation_ms(int64_t now_ms)
{
	/* Floor division, so an instant before 1970 still rounds up to an hour. */
	int64_t hours = now_ms / HOUR_MS;
	if (now_ms % HOUR_MS < 0)
		hours--;
	return (hours + 1) * HOUR_MS;
}

int bh_psd2_check_endpoint(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
			   size_t errlen)
{
	if (strpbrk(url, "?#") != NULL) {
		snprintf(errbuf, errlen, "must be a URL without parameters (no '?' or '#')");
		return -1;
	}
	return bh_url_check(url, allow_loopback, allow_private, errbuf, errlen);
}

bool bh_psd2_header_valid(const char *h)
{
	size_t n = strlen(h);
	if (n > BH_PSD2_HEADER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		bool ok = c == ' ' || c == '=' || c == '+' || c == '/' || (c >= 'a' && c <= 'z') ||
			  (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

json_t *bh_psd2_transaction_event(const char *consent_id, const char *const *account_ids, int n)
{
	json_t *accounts = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(accounts, json_pack("{s:s}", "accountId", account_ids[i]));
	return json_pack("{s:s, s:s, s:s, s:o}", "type", "transactionEvent", "consentId",
			 consent_id, "eventType", "NEW", "accounts", accounts);
}

json_t *bh_psd2_account_event(const char *consent_id, const char *task_id, const char *status,
			      const char *bank_code, const char *bank_name, json_t *accounts)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "type", "accountEvent", "consentId",
			 consent_id, "taskId", task_id, "taskStatus", status, "bankCode", bank_code,
			 "bankName", bank_name, "accounts", accounts ? accounts : json_array());
}

json_t *bh_psd2_event_json(const char *event_id, int64_t now_ms, json_t *payload)
{
	char when[32];
	bh_format_time(now_ms, when);
	const char *consent = json_string_value(json_object_get(payload, "consentId"));
	return json_pack("{s:s, s:s, s:s, s:[s], s:o}", "id", event_id, "type",
			 BH_EVENT_TPP_NOTIFICATION_NAME, "occurred_at", when, "consent_ids",
			 consent ? consent : "", "data", payload);
}

/* A string member of 1..max characters, or -1 with the reason. */
static int member_string(json_t *o, size_t i, const char *key, size_t max, const char **out,
			 char *errbuf, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(errbuf, errlen,
			 "accounts[%zu].%s: must be a string of 1 to %zu characters", i, key, max);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int bh_psd2_parse_accounts(const char *body, size_t len, json_t **out, char *errbuf, size_t errlen)
{
	int rc = -1;
	json_error_t jerr;
	json_t *result = json_object();
	json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	*out = NULL;
	if (doc == NULL) {
		snprintf(errbuf, errlen, "body: not valid JSON: %s", jerr.text);
		goto out;
	}
	json_t *accounts = json_object_get(doc, "accounts");
	if (!json_is_array(accounts)) {
		snprintf(errbuf, errlen, "accounts: must be an array");
		goto out;
	}
	if (json_array_size(accounts) > BH_PSD2_ACCOUNTS_MAX) {
		snprintf(errbuf, errlen, "accounts: more than %d", BH_PSD2_ACCOUNTS_MAX);
		goto out;
	}
	size_t i;
	json_t *a;
	json_array_foreach (accounts, i, a) {
		const char *id, *currency;
		char *balance;
		if (!json_is_object(a)) {
			snprintf(errbuf, errlen, "accounts[%zu]: must be an object", i);
			goto out;
		}
		if (member_string(a, i, "accountId", BH_PSD2_ACCOUNT_ID_MAX, &id, errbuf, errlen) <
			    0 ||
		    member_string(a, i, "currency", 16, &currency, errbuf, errlen) < 0)
			goto out;
		json_t *b = json_object_get(a, "balance");
		if (json_is_string(b) && bh_is_decimal(json_string_value(b)))
			balance = bh_xstrdup(json_string_value(b));
		else if (json_is_number(b))
			balance = json_dumps(b, JSON_ENCODE_ANY);
		else {
			snprintf(errbuf, errlen, "accounts[%zu].balance: must be a decimal", i);
			goto out;
		}
		if (json_object_get(result, id) != NULL) {
			free(balance);
			snprintf(errbuf, errlen, "accounts[%zu].accountId: \"%s\" appears twice", i,
				 id);
			goto out;
		}
		json_object_set_new(
			result, id,
			json_pack("{s:s, s:s}", "balance", balance, "currency", currency));
		free(balance);
	}
	*out = result;
	result = NULL;
	rc = 0;
out:
	json_decref(doc);
	json_decref(result);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool same_member(json_t *a, json_t *b, const char *key)
{
	const char *x = json_string_value(json_object_get(a, key));
	const char *y = json_string_value(json_object_get(b, key));
	return x && y && strcmp(x, y) == 0;
}

json_t *bh_psd2_diff(json_t *previous, json_t *current)
{
	size_t n = json_object_size(previous) + json_object_size(current), k = 0;
	const char **ids = bh_xmalloc((n ? n : 1) * sizeof(*ids));
	const char *id;
	json_t *v;
	json_object_foreach (current, id, v)
		ids[k++] = id;
	json_object_foreach (previous, id, v)
		if (json_object_get(current, id) == NULL)
			ids[k++] = id;
	qsort(ids, k, sizeof(*ids), cmp_str);
	json_t *out = json_array();
	for (size_t i = 0; i < k; i++) {
		json_t *was = json_object_get(previous, ids[i]);
		json_t *now = json_object_get(current, ids[i]);
		const char *type = NULL;
		if (was == NULL)
			type = "ADDED";
		else if (now == NULL)
			type = "DELETED";
		else if (!same_member(was, now, "balance") || !same_member(was, now, "currency"))
			type = "UPDATED";
		if (type != NULL)
			json_array_append_new(out, json_pack("{s:s, s:s}", "accountId", ids[i],
							     "eventType", type));
	}
	free(ids);
	return out;
}
