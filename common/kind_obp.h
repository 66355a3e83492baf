/*
 * Open Bank Project subscription kinds (PRODUCT.md 6.1), registered in the
 * kind table of subscription.c:
 *   "obp_account"       an account webhook: bank_id and account_id set,
 *                       options {"trigger_name","http_protocol"}; fires on
 *                       OnBalanceChange / OnCreditTransaction / OnDebitTransaction.
 *   "obp_notification"  an account-notification webhook: bank_id set (bank
 *                       level) or NULL (system level), options
 *                       {"trigger_name":"OnCreateTransaction","http_protocol"};
 *                       fires on every transaction.created of its bank(s).
 */
#ifndef BH_COMMON_KIND_OBP_H
#define BH_COMMON_KIND_OBP_H

#include "subscription.h"

extern const struct bh_kind_ops bh_kind_obp_account;
extern const struct bh_kind_ops bh_kind_obp_notification;

#endif
