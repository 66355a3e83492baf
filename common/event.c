#include "event.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[] = {
	[BH_EVENT_TRANSACTION_CREATED] = "transaction.created",
	[BH_EVENT_BALANCE_CHANGED] = "balance.changed",
	[BH_EVENT_PAYMENT_UPDATED] = "payment.updated",
	[BH_EVENT_TPP_NOTIFICATION] = BH_EVENT_TPP_NOTIFICATION_NAME,
};

bool bh_event_type_internal(enum bh_event_type type)
{
	return type == BH_EVENT_TPP_NOTIFICATION;
}

static const char *const payment_methods[] = {"CARD", "PYBL", "PLKV", "BLIK",
					      "XPAY", "BNPL", "BNCT", "IDEL"};

bool bh_is_decimal(const char *s)
{
	if (s == NULL)
		return false;
	if (*s == '-')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

bool bh_event_amount_ok(const char *s)
{
	if (!bh_is_decimal(s))
		return false;
	s += *s == '-';
	size_t whole = strspn(s, "0123456789");
	size_t frac = s[whole] == '.' ? strlen(s + whole + 1) : 0;
	return whole <= BH_AMOUNT_INT_DIGITS_MAX && frac <= BH_AMOUNT_FRAC_DIGITS_MAX;
}

/*
 * Every string below v is free of NUL, which PostgreSQL's text and jsonb
 * refuse (jansson keeps them when the parser allowed \u0000), every real
 * number is below BH_EVENT_REAL_MAX in magnitude, and v nests at most
 * depth more levels. 0, or -1 with the path in errbuf.
 */
static int check_storable(json_t *v, const char *path, int depth, char *errbuf, size_t errlen)
{
	const char *key;
	json_t *m;
	size_t i;
	if (json_is_string(v)) {
		if (strlen(json_string_value(v)) != json_string_length(v)) {
			snprintf(errbuf, errlen, "%.200s: must not contain NUL characters", path);
			return -1;
		}
		return 0;
	}
	/*
	 * jsonb keeps a number exactly and gives it back in plain notation:
	 * 1e300 would come back as a 301-digit integer that jansson refuses,
	 * leaving the stored event unreadable.
	 */
	if (json_is_real(v) && !(fabs(json_real_value(v)) < BH_EVENT_REAL_MAX)) {
		snprintf(errbuf, errlen, "%.200s: numbers must be below 1e15 in magnitude", path);
		return -1;
	}
	if (!json_is_object(v) && !json_is_array(v))
		return 0;
	if (depth == 0) {
		snprintf(errbuf, errlen, "%.200s: nested deeper than %d levels", path,
			 BH_EVENT_DEPTH_MAX);
		return -1;
	}
	char sub[256];
	if (json_is_array(v)) {
		json_array_foreach (v, i, m) {
			snprintf(sub, sizeof(sub), "%.200s[%zu]", path, i);
			if (check_storable(m, sub, depth - 1, errbuf, errlen) < 0)
				return -1;
		}
		return 0;
	}
	json_object_foreach (v, key, m) {
		snprintf(sub, sizeof(sub), "%.200s.%.40s", path, key);
		if (check_storable(m, sub, depth - 1, errbuf, errlen) < 0)
			return -1;
	}
	return 0;
}

/* A required (or optional) string member of 1..max printable characters. */
static int check_string(json_t *obj, const char *prefix, const char *key, size_t max, bool required,
			const char **out, char *errbuf, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v)) {
		if (required) {
			snprintf(errbuf, errlen, "%s%s: required", prefix, key);
			return -1;
		}
		if (out)
			*out = NULL;
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(errbuf, errlen, "%s%s: must be a string", prefix, key);
		return -1;
	}
	size_t n = json_string_length(v);
	if (n == 0 || n > max) {
		snprintf(errbuf, errlen, "%s%s: must be 1 to %zu characters", prefix, key, max);
		return -1;
	}
	if (out)
		*out = json_string_value(v);
	return 0;
}

static int check_decimal(json_t *data, const char *key, bool required, char *errbuf, size_t errlen)
{
	const char *s;
	if (check_string(data, "data.", key, 64, required, &s, errbuf, errlen) < 0)
		return -1;
	if (s && !bh_is_decimal(s)) {
		snprintf(errbuf, errlen, "data.%s: must be a decimal string such as \"100.00\"",
			 key);
		return -1;
	}
	if (s && !bh_event_amount_ok(s)) {
		snprintf(errbuf, errlen,
			 "data.%s: at most %d integer and %d fraction digits are supported", key,
			 BH_AMOUNT_INT_DIGITS_MAX, BH_AMOUNT_FRAC_DIGITS_MAX);
		return -1;
	}
	return 0;
}

