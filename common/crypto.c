#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bh_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + i * 2, 3, "%02x", md[i]);
}

void bh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[32])
{
	unsigned int outlen = 32;
	HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen);
}

char *bh_base64_encode(const void *data, size_t len)
{
	char *out = bh_xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

long bh_base64_decode(const char *text, unsigned char **out)
{
	size_t n = strlen(text);
	if (n % 4 != 0)
		return -1;
	unsigned char *buf = bh_xmalloc(n / 4 * 3 + 1);
	int got = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n);
	if (got < 0) {
		free(buf);
		return -1;
	}
	/* EVP_DecodeBlock counts padding as zero bytes; take them off. */
	if (n >= 1 && text[n - 1] == '=')
		got--;
	if (n >= 2 && text[n - 2] == '=')
		got--;
	*out = buf;
	return got;
}

char *bh_webhook_secret_new(void)
{
	unsigned char key[24];
	bh_random_bytes(key, sizeof(key));
	char *b64 = bh_base64_encode(key, sizeof(key));
	char *secret = bh_xasprintf("whsec_%s", b64);
	free(b64);
	return secret;
}

char *bh_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
		      size_t body_len)
{
	if (strncmp(secret, "whsec_", 6) != 0)
		return NULL;
	unsigned char *key = NULL;
	long keylen = bh_base64_decode(secret + 6, &key);
	if (keylen <= 0) {
		free(key);
		return NULL;
	}
	/* id.timestamp.body in one buffer: one-shot HMAC() is not deprecated in OpenSSL 3. */
	char *signed_part = bh_xasprintf("%s.%lld.", msg_id, (long long)timestamp);
	size_t head = strlen(signed_part);
	signed_part = bh_xrealloc(signed_part, head + body_len + 1);
	memcpy(signed_part + head, body, body_len);
	unsigned char mac[32];
	unsigned int maclen = 32;
	HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)signed_part, head + body_len, mac,
	     &maclen);
	free(signed_part);
	OPENSSL_cleanse(key, (size_t)keylen);
	free(key);
	char *b64 = bh_base64_encode(mac, maclen);
	char *sig = bh_xasprintf("v1,%s", b64);
	free(b64);
	return sig;
}

char *bh_token_new(const char *prefix)
{
	unsigned char raw[32];
	bh_random_bytes(raw, sizeof(raw));
	char *b64 = bh_base64_encode(raw, sizeof(raw));
	/* base64url without padding: safe in headers and URLs. */
	for (char *p = b64; *p; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
		else if (*p == '=')
			*p = '\0';
	}
	char *token = bh_xasprintf("%s%s", prefix, b64);
	free(b64);
	return token;
}

void bh_token_hash(const char *token, char out[65])
{
	bh_sha256_hex(token, strlen(token), out);
}

/* scrypt parameters: N=2^14, r=8, p=1 (16 MiB, about 50 ms). */
#define SCRYPT_N 16384
#define SCRYPT_R 8
#define SCRYPT_P 1

static int scrypt_derive(const char *password, const unsigned char *salt, size_t saltlen,
			 uint64_t n, uint64_t r, uint64_t p, unsigned char out[32])
{
	return EVP_PBE_scrypt(password, strlen(password), salt, saltlen, n, r, p, 64 * 1024 * 1024,
			      out, 32) == 1
		       ? 0
		       : -1;
}

char *bh_password_hash(const char *password)
{
	unsigned char salt[16], dk[32];
	bh_random_bytes(salt, sizeof(salt));
	if (scrypt_derive(password, salt, sizeof(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P, dk) < 0)
		return NULL;
	char *s64 = bh_base64_encode(salt, sizeof(salt));
	char *d64 = bh_base64_encode(dk, sizeof(dk));
	char *out = bh_xasprintf("scrypt$%d$%d$%d$%s$%s", SCRYPT_N, SCRYPT_R, SCRYPT_P, s64, d64);
	free(s64);
	free(d64);
	return out;
}

int bh_password_verify(const char *password, const char *stored)
{
	unsigned long long n, r, p;
	char s64[64], d64[64];
	int rc = -1;
	unsigned char *salt = NULL, *want = NULL;
	if (stored == NULL ||
	    sscanf(stored, "scrypt$%llu$%llu$%llu$%63[^$]$%63s", &n, &r, &p, s64, d64) != 5)
		return -1;
	long saltlen = bh_base64_decode(s64, &salt);
	long wantlen = bh_base64_decode(d64, &want);
	unsigned char dk[32];
	if (saltlen <= 0 || wantlen != 32)
		goto out;
	if (scrypt_derive(password, salt, (size_t)saltlen, n, r, p, dk) < 0)
		goto out;
	rc = CRYPTO_memcmp(dk, want, 32) == 0 ? 0 : -1;
out:
	free(salt);
	free(want);
	return rc;
}

int bh_aes256gcm_encrypt(const unsigned char key[32], const unsigned char iv[12], const void *plain,
			 size_t len, unsigned char *out, unsigned char tag[16])
{
	int rc = -1, n = 0, fin = 0;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -1;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) != 1 ||
	    EVP_EncryptUpdate(ctx, out, &n, plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int bh_aes256gcm_decrypt(const unsigned char key[32], const unsigned char iv[12],
			 const unsigned char *cipher, size_t len, const unsigned char tag[16],
			 unsigned char *out)
{
	int rc = -1, n = 0, fin = 0;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -1;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) != 1 ||
	    EVP_DecryptUpdate(ctx, out, &n, cipher, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, out + n, &fin) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}
