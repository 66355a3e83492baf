/*
 * Card acquirer merchant webhooks (PRODUCT.md 6.4, seed 004): which
 * payment.updated events reach a notification configuration, and the
 * encrypted envelope it receives:
 *
 *   {"notificationConfigurationCode","algorithm":"AES-256-GCM",
 *    "iv":base64(12 random bytes),"tag":base64(16-byte GCM tag),
 *    "data":base64(AES-256-GCM(key, iv, notification JSON))}
 *
 * The key is the 32 ASCII bytes of the configuration's security key. The
 * IV is drawn afresh for every render, so every attempt of a delivery
 * carries a different IV and ciphertext (GCM must never reuse an IV with
 * the same key).
 */
#include "kind_acquirer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define IV_LEN 12
#define TAG_LEN 16

static const char *opt_str(const struct bh_sub *sub, const char *key)
{
	return json_string_value(json_object_get(sub->options, key));
}

/* The event's data[key], or NULL when absent. */
static const char *data_str_or_null(const struct bh_event *ev, const char *key)
{
	return json_string_value(json_object_get(ev->data, key));
}

/* A configured id (acceptor, terminal) matches when unset or equal to the event's. */
static bool optional_id_matches(const char *want, const char *got)
{
	return want == NULL || (got != NULL && strcmp(want, got) == 0);
}

static bool acquirer_match(const struct bh_sub *sub, const struct bh_event *ev)
{
	if (ev->type != BH_EVENT_PAYMENT_UPDATED || !bh_sub_match_filter(sub, ev))
		return false;
	const char *acquirer = opt_str(sub, "acquirerId");
	const char *merchant = opt_str(sub, "merchantId");
	if (acquirer == NULL || merchant == NULL ||
	    strcmp(acquirer, bh_event_data_str(ev, "acquirer_id")) != 0 ||
	    strcmp(merchant, bh_event_data_str(ev, "merchant_id")) != 0 ||
	    !optional_id_matches(opt_str(sub, "acceptorId"), data_str_or_null(ev, "acceptor_id")) ||
	    !optional_id_matches(opt_str(sub, "terminalId"), data_str_or_null(ev, "terminal_id")))
		return false;
	const char *method = bh_event_data_str(ev, "payment_method");
	size_t i;
	json_t *m;
	json_array_foreach (json_object_get(sub->options, "paymentMethods"), i, m)
		if (json_is_string(m) && strcmp(json_string_value(m), method) == 0)
			return true;
	return false;
}

/* A string member, or JSON null when the event does not carry it. */
static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The notification before encryption: the event's payment fields in the acquirer's names. */
static json_t *notification_json(const struct bh_event *ev)
{
	char occurred[32];
	bh_format_time(ev->occurred_ms, occurred);
	return json_pack("{s:s,s:s,s:o,s:o,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "acquirerId",
			 bh_event_data_str(ev, "acquirer_id"), "merchantId",
			 bh_event_data_str(ev, "merchant_id"), "acceptorId",
			 str_or_null(data_str_or_null(ev, "acceptor_id")), "terminalId",
			 str_or_null(data_str_or_null(ev, "terminal_id")), "paymentId",
			 bh_event_data_str(ev, "payment_id"), "paymentMethod",
			 bh_event_data_str(ev, "payment_method"), "status",
			 bh_event_data_str(ev, "status"), "amount", bh_event_data_str(ev, "amount"),
			 "currency", bh_event_data_str(ev, "currency"), "eventId", ev->id,
			 "occurredAt", occurred);
}

static int acquirer_render(const struct bh_sub *sub, const struct bh_event *ev,
			   struct bh_rendered *out, char *errbuf, size_t errlen)
{
	int rc = -1;
	unsigned char iv[IV_LEN], tag[TAG_LEN];
	unsigned char *cipher = NULL;
	char *plain = NULL, *iv_b64 = NULL, *tag_b64 = NULL, *data_b64 = NULL;
	json_t *envelope = NULL;
	json_t *security = json_object_get(sub->options, "security");
	const char *key = json_string_value(json_object_get(security, "key"));
	const char *code = opt_str(sub, "notificationConfigurationCode");

	if (key == NULL || strlen(key) != BH_ACQUIRER_KEY_LEN || code == NULL) {
		snprintf(errbuf, errlen, "render: the configuration has no %d-byte security key",
			 BH_ACQUIRER_KEY_LEN);
		goto out;
	}
	json_t *notification = notification_json(ev);
	plain = notification ? json_dumps(notification, JSON_COMPACT) : NULL;
	json_decref(notification);
	if (plain == NULL) {
		snprintf(errbuf, errlen, "render: cannot serialize the notification of event %s",
			 ev->id);
		goto out;
	}
	size_t len = strlen(plain);
	cipher = bh_xmalloc(len + 1);
	bh_random_bytes(iv, sizeof(iv));
	if (bh_aes256gcm_encrypt((const unsigned char *)key, iv, plain, len, cipher, tag) < 0) {
		snprintf(errbuf, errlen, "render: AES-256-GCM encryption failed");
		goto out;
	}
	iv_b64 = bh_base64_encode(iv, sizeof(iv));
	tag_b64 = bh_base64_encode(tag, sizeof(tag));
	data_b64 = bh_base64_encode(cipher, len);
	envelope = json_pack("{s:s,s:s,s:s,s:s,s:s}", "notificationConfigurationCode", code,
			     "algorithm", BH_ACQUIRER_ALGORITHM, "iv", iv_b64, "tag", tag_b64,
			     "data", data_b64);
	out->body = envelope ? json_dumps(envelope, JSON_COMPACT) : NULL;
	if (out->body == NULL) {
		snprintf(errbuf, errlen, "render: cannot serialize the envelope of event %s",
			 ev->id);
		goto out;
	}
	out->len = strlen(out->body);
	out->content_type = bh_xstrdup("application/json");
	rc = 0;
out:
	json_decref(envelope);
	free(plain);
	free(cipher);
	free(iv_b64);
	free(tag_b64);
	free(data_b64);
	return rc;
}

const struct bh_kind_ops bh_kind_acquirer = {
	.name = "acquirer",
	.match = acquirer_match,
	.render = acquirer_render,
};
