/*
 * common/log: --log-format json writes one valid JSON object per line,
 * with process, level, message and the ids of the context as members, even
 * when the message quotes bytes that are not UTF-8; text lines carry the
 * same ids as key=value, and a line break inside a message never starts a
 * new line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define OUT_MAX 65536

/* Runs fn with stderr sent to a temporary file; returns what it wrote. */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/bh-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char *out = calloc(1, OUT_MAX);
	assert_non_null(out);
	assert_true(lseek(fd, 0, SEEK_SET) == 0);
	ssize_t n = read(fd, out, OUT_MAX - 1);
	assert_true(n >= 0);
	close(fd);
	unlink(path);
	return out;
}

static void write_json_lines(void)
{
	bh_log_init("worker");
	bh_log_set_json(1);
	struct bh_log_ctx ctx = {.delivery = "dlv-1", .subscription = "ep-2", .event = "ev-3"};
	bh_info_ctx(&ctx, "attempt: http %d from \"%s\"\nsecond line", 200, "rcv");
	bh_warn_ctx(&ctx, "receiver said %s", "caf\xe9 \xff\xfe");
	bh_error("no ids here");
	struct bh_log_ctx task = {.task = "task-9"};
	bh_info_ctx(&task, "refresh");
	bh_log_set_json(0);
}

static json_t *line_json(const char *line)
{
	json_error_t err;
	json_t *o = json_loads(line, 0, &err);
	if (o == NULL)
		fail_msg("not JSON (%s): %s", err.text, line);
	assert_true(json_is_object(o));
	return o;
}

static const char *member(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void json_one_object_per_line_with_ids(void **state)
{
	(void)state;
	char *out = capture(write_json_lines);
	char *save = NULL;
	int n = 0;
	json_t *lines[8];
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		assert_true(n < 8);
		lines[n++] = line_json(line);
	}
	assert_int_equal(n, 4); /* the newline in a message stays inside its line */
	for (int i = 0; i < n; i++) {
		assert_string_equal(member(lines[i], "process"), "worker");
		assert_non_null(member(lines[i], "time"));
		assert_non_null(member(lines[i], "msg"));
	}
	assert_string_equal(member(lines[0], "level"), "info");
	assert_string_equal(member(lines[0], "delivery_id"), "dlv-1");
	assert_string_equal(member(lines[0], "endpoint_id"), "ep-2");
	assert_string_equal(member(lines[0], "event_id"), "ev-3");
	assert_null(json_object_get(lines[0], "task_id"));
	assert_string_equal(member(lines[0], "msg"), "attempt: http 200 from \"rcv\"\nsecond line");
	/* Not UTF-8: the message survives, the bad bytes replaced. */
	assert_string_equal(member(lines[1], "level"), "warn");
	assert_string_equal(member(lines[1], "msg"), "receiver said caf? ??");
	assert_string_equal(member(lines[1], "delivery_id"), "dlv-1");
	assert_string_equal(member(lines[2], "level"), "error");
	assert_null(json_object_get(lines[2], "delivery_id"));
	assert_string_equal(member(lines[3], "task_id"), "task-9");
	for (int i = 0; i < n; i++)
		json_decref(lines[i]);
	free(out);
}

static void write_text_line(void)
{
	bh_log_init("api");
	bh_log_set_json(0);
	struct bh_log_ctx ctx = {.subscription = "ep-2", .event = "ev-3"};
	bh_info_ctx(&ctx, "accepted %s", "transaction.created\nforged line");
}

static void text_line_carries_ids(void **state)
{
	(void)state;
	char *out = capture(write_text_line);
	assert_non_null(strstr(out, " api info "));
	assert_non_null(strstr(out, "subscription=ep-2 event=ev-3 accepted transaction.created forged line\n"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(json_one_object_per_line_with_ids),
		cmocka_unit_test(text_line_carries_ids),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
