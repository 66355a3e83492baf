/*
 * common/kind_banksocket and common/kind_acquirer: Banksocket's hash
 * against values computed independently with coreutils, the form post it
 * renders, which transactions fire which webhook; the acquirer's
 * AES-256-GCM envelope decrypted back to the notification, a tampered tag
 * refused, a fresh IV per render, and payment-method / merchant matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "event.h"
#include "kind_acquirer.h"
#include "kind_banksocket.h"
#include "subscription.h"

/* ---------------------------------------------------------------- Banksocket hash */

struct hash_case {
	const char *name;
	const char *dc, *code, *amount, *balance, *currency, *description, *secret;
	const char *want;
};

static const struct hash_case hash_cases[] = {
	/*
	 * printf %s 'CreditEFT100.0018100.00TRYSN:276689 TEST BANKA HAREKETİ AÇIKLAMASI ARALIK/2019bs_secret_123' \
	 *   | sha256sum | cut -d' ' -f1 | tr -d '\n' | base64 -w0
	 */
	{"hash_matches_sha256sum_base64_for_the_seed_example", "Credit", "EFT", "100.00", "18100.00",
	 "TRY", "SN:276689 TEST BANKA HAREKETİ AÇIKLAMASI ARALIK/2019", "bs_secret_123",
	 "OWZhZTAxY2NjOWNiOTA3NDUzMWY0ZDhlMzg5NDUzNjYyODBkYjk3MjA5ODRjYTkxYzY1NjNmNWNkMmVmZTc0Mw=="},
	/*
	 * printf %s 'DebitFAST42.50-7.10EURrent Mayapi-secret-2' \
	 *   | sha256sum | cut -d' ' -f1 | tr -d '\n' | base64 -w0
	 */
	{"hash_matches_sha256sum_base64_for_a_debit", "Debit", "FAST", "42.50", "-7.10", "EUR",
	 "rent May", "api-secret-2",
	 "MzgwNzAxNmQ5ZWZiMmQyMWQxMDdlOGE3NDUwOGE3YTUyNmQyNTk5MGNhZDIwY2U4ZDJhZWU1ZTZkM2ViMWM4Yg=="},
};

static void run_hash_case(void **state)
{
	const struct hash_case *c = *state;
	char *h = bh_banksocket_hash(c->dc, c->code, c->amount, c->balance, c->currency,
				     c->description, c->secret);
	assert_non_null(h);
	assert_string_equal(h, c->want);
	/* base64 of the 64 hex characters, as the seed's worked example decodes. */
	unsigned char *raw = NULL;
	assert_int_equal(bh_base64_decode(h, &raw), 64);
	for (int i = 0; i < 64; i++)
		assert_true((raw[i] >= '0' && raw[i] <= '9') || (raw[i] >= 'a' && raw[i] <= 'f'));
	free(raw);
	free(h);
}

/* ---------------------------------------------------------------- fixtures */

static void parse_event(const char *json, struct bh_event *ev)
{
	char err[256];
	assert_int_equal(bh_event_parse(json, strlen(json), "ev-1", ev, err, sizeof(err)), 0);
}

static const char credit_event[] =
	"{\"id\":\"ev-credit\",\"type\":\"transaction.created\",\"occurred_at\":\"2026-11-25T10:15:00Z\","
	"\"bank_id\":\"isbank\",\"account_id\":\"69\",\"data\":{\"transaction_id\":\"t1\","
	"\"dc\":\"credit\",\"code\":\"EFT\",\"amount\":\"100\",\"balance\":\"18100\","
	"\"currency\":\"TRY\",\"description\":\"SN:276689 TEST BANKA HAREKETİ AÇIKLAMASI ARALIK/2019\","
	"\"account_name\":\"Kadıköy İşbank TL Hesabı\",\"bank_name\":\"Türkiye İş Bankası A.Ş.\","
	"\"counterparty\":{\"id\":\"1234567890\",\"iban\":\"TR5600000111000022200023456\"}}}";

