/*
 * Cryptography over OpenSSL libcrypto: digests, base64, Standard Webhooks
 * signatures, secrets and tokens, scrypt password hashes, AES-256-GCM.
 * Strings returned as char * are malloc'ed; the caller frees them.
 */
#ifndef BH_COMMON_CRYPTO_H
#define BH_COMMON_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Lowercase hex SHA-256 of data: 64 characters + NUL. */
void bh_sha256_hex(const void *data, size_t len, char out[65]);
void bh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[32]);

char *bh_base64_encode(const void *data, size_t len);
/* Decodes standard base64; returns the length, or -1 on bad input. *out is malloc'ed. */
long bh_base64_decode(const char *text, unsigned char **out) BH_MUSTCHECK;

/* A new endpoint signing secret: "whsec_" + base64 of 24 random bytes. */
char *bh_webhook_secret_new(void);
/*
 * The Standard Webhooks signature "v1,<base64 HMAC-SHA256>" over
 * "msg_id.timestamp.body" keyed with the base64 part of a "whsec_" secret.
 * Returns NULL when the secret is malformed.
 */
char *bh_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
		      size_t body_len);

/* An opaque bearer token (prefix + 32 random bytes, base64url), and its stored hash. */
char *bh_token_new(const char *prefix);
void bh_token_hash(const char *token, char out[65]);

/* scrypt password hashing: "scrypt$N$r$p$salt$hash" (base64 parts). */
char *bh_password_hash(const char *password);
int bh_password_verify(const char *password, const char *stored) BH_MUSTCHECK;

/*
 * AES-256-GCM with a 32-byte key and a 12-byte IV. Encrypt writes len bytes
 * of ciphertext to out and the 16-byte tag; decrypt returns -1 when the tag
 * does not verify.
 */
int bh_aes256gcm_encrypt(const unsigned char key[32], const unsigned char iv[12], const void *plain,
			 size_t len, unsigned char *out, unsigned char tag[16]) BH_MUSTCHECK;
int bh_aes256gcm_decrypt(const unsigned char key[32], const unsigned char iv[12],
			 const unsigned char *cipher, size_t len, const unsigned char tag[16],
			 unsigned char *out) BH_MUSTCHECK;

#endif
