/*
 * The event model: what arrives on bankhook.events or POST /v1/events,
 * validated field by field so a bad message is refused with a reason that
 * names the field (and goes to the DLQ), never half-processed.
 */
#ifndef BH_COMMON_EVENT_H
#define BH_COMMON_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define BH_EVENT_MAX_BYTES (1024 * 1024)
#define BH_EVENT_ID_MAX 200

enum bh_event_type {
	BH_EVENT_TRANSACTION_CREATED,
	BH_EVENT_BALANCE_CHANGED,
	BH_EVENT_PAYMENT_UPDATED,
	/*
	 * Internal: a notification the scheduler composed for an application
	 * webhook (PRODUCT.md 6.2); data is the payload sent as it is. Stored
	 * like any event so the delivery log, retries and replay work; never
	 * matched against subscriptions, and refused by POST /v1/events.
	 */
	BH_EVENT_TPP_NOTIFICATION,
};

struct bh_event {
	json_t *json; /* the normalized event, owns every string below */
	const char *id;
	const char *type_name;
	enum bh_event_type type;
	int64_t occurred_ms;
	const char *bank_id;	/* NULL when absent */
	const char *account_id; /* NULL when absent */
	json_t *data;		/* borrowed from json */
};

/*
 * Parses and validates one event. When it has no "id", fallback_id is used
 * (callers pass a value that is stable for the same input, so a redelivered
 * message dedups). On success fills ev (free with bh_event_free) and
 * returns 0; otherwise -1 and a reason naming the field in errbuf.
 */
int bh_event_parse(const char *buf, size_t len, const char *fallback_id, struct bh_event *ev,
		   char *errbuf, size_t errlen) BH_MUSTCHECK;
/* The same for an already parsed object (borrowed; ev takes a reference). */
int bh_event_from_json(json_t *obj, const char *fallback_id, struct bh_event *ev, char *errbuf,
		       size_t errlen) BH_MUSTCHECK;
void bh_event_free(struct bh_event *ev);

/* The type name of the internal application-webhook notification. */
#define BH_EVENT_TPP_NOTIFICATION_NAME "tpp.notification"
/* True for types only bankhook itself creates (never matched, never published). */
bool bh_event_type_internal(enum bh_event_type type);

/* True for "123", "-5.20": the decimal strings amounts are sent as. */
bool bh_is_decimal(const char *s);
/* True when a transaction.created event is a credit. */
bool bh_event_is_credit(const struct bh_event *ev);
/* data[key] as a string, or "" when absent. */
const char *bh_event_data_str(const struct bh_event *ev, const char *key);

#endif
