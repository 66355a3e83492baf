/*
 * PSD2 application webhooks (PRODUCT.md 6.2, seed 002): the subscription
 * kind "psd2" and the pure pieces of the dialect, kept here so the api,
 * the scheduler and the unit tests share them.
 *
 *   "psd2"  one per client (the application's webhook settings in force:
 *           url, headers {"Authorization": securityHeader}, enabled). It
 *           matches no incoming event: the scheduler creates its
 *           deliveries, each for an internal "tpp.notification" event whose
 *           data is the transactionEvent or accountEvent, sent as it is.
 */
#ifndef BH_COMMON_KIND_PSD2_H
#define BH_COMMON_KIND_PSD2_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "subscription.h"

extern const struct bh_kind_ops bh_kind_psd2;

#define BH_PSD2_KIND "psd2"
#define BH_PSD2_HEADER_MAX 1024
#define BH_PSD2_ACCOUNTS_MAX 10000 /* accounts in one connector answer */
#define BH_PSD2_ACCOUNT_ID_MAX 200

/*
 * When a change made at now_ms takes effect: the next full hour strictly
 * after it (11:31 -> 12:00, 12:00:00.000 -> 13:00). UTC epoch ms; whole
 * hours are the same instants in every whole-hour time zone.
 */
int64_t bh_psd2_activation_ms(int64_t now_ms);

/*
 * The webhook endpoint: an http(s) URL passing bh_url_check with no
 * parameters (no query, no fragment). 0, or -1 with a sentence (without
 * the field name) in errbuf.
 */
int bh_psd2_check_endpoint(const char *url, bool allow_loopback, bool allow_private, char *errbuf,
			   size_t errlen) BH_MUSTCHECK;

/* The security header: empty, or [ a-zA-Z0-9=+/]* of at most BH_PSD2_HEADER_MAX. */
bool bh_psd2_header_valid(const char *h);

/* {"type":"transactionEvent","consentId","eventType":"NEW","accounts":[{"accountId"}]}; ids borrowed. */
json_t *bh_psd2_transaction_event(const char *consent_id, const char *const *account_ids, int n);

/*
 * {"type":"accountEvent","consentId","taskId","taskStatus","bankCode",
 * "bankName","accounts"}; accounts is stolen (an array, [] when NULL).
 */
json_t *bh_psd2_account_event(const char *consent_id, const char *task_id, const char *status,
			      const char *bank_code, const char *bank_name, json_t *accounts);

/*
 * The stored form of a notification: a "tpp.notification" event with the
 * given id, occurred_at = now_ms and data = payload (stolen).
 */
json_t *bh_psd2_event_json(const char *event_id, int64_t now_ms, json_t *payload);

/*
 * Parses a connector's answer {"accounts":[{"accountId","balance",
 * "currency"}]}: accountId a string of 1..BH_PSD2_ACCOUNT_ID_MAX, unique;
 * balance a decimal string or a number (kept as its text); currency a
 * string of 1..16. On 0 *out is {accountId: {"balance","currency"}} (the
 * caller's); -1 with the reason (naming the member) in errbuf.
 */
int bh_psd2_parse_accounts(const char *body, size_t len, json_t **out, char *errbuf,
			   size_t errlen) BH_MUSTCHECK;

/*
 * What changed from `previous` to `current` (both as bh_psd2_parse_accounts
 * gives them): [{"accountId","eventType":"ADDED|UPDATED|DELETED"}], sorted
 * by accountId; an account whose balance and currency are unchanged is not
 * listed. The caller owns the result.
 */
json_t *bh_psd2_diff(json_t *previous, json_t *current);

#endif
