#include "connbudget.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct conn {
	bool used;
	bool closing; /* told to close_fn; no longer counted, not yet gone */
	int handle;
	int addr; /* index in addrs */
	enum bh_conn_phase phase;
	int64_t start_ms; /* when the current request began */
};

struct addr {
	char text[BH_CONNBUDGET_ADDR_MAX];
	int count; /* connections counted (not closing); 0: free entry */
};

struct bh_connbudget {
	pthread_mutex_t lock;
	int max_conns, per_addr, slots;
	int64_t head_ms, request_ms;
	bh_connbudget_close_fn close_fn;
	void *close_arg;
	int counted; /* open and not closing */
	struct conn *conns;
	struct addr *addrs; /* one per distinct address counted; as many as slots */
};

struct bh_connbudget *bh_connbudget_new(int max_conns, int per_addr, int slots, int head_ms,
					int request_ms, bh_connbudget_close_fn close_fn,
					void *close_arg)
{
	struct bh_connbudget *b = bh_xcalloc(1, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	b->max_conns = max_conns;
	b->per_addr = per_addr;
	b->slots = slots;
	b->head_ms = head_ms;
	b->request_ms = request_ms;
	b->close_fn = close_fn;
	b->close_arg = close_arg;
	b->conns = bh_xcalloc((size_t)slots, sizeof(*b->conns));
	b->addrs = bh_xcalloc((size_t)slots, sizeof(*b->addrs));
	return b;
}

void bh_connbudget_free(struct bh_connbudget *b)
{
	if (b == NULL)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b->conns);
	free(b->addrs);
	free(b);
}

/* The entry of addr, or -1 when it holds no connection. */
static int addr_find(const struct bh_connbudget *b, const char *addr)
{
	for (int i = 0; i < b->slots; i++)
		if (b->addrs[i].count > 0 && strcmp(b->addrs[i].text, addr) == 0)
			return i;
	return -1;
}

static int addr_count(const struct bh_connbudget *b, const char *addr)
{
	int i = addr_find(b, addr);
	return i < 0 ? 0 : b->addrs[i].count;
}

/* Stops counting c (it is closing or gone); its address entry frees at 0. */
static void uncount(struct bh_connbudget *b, struct conn *c)
{
	b->addrs[c->addr].count--;
	b->counted--;
}

static void close_conn(struct bh_connbudget *b, struct conn *c)
{
	c->closing = true;
	uncount(b, c);
	b->close_fn(c->handle, b->close_arg);
}

/* The oldest connection of address entry a still reading a request, or NULL. */
static struct conn *oldest_reading(struct bh_connbudget *b, int a)
{
	struct conn *best = NULL;
	for (int i = 0; i < b->slots; i++) {
		struct conn *c = &b->conns[i];
		if (!c->used || c->closing || c->addr != a || c->phase == BH_CONN_HANDLING)
			continue;
		if (best == NULL || c->start_ms < best->start_ms)
			best = c;
	}
	return best;
}

int bh_connbudget_admit(struct bh_connbudget *b, const char *addr)
{
	int ok = 0;
	pthread_mutex_lock(&b->lock);
	int mine = addr_count(b, addr);
	if (mine >= b->per_addr)
		goto out;
	if (b->counted < b->max_conns) {
		ok = 1;
		goto out;
	}
	/*
	 * Full: the heaviest address gives one up, if it would still hold
	 * more than the newcomer does after this. Ties keep what they have,
	 * so equal holders do not take slots from each other forever.
	 */
	int heaviest = -1;
	for (int i = 0; i < b->slots; i++)
		if (b->addrs[i].count > 0 &&
		    (heaviest < 0 || b->addrs[i].count > b->addrs[heaviest].count))
			heaviest = i;
	if (heaviest < 0 || b->addrs[heaviest].count - 1 <= mine)
		goto out;
	struct conn *victim = oldest_reading(b, heaviest);
	if (victim == NULL)
		goto out;
	close_conn(b, victim);
	ok = 2;
out:
	pthread_mutex_unlock(&b->lock);
	return ok;
}

int bh_connbudget_open(struct bh_connbudget *b, int handle, const char *addr, int64_t now_ms)
{
	int id = -1;
	pthread_mutex_lock(&b->lock);
	for (int i = 0; i < b->slots && id < 0; i++)
		if (!b->conns[i].used)
			id = i;
	if (id < 0)
		goto out;
	int a = addr_find(b, addr);
	for (int i = 0; i < b->slots && a < 0; i++)
		if (b->addrs[i].count == 0)
			a = i;
	/* As many entries as connection slots: a free slot means a free entry. */
	if (b->addrs[a].count == 0)
		snprintf(b->addrs[a].text, sizeof(b->addrs[a].text), "%s", addr);
	b->addrs[a].count++;
	b->counted++;
	b->conns[id] = (struct conn){.used = true,
				     .handle = handle,
				     .addr = a,
				     .phase = BH_CONN_HEAD,
				     .start_ms = now_ms};
out:
	pthread_mutex_unlock(&b->lock);
	return id;
}

void bh_connbudget_phase(struct bh_connbudget *b, int id, enum bh_conn_phase phase, int64_t now_ms)
{
	if (id < 0 || id >= b->slots)
		return;
	pthread_mutex_lock(&b->lock);
	struct conn *c = &b->conns[id];
	if (c->used) {
		if (phase == BH_CONN_HEAD && c->phase != BH_CONN_HEAD)
			c->start_ms = now_ms;
		c->phase = phase;
	}
	pthread_mutex_unlock(&b->lock);
}

void bh_connbudget_close(struct bh_connbudget *b, int id)
{
	if (id < 0 || id >= b->slots)
		return;
	pthread_mutex_lock(&b->lock);
	struct conn *c = &b->conns[id];
	if (c->used && !c->closing)
		uncount(b, c);
	memset(c, 0, sizeof(*c));
	pthread_mutex_unlock(&b->lock);
}

int bh_connbudget_sweep(struct bh_connbudget *b, int64_t now_ms)
{
	int n = 0;
	pthread_mutex_lock(&b->lock);
	for (int i = 0; i < b->slots; i++) {
		struct conn *c = &b->conns[i];
		if (!c->used || c->closing || c->phase == BH_CONN_HANDLING)
			continue;
		int64_t limit = c->phase == BH_CONN_HEAD ? b->head_ms : b->request_ms;
		if (now_ms - c->start_ms >= limit) {
			close_conn(b, c);
			n++;
		}
	}
	pthread_mutex_unlock(&b->lock);
	return n;
}

int bh_connbudget_count(struct bh_connbudget *b, const char *addr)
{
	pthread_mutex_lock(&b->lock);
	int n = addr == NULL ? b->counted : addr_count(b, addr);
	pthread_mutex_unlock(&b->lock);
	return n;
}
