/*
 * common/grant: who is entitled to an event (bank and account grants for
 * account events, acquirer and merchant grants for payment.updated,
 * consent-derived account grants, system entitled to all, one client's
 * grants never entitling another) and which subscription filters a
 * client's grants cover at registration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <string.h>

#include "event.h"
#include "grant.h"

/*
 * The grants every case sees. Added out of client order on purpose: the
 * lookup must not depend on the order rows arrive in.
 */
static void fixture(struct bh_grant_set *set)
{
	memset(set, 0, sizeof(*set));
	bh_grant_set_add(set, "zeta", "bank-z", NULL, NULL, NULL);
	bh_grant_set_add(set, "alpha", "bank-a", NULL, NULL, NULL);          /* whole bank */
	bh_grant_set_add(set, "beta", "bank-a", "acc-b1", NULL, NULL);       /* one account */
	bh_grant_set_add(set, "alpha", NULL, NULL, "111", NULL);             /* whole acquirer */
	bh_grant_set_add(set, "beta", NULL, NULL, "111", "m-b");             /* one merchant */
	bh_grant_set_add(set, "gamma", "bank-c", "acc-c1", NULL, NULL);      /* as a consent loads */
	bh_grant_set_add(set, "beta", "bank-b", NULL, NULL, NULL);
	bh_grant_set_index(set);
}

/* ---------------------------------------------------------------- entitlement */

struct entitled_case {
	const char *name;
	const char *client;
	const char *type;
	const char *bank;     /* NULL: absent */
	const char *account;  /* NULL: absent */
	const char *acquirer; /* payment.updated only */
	const char *merchant;
	bool want;
};

static const struct entitled_case entitled_cases[] = {
	{"system_is_entitled_without_grants", "system", "transaction.created", "bank-x", "acc-x",
	 NULL, NULL, true},
	{"system_is_entitled_to_payments", "system", "payment.updated", NULL, NULL, "999", "m",
	 true},
	{"bank_grant_covers_every_account_of_the_bank", "alpha", "transaction.created", "bank-a",
	 "acc-b1", NULL, NULL, true},
	{"bank_grant_covers_balance_changes", "alpha", "balance.changed", "bank-a", "acc-9", NULL,
	 NULL, true},
	{"bank_grant_does_not_cover_another_bank", "alpha", "transaction.created", "bank-b",
	 "acc-1", NULL, NULL, false},
	{"account_grant_covers_its_account", "beta", "transaction.created", "bank-a", "acc-b1",
	 NULL, NULL, true},
	{"account_grant_does_not_cover_a_sibling_account", "beta", "transaction.created", "bank-a",
	 "acc-a2", NULL, NULL, false},
	{"account_grant_does_not_cover_the_account_id_at_another_bank", "gamma",
	 "transaction.created", "bank-a", "acc-c1", NULL, NULL, false},
	{"account_grant_does_not_cover_an_event_without_account", "beta", "balance.changed",
	 "bank-a", NULL, NULL, NULL, false},
	{"event_without_bank_reaches_no_plain_client", "alpha", "transaction.created", NULL,
	 "acc-1", NULL, NULL, false},
	{"consent_account_is_covered", "gamma", "transaction.created", "bank-c", "acc-c1", NULL,
	 NULL, true},
	{"client_without_grants_gets_nothing", "nobody", "transaction.created", "bank-a", "acc-1",
	 NULL, NULL, false},
	{"acquirer_grant_covers_every_merchant", "alpha", "payment.updated", NULL, NULL, "111",
	 "m-any", true},
	{"merchant_grant_covers_its_merchant", "beta", "payment.updated", NULL, NULL, "111", "m-b",
	 true},
	{"merchant_grant_does_not_cover_another_merchant", "beta", "payment.updated", NULL, NULL,
	 "111", "m-c", false},
	{"acquirer_grant_does_not_cover_another_acquirer", "alpha", "payment.updated", NULL, NULL,
	 "222", "m-b", false},
	{"bank_grant_does_not_cover_payments_at_the_bank", "zeta", "payment.updated", "bank-z",
	 NULL, "111", "m-b", false},
	{"acquirer_grant_does_not_cover_account_events", "alpha", "transaction.created", NULL,
	 NULL, "111", NULL, false},
};

static enum bh_event_type type_of(const char *name)
{
	if (strcmp(name, "payment.updated") == 0)
		return BH_EVENT_PAYMENT_UPDATED;
	if (strcmp(name, "balance.changed") == 0)
		return BH_EVENT_BALANCE_CHANGED;
	return BH_EVENT_TRANSACTION_CREATED;
}

