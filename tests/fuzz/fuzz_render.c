/*
 * libFuzzer target: what each subscription kind puts on the wire
 * (common/subscription.c, kind_obp.c, kind_banksocket.c' form encoder and
 * hash, kind_acquirer.c's AES-256-GCM envelope), for any event that passed
 * validation and any stored options. The input is one JSON object:
 *   {"kind":..., "options":{...}, "api_secret":..., "bank_id":...,
 *    "account_id":..., "event_types":[...], "event":{...}}
 * Besides crashes, leaks and sanitizer reports, it decodes what was
 * rendered and checks it against the event: the Banksocket form decodes
 * back to the event's values and its hash verifies; the acquirer envelope
 * decrypts with the configured key to the event's payment; JSON bodies
 * parse. A refusal starts with "render:" and is valid UTF-8 (it is stored
 * as the attempt's error).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "harness.h"
#include "kind_acquirer.h"
#include "kind_banksocket.h"
#include "subscription.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FORM_FIELDS 12

static const char *const form_keys[FORM_FIELDS] = {
	"dc",	      "code",	 "amount", "balance",	  "currency",	   "description",
	"account_id", "account", "bank",   "opponent_id", "opponent_iban", "hash"};

static int hex_value(char c)
{
	return isdigit((unsigned char)c) ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

/* Splits and decodes a form body; the values are malloc'ed into v. */
static void form_decode(const char *body, size_t len, char *v[FORM_FIELDS])
{
	const char *p = body, *end = body + len;
	for (int i = 0; i < FORM_FIELDS; i++) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		size_t klen = strlen(form_keys[i]);
		if ((size_t)(stop - p) < klen + 1 || strncmp(p, form_keys[i], klen) != 0 ||
		    p[klen] != '=')
			fuzz_fail("form field %d is not %s=: %.*s", i, form_keys[i], (int)len,
				  body);
		p += klen + 1;
		char *out = bh_xmalloc((size_t)(stop - p) + 1), *o = out;
		for (; p < stop; p++) {
			if (*p == '+') {
				*o++ = ' ';
			} else if (*p == '%') {
				if (stop - p < 3 || hex_value(p[1]) < 0 || hex_value(p[2]) < 0)
					fuzz_fail("bad percent escape in the form");
				*o++ = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
				p += 2;
			} else if (isalnum((unsigned char)*p) || strchr("-._*", *p)) {
				*o++ = *p;
			} else {
				fuzz_fail("unescaped byte 0x%02x in the form", (unsigned char)*p);
			}
		}
		*o = '\0';
		v[i] = out;
		p = amp ? amp + 1 : end;
		if (amp == NULL && i != FORM_FIELDS - 1)
			fuzz_fail("form ends after %d fields", i + 1);
	}
	if (p != end)
		fuzz_fail("form has more than %d fields", FORM_FIELDS);
}

static const char *member(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "";
}

static bool money(const char *s, bool may_be_negative)
{
	s += may_be_negative && *s == '-';
	size_t n = strspn(s, "0123456789");
	return n > 0 && s[n] == '.' && isdigit((unsigned char)s[n + 1]) &&
	       isdigit((unsigned char)s[n + 2]) && s[n + 3] == '\0';
}

static void check_banksocket(const struct bh_sub *sub, const struct bh_event *ev,
			     const struct bh_rendered *r)
{
	char *v[FORM_FIELDS];
	if (strcmp(r->content_type, "application/x-www-form-urlencoded") != 0)
		fuzz_fail("Banksocket content type %s", r->content_type);
	form_decode(r->body, r->len, v);
	const char *dc = bh_event_is_credit(ev) ? "Credit" : "Debit";
	if (strcmp(v[0], dc) != 0 || strcmp(v[1], bh_event_data_str(ev, "code")) != 0 ||
	    strcmp(v[4], bh_event_data_str(ev, "currency")) != 0 ||
	    strcmp(v[5], bh_event_data_str(ev, "description")) != 0 ||
	    strcmp(v[6], ev->account_id ? ev->account_id : "") != 0 ||
	    strcmp(v[7], bh_event_data_str(ev, "account_name")) != 0 ||
	    strcmp(v[8], bh_event_data_str(ev, "bank_name")) != 0)
		fuzz_fail("Banksocket form does not carry the event's values");
	if (!money(v[2], false) || (v[3][0] != '\0' && !money(v[3], true)))
		fuzz_fail("Banksocket amount %s / balance %s not two-decimal", v[2], v[3]);
	char *hash = bh_banksocket_hash(v[0], v[1], v[2], v[3], v[4], v[5], sub->client_api_secret);
	if (strcmp(hash, v[11]) != 0)
		fuzz_fail("Banksocket hash does not verify from the posted values");
	free(hash);
	for (int i = 0; i < FORM_FIELDS; i++)
		free(v[i]);
}

