/*
 * common/crypto: Standard Webhooks signatures (the published test vector),
 * base64, secrets and tokens, AES-256-GCM and scrypt password hashes.
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

/* ------------------------------------------------------------ signatures */

struct sign_case {
	const char *name;
	const char *secret;
	const char *msg_id;
	int64_t timestamp;
	const char *body;
	const char *want; /* NULL: signing must refuse the secret */
};

static const struct sign_case sign_cases[] = {
	/*
	 * The vector published by Standard Webhooks (and Svix) in every
	 * reference library: if this matches, receivers' libraries verify us.
	 */
	{"sign_matches_standard_webhooks_published_vector", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	 "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{\"test\": 2432232314}",
	 "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
	{"sign_refuses_secret_without_whsec_prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	 "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{}", NULL},
	{"sign_refuses_secret_with_bad_base64", "whsec_not*base64!", "msg_1", 1, "{}", NULL},
	{"sign_refuses_empty_key", "whsec_", "msg_1", 1, "{}", NULL},
};

static void run_sign_case(void **state)
{
	const struct sign_case *c = *state;
	char *sig = bh_webhook_sign(c->secret, c->msg_id, c->timestamp, c->body, strlen(c->body));
	if (c->want == NULL) {
		assert_null(sig);
		return;
	}
	assert_non_null(sig);
	assert_string_equal(sig, c->want);
	free(sig);
}

/* A different timestamp or body must change the signature. */
static void sign_depends_on_timestamp_and_body(void **state)
{
	(void)state;
	const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	const char *body = "{\"test\": 2432232314}";
	char *a = bh_webhook_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
				  strlen(body));
	char *b = bh_webhook_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body,
				  strlen(body));
	char *c = bh_webhook_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{}", 2);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_string_not_equal(a, b);
	assert_string_not_equal(a, c);
	free(a);
	free(b);
	free(c);
}

/* ---------------------------------------------------------------- base64 */

struct b64_case {
	const char *name;
	const char *plain;
	const char *encoded;
};

/* RFC 4648 section 10 test vectors. */
static const struct b64_case b64_cases[] = {
	{"base64_round_trips_empty", "", ""},
	{"base64_round_trips_one_byte_two_pads", "f", "Zg=="},
	{"base64_round_trips_two_bytes_one_pad", "fo", "Zm8="},
	{"base64_round_trips_three_bytes_no_pad", "foo", "Zm9v"},
	{"base64_round_trips_four_bytes", "foob", "Zm9vYg=="},
	{"base64_round_trips_five_bytes", "fooba", "Zm9vYmE="},
	{"base64_round_trips_six_bytes", "foobar", "Zm9vYmFy"},
};

static void run_b64_case(void **state)
{
	const struct b64_case *c = *state;
	char *enc = bh_base64_encode(c->plain, strlen(c->plain));
	assert_string_equal(enc, c->encoded);
	unsigned char *dec = NULL;
	long n = bh_base64_decode(enc, &dec);
	assert_int_equal(n, (long)strlen(c->plain));
	assert_memory_equal(dec, c->plain, (size_t)n);
	free(dec);
	free(enc);
}

static void base64_round_trips_all_byte_values(void **state)
{
	(void)state;
	unsigned char raw[256] = {0};
	for (size_t len = 0; len <= sizeof(raw); len += 37) {
		for (size_t i = 0; i < len; i++)
			raw[i] = (unsigned char)(255 - i);
		char *enc = bh_base64_encode(raw, len);
		unsigned char *dec = NULL;
		long n = bh_base64_decode(enc, &dec);
		assert_int_equal(n, (long)len);
		if (len)
			assert_memory_equal(dec, raw, len);
		free(dec);
		free(enc);
	}
}

static void base64_decode_rejects_bad_length_and_characters(void **state)
{
	(void)state;
	const char *bad[] = {"Zm9", "Zg=", "Zm9v!A==", "****"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char *dec = NULL;
		long n = bh_base64_decode(bad[i], &dec);
		assert_int_equal(n, -1);
		free(dec);
	}
}

/* ------------------------------------------------------- digests, tokens */