/*
 * The event as the decision sees it, built by hand: the fields it reads
 * (type, bank_id, account_id, data.acquirer_id / merchant_id), including
 * shapes the validator would not let through, which must still fail closed.
 */
static void run_entitled_case(void **state)
{
	const struct entitled_case *c = *state;
	struct bh_grant_set set;
	struct bh_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.id = "ev-1";
	ev.type_name = c->type;
	ev.type = type_of(c->type);
	ev.bank_id = c->bank;
	ev.account_id = c->account;
	ev.data = json_object();
	if (c->acquirer)
		json_object_set_new(ev.data, "acquirer_id", json_string(c->acquirer));
	if (c->merchant)
		json_object_set_new(ev.data, "merchant_id", json_string(c->merchant));
	fixture(&set);
	assert_int_equal(bh_grant_entitled(&set, c->client, &ev), c->want);
	bh_grant_set_free(&set);
	json_decref(ev.data);
}

static void empty_set_entitles_only_system_and_internal_only_system(void **state)
{
	(void)state;
	struct bh_grant_set set = {0};
	struct bh_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = BH_EVENT_BALANCE_CHANGED;
	ev.bank_id = "bank-a";
	ev.account_id = "acc-1";
	assert_true(bh_grant_entitled(&set, "system", &ev));
	assert_false(bh_grant_entitled(&set, "alpha", &ev));
	/* An internal notification is never matched for a plain client, granted or not. */
	fixture(&set);
	ev.type = BH_EVENT_TPP_NOTIFICATION;
	assert_false(bh_grant_entitled(&set, "alpha", &ev));
	assert_true(bh_grant_entitled(&set, "system", &ev));
	bh_grant_set_free(&set);
}

/* ---------------------------------------------------------------- registration */

struct cover_case {
	const char *name;
	const char *client;
	bool merchant; /* bh_grant_covers_merchant, else _account */
	const char *a; /* bank / acquirer */
	const char *b; /* account / merchant */
	bool want;
};

static const struct cover_case cover_cases[] = {
	{"no_filter_is_all_the_client_is_entitled_to", "nobody", false, NULL, NULL, true},
	{"system_may_name_any_account", "system", false, "bank-x", "acc-x", true},
	{"whole_bank_covers_a_bank_filter", "alpha", false, "bank-a", NULL, true},
	{"whole_bank_covers_an_account_of_it", "alpha", false, "bank-a", "acc-7", true},
	{"whole_bank_does_not_cover_another_bank", "alpha", false, "bank-b", NULL, false},
	{"account_grant_covers_its_account", "beta", false, "bank-a", "acc-b1", true},
	{"account_grant_does_not_cover_a_sibling", "beta", false, "bank-a", "acc-a2", false},
	{"account_grant_lets_the_bank_filter_narrow_to_it", "beta", false, "bank-a", NULL, true},
	{"account_only_filter_named_by_a_grant", "gamma", false, NULL, "acc-c1", true},
	{"account_only_filter_not_named_is_refused", "gamma", false, NULL, "acc-other", false},
	{"account_only_filter_under_a_whole_bank_grant", "zeta", false, NULL, "acc-any", true},
	{"another_clients_bank_is_refused", "gamma", false, "bank-a", NULL, false},
	{"client_without_grants_names_an_account", "nobody", false, "bank-a", "acc-b1", false},
	{"acquirer_grant_covers_any_merchant", "alpha", true, "111", "m-1", true},
	{"merchant_grant_covers_its_merchant", "beta", true, "111", "m-b", true},
	{"merchant_grant_does_not_cover_another", "beta", true, "111", "m-x", false},
	{"another_acquirer_is_refused", "alpha", true, "222", "m-1", false},
	{"bank_grant_covers_no_acquirer", "zeta", true, "bank-z", "m-1", false},
	{"system_may_name_any_merchant", "system", true, "999", "9", true},
};

static void run_cover_case(void **state)
{
	const struct cover_case *c = *state;
	struct bh_grant_set set;
	fixture(&set);
	bool got = c->merchant ? bh_grant_covers_merchant(&set, c->client, c->a, c->b)
			       : bh_grant_covers_account(&set, c->client, c->a, c->b);
	assert_int_equal(got, c->want);
	bh_grant_set_free(&set);
}


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(entitled_cases, run_entitled_case);
	TABLE(cover_cases, run_cover_case);
	ONE(empty_set_entitles_only_system_and_internal_only_system);
	return _cmocka_run_group_tests("grant", tests, n, NULL, NULL);
}
