/*
 * Table-driven cmocka tests: TABLE(cases, fn) adds one test per row of a
 * case array whose rows start with a `name`, passing the row as the
 * test's state; ONE(fn) adds a plain test. Both append to a local
 * `struct CMUnitTest tests[]` counted by `size_t n`.
 */
#ifndef BH_TESTS_UNIT_TABLE_H
#define BH_TESTS_UNIT_TABLE_H

#define TABLE(cases, fn)                                                                  \
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)                      \
	tests[n++] = (struct CMUnitTest){.name = cases[i].name,                            \
					 .test_func = fn,                                  \
					 .initial_state = (void *)&cases[i]}
#define ONE(fn) tests[n++] = (struct CMUnitTest)cmocka_unit_test(fn)

#endif