static const char debit_event[] =
	"{\"id\":\"ev-debit\",\"type\":\"transaction.created\",\"occurred_at\":\"2026-11-25T10:15:00Z\","
	"\"bank_id\":\"isbank\",\"account_id\":\"70\",\"data\":{\"transaction_id\":\"t2\","
	"\"dc\":\"debit\",\"code\":\"FAST\",\"amount\":\"-42.5\",\"balance\":\"-7.1\","
	"\"currency\":\"EUR\",\"description\":\"rent May\"}}";

static void banksocket_sub(struct bh_sub *sub, const char *event, const char *account)
{
	memset(sub, 0, sizeof(*sub));
	sub->kind = "banksocket";
	sub->enabled = true;
	sub->account_id = (char *)account;
	sub->client_api_secret = "bs_secret_123";
	sub->options = json_pack("{s:s,s:s,s:s}", "title", "t", "event", event, "account",
				 account ? account : "all");
}

/* ---------------------------------------------------------------- Banksocket render */

/* The seed's example, rendered from an event: fields, two decimals, percent-encoding, hash. */
static void banksocket_render_posts_the_seed_fields_and_hash(void **state)
{
	(void)state;
	struct bh_event ev;
	struct bh_sub sub;
	struct bh_rendered r;
	char err[256];
	parse_event(credit_event, &ev);
	banksocket_sub(&sub, "NEW_TRANSACTION", NULL);
	assert_int_equal(bh_sub_render(&sub, &ev, &r, err, sizeof(err)), 0);
	assert_string_equal(r.content_type, "application/x-www-form-urlencoded");
	assert_string_equal(
		r.body,
		"dc=Credit&code=EFT&amount=100.00&balance=18100.00&currency=TRY"
		"&description=SN%3A276689+TEST+BANKA+HAREKET%C4%B0+A%C3%87IKLAMASI+ARALIK%2F2019"
		"&account_id=69&account=Kad%C4%B1k%C3%B6y+%C4%B0%C5%9Fbank+TL+Hesab%C4%B1"
		"&bank=T%C3%BCrkiye+%C4%B0%C5%9F+Bankas%C4%B1+A.%C5%9E."
		"&opponent_id=1234567890&opponent_iban=TR5600000111000022200023456"
		"&hash=OWZhZTAxY2NjOWNiOTA3NDUzMWY0ZDhlMzg5NDUzNjYyODBkYjk3MjA5ODRjYTkxYzY1NjNmNWNkMmVmZTc0Mw%3D%3D");
	assert_int_equal(r.len, strlen(r.body));
	bh_rendered_free(&r);
	json_decref(sub.options);
	bh_event_free(&ev);
}

/* A debit: unsigned amount, signed balance, both with two decimals; the hash covers them. */
static void banksocket_render_debit_amounts(void **state)
{
	(void)state;
	struct bh_event ev;
	struct bh_sub sub;
	struct bh_rendered r;
	char err[256];
	parse_event(debit_event, &ev);
	banksocket_sub(&sub, "NEW_DEBIT", NULL);
	sub.client_api_secret = "api-secret-2";
	assert_int_equal(bh_sub_render(&sub, &ev, &r, err, sizeof(err)), 0);
	assert_non_null(strstr(r.body, "dc=Debit&code=FAST&amount=42.50&balance=-7.10&currency=EUR"
					"&description=rent+May&"));
	assert_non_null(strstr(r.body, "&hash=MzgwNzAxNmQ5ZWZiMmQyMWQxMDdlOGE3NDUwOGE3YTUyNmQyNTk5"
					"MGNhZDIwY2U4ZDJhZWU1ZTZkM2ViMWM4Yg%3D%3D"));
	bh_rendered_free(&r);
	json_decref(sub.options);
	bh_event_free(&ev);
}

struct match_case {
	const char *name;
	const char *event;   /* NEW_TRANSACTION, NEW_DEBIT, NEW_CREDIT */
	const char *account; /* NULL: all */
	bool credit;         /* which fixture */
	bool want;
};

static const struct match_case match_cases[] = {
	{"credit_fires_new_transaction", "NEW_TRANSACTION", NULL, true, true},
	{"credit_fires_new_credit", "NEW_CREDIT", NULL, true, true},
	{"credit_does_not_fire_new_debit", "NEW_DEBIT", NULL, true, false},
	{"debit_fires_new_debit", "NEW_DEBIT", NULL, false, true},
	{"debit_does_not_fire_new_credit", "NEW_CREDIT", NULL, false, false},
	{"account_filter_fires_for_its_account", "NEW_TRANSACTION", "69", true, true},
	{"account_filter_ignores_other_accounts", "NEW_TRANSACTION", "70", true, false},
};

