/*
 * The api's connection budget (docs/DESIGN.md "Connection budget"): which
 * connections may be open, and which must be closed, as pure policy over
 * a table of open connections. No I/O: the caller closes what it is told
 * to, through a callback run under the table's lock, so a connection is
 * never closed after it has gone and its descriptor been reused.
 *
 * - Deadlines. A connection reading a request has head_ms from the start
 *   of the request (its opening, or the end of the previous reply) to
 *   finish the request head, and request_ms to finish head and body.
 *   Trickling bytes does not move them. A request being handled has no
 *   deadline here (handlers wait on PostgreSQL and Kafka, bounded there).
 * - Budget. At most max_conns connections, at most per_addr from one
 *   address. When the budget is full, a newcomer from an address that
 *   holds fewer connections than the heaviest address takes a slot from
 *   it: the heaviest address's oldest connection still reading a request
 *   is closed. So a few addresses can fill the budget only while nobody
 *   else wants in, and a client with few connections always gets one.
 *
 * Thread-safe. Capacity: the caller's hard connection limit (`slots`).
 */
#ifndef BH_COMMON_CONNBUDGET_H
#define BH_COMMON_CONNBUDGET_H

#include <stdint.h>

#define BH_CONNBUDGET_ADDR_MAX 64 /* a numeric IPv4 or IPv6 address, NUL included */

enum bh_conn_phase {
	BH_CONN_HEAD,	  /* reading the request line and headers */
	BH_CONN_BODY,	  /* headers read; reading the body */
	BH_CONN_HANDLING, /* the request is complete; a handler runs or the reply is sent */
};

/* Closes the connection `handle` (a descriptor); called with the table locked. */
typedef void (*bh_connbudget_close_fn)(int handle, void *arg);

struct bh_connbudget;

/*
 * max_conns >= 1, 1 <= per_addr; slots >= max_conns is the most that can
 * be open at once (evictions in progress included). head_ms <= request_ms.
 */
struct bh_connbudget *bh_connbudget_new(int max_conns, int per_addr, int slots, int head_ms,
					int request_ms, bh_connbudget_close_fn close_fn,
					void *close_arg);
void bh_connbudget_free(struct bh_connbudget *b);

/*
 * Whether a new connection from addr may be accepted: 0 no, 1 yes, 2 yes
 * after closing another: when the budget is full and addr holds fewer
 * than the heaviest address, one of that address's connections is closed
 * (close_fn) to make room.
 */
int bh_connbudget_admit(struct bh_connbudget *b, const char *addr);

/*
 * Registers an accepted connection (phase HEAD from now_ms); returns its
 * id (>= 0) for the calls below, or -1 when the table is full (the caller
 * closes it). handle is what close_fn receives.
 */
int bh_connbudget_open(struct bh_connbudget *b, int handle, const char *addr, int64_t now_ms);
/* The connection's request moved to phase; HEAD starts a new request at now_ms. */
void bh_connbudget_phase(struct bh_connbudget *b, int id, enum bh_conn_phase phase, int64_t now_ms);
/* The connection is gone (before its descriptor is closed). */
void bh_connbudget_close(struct bh_connbudget *b, int id);

/* Closes (close_fn) every connection past its deadline at now_ms; returns how many. */
int bh_connbudget_sweep(struct bh_connbudget *b, int64_t now_ms);

/* Connections counted (open, not being closed): of addr, or all for NULL. */
int bh_connbudget_count(struct bh_connbudget *b, const char *addr);

#endif
