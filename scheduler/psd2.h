/*
 * The scheduler's side of PSD2 application webhooks (PRODUCT.md 6.2):
 * pending webhook settings applied on the full hour, transactionEvents
 * aggregated per consent per window, and /refresh tasks run against the
 * banks' connectors. All state is in PostgreSQL, so a scheduler killed at
 * any point leaves nothing half-done: a refresh part it was running is
 * taken up again once its lease ran out.
 */
#ifndef BH_SCHEDULER_PSD2_H
#define BH_SCHEDULER_PSD2_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "util.h"

/*
 * Applies every pending webhook setting whose activeFrom is at or before
 * now_ms (epoch ms; negative: the database's now()), making it the
 * client's "psd2" subscription in force. Settings rows are locked (SKIP
 * LOCKED), so two callers never apply one twice. Returns how many were
 * applied, or -1.
 */
int bh_psd2_activate_due(struct bh_db *db, int64_t now_ms);

/*
 * Closes every consent's aggregation window older than window_s: one
 * transactionEvent listing its own-bank accounts (own_bank_code) that had
 * new transactions, delivered to the client's enabled webhook (none: the
 * window is dropped). Returns how many events were created, or -1.
 */
int bh_psd2_flush_transactions(struct bh_db *db, const struct bh_config *cfg);

/*
 * Retention: deletes at most `batch` COMPLETED refresh tasks finished more
 * than `days` days ago (their bank parts go with them). How many, or -1.
 */
long long bh_psd2_purge_tasks(struct bh_db *db, int days, int batch);

struct bh_psd2_refresh;

/* Counters for /metrics, updated by the refresh thread. */
struct bh_psd2_metrics {
	atomic_llong tasks_started;
	atomic_llong parts_finished;
	atomic_llong parts_failed;
	atomic_llong transaction_events;
	atomic_llong activations;
};

/*
 * Starts the refresh thread: while *leader is set it reads bankhook.refresh
 * (consumer group "bankhook-scheduler"), starts the queued tasks (and any
 * the sweep finds queued for a while), and calls each due bank's connector
 * in turn. NULL with the reason in errbuf.
 */
struct bh_psd2_refresh *bh_psd2_refresh_start(const struct bh_config *cfg, const atomic_int *leader,
					      struct bh_psd2_metrics *m, char *errbuf,
					      size_t errlen);
/* Stops the thread (after the call in flight, bounded by its timeout) and frees it. */
void bh_psd2_refresh_stop(struct bh_psd2_refresh *r);

#endif