static void run_match_case(void **state)
{
	const struct match_case *c = *state;
	struct bh_event ev;
	struct bh_sub sub;
	parse_event(c->credit ? credit_event : debit_event, &ev);
	banksocket_sub(&sub, c->event, c->account);
	assert_int_equal(bh_sub_match(&sub, &ev), c->want);
	json_decref(sub.options);
	bh_event_free(&ev);
}

/* ---------------------------------------------------------------- acquirer */

#define KEY "0123456789abcdef0123456789ABCDEF"

static const char payment_event[] =
	"{\"id\":\"ev-pay\",\"type\":\"payment.updated\",\"occurred_at\":\"2026-11-25T10:15:00Z\","
	"\"data\":{\"acquirer_id\":\"1234567890123\",\"merchant_id\":\"4567\","
	"\"acceptor_id\":\"77\",\"terminal_id\":\"88\",\"payment_id\":\"pay-1\","
	"\"payment_method\":\"CARD\",\"status\":\"SETTLED\",\"amount\":\"12.34\","
	"\"currency\":\"PLN\"}}";

static void acquirer_sub(struct bh_sub *sub, json_t *methods, const char *acceptor)
{
	memset(sub, 0, sizeof(*sub));
	sub->kind = "acquirer";
	sub->enabled = true;
	sub->options = json_pack("{s:s,s:s,s:s,s:o,s:n,s:o,s:s,s:{s:s,s:s,s:s}}",
				 "notificationConfigurationCode", "cfg-1", "acquirerId",
				 "1234567890123", "merchantId", "4567", "acceptorId",
				 acceptor ? json_string(acceptor) : json_null(), "terminalId",
				 "paymentMethods", methods, "notificationType", "URL", "security",
				 "key", KEY, "supportEmail", "ops@example.com", "algorithm",
				 "AES-256-GCM");
}

/* Decodes a member of the envelope; returns its length. */
static long envelope_bytes(json_t *env, const char *key, unsigned char **out)
{
	const char *s = json_string_value(json_object_get(env, key));
	assert_non_null(s);
	return bh_base64_decode(s, out);
}

static void acquirer_render_round_trip_and_tampered_tag(void **state)
{
	(void)state;
	struct bh_event ev;
	struct bh_sub sub;
	struct bh_rendered r;
	char err[256];
	unsigned char *iv = NULL, *tag = NULL, *data = NULL;
	parse_event(payment_event, &ev);
	acquirer_sub(&sub, json_pack("[s,s]", "CARD", "BLIK"), NULL);
	assert_true(bh_sub_match(&sub, &ev));
	assert_int_equal(bh_sub_render(&sub, &ev, &r, err, sizeof(err)), 0);
	assert_string_equal(r.content_type, "application/json");

	json_t *env = json_loads(r.body, 0, NULL);
	assert_non_null(env);
	assert_int_equal(json_object_size(env), 5);
	assert_string_equal(json_string_value(json_object_get(env, "notificationConfigurationCode")),
			    "cfg-1");
	assert_string_equal(json_string_value(json_object_get(env, "algorithm")), "AES-256-GCM");
	assert_int_equal(envelope_bytes(env, "iv", &iv), 12);
	assert_int_equal(envelope_bytes(env, "tag", &tag), 16);
	long n = envelope_bytes(env, "data", &data);
	assert_true(n > 0);

	unsigned char *plain = calloc(1, (size_t)n + 1);
	assert_int_equal(bh_aes256gcm_decrypt((const unsigned char *)KEY, iv, data, (size_t)n, tag,
					      plain),
			 0);
	json_t *note = json_loads((char *)plain, 0, NULL);
	assert_non_null(note);
	json_t *want = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "acquirerId",
				 "1234567890123", "merchantId", "4567", "acceptorId", "77",
				 "terminalId", "88", "paymentId", "pay-1", "paymentMethod", "CARD",
				 "status", "SETTLED", "amount", "12.34", "currency", "PLN", "eventId",
				 "ev-pay", "occurredAt", "2026-11-25T10:15:00.000Z");
	assert_true(json_equal(note, want));

	/* One flipped bit of the tag: GCM refuses the whole message. */
	tag[0] ^= 0x01;
	assert_int_equal(bh_aes256gcm_decrypt((const unsigned char *)KEY, iv, data, (size_t)n, tag,
					      plain),
			 -1);
	tag[0] ^= 0x01;
	/* The wrong key is refused as well. */
	assert_int_equal(bh_aes256gcm_decrypt((const unsigned char *)"X123456789abcdef0123456789ABCDEF",
					      iv, data, (size_t)n, tag, plain),
			 -1);

	/* Each render draws a fresh IV, so retries never reuse one with the key. */
	struct bh_rendered r2;
	unsigned char *iv2 = NULL;
	assert_int_equal(bh_sub_render(&sub, &ev, &r2, err, sizeof(err)), 0);
	json_t *env2 = json_loads(r2.body, 0, NULL);
	assert_int_equal(envelope_bytes(env2, "iv", &iv2), 12);
	assert_memory_not_equal(iv, iv2, 12);

	free(iv2);
	json_decref(env2);
	bh_rendered_free(&r2);
	json_decref(want);
	json_decref(note);
	free(plain);
	free(iv);
	free(tag);
	free(data);
	json_decref(env);
	bh_rendered_free(&r);
	json_decref(sub.options);
	bh_event_free(&ev);
}