static void check_acquirer(const struct bh_sub *sub, const struct bh_event *ev,
			   const struct bh_rendered *r)
{
	json_t *env = json_loadb(r->body, r->len, 0, NULL);
	const char *key = json_string_value(
		json_object_get(json_object_get(sub->options, "security"), "key"));
	unsigned char *iv = NULL, *tag = NULL, *cipher = NULL;
	long ivlen = bh_base64_decode(member(env, "iv"), &iv);
	long taglen = bh_base64_decode(member(env, "tag"), &tag);
	long clen = bh_base64_decode(member(env, "data"), &cipher);
	if (env == NULL || ivlen != 12 || taglen != 16 || clen < 0 || key == NULL)
		fuzz_fail("acquirer envelope malformed: %.*s", (int)r->len, r->body);
	unsigned char *plain = bh_xmalloc((size_t)clen + 1);
	if (bh_aes256gcm_decrypt((const unsigned char *)key, iv, cipher, (size_t)clen, tag, plain) <
	    0)
		fuzz_fail("acquirer envelope does not decrypt with the configured key");
	json_t *n = json_loadb((const char *)plain, (size_t)clen, 0, NULL);
	if (n == NULL || strcmp(member(n, "eventId"), ev->id) != 0 ||
	    strcmp(member(n, "paymentId"), bh_event_data_str(ev, "payment_id")) != 0)
		fuzz_fail("acquirer notification is not the event's payment");
	json_decref(n);
	json_decref(env);
	free(plain);
	free(iv);
	free(tag);
	free(cipher);
}

/* The subscription the input describes; strings borrowed from in. */
static void sub_from(json_t *in, struct bh_sub *sub, char **types)
{
	memset(sub, 0, sizeof(*sub));
	static char kind_native[] = "native";
	sub->kind = (char *)json_string_value(json_object_get(in, "kind"));
	if (sub->kind == NULL || bh_kind_find(sub->kind) == NULL)
		sub->kind = kind_native;
	sub->options = json_object_get(in, "options");
	sub->client_api_secret = (char *)json_string_value(json_object_get(in, "api_secret"));
	sub->bank_id = (char *)json_string_value(json_object_get(in, "bank_id"));
	sub->account_id = (char *)json_string_value(json_object_get(in, "account_id"));
	sub->enabled = true;
	size_t i;
	json_t *t;
	json_array_foreach (json_object_get(in, "event_types"), i, t)
		if (json_is_string(t) && sub->n_event_types < 4)
			types[sub->n_event_types++] = (char *)json_string_value(t);
	sub->event_types = types;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bh_event ev;
	struct bh_sub sub;
	struct bh_rendered r;
	char *types[4];
	char err[512];
	if (size > 64 * 1024)
		return -1;
	json_t *in = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_object(in) || bh_event_from_json(json_object_get(in, "event"), "fallback", &ev,
						      err, sizeof(err)) < 0) {
		json_decref(in);
		return 0;
	}
	sub_from(in, &sub, types);
	(void)bh_sub_match(&sub, &ev);
	err[0] = '\0';
	if (bh_sub_render(&sub, &ev, &r, err, sizeof(err)) < 0) {
		json_t *msg = json_string(err);
		if (strncmp(err, "render: ", 8) != 0 || msg == NULL)
			fuzz_fail("refusal is not \"render: ...\" in valid UTF-8: %s", err);
		json_decref(msg);
		if (r.body != NULL)
			fuzz_fail("refused render left a body");
	} else {
		if (r.body == NULL || r.content_type == NULL || strlen(r.body) != r.len)
			fuzz_fail("rendered without body or content type, or a NUL in it");
		if (strcmp(sub.kind, "banksocket") == 0)
			check_banksocket(&sub, &ev, &r);
		else if (strcmp(sub.kind, "acquirer") == 0)
			check_acquirer(&sub, &ev, &r);
		else {
			json_t *body = json_loadb(r.body, r.len, 0, NULL);
			if (body == NULL)
				fuzz_fail("%s body is not JSON", sub.kind);
			json_decref(body);
		}
		bh_rendered_free(&r);
	}
	bh_event_free(&ev);
	json_decref(in);
	return 0;
}
