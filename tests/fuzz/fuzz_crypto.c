/*
 * libFuzzer target: the encoders of common/crypto.c and Banksocket's hash
 * (common/kind_banksocket.c). The first byte picks the operation, the
 * rest is its input:
 *   0  base64: encode then decode gives the bytes back
 *   1  base64 decode of any text: agrees with a strict reference decoder
 *   2  Standard Webhooks signature: "secret\nmsg_id\nbody"; a signature is
 *      "v1," + base64 of the HMAC-SHA256 recomputed here
 *   3  AES-256-GCM: key(32) iv(12) plain...: decrypts back; a flipped tag
 *      or ciphertext bit is refused
 *   4  Banksocket hash over seven "\n"-separated values: base64 of the hex
 *      SHA-256 of their concatenation
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "harness.h"
#include "kind_banksocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int b64_value(char c)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(alphabet, c) : NULL;
	return p ? (int)(p - alphabet) : -1;
}

/* Strict RFC 4648 base64 with padding; -1 when text is not exactly that. */
static long ref_decode(const char *text, unsigned char *out)
{
	size_t n = strlen(text);
	long len = 0;
	if (n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(text[i + k]);
			if (text[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (v[k] < 0 || pad > 0) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
				      (unsigned char)w};
		memcpy(out + len, b, (size_t)(3 - pad));
		len += 3 - pad;
	}
	return len;
}

static void op_roundtrip(const uint8_t *d, size_t n)
{
	char *enc = bh_base64_encode(d, n);
	if (strlen(enc) != 4 * ((n + 2) / 3))
		fuzz_fail("base64 of %zu bytes has length %zu", n, strlen(enc));
	unsigned char *dec = NULL;
	long got = bh_base64_decode(enc, &dec);
	if (got != (long)n || (n > 0 && memcmp(dec, d, n) != 0))
		fuzz_fail("base64 round trip of %zu bytes gave %ld", n, got);
	free(dec);
	free(enc);
}

static void op_decode(const uint8_t *d, size_t n)
{
	char *text = bh_xstrndup((const char *)d, n);
	unsigned char *ref = bh_xmalloc(strlen(text) + 1);
	unsigned char *dec = NULL;
	long want = ref_decode(text, ref);
	long got = bh_base64_decode(text, &dec);
	if (got < -1)
		fuzz_fail("base64 decode returned %ld", got);
	if (want >= 0 && (got != want || (want > 0 && memcmp(dec, ref, (size_t)want) != 0)))
		fuzz_fail("base64 decode of \"%s\": %ld bytes, the reference %ld", text, got, want);
	if (got < 0 && dec != NULL)
		fuzz_fail("base64 decode failed but returned a buffer");
	free(dec);
	free(ref);
	free(text);
}

/* The next "\n"-separated part of [*p, end), malloc'ed. */
static char *next_part(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *stop = nl ? nl : end;
	char *s = bh_xstrndup(*p, (size_t)(stop - *p));
	*p = nl ? nl + 1 : end;
	return s;
}

static void op_sign(const uint8_t *d, size_t n)
{
	const char *p = (const char *)d, *end = p + n;
	char *secret = next_part(&p, end);
	char *msg_id = next_part(&p, end);
	const char *body = p;
	size_t body_len = (size_t)(end - p);
	int64_t ts = (int64_t)n * 1000003;
	char *sig = bh_webhook_sign(secret, msg_id, ts, body, body_len);
	if (sig != NULL) {
		unsigned char *key = NULL;
		long keylen = bh_base64_decode(secret + 6, &key);
		if (strncmp(secret, "whsec_", 6) != 0 || keylen <= 0)
			fuzz_fail("signed with a malformed secret");
		char *head = bh_xasprintf("%s.%lld.", msg_id, (long long)ts);
		size_t hl = strlen(head);
		unsigned char *msg = bh_xmalloc(hl + body_len + 1);
		memcpy(msg, head, hl);
		memcpy(msg + hl, body, body_len);
		unsigned char mac[32];
		unsigned int maclen = sizeof(mac);
		HMAC(EVP_sha256(), key, (int)keylen, msg, hl + body_len, mac, &maclen);
		char *b64 = bh_base64_encode(mac, maclen);
		char *want = bh_xasprintf("v1,%s", b64);
		if (strcmp(sig, want) != 0)
			fuzz_fail("signature %s, recomputed %s", sig, want);
		free(want);
		free(b64);
		free(msg);
		free(head);
		free(key);
		free(sig);
	}
	free(secret);
	free(msg_id);
}

static void op_aes(const uint8_t *d, size_t n)
{
	if (n < 44)
		return;
	const unsigned char *key = d, *iv = d + 32, *plain = d + 44;
	size_t len = n - 44;
	unsigned char *cipher = bh_xmalloc(len + 1), *back = bh_xmalloc(len + 1);
	unsigned char tag[16];
	if (bh_aes256gcm_encrypt(key, iv, plain, len, cipher, tag) < 0)
		fuzz_fail("AES-256-GCM encryption failed");
	if (bh_aes256gcm_decrypt(key, iv, cipher, len, tag, back) < 0 ||
	    (len > 0 && memcmp(back, plain, len) != 0))
		fuzz_fail("AES-256-GCM round trip failed");
	tag[n % 16] ^= 1;
	if (bh_aes256gcm_decrypt(key, iv, cipher, len, tag, back) == 0)
		fuzz_fail("AES-256-GCM accepted a flipped tag bit");
	tag[n % 16] ^= 1;
	if (len > 0) {
		cipher[n % len] ^= 0x80;
		if (bh_aes256gcm_decrypt(key, iv, cipher, len, tag, back) == 0)
			fuzz_fail("AES-256-GCM accepted a flipped ciphertext bit");
	}
	free(cipher);
	free(back);
}

static void op_banksocket_hash(const uint8_t *d, size_t n)
{
	const char *p = (const char *)d, *end = p + n;
	char *v[7];
	for (int i = 0; i < 7; i++)
		v[i] = next_part(&p, end);
	char *hash = bh_banksocket_hash(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
	char *all = bh_xasprintf("%s%s%s%s%s%s%s", v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
	char hex[65];
	bh_sha256_hex(all, strlen(all), hex);
	for (int i = 0; i < 64; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			fuzz_fail("sha256 hex is not lowercase hex: %s", hex);
	unsigned char *dec = NULL;
	if (bh_base64_decode(hash, &dec) != 64 || memcmp(dec, hex, 64) != 0)
		fuzz_fail("Banksocket hash is not base64 of the hex digest");
	free(dec);
	free(all);
	free(hash);
	for (int i = 0; i < 7; i++)
		free(v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 64 * 1024)
		return -1;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	switch (data[0] % 5) {
	case 0:
		op_roundtrip(d, n);
		break;
	case 1:
		op_decode(d, n);
		break;
	case 2:
		op_sign(d, n);
		break;
	case 3:
		op_aes(d, n);
		break;
	case 4:
		op_banksocket_hash(d, n);
		break;
	}
	return 0;
}