/* A key that is not 32 bytes is a render failure, never a short key. */
static void acquirer_render_refuses_a_short_key(void **state)
{
	(void)state;
	struct bh_event ev;
	struct bh_sub sub;
	struct bh_rendered r;
	char err[256] = "";
	parse_event(payment_event, &ev);
	acquirer_sub(&sub, json_pack("[s]", "CARD"), NULL);
	json_object_set_new(json_object_get(sub.options, "security"), "key", json_string("short"));
	assert_int_equal(bh_sub_render(&sub, &ev, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "key"));
	json_decref(sub.options);
	bh_event_free(&ev);
}

static void acquirer_match_filters(void **state)
{
	(void)state;
	struct bh_event ev;
	struct bh_sub sub;
	parse_event(payment_event, &ev);

	acquirer_sub(&sub, json_pack("[s]", "BLIK"), NULL);
	assert_false(bh_sub_match(&sub, &ev)); /* CARD payment, BLIK-only configuration */
	json_decref(sub.options);

	acquirer_sub(&sub, json_pack("[s]", "CARD"), "77");
	assert_true(bh_sub_match(&sub, &ev)); /* its acceptor */
	json_decref(sub.options);

	acquirer_sub(&sub, json_pack("[s]", "CARD"), "78");
	assert_false(bh_sub_match(&sub, &ev)); /* another acceptor */
	json_decref(sub.options);

	acquirer_sub(&sub, json_pack("[s]", "CARD"), NULL);
	json_object_set_new(sub.options, "merchantId", json_string("4568"));
	assert_false(bh_sub_match(&sub, &ev)); /* another merchant */
	json_decref(sub.options);

	acquirer_sub(&sub, json_pack("[s]", "CARD"), NULL);
	json_object_set_new(sub.options, "terminalId", json_string("89"));
	assert_false(bh_sub_match(&sub, &ev)); /* another terminal */
	json_decref(sub.options);

	bh_event_free(&ev);
	/* Transactions never reach an acquirer configuration. */
	parse_event(credit_event, &ev);
	acquirer_sub(&sub, json_pack("[s]", "CARD"), NULL);
	assert_false(bh_sub_match(&sub, &ev));
	json_decref(sub.options);
	bh_event_free(&ev);
}


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(hash_cases, run_hash_case);
	TABLE(match_cases, run_match_case);
	ONE(banksocket_render_posts_the_seed_fields_and_hash);
	ONE(banksocket_render_debit_amounts);
	ONE(acquirer_render_round_trip_and_tampered_tag);
	ONE(acquirer_render_refuses_a_short_key);
	ONE(acquirer_match_filters);
	return _cmocka_run_group_tests("dialects", tests, n, NULL, NULL);
}
