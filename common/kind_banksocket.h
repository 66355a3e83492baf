/*
 * The Banksocket subscription kind (PRODUCT.md 6.3, seed 003), registered
 * in the kind table of subscription.c:
 *   "banksocket"  account_id set (one account) or NULL ("all"), options
 *                 {"title","event":"NEW_TRANSACTION|NEW_DEBIT|NEW_CREDIT",
 *                 "account"}; fires on transaction.created in the
 *                 event's direction and renders Banksocket's form post.
 */
#ifndef BH_COMMON_KIND_BANKSOCKET_H
#define BH_COMMON_KIND_BANKSOCKET_H

#include "subscription.h"

extern const struct bh_kind_ops bh_kind_banksocket;

/*
 * Banksocket's hash: base64( lowercase hex( SHA-256( dc + code + amount +
 * balance + currency + description + api_secret ) ) ), over the values
 * exactly as they are posted. Returns a malloc'ed string.
 */
char *bh_banksocket_hash(const char *dc, const char *code, const char *amount, const char *balance,
			 const char *currency, const char *description, const char *api_secret);

#endif
