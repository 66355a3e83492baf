#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

struct bh_handoff {
	pthread_mutex_t mu;
	pthread_cond_t store_work;  /* a batch or ordered subscriptions to advance */
	pthread_cond_t record_work; /* finished attempts */
	struct bh_batch *bhead, *btail;
	int nwaiting;	/* messages in those batches */
	char **advance; /* subscription ids, for the store thread */
	int nadvance, aadvance;
	struct bh_finished fin;
	struct bh_send_job *jhead, *jtail;
	int njobs;
	bool stopping;
	int pipe_rd, pipe_wr; /* nonblocking: a full pipe already means "wake up" */
};

void bh_batch_free_all(struct bh_batch *b)
{
	while (b) {
		struct bh_batch *next = b->next;
		for (int i = 0; i < b->n; i++)
			rd_kafka_message_destroy(b->msgs[i]);
		free(b->msgs);
		free(b);
		b = next;
	}
}

/* ---- finished attempts ------------------------------------------------- */

static void finished_reserve(struct bh_finished *f, int n)
{
	if (f->n + n <= f->cap)
		return;
	int cap = f->cap ? f->cap : 64;
	while (cap < f->n + n)
		cap *= 2;
	f->recs = bh_xrealloc(f->recs, (size_t)cap * sizeof(*f->recs));
	f->event_ids = bh_xrealloc(f->event_ids, (size_t)cap * sizeof(*f->event_ids));
	f->ordered = bh_xrealloc(f->ordered, (size_t)cap * sizeof(*f->ordered));
	f->cap = cap;
}

void bh_finished_add(struct bh_finished *f, const struct bh_send_result *r)
{
	finished_reserve(f, 1);
	struct bh_attempt_record *rec = &f->recs[f->n];
	memset(rec, 0, sizeof(*rec));
	rec->delivery_id = bh_xstrdup(r->job->delivery_id);
	rec->subscription_id = bh_xstrdup(r->job->subscription_id);
	rec->r.started_ms = r->started_ms;
	rec->r.duration_ms = r->duration_ms;
	rec->r.http_status = r->http_status;
	rec->r.error = r->error ? bh_xstrdup(r->error) : NULL;
	rec->r.response = r->response ? bh_xstrdup(r->response) : NULL;
	rec->r.permanent = r->permanent;
	rec->r.retry_after_s = r->retry_after_s;
	f->event_ids[f->n] = bh_xstrdup(r->job->event_id);
	f->ordered[f->n] = r->job->ordered;
	f->n++;
}

void bh_finished_clear(struct bh_finished *f)
{
	for (int i = 0; i < f->n; i++) {
		free((char *)f->recs[i].delivery_id);
		free((char *)f->recs[i].subscription_id);
		free((char *)f->recs[i].r.error);
		free((char *)f->recs[i].r.response);
		free(f->event_ids[i]);
	}
	f->n = 0;
}

void bh_finished_free(struct bh_finished *f)
{
	bh_finished_clear(f);
	free(f->recs);
	free(f->event_ids);
	free(f->ordered);
	memset(f, 0, sizeof(*f));
}

/* Moves src's entries to the end of dst (the strings change owner). */
static void finished_move(struct bh_finished *dst, struct bh_finished *src)
{
	if (src->n == 0)
		return;
	if (dst->n == 0) {
		/* The common case: swap the arrays, no copying. */
		struct bh_finished tmp = *dst;
		*dst = *src;
		*src = tmp;
		return;
	}
	finished_reserve(dst, src->n);
	memcpy(dst->recs + dst->n, src->recs, (size_t)src->n * sizeof(*src->recs));
	memcpy(dst->event_ids + dst->n, src->event_ids, (size_t)src->n * sizeof(*src->event_ids));
	memcpy(dst->ordered + dst->n, src->ordered, (size_t)src->n * sizeof(*src->ordered));
	dst->n += src->n;
	src->n = 0;
}

/* ---- the handoff ------------------------------------------------------- */

struct bh_handoff *bh_handoff_new(char *errbuf, size_t errlen)
{
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(errbuf, errlen, "worker: wake-up pipe: %s", strerror(errno));
		return NULL;
	}
	struct bh_handoff *h = bh_xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	/* Timed waits on the monotonic clock: a wall-clock step cannot stall them. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->store_work, &ca);
	pthread_cond_init(&h->record_work, &ca);
	pthread_condattr_destroy(&ca);
	h->pipe_rd = fds[0];
	h->pipe_wr = fds[1];
	return h;
}

void bh_handoff_free(struct bh_handoff *h)
{
	if (h == NULL)
		return;
	bh_batch_free_all(h->bhead);
	bh_finished_free(&h->fin);
	for (int i = 0; i < h->nadvance; i++)
		free(h->advance[i]);
	free(h->advance);
	while (h->jhead) {
		struct bh_send_job *next = h->jhead->next;
		bh_send_job_free(h->jhead);
		h->jhead = next;
	}
	close(h->pipe_rd);
	close(h->pipe_wr);
	pthread_cond_destroy(&h->store_work);
	pthread_cond_destroy(&h->record_work);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

int bh_handoff_wake_fd(const struct bh_handoff *h)
{
	return h->pipe_rd;
}

int bh_handoff_notify_fd(const struct bh_handoff *h)
{
	return h->pipe_wr;
}

void bh_handoff_drain_wake(struct bh_handoff *h)
{
	char buf[256];
	while (read(h->pipe_rd, buf, sizeof(buf)) > 0)
		;
}

void bh_handoff_put_batch(struct bh_handoff *h, rd_kafka_message_t **msgs, int n)
{
	struct bh_batch *b = bh_xcalloc(1, sizeof(*b));
	b->msgs = msgs; /* now owned by the batch */
	b->n = n;
	pthread_mutex_lock(&h->mu);
	if (h->btail)
		h->btail->next = b;
	else
		h->bhead = b;
	h->btail = b;
	h->nwaiting += n;
	pthread_cond_signal(&h->store_work);
	pthread_mutex_unlock(&h->mu);
}

