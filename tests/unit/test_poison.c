/*
 * The pure parts of "no single message can stop a partition": the times
 * bh_parse_time accepts (calendar-valid, years 1..9999 in UTC, never
 * normalised) and formats back for PostgreSQL, and which failed statements
 * mean "PostgreSQL is unavailable, wait" versus "this row is refused".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "table.h"

#include <string.h>

#include "db.h"
#include "util.h"

/* ---------------------------------------------------------------- times */

struct time_case {
	const char *name;
	const char *text;
	int want_rc;
	const char *want_utc; /* bh_format_time of the result when accepted */
};

static const struct time_case time_cases[] = {
	{"time_accepts_utc", "2026-11-25T10:15:00Z", 0, "2026-11-25T10:15:00.000Z"},
	{"time_accepts_offset_and_fraction", "2026-11-25T11:15:00.25+01:00", 0,
	 "2026-11-25T10:15:00.250Z"},
	{"time_accepts_lowercase_t_and_z", "2026-11-25t10:15:00z", 0, "2026-11-25T10:15:00.000Z"},
	{"time_accepts_year_1", "0001-01-01T00:00:00Z", 0, "0001-01-01T00:00:00.000Z"},
	{"time_accepts_year_9999", "9999-12-31T23:59:59.999Z", 0, "9999-12-31T23:59:59.999Z"},
	{"time_accepts_before_1970_with_fraction", "1969-12-31T23:59:59.5Z", 0,
	 "1969-12-31T23:59:59.500Z"},
	{"time_accepts_leap_day_2000", "2000-02-29T00:00:00Z", 0, "2000-02-29T00:00:00.000Z"},
	{"time_refuses_february_30", "2026-02-30T00:00:00Z", -1, NULL},
	{"time_refuses_february_29_2100", "2100-02-29T00:00:00Z", -1, NULL},
	{"time_refuses_month_13", "2026-13-01T00:00:00Z", -1, NULL},
	{"time_refuses_day_0", "2026-01-00T00:00:00Z", -1, NULL},
	{"time_refuses_year_0", "0000-06-01T00:00:00Z", -1, NULL},
	{"time_refuses_offset_into_year_0", "0001-01-01T00:00:00+01:00", -1, NULL},
	{"time_refuses_offset_into_year_10000", "9999-12-31T23:30:00-01:00", -1, NULL},
	{"time_refuses_minute_60", "2026-01-01T10:60:00Z", -1, NULL},
	{"time_refuses_second_60", "2026-01-01T10:00:60Z", -1, NULL},
	{"time_refuses_offset_minutes_60", "2026-01-01T10:00:00+01:60", -1, NULL},
	{"time_refuses_single_digit_month", "2026-1-01T10:00:00Z", -1, NULL},
	{"time_refuses_sign_in_field", "2026-+1-01T10:00:00Z", -1, NULL},
	{"time_refuses_empty_fraction", "2026-01-01T10:00:00.Z", -1, NULL},
	{"time_refuses_trailing_text", "2026-01-01T10:00:00Z ", -1, NULL},
	{"time_refuses_short", "2026-01-01T10:00", -1, NULL},
	{"time_refuses_null", NULL, -1, NULL},
};

static void run_time_case(void **state)
{
	const struct time_case *c = *state;
	int64_t ms = 12345;
	int rc = bh_parse_time(c->text, &ms);
	assert_int_equal(rc, c->want_rc);
	if (rc < 0) {
		assert_true(ms == 12345); /* untouched */
		return;
	}
	char got[32];
	bh_format_time(ms, got);
	assert_string_equal(got, c->want_utc);
	/* What is formatted parses back to the same instant (it is what PostgreSQL gets). */
	int64_t again;
	assert_int_equal(bh_parse_time(got, &again), 0);
	assert_true(again == ms);
}

static void time_bounds_are_the_documented_ones(void **state)
{
	(void)state;
	char got[32];
	bh_format_time(BH_TIME_MIN_MS, got);
	assert_string_equal(got, "0001-01-01T00:00:00.000Z");
	bh_format_time(BH_TIME_MAX_MS, got);
	assert_string_equal(got, "9999-12-31T23:59:59.999Z");
	bh_format_time(-1, got);
	assert_string_equal(got, "1969-12-31T23:59:59.999Z");
}

/* ------------------------------------------------------- failure classes */

struct failure_case {
	const char *name;
	const char *sqlstate;
	enum bh_db_failure want;
};

static const struct failure_case failure_cases[] = {
	{"refused_datetime_out_of_range", "22008", BH_DB_REFUSED},
	{"refused_untranslatable_character", "22P05", BH_DB_REFUSED},
	{"refused_check_violation", "23514", BH_DB_REFUSED},
	{"refused_not_null_violation", "23502", BH_DB_REFUSED},
	{"refused_index_row_too_large", "54000", BH_DB_REFUSED},
	{"refused_by_trigger", "P0001", BH_DB_REFUSED},
	{"unavailable_connection_failure", "08006", BH_DB_UNAVAILABLE},
	{"unavailable_connection_lost_without_state", "08000", BH_DB_UNAVAILABLE},
	{"unavailable_admin_shutdown", "57P01", BH_DB_UNAVAILABLE},
	{"unavailable_cannot_connect_now", "57P03", BH_DB_UNAVAILABLE},
	{"unavailable_too_many_connections", "53300", BH_DB_UNAVAILABLE},
	{"unavailable_disk_full", "53100", BH_DB_UNAVAILABLE},
	{"unavailable_serialization_failure", "40001", BH_DB_UNAVAILABLE},
	{"unavailable_deadlock", "40P01", BH_DB_UNAVAILABLE},
	{"unavailable_read_only_transaction", "25006", BH_DB_UNAVAILABLE},
	{"unavailable_undefined_table", "42P01", BH_DB_UNAVAILABLE},
	{"unavailable_internal_error", "XX000", BH_DB_UNAVAILABLE},
	{"unavailable_empty_state", "", BH_DB_UNAVAILABLE},
	{"unavailable_malformed_state", "22", BH_DB_UNAVAILABLE},
	{"unavailable_null_state", NULL, BH_DB_UNAVAILABLE},
};

static void run_failure_case(void **state)
{
	const struct failure_case *c = *state;
	assert_int_equal(bh_db_failure_of(c->sqlstate), c->want);
}

/* ------------------------------------------------------------------ main */


int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;
	TABLE(time_cases, run_time_case);
	ONE(time_bounds_are_the_documented_ones);
	TABLE(failure_cases, run_failure_case);
	return _cmocka_run_group_tests("poison", tests, n, NULL, NULL);
}
