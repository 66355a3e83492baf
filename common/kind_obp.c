/*
 * Open Bank Project webhooks: which events fire which trigger, and the
 * payloads OBP-API sends (PRODUCT.md 6.1). Amounts are decimal strings in
 * events; they are formatted here with exactly two decimals and the
 * currency ("50.00 EUR"), with integer arithmetic on minor units so no
 * binary floating point rounds them.
 */
#include "kind_obp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The validator\'s bound (common/event.h), so every amount it accepts renders:
 * 10^15 units, and hundredths * 10 still fit a long long.
 */
#define INT_DIGITS_MAX BH_AMOUNT_INT_DIGITS_MAX
#define MONEY_TEXT_MAX 64

static const char *trigger_of(const struct bh_sub *sub)
{
	const char *t = json_string_value(json_object_get(sub->options, "trigger_name"));
	return t ? t : "";
}

/* ---------------------------------------------------------------- amounts */

/*
 * "-12.345" as -1235 hundredths: rounded half away from zero to two
 * decimals. 0, or -1 when s is not a decimal or too large.
 */
static int decimal_cents(const char *s, long long *out)
{
	bool neg = *s == '-';
	long long units = 0;
	int digits = 0;
	s += neg;
	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (++digits > INT_DIGITS_MAX)
			return -1;
		units = units * 10 + (*s - '0');
	}
	long long cents = units * 100;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		int frac[3] = {0, 0, 0};
		for (int i = 0; isdigit((unsigned char)*s); s++, i++)
			if (i < 3)
				frac[i] = *s - '0';
		cents += frac[0] * 10 + frac[1] + (frac[2] >= 5);
	}
	if (*s != '\0')
		return -1;
	*out = neg ? -cents : cents;
	return 0;
}

/* "-50.00 EUR" */
static void money_text(long long cents, const char *currency, char out[MONEY_TEXT_MAX])
{
	unsigned long long a = cents < 0 ? (unsigned long long)(-cents) : (unsigned long long)cents;
	snprintf(out, MONEY_TEXT_MAX, "%s%llu.%02llu %s", cents < 0 ? "-" : "", a / 100, a % 100,
		 currency);
}

/* data[key] in hundredths; 0, 1 when absent, or -1 with the reason. */
static int data_cents(const struct bh_event *ev, const char *key, long long *out, char *errbuf,
		      size_t errlen)
{
	const char *s = bh_event_data_str(ev, key);
	if (s[0] == '\0')
		return 1;
	if (decimal_cents(s, out) < 0) {
		snprintf(errbuf, errlen, "render: data.%s \"%.64s\" is not a supported amount", key,
			 s);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- account webhooks */

static bool account_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	/* bank_id and account_id of the subscription do the account part. */
	if (sub->bank_id == NULL || sub->account_id == NULL || !bh_sub_match_filter(sub, ev))
		return false;
	const char *t = trigger_of(sub);
	switch (ev->type) {
	case BH_EVENT_TRANSACTION_CREATED:
		if (strcmp(t, "OnBalanceChange") == 0)
			return true;
		if (strcmp(t, "OnCreditTransaction") == 0)
			return bh_event_is_credit(ev);
		if (strcmp(t, "OnDebitTransaction") == 0)
			return !bh_event_is_credit(ev);
		return false;
	case BH_EVENT_BALANCE_CHANGED:
		return strcmp(t, "OnBalanceChange") == 0;
	case BH_EVENT_PAYMENT_UPDATED:
	case BH_EVENT_TPP_NOTIFICATION:
		return false;
	}
	return false;
}

/*
 * {"event_name","event_id","bank_id","account_id","amount","balance"}.
 * A transaction's amount is signed by its direction (debits negative,
 * whatever sign the event gave); for balance.changed it is balance minus
 * previous_balance. An amount or balance the event does not carry is left
 * out rather than invented.
 */
static int account_render(const struct bh_sub *sub, const struct bh_event *ev,
			  struct bh_rendered *out, char *errbuf, size_t errlen)
{
	int rc = -1;
	long long amount = 0, balance = 0, previous = 0;
	bool has_amount = false, has_balance = false;
	char text[MONEY_TEXT_MAX];
	const char *currency = bh_event_data_str(ev, "currency");
	json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "event_name", trigger_of(sub), "event_id",
				 ev->id, "bank_id", ev->bank_id ? ev->bank_id : "", "account_id",
				 ev->account_id ? ev->account_id : "");
	int r = data_cents(ev, "balance", &balance, errbuf, errlen);
	if (r < 0)
		goto out;
	has_balance = r == 0;
	if (ev->type == BH_EVENT_TRANSACTION_CREATED) {
		if ((r = data_cents(ev, "amount", &amount, errbuf, errlen)) < 0)
			goto out;
		has_amount = r == 0;
		amount = amount < 0 ? -amount : amount;
		if (!bh_event_is_credit(ev))
			amount = -amount;
	} else {
		if ((r = data_cents(ev, "previous_balance", &previous, errbuf, errlen)) < 0)
			goto out;
		has_amount = r == 0 && has_balance;
		amount = balance - previous;
	}
	if (has_amount) {
		money_text(amount, currency, text);
		json_object_set_new(body, "amount", json_string(text));
	}
	if (has_balance) {
		money_text(balance, currency, text);
		json_object_set_new(body, "balance", json_string(text));
	}
	out->body = json_dumps(body, JSON_COMPACT);
	if (out->body == NULL) {
		snprintf(errbuf, errlen, "render: cannot serialize the payload of event %s",
			 ev->id);
		goto out;
	}
	out->len = strlen(out->body);
	out->content_type = bh_xstrdup("application/json");
	rc = 0;
out:
	json_decref(body);
	return rc;
}

