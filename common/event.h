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

/*
 * The largest event, serialized compact as it goes to Kafka and into
 * events.body. Kafka's producer refuses messages over message.max.bytes
 * (1,000,000 by default, the broker's max.message.bytes 1,048,588): this
 * leaves room for the key and the record framing, so an event the API
 * accepts is never one Kafka refuses.
 */
#define BH_EVENT_MAX_BYTES 900000
#define BH_EVENT_ID_MAX 200
/* Returned by bh_event_parse / bh_event_from_json for an event over BH_EVENT_MAX_BYTES. */
#define BH_EVENT_TOO_LARGE (-2)
/* Nesting of data's arrays and objects; deeper is refused. */
#define BH_EVENT_DEPTH_MAX 32
/* JSON reals anywhere in an event: magnitude below this (integers: any 64-bit value). */
#define BH_EVENT_REAL_MAX 1e15
/*
 * Amounts are decimal strings of at most 15 integer and 10 fraction
 * digits ("-999999999999999.9999999999"): every renderer computes on
 * integer hundredths in a long long and formats them exactly.
 */
#define BH_AMOUNT_INT_DIGITS_MAX 15
#define BH_AMOUNT_FRAC_DIGITS_MAX 10

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
 * Parses and validates one event: the one validator of POST /v1/events and
 * the worker's Kafka intake. Its acceptance set is what the worker can
 * store (column types and ranges: times within BH_TIME_MIN_MS ..
 * BH_TIME_MAX_MS, no NUL in any string, at most BH_EVENT_MAX_BYTES) and
 * what every renderer can render (amounts per BH_AMOUNT_*); the fuzz
 * target tests/fuzz/fuzz_chain.c holds it to that. When it has no "id",
 * fallback_id is used (callers pass a value that is stable for the same
 * input, so a redelivered message dedups). On success fills ev (free with
 * bh_event_free) and returns 0; otherwise -1, or BH_EVENT_TOO_LARGE, with
 * a reason naming the field in errbuf.
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

/* True for "123", "-5.20": the decimal strings amounts are sent as (any size). */
bool bh_is_decimal(const char *s);
/* True for a decimal string within BH_AMOUNT_INT_DIGITS_MAX / BH_AMOUNT_FRAC_DIGITS_MAX. */
bool bh_event_amount_ok(const char *s);
/* True when a transaction.created event is a credit. */
bool bh_event_is_credit(const struct bh_event *ev);
/* data[key] as a string, or "" when absent. */
const char *bh_event_data_str(const struct bh_event *ev, const char *key);

#endif
