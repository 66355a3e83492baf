/*
 * What the worker's threads pass each other (see the top of worker/main.c):
 * batches of Kafka messages go from the I/O thread to the store thread,
 * finished attempts to the record thread, rendered jobs back to the I/O
 * thread, and ordered subscriptions whose line moved from the record
 * thread to the store thread.
 *
 * One mutex guards it all, and each side takes a whole list at a time, so
 * the lock is held for pointer swaps only. The I/O thread sleeps in
 * curl_multi_poll on wake_fd (the read end of a pipe): the store thread
 * writes to the pipe when it hands jobs back, and librdkafka when messages
 * arrive (bh_handoff_notify_fd is given to rd_kafka_queue_io_event_enable).
 */
#ifndef BH_WORKER_HANDOFF_H
#define BH_WORKER_HANDOFF_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "delivery.h"
#include "sender.h"

/* Messages read together; the store thread stores their offsets, then destroys them. */
struct bh_batch {
	rd_kafka_message_t **msgs;
	int n;
	struct bh_batch *next;
};

/* Destroys the messages (offsets not stored: Kafka hands them out again) and the list. */
void bh_batch_free_all(struct bh_batch *b);

/*
 * Attempts finished and not yet recorded, as parallel arrays: recs is what
 * bh_delivery_record_attempts takes. Every string is owned here.
 */
struct bh_finished {
	struct bh_attempt_record *recs;
	char **event_ids;
	bool *ordered; /* its subscription is ordered: a final outcome frees the next */
	int n, cap;
};

/* Appends a copy of r. */
void bh_finished_add(struct bh_finished *f, const struct bh_send_result *r);
/* Frees the entries' strings; keeps the arrays for reuse. */
void bh_finished_clear(struct bh_finished *f);
void bh_finished_free(struct bh_finished *f);

struct bh_handoff;

/* NULL with the reason in errbuf (the pipe could not be made). */
struct bh_handoff *bh_handoff_new(char *errbuf, size_t errlen);
/* Frees whatever is still in it (messages unstored, jobs unstarted). */
void bh_handoff_free(struct bh_handoff *h);

/* Readable when woken; bh_handoff_drain_wake empties it. */
int bh_handoff_wake_fd(const struct bh_handoff *h);
/* The pipe's write end, for librdkafka's io event. */
int bh_handoff_notify_fd(const struct bh_handoff *h);
void bh_handoff_drain_wake(struct bh_handoff *h);

/* ---- I/O thread -------------------------------------------------------- */

/* Takes the messages (and the array). */
void bh_handoff_put_batch(struct bh_handoff *h, rd_kafka_message_t **msgs, int n);
/* Messages in the batches the store thread has not taken yet. */
int bh_handoff_messages_waiting(struct bh_handoff *h);
/* Moves every entry of f into the handoff; f is left empty. */
void bh_handoff_put_finished(struct bh_handoff *h, struct bh_finished *f);
/* Finished attempts the record thread has not taken yet. */
int bh_handoff_finished_waiting(struct bh_handoff *h);
/* The jobs handed back (a list through job->next), oldest first, or NULL. */
struct bh_send_job *bh_handoff_take_jobs(struct bh_handoff *h);
/* Jobs handed back and not taken yet. */
int bh_handoff_jobs_waiting(struct bh_handoff *h);
/* The store thread ends once the finished attempts handed over are taken. */
void bh_handoff_stop(struct bh_handoff *h);

/* ---- store thread ------------------------------------------------------ */

/*
 * Waits up to timeout_ms for work, then takes all of it: *batches (oldest
 * first, or NULL) and *advance, the ordered subscriptions whose line moved
 * (malloc'ed array of malloc'ed ids; the caller frees both). Returns 1
 * when something was taken, 0 on timeout, -1 once stopped (batches still
 * waiting are then freed unstored).
 */
int bh_handoff_take_batches(struct bh_handoff *h, struct bh_batch **batches, char ***advance,
			    int *nadvance, int timeout_ms);
/* True once bh_handoff_stop was called: long waits give up. */
bool bh_handoff_stopping(struct bh_handoff *h);
/* Hands a list of jobs (through job->next) back and wakes the I/O thread. */
void bh_handoff_put_jobs(struct bh_handoff *h, struct bh_send_job *head, struct bh_send_job *tail,
			 int n);

/* ---- record thread ----------------------------------------------------- */

/*
 * Waits up to timeout_ms for finished attempts and swaps them into *fin
 * (which must be empty). 1 when some were taken, 0 on timeout, -1 once
 * stopped with none left.
 */
int bh_handoff_take_finished(struct bh_handoff *h, struct bh_finished *fin, int timeout_ms);
/* Takes the n malloc'ed ids (not the array) for the store thread. */
void bh_handoff_put_advance(struct bh_handoff *h, char **ids, int n);

#endif