/* ---------------------------------------------------------------- notification webhooks */

static bool notification_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	/* bank_id NULL (system level) matches every bank through the generic filter. */
	return ev->type == BH_EVENT_TRANSACTION_CREATED && bh_sub_match_filter(sub, ev);
}

/* [{"user_id","customer_ids":[...]}] from the event, keeping only those two members. */
static json_t *related_entities(const struct bh_event *ev)
{
	json_t *out = json_array();
	json_t *in = json_object_get(ev->data, "related_entities");
	size_t i, k;
	json_t *e, *c;
	json_array_foreach (in, i, e) {
		if (!json_is_object(e))
			continue;
		json_t *ids = json_array();
		json_array_foreach (json_object_get(e, "customer_ids"), k, c)
			if (json_is_string(c))
				json_array_append(ids, c);
		const char *user_id = json_string_value(json_object_get(e, "user_id"));
		json_array_append_new(out, json_pack("{s:s,s:o}", "user_id", user_id ? user_id : "",
						     "customer_ids", ids));
	}
	return out;
}

/*
 * {"event_name":"OnCreateTransaction","event_id","bank_id","account_id",
 *  "transaction_id","related_entities":[...]}
 */
static int notification_render(const struct bh_sub *sub, const struct bh_event *ev,
			       struct bh_rendered *out, char *errbuf, size_t errlen)
{
	(void)sub;
	json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "event_name", "OnCreateTransaction",
				 "event_id", ev->id, "bank_id", ev->bank_id ? ev->bank_id : "",
				 "account_id", ev->account_id ? ev->account_id : "",
				 "transaction_id", bh_event_data_str(ev, "transaction_id"),
				 "related_entities", related_entities(ev));
	out->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (out->body == NULL) {
		snprintf(errbuf, errlen, "render: cannot serialize the payload of event %s",
			 ev->id);
		return -1;
	}
	out->len = strlen(out->body);
	out->content_type = bh_xstrdup("application/json");
	return 0;
}

const struct bh_kind_ops bh_kind_obp_account = {
	.name = "obp_account",
	.match = account_match,
	.render = account_render,
};

const struct bh_kind_ops bh_kind_obp_notification = {
	.name = "obp_notification",
	.match = notification_match,
	.render = notification_render,
};