static void sha256_hex_matches_fips_180_vector(void **state)
{
	(void)state;
	char hex[65];
	bh_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void webhook_secret_is_whsec_and_24_random_bytes(void **state)
{
	(void)state;
	char *a = bh_webhook_secret_new();
	char *b = bh_webhook_secret_new();
	assert_int_equal(strncmp(a, "whsec_", 6), 0);
	unsigned char *key = NULL;
	assert_int_equal(bh_base64_decode(a + 6, &key), 24);
	free(key);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

static void token_has_prefix_is_urlsafe_and_hash_is_sha256_hex(void **state)
{
	(void)state;
	char *t = bh_token_new("bh_");
	assert_int_equal(strncmp(t, "bh_", 3), 0);
	assert_int_equal(strlen(t), 3 + 43); /* 32 bytes base64url without padding */
	assert_null(strpbrk(t, "+/="));
	char h1[65], h2[65];
	bh_token_hash(t, h1);
	bh_token_hash(t, h2);
	assert_int_equal(strlen(h1), 64);
	assert_string_equal(h1, h2);
	free(t);
}

/* ---------------------------------------------------------- AES-256-GCM */

static const unsigned char aes_key[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char aes_iv[12] = "unique-iv-12";

static void aes256gcm_round_trips(void **state)
{
	(void)state;
	const char *plain = "{\"paymentId\":\"p-1\",\"status\":\"ACSC\"}";
	size_t len = strlen(plain);
	unsigned char cipher[128], tag[16], back[128];
	assert_int_equal(bh_aes256gcm_encrypt(aes_key, aes_iv, plain, len, cipher, tag), 0);
	assert_memory_not_equal(cipher, plain, len);
	assert_int_equal(bh_aes256gcm_decrypt(aes_key, aes_iv, cipher, len, tag, back), 0);
	assert_memory_equal(back, plain, len);
}

struct tamper_case {
	const char *name;
	int what; /* 0 tag, 1 ciphertext, 2 key, 3 iv */
};

static const struct tamper_case tamper_cases[] = {
	{"aes256gcm_decrypt_refuses_flipped_tag_bit", 0},
	{"aes256gcm_decrypt_refuses_flipped_ciphertext_bit", 1},
	{"aes256gcm_decrypt_refuses_wrong_key", 2},
	{"aes256gcm_decrypt_refuses_wrong_iv", 3},
};

static void run_tamper_case(void **state)
{
	const struct tamper_case *c = *state;
	const char *plain = "amount=100.00&currency=EUR";
	size_t len = strlen(plain);
	unsigned char cipher[64], tag[16], back[64], key[32], iv[12];
	memcpy(key, aes_key, sizeof(key));
	memcpy(iv, aes_iv, sizeof(iv));
	assert_int_equal(bh_aes256gcm_encrypt(key, iv, plain, len, cipher, tag), 0);
	switch (c->what) {
	case 0:
		tag[15] ^= 0x01;
		break;
	case 1:
		cipher[3] ^= 0x80;
		break;
	case 2:
		key[0] ^= 0x01;
		break;
	default:
		iv[11] ^= 0x01;
		break;
	}
	assert_int_equal(bh_aes256gcm_decrypt(key, iv, cipher, len, tag, back), -1);
}

/* ---------------------------------------------------------------- scrypt */

static void password_hash_verifies_right_password_only(void **state)
{
	(void)state;
	char *h = bh_password_hash("correct horse battery staple");
	assert_non_null(h);
	assert_int_equal(strncmp(h, "scrypt$", 7), 0);
	assert_int_equal(bh_password_verify("correct horse battery staple", h), 0);
	assert_int_equal(bh_password_verify("correct horse battery stapl", h), -1);
	assert_int_equal(bh_password_verify("", h), -1);
	free(h);
}

static void password_hash_is_salted(void **state)
{
	(void)state;
	char *a = bh_password_hash("pw");
	char *b = bh_password_hash("pw");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

static void password_verify_refuses_malformed_stored_hash(void **state)
{
	(void)state;
	const char *bad[] = {"", "plain", "scrypt$16384$8$1$", "bcrypt$2b$10$abc",
			     "scrypt$16384$8$1$c2FsdA==$c2hvcnQ="};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(bh_password_verify("pw", bad[i]), -1);
	assert_int_equal(bh_password_verify("pw", NULL), -1);
}

/* ------------------------------------------------------------------ main */


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(sign_cases, run_sign_case);
	ONE(sign_depends_on_timestamp_and_body);
	TABLE(b64_cases, run_b64_case);
	ONE(base64_round_trips_all_byte_values);
	ONE(base64_decode_rejects_bad_length_and_characters);
	ONE(sha256_hex_matches_fips_180_vector);
	ONE(webhook_secret_is_whsec_and_24_random_bytes);
	ONE(token_has_prefix_is_urlsafe_and_hash_is_sha256_hex);
	ONE(aes256gcm_round_trips);
	TABLE(tamper_cases, run_tamper_case);
	ONE(password_hash_verifies_right_password_only);
	ONE(password_hash_is_salted);
	ONE(password_verify_refuses_malformed_stored_hash);
	return _cmocka_run_group_tests("crypto", tests, n, NULL, NULL);
}
