/*
 * common/connbudget: the per-address cap, admission while the budget has
 * room, the fair share of a full budget (the heaviest address gives up its
 * oldest connection still reading, never one being handled, never to an
 * address as heavy), and the head and request deadlines however the
 * connection trickles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "connbudget.h"

/* What close_fn was told, in order. */
struct closed {
	int handles[64];
	int n;
};

static void record_close(int handle, void *arg)
{
	struct closed *c = arg;
	if (c->n < 64)
		c->handles[c->n++] = handle;
}

/* Admits and opens a connection with handle h from addr at now; its id. */
static int connect_from(struct bh_connbudget *b, const char *addr, int h, int64_t now)
{
	assert_int_equal(bh_connbudget_admit(b, addr), 1);
	int id = bh_connbudget_open(b, h, addr, now);
	assert_true(id >= 0);
	return id;
}

static void per_address_cap(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(100, 2, 120, 10000, 60000, record_close, &c);
	int first = connect_from(b, "10.0.0.1", 1, 0);
	connect_from(b, "10.0.0.1", 2, 0);
	assert_int_equal(bh_connbudget_admit(b, "10.0.0.1"), 0);
	assert_int_equal(bh_connbudget_count(b, "10.0.0.1"), 2);
	/* another address is not affected */
	connect_from(b, "10.0.0.2", 3, 0);
	/* one goes: room again */
	bh_connbudget_close(b, first);
	assert_int_equal(bh_connbudget_admit(b, "10.0.0.1"), 1);
	assert_int_equal(bh_connbudget_count(b, NULL), 2);
	assert_int_equal(c.n, 0);
	bh_connbudget_free(b);
}

static void full_budget_takes_from_the_heaviest_address(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(4, 4, 8, 10000, 60000, record_close, &c);
	/* 10.0.0.1 fills the budget, its handle 1 the oldest */
	for (int h = 1; h <= 4; h++)
		connect_from(b, "10.0.0.1", h, h);
	/* a newcomer gets in: the heaviest address's oldest connection is closed */
	assert_int_equal(bh_connbudget_admit(b, "10.0.0.9"), 2);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.handles[0], 1);
	assert_int_equal(bh_connbudget_count(b, "10.0.0.1"), 3);
	bh_connbudget_open(b, 9, "10.0.0.9", 10);
	/* the heavy address itself cannot take back a slot from the newcomer */
	assert_int_equal(bh_connbudget_admit(b, "10.0.0.1"), 0);
	assert_int_equal(c.n, 1);
	bh_connbudget_free(b);
}

static void equal_holders_do_not_take_from_each_other(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(4, 4, 8, 10000, 60000, record_close, &c);
	connect_from(b, "a", 1, 0);
	connect_from(b, "a", 2, 0);
	connect_from(b, "b", 3, 0);
	connect_from(b, "b", 4, 0);
	/* b would hold 3 while a holds 1: refused; a newcomer with none gets in */
	assert_int_equal(bh_connbudget_admit(b, "b"), 0);
	assert_int_equal(bh_connbudget_admit(b, "c"), 2);
	assert_int_equal(c.n, 1);
	bh_connbudget_free(b);
}

static void connections_being_handled_are_never_taken(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(2, 2, 4, 10000, 60000, record_close, &c);
	int x = connect_from(b, "a", 1, 0);
	int y = connect_from(b, "a", 2, 0);
	bh_connbudget_phase(b, x, BH_CONN_HANDLING, 5);
	bh_connbudget_phase(b, y, BH_CONN_HANDLING, 5);
	assert_int_equal(bh_connbudget_admit(b, "z"), 0);
	assert_int_equal(c.n, 0);
	/* and not swept either, however long the handler takes */
	assert_int_equal(bh_connbudget_sweep(b, 1000000), 0);
	/* back to reading the next request: it may be taken */
	bh_connbudget_phase(b, y, BH_CONN_HEAD, 6);
	assert_int_equal(bh_connbudget_admit(b, "z"), 2);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.handles[0], 2);
	bh_connbudget_free(b);
}

static void head_and_request_deadlines(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(10, 10, 12, 1000, 3000, record_close, &c);
	int slow_head = connect_from(b, "a", 1, 0);
	int slow_body = connect_from(b, "a", 2, 0);
	(void)slow_head;
	bh_connbudget_phase(b, slow_body, BH_CONN_BODY, 500);
	/* nothing is due before the head deadline */
	assert_int_equal(bh_connbudget_sweep(b, 999), 0);
	/* the head deadline closes the one still sending its head, not the body */
	assert_int_equal(bh_connbudget_sweep(b, 1000), 1);
	assert_int_equal(c.handles[0], 1);
	/* closed once only, however often the sweep runs */
	assert_int_equal(bh_connbudget_sweep(b, 1500), 0);
	/* the body's deadline counts from the start of the request, not of the body */
	assert_int_equal(bh_connbudget_sweep(b, 2999), 0);
	assert_int_equal(bh_connbudget_sweep(b, 3000), 1);
	assert_int_equal(c.handles[1], 2);
	assert_int_equal(bh_connbudget_count(b, NULL), 0);
	bh_connbudget_free(b);
}

static void keep_alive_request_gets_fresh_deadlines(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(10, 10, 12, 1000, 3000, record_close, &c);
	int id = connect_from(b, "a", 1, 0);
	bh_connbudget_phase(b, id, BH_CONN_BODY, 100);
	bh_connbudget_phase(b, id, BH_CONN_HANDLING, 200);
	bh_connbudget_phase(b, id, BH_CONN_HEAD, 5000); /* reply sent; the next request */
	assert_int_equal(bh_connbudget_sweep(b, 5999), 0);
	assert_int_equal(bh_connbudget_sweep(b, 6000), 1);
	bh_connbudget_free(b);
}

static void full_table_refuses_to_open(void **state)
{
	(void)state;
	struct closed c = {0};
	struct bh_connbudget *b = bh_connbudget_new(1, 1, 2, 1000, 3000, record_close, &c);
	assert_true(bh_connbudget_open(b, 1, "a", 0) >= 0);
	assert_true(bh_connbudget_open(b, 2, "b", 0) >= 0);
	assert_int_equal(bh_connbudget_open(b, 3, "c", 0), -1);
	bh_connbudget_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(per_address_cap),
		cmocka_unit_test(full_budget_takes_from_the_heaviest_address),
		cmocka_unit_test(equal_holders_do_not_take_from_each_other),
		cmocka_unit_test(connections_being_handled_are_never_taken),
		cmocka_unit_test(head_and_request_deadlines),
		cmocka_unit_test(keep_alive_request_gets_fresh_deadlines),
		cmocka_unit_test(full_table_refuses_to_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
