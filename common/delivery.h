/*
 * The delivery log: events (dedup and replay), deliveries (one event for
 * one subscription) and attempts. Every SQL statement on these three
 * tables lives in delivery.c.
 *
 * A delivery's life:
 *   created   status 'pending', attempts 0, next_attempt_at = now + lease
 *             (the creating worker holds it for lease_s and attempts it)
 *   attempt   one row in attempts; success -> 'succeeded'; failure ->
 *             next_attempt_at = now + schedule[attempts] ± jitter, or
 *             'failed' when the schedule is used up
 *   due       the scheduler claims pending deliveries whose next_attempt_at
 *             passed (moving it lease_s ahead) and sends a job on
 *             bankhook.deliveries; a worker that died mid-attempt is
 *             covered the same way, once its lease ran out
 */
#ifndef BH_COMMON_DELIVERY_H
#define BH_COMMON_DELIVERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "util.h"

/* Filters of GET /v1/deliveries; NULL fields do not filter. */
struct bh_delivery_filter {
	const char *endpoint_id;
	const char *event_id;
	const char *status; /* pending | succeeded | failed */
};

/*
 * One page of deliveries, newest first: {"data":[...],"next_cursor":...}
 * (next_cursor null on the last page). client_id NULL means every client
 * (admin). cursor is the opaque next_cursor of the previous page or NULL.
 * Returns NULL with a message in errbuf; a bad cursor gives "cursor: ...".
 */
json_t *bh_delivery_list_json(struct bh_db *db, const char *client_id,
			      const struct bh_delivery_filter *f, int limit, const char *cursor,
			      char *errbuf, size_t errlen);

/*
 * One delivery with every attempt, or NULL when absent or not the client's
 * (client_id NULL: any client).
 */
json_t *bh_delivery_get_json(struct bh_db *db, const char *client_id, const char *id);

#endif