static int check_currency(json_t *data, char *errbuf, size_t errlen)
{
	const char *c;
	if (check_string(data, "data.", "currency", 3, true, &c, errbuf, errlen) < 0)
		return -1;
	if (strlen(c) != 3 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
	    !isupper((unsigned char)c[2])) {
		snprintf(errbuf, errlen, "data.currency: must be an ISO 4217 code such as \"EUR\"");
		return -1;
	}
	return 0;
}

static int check_data(enum bh_event_type type, json_t *data, char *errbuf, size_t errlen)
{
	const char *s;
	switch (type) {
	case BH_EVENT_TRANSACTION_CREATED:
		if (check_string(data, "data.", "transaction_id", 200, true, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "dc", 6, true, &s, errbuf, errlen) < 0)
			return -1;
		if (strcmp(s, "credit") != 0 && strcmp(s, "debit") != 0) {
			snprintf(errbuf, errlen, "data.dc: must be \"credit\" or \"debit\"");
			return -1;
		}
		if (check_decimal(data, "amount", true, errbuf, errlen) < 0 ||
		    check_decimal(data, "balance", false, errbuf, errlen) < 0 ||
		    check_currency(data, errbuf, errlen) < 0)
			return -1;
		json_t *rel = json_object_get(data, "related_entities");
		if (rel && !json_is_array(rel)) {
			snprintf(errbuf, errlen, "data.related_entities: must be an array");
			return -1;
		}
		json_t *cp = json_object_get(data, "counterparty");
		if (cp && !json_is_object(cp)) {
			snprintf(errbuf, errlen, "data.counterparty: must be an object");
			return -1;
		}
		return 0;
	case BH_EVENT_BALANCE_CHANGED:
		if (check_decimal(data, "balance", true, errbuf, errlen) < 0 ||
		    check_decimal(data, "previous_balance", false, errbuf, errlen) < 0 ||
		    check_currency(data, errbuf, errlen) < 0)
			return -1;
		return 0;
	case BH_EVENT_PAYMENT_UPDATED:
		if (check_string(data, "data.", "acquirer_id", 25, true, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "merchant_id", 10, true, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "acceptor_id", 64, false, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "terminal_id", 64, false, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "payment_id", 200, true, NULL, errbuf, errlen) <
			    0 ||
		    check_string(data, "data.", "status", 64, true, NULL, errbuf, errlen) < 0 ||
		    check_string(data, "data.", "payment_method", 4, true, &s, errbuf, errlen) < 0)
			return -1;
		bool known = false;
		for (size_t i = 0; i < BH_ARRAY_LEN(payment_methods); i++)
			known = known || strcmp(s, payment_methods[i]) == 0;
		if (!known) {
			snprintf(
				errbuf, errlen,
				"data.payment_method: must be one of CARD, PYBL, PLKV, BLIK, XPAY, BNPL, BNCT, IDEL");
			return -1;
		}
		if (check_decimal(data, "amount", true, errbuf, errlen) < 0 ||
		    check_currency(data, errbuf, errlen) < 0)
			return -1;
		return 0;
	case BH_EVENT_TPP_NOTIFICATION:
		if (check_string(data, "data.", "type", 64, true, NULL, errbuf, errlen) < 0 ||
		    check_string(data, "data.", "consentId", 200, true, NULL, errbuf, errlen) < 0)
			return -1;
		return 0;
	}
	return -1;
}

