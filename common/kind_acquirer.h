/*
 * The card acquirer's subscription kind (PRODUCT.md 6.4, seed 004),
 * registered in the kind table of subscription.c:
 *   "acquirer"  one notification configuration; options
 *               {"notificationConfigurationCode","acquirerId","merchantId",
 *               "acceptorId","terminalId" (null: any),"paymentMethods":[..],
 *               "notificationType":"URL","security":{"key","supportEmail",
 *               "algorithm"}}; fires on payment.updated of its acquirer,
 *               merchant (acceptor, terminal) and payment methods, and
 *               renders the notification encrypted with AES-256-GCM.
 */
#ifndef BH_COMMON_KIND_ACQUIRER_H
#define BH_COMMON_KIND_ACQUIRER_H

#include "subscription.h"

#define BH_ACQUIRER_KEY_LEN 32
#define BH_ACQUIRER_ALGORITHM "AES-256-GCM"

extern const struct bh_kind_ops bh_kind_acquirer;

#endif