int bh_handoff_messages_waiting(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	int n = h->nwaiting;
	pthread_mutex_unlock(&h->mu);
	return n;
}

void bh_handoff_put_finished(struct bh_handoff *h, struct bh_finished *f)
{
	if (f->n == 0)
		return;
	pthread_mutex_lock(&h->mu);
	finished_move(&h->fin, f);
	pthread_cond_signal(&h->record_work);
	pthread_mutex_unlock(&h->mu);
}

int bh_handoff_finished_waiting(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	int n = h->fin.n;
	pthread_mutex_unlock(&h->mu);
	return n;
}

struct bh_send_job *bh_handoff_take_jobs(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	struct bh_send_job *head = h->jhead;
	h->jhead = h->jtail = NULL;
	h->njobs = 0;
	pthread_mutex_unlock(&h->mu);
	return head;
}

int bh_handoff_jobs_waiting(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	int n = h->njobs;
	pthread_mutex_unlock(&h->mu);
	return n;
}

void bh_handoff_stop(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	pthread_cond_signal(&h->store_work);
	pthread_cond_signal(&h->record_work);
	pthread_mutex_unlock(&h->mu);
}

bool bh_handoff_stopping(struct bh_handoff *h)
{
	pthread_mutex_lock(&h->mu);
	bool s = h->stopping;
	pthread_mutex_unlock(&h->mu);
	return s;
}

int bh_handoff_take_batches(struct bh_handoff *h, struct bh_batch **batches, char ***advance,
			    int *nadvance, int timeout_ms)
{
	struct timespec until = bh_mono_deadline(timeout_ms);
	struct bh_batch *unstored = NULL;
	int rc = 0;
	*batches = NULL;
	*advance = NULL;
	*nadvance = 0;
	pthread_mutex_lock(&h->mu);
	while (!h->stopping && h->bhead == NULL && h->nadvance == 0) {
		if (pthread_cond_timedwait(&h->store_work, &h->mu, &until) == ETIMEDOUT)
			break;
	}
	if (h->stopping) {
		/* Unstored batches are read again by whoever owns the partitions next. */
		unstored = h->bhead;
		rc = -1;
	} else {
		*batches = h->bhead;
		*advance = h->advance;
		*nadvance = h->nadvance;
		h->advance = NULL;
		h->nadvance = h->aadvance = 0;
		rc = *batches || *nadvance ? 1 : 0;
	}
	h->bhead = h->btail = NULL;
	h->nwaiting = 0;
	pthread_mutex_unlock(&h->mu);
	bh_batch_free_all(unstored);
	return rc;
}

void bh_handoff_put_advance(struct bh_handoff *h, char **ids, int n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&h->mu);
	if (h->nadvance + n > h->aadvance) {
		h->aadvance = (h->nadvance + n) * 2;
		h->advance = bh_xrealloc(h->advance, (size_t)h->aadvance * sizeof(*h->advance));
	}
	memcpy(h->advance + h->nadvance, ids, (size_t)n * sizeof(*ids));
	h->nadvance += n;
	pthread_cond_signal(&h->store_work);
	pthread_mutex_unlock(&h->mu);
}

int bh_handoff_take_finished(struct bh_handoff *h, struct bh_finished *fin, int timeout_ms)
{
	struct timespec until = bh_mono_deadline(timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&h->mu);
	while (!h->stopping && h->fin.n == 0) {
		if (pthread_cond_timedwait(&h->record_work, &h->mu, &until) == ETIMEDOUT)
			break;
	}
	if (h->fin.n > 0) {
		finished_move(fin, &h->fin);
		rc = 1;
	} else if (h->stopping) {
		rc = -1;
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void bh_handoff_put_jobs(struct bh_handoff *h, struct bh_send_job *head, struct bh_send_job *tail,
			 int n)
{
	if (head == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	if (h->jtail)
		h->jtail->next = head;
	else
		h->jhead = head;
	h->jtail = tail;
	h->njobs += n;
	pthread_mutex_unlock(&h->mu);
	/* EAGAIN: the pipe is full, so the I/O thread wakes anyway. */
	ssize_t w = write(h->pipe_wr, "j", 1);
	(void)w;
}