int bh_event_from_json(json_t *obj, const char *fallback_id, struct bh_event *ev, char *errbuf,
		       size_t errlen)
{
	memset(ev, 0, sizeof(*ev));
	if (!json_is_object(obj)) {
		snprintf(errbuf, errlen, "event: must be a JSON object");
		return -1;
	}
	int rc = -1;
	/* Work on a copy so the normalized event owns its strings. */
	json_t *e = json_deep_copy(obj);
	const char *s;

	json_t *id = json_object_get(e, "id");
	if (id == NULL || json_is_null(id)) {
		if (fallback_id == NULL) {
			snprintf(errbuf, errlen, "id: required");
			goto fail;
		}
		json_object_set_new(e, "id", json_string(fallback_id));
	}
	if (check_string(e, "", "id", BH_EVENT_ID_MAX, true, &ev->id, errbuf, errlen) < 0)
		goto fail;
	for (const char *p = ev->id; *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f) {
			snprintf(errbuf, errlen,
				 "id: must not contain spaces or control characters");
			goto fail;
		}

	if (check_string(e, "", "type", 64, true, &ev->type_name, errbuf, errlen) < 0)
		goto fail;
	size_t t;
	for (t = 0; t < BH_ARRAY_LEN(type_names); t++)
		if (strcmp(ev->type_name, type_names[t]) == 0)
			break;
	if (t == BH_ARRAY_LEN(type_names)) {
		snprintf(errbuf, errlen,
			 "type: must be transaction.created, balance.changed or payment.updated");
		goto fail;
	}
	ev->type = (enum bh_event_type)t;

	if (check_string(e, "", "occurred_at", 64, true, &s, errbuf, errlen) < 0)
		goto fail;
	if (bh_parse_time(s, &ev->occurred_ms) < 0) {
		snprintf(errbuf, errlen,
			 "occurred_at: must be an RFC 3339 date and time such as "
			 "2026-11-25T10:15:00Z, from year 0001 to 9999 in UTC");
		goto fail;
	}

	bool needs_account =
		ev->type != BH_EVENT_PAYMENT_UPDATED && ev->type != BH_EVENT_TPP_NOTIFICATION;
	if (check_string(e, "", "bank_id", 200, needs_account, &ev->bank_id, errbuf, errlen) < 0 ||
	    check_string(e, "", "account_id", 200, needs_account, &ev->account_id, errbuf, errlen) <
		    0)
		goto fail;

	json_t *consents = json_object_get(e, "consent_ids");
	if (consents && !json_is_null(consents)) {
		size_t i;
		json_t *c;
		if (!json_is_array(consents)) {
			snprintf(errbuf, errlen, "consent_ids: must be an array of strings");
			goto fail;
		}
		json_array_foreach (consents, i, c)
			if (!json_is_string(c) || json_string_length(c) == 0 ||
			    json_string_length(c) > 200) {
				snprintf(
					errbuf, errlen,
					"consent_ids[%zu]: must be a string of 1 to 200 characters",
					i);
				goto fail;
			}
	}

	ev->data = json_object_get(e, "data");
	if (!json_is_object(ev->data)) {
		snprintf(errbuf, errlen, "data: required, must be an object");
		goto fail;
	}
	if (check_data(ev->type, ev->data, errbuf, errlen) < 0)
		goto fail;
	/* Whatever else the event carries must fit PostgreSQL's text and jsonb. */
	if (check_storable(e, "event", BH_EVENT_DEPTH_MAX + 1, errbuf, errlen) < 0)
		goto fail;
	/* What goes to Kafka and into events.body: the normalized event, compact. */
	size_t bytes = json_dumpb(e, NULL, 0, JSON_COMPACT);
	if (bytes == 0 || bytes > BH_EVENT_MAX_BYTES) {
		snprintf(errbuf, errlen, "event: larger than %d bytes serialized",
			 BH_EVENT_MAX_BYTES);
		rc = BH_EVENT_TOO_LARGE;
		goto fail;
	}
	ev->json = e;
	return 0;
fail:
	json_decref(e);
	memset(ev, 0, sizeof(*ev));
	bh_utf8_fix(errbuf); /* a path cut by "%.40s" inside a character; it goes into JSON */
	return rc;
}

int bh_event_parse(const char *buf, size_t len, const char *fallback_id, struct bh_event *ev,
		   char *errbuf, size_t errlen)
{
	memset(ev, 0, sizeof(*ev));
	if (len > BH_EVENT_MAX_BYTES) {
		snprintf(errbuf, errlen, "event: larger than %d bytes", BH_EVENT_MAX_BYTES);
		return BH_EVENT_TOO_LARGE;
	}
	json_error_t jerr;
	json_t *obj = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL) {
		snprintf(errbuf, errlen, "event: not valid JSON: %s at line %d column %d",
			 jerr.text, jerr.line, jerr.column);
		bh_utf8_fix(errbuf); /* jansson quotes the input near the error */
		return -1;
	}
	int rc = bh_event_from_json(obj, fallback_id, ev, errbuf, errlen);
	json_decref(obj);
	return rc;
}

void bh_event_free(struct bh_event *ev)
{
	json_decref(ev->json);
	memset(ev, 0, sizeof(*ev));
}

bool bh_event_is_credit(const struct bh_event *ev)
{
	return strcmp(bh_event_data_str(ev, "dc"), "credit") == 0;
}

const char *bh_event_data_str(const struct bh_event *ev, const char *key)
{
	const char *s = json_string_value(json_object_get(ev->data, key));
	return s ? s : "";
}
