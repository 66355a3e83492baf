/*
 * Banksocket webhooks (PRODUCT.md 6.3, seed 003): which transactions fire
 * a webhook, and the form post Banksocket sends with its hash.
 *
 * Amounts are decimal strings in events; they are posted with exactly two
 * decimals, computed on integer hundredths so no binary floating point
 * rounds them. The hash covers the values exactly as posted, so a
 * receiver recomputes it from the form fields it got.
 */
#include "kind_banksocket.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

/*
 * The validator\'s bound (common/event.h), so every amount it accepts renders:
 * 10^15 units, and hundredths * 10 still fit a long long.
 */
#define INT_DIGITS_MAX BH_AMOUNT_INT_DIGITS_MAX
#define MONEY_TEXT_MAX 32
/* Percent-encoding triples every byte at most; events are capped at 1 MiB. */
#define FORM_MAX (4 * BH_EVENT_MAX_BYTES)

static const char *event_of(const struct bh_sub *sub)
{
	const char *e = json_string_value(json_object_get(sub->options, "event"));
	return e ? e : "";
}

/*
 * "-12.345" as two-decimal text, rounded half away from zero; abs drops
 * the sign. 0, or -1 when s is not a decimal or too large.
 */
static int two_decimals(const char *s, bool abs, char out[MONEY_TEXT_MAX])
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
	neg = neg && !abs && cents != 0;
	snprintf(out, MONEY_TEXT_MAX, "%s%lld.%02lld", neg ? "-" : "", cents / 100, cents % 100);
	return 0;
}

/* application/x-www-form-urlencoded: unreserved bytes as is, space '+', the rest %XX. */
static void form_append(struct bh_buf *b, const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	(void)bh_buf_appendf(b, "%s%s=", b->len ? "&" : "", key);
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		char enc[3];
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '*') {
			(void)bh_buf_append(b, p, 1);
		} else if (*p == ' ') {
			(void)bh_buf_append(b, "+", 1);
		} else {
			enc[0] = '%';
			enc[1] = hex[*p >> 4];
			enc[2] = hex[*p & 15];
			(void)bh_buf_append(b, enc, 3);
		}
	}
}

char *bh_banksocket_hash(const char *dc, const char *code, const char *amount, const char *balance,
			 const char *currency, const char *description, const char *api_secret)
{
	char hex[65];
	char *input = bh_xasprintf("%s%s%s%s%s%s%s", dc, code, amount, balance, currency,
				   description, api_secret);
	bh_sha256_hex(input, strlen(input), hex);
	free(input);
	/* base64 of the 64 hex characters, not of the raw digest (seeds/README.md). */
	return bh_base64_encode(hex, 64);
}

/* ---------------------------------------------------------------- kind ops */

static bool banksocket_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	/* account_id of the subscription ("all": NULL) does the account part. */
	if (ev->type != BH_EVENT_TRANSACTION_CREATED || !bh_sub_match_filter(sub, ev))
		return false;
	const char *e = event_of(sub);
	if (strcmp(e, "NEW_TRANSACTION") == 0)
		return true;
	if (strcmp(e, "NEW_CREDIT") == 0)
		return bh_event_is_credit(ev);
	if (strcmp(e, "NEW_DEBIT") == 0)
		return !bh_event_is_credit(ev);
	return false;
}

/* data.counterparty[key] as a string, or "". */
static const char *counterparty_str(const struct bh_event *ev, const char *key)
{
	json_t *cp = json_object_get(ev->data, "counterparty");
	const char *s = json_string_value(json_object_get(cp, key));
	return s ? s : "";
}

/*
 * dc, code, amount, balance, currency, description, account_id, account,
 * bank, opponent_id, opponent_iban, hash. The amount is unsigned (dc says
 * the direction); a balance the event does not carry is posted empty.
 */
static int banksocket_render(const struct bh_sub *sub, const struct bh_event *ev,
			     struct bh_rendered *out, char *errbuf, size_t errlen)
{
	int rc = -1;
	char amount[MONEY_TEXT_MAX], balance[MONEY_TEXT_MAX] = "";
	char *hash = NULL;
	struct bh_buf form;
	bh_buf_init(&form, FORM_MAX);

	if (sub->client_api_secret == NULL) {
		snprintf(errbuf, errlen, "render: the client has no api_secret to hash with");
		goto out;
	}
	const char *dc = bh_event_is_credit(ev) ? "Credit" : "Debit";
	const char *code = bh_event_data_str(ev, "code");
	const char *currency = bh_event_data_str(ev, "currency");
	const char *description = bh_event_data_str(ev, "description");
	const char *balance_in = bh_event_data_str(ev, "balance");
	if (two_decimals(bh_event_data_str(ev, "amount"), true, amount) < 0 ||
	    (balance_in[0] != '\0' && two_decimals(balance_in, false, balance) < 0)) {
		snprintf(errbuf, errlen, "render: amount or balance of event %s is not supported",
			 ev->id);
		goto out;
	}
	hash = bh_banksocket_hash(dc, code, amount, balance, currency, description,
				  sub->client_api_secret);
	form_append(&form, "dc", dc);
	form_append(&form, "code", code);
	form_append(&form, "amount", amount);
	form_append(&form, "balance", balance);
	form_append(&form, "currency", currency);
	form_append(&form, "description", description);
	form_append(&form, "account_id", ev->account_id ? ev->account_id : "");
	form_append(&form, "account", bh_event_data_str(ev, "account_name"));
	form_append(&form, "bank", bh_event_data_str(ev, "bank_name"));
	form_append(&form, "opponent_id", counterparty_str(ev, "id"));
	form_append(&form, "opponent_iban", counterparty_str(ev, "iban"));
	form_append(&form, "hash", hash);
	if (form.too_big) {
		snprintf(errbuf, errlen, "render: the form of event %s is too large", ev->id);
		goto out;
	}
	out->len = form.len;
	out->body = form.data;
	form.data = NULL; /* now owned by out */
	out->content_type = bh_xstrdup("application/x-www-form-urlencoded");
	rc = 0;
out:
	bh_buf_free(&form);
	free(hash);
	return rc;
}

const struct bh_kind_ops bh_kind_banksocket = {
	.name = "banksocket",
	.match = banksocket_match,
	.render = banksocket_render,
};
