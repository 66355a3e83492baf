#include "idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

int bh_idem_key_check(const char *key, char *errbuf, size_t errlen)
{
	size_t n = strlen(key);
	if (n == 0 || n > BH_IDEM_KEY_MAX) {
		snprintf(errbuf, errlen, "must be 1 to %d characters", BH_IDEM_KEY_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c > 0x7e) {
			snprintf(errbuf, errlen, "must be printable ASCII (character %zu is not)",
				 i + 1);
			return -1;
		}
	}
	return 0;
}

void bh_idem_request_hash(const char *method, const char *route, const json_t *body, char out[65])
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	size_t mlen = strlen(method), rlen = strlen(route), tlen = text ? strlen(text) : 0;
	char *buf = bh_xmalloc(mlen + rlen + tlen + 2);
	memcpy(buf, method, mlen);
	buf[mlen] = ' ';
	memcpy(buf + mlen + 1, route, rlen);
	buf[mlen + 1 + rlen] = '\n';
	if (tlen > 0)
		memcpy(buf + mlen + rlen + 2, text, tlen);
	bh_sha256_hex(buf, mlen + rlen + tlen + 2, out);
	free(buf);
	free(text);
}

enum bh_idem_claim bh_idem_claim(struct bh_db *db, const char *client_id, const char *key,
				 const char *hash, int *status, char **body)
{
	char ttl[16], claim[16];
	snprintf(ttl, sizeof(ttl), "%d", BH_IDEM_TTL_S);
	snprintf(claim, sizeof(claim), "%d", BH_IDEM_CLAIM_S);
	const char *params[] = {client_id, key, hash, ttl, claim};
	*body = NULL;
	/* Twice at most: a row that expires between the two statements is taken over next time. */
	for (int round = 0; round < 2; round++) {
		PGresult *res = bh_db_query(
			db,
			"INSERT INTO idempotency_keys AS k (client_id, key, request_hash, expires_at)"
			" VALUES ($1, $2, $3, now() + make_interval(secs => $4::int))"
			" ON CONFLICT (client_id, key) DO UPDATE SET request_hash ="
			" EXCLUDED.request_hash, status = NULL, body = NULL, created_at = now(),"
			" expires_at = EXCLUDED.expires_at WHERE k.expires_at <= now() OR"
			" (k.status IS NULL AND k.created_at < now() - make_interval(secs =>"
			" $5::int)) RETURNING 1",
			5, params);
		if (res == NULL)
			return BH_IDEM_ERROR;
		int claimed = PQntuples(res);
		PQclear(res);
		if (claimed > 0)
			return BH_IDEM_NEW;
		res = bh_db_query(db,
				  "SELECT request_hash, status, body FROM idempotency_keys"
				  " WHERE client_id = $1 AND key = $2 AND expires_at > now()",
				  2, params);
		if (res == NULL)
			return BH_IDEM_ERROR;
		if (PQntuples(res) == 0) {
			PQclear(res);
			continue;
		}
		enum bh_idem_claim out;
		if (strcmp(PQgetvalue(res, 0, 0), hash) != 0) {
			out = BH_IDEM_MISMATCH;
		} else if (PQgetisnull(res, 0, 1)) {
			out = BH_IDEM_IN_PROGRESS;
		} else {
			out = BH_IDEM_REPLAY;
			*status = atoi(PQgetvalue(res, 0, 1));
			*body = bh_xstrdup(PQgetvalue(res, 0, 2));
		}
		PQclear(res);
		return out;
	}
	/* Claimed and released (or expired) twice under us: as busy as in progress. */
	return BH_IDEM_IN_PROGRESS;
}

int bh_idem_store(struct bh_db *db, const char *client_id, const char *key, int status,
		  const char *body)
{
	char st[16];
	snprintf(st, sizeof(st), "%d", status);
	return bh_db_exec(db,
			  "UPDATE idempotency_keys SET status = $3::int, body = $4"
			  " WHERE client_id = $1 AND key = $2",
			  4, (const char *[]){client_id, key, st, body});
}

int bh_idem_release(struct bh_db *db, const char *client_id, const char *key)
{
	return bh_db_exec(db,
			  "DELETE FROM idempotency_keys WHERE client_id = $1 AND key = $2"
			  " AND status IS NULL",
			  2, (const char *[]){client_id, key});
}

long long bh_idem_purge(struct bh_db *db, int batch)
{
	char b[16];
	snprintf(b, sizeof(b), "%d", batch);
	PGresult *res = bh_db_query(db,
				    "DELETE FROM idempotency_keys WHERE (client_id, key) IN"
				    " (SELECT client_id, key FROM idempotency_keys"
				    " WHERE expires_at <= now() LIMIT $1::int)",
				    1, (const char *[]){b});
	if (res == NULL)
		return -1;
	long long n = atoll(PQcmdTuples(res));
	PQclear(res);
	return n;
}
