/*
 * libFuzzer target: the YAML configuration loader (common/config.c). The
 * input is the file's content; it is handed to bh_config_load through a
 * memfd (no disk writes), with every BANKHOOK_* variable cleared so only
 * the file counts. The same bytes also go to bh_config_parse_schedule.
 * Besides crashes, leaks and sanitizer reports, it checks config.h's
 * contract: a refusal is "file:line: message" (or "file: message" for the
 * checks after the file is read); an accepted configuration has a
 * schedule of 1..BH_SCHEDULE_MAX attempts, a known log format, and every
 * string set.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Unset from the end so removing an entry does not skip the next. */
	for (;;) {
		char name[256] = "";
		for (char **e = environ; *e != NULL; e++)
			if (strncmp(*e, "BANKHOOK_", 9) == 0)
				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
		if (name[0] == '\0')
			break;
		unsetenv(name);
	}
	fd = memfd_create("bankhook-fuzz.yaml", 0);
	if (fd < 0)
		fuzz_fail("memfd_create failed");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

static void check_schedule(const uint8_t *data, size_t size)
{
	int sched[BH_SCHEDULE_MAX], n = -1;
	char err[512];
	char *text = bh_xstrndup((const char *)data, size);
	if (bh_config_parse_schedule(text, sched, &n, err, sizeof(err)) == 0) {
		if (n < 1 || n > BH_SCHEDULE_MAX)
			fuzz_fail("schedule accepted with %d attempts", n);
		for (int i = 0; i < n; i++)
			if (sched[i] < 0 || sched[i] > 7 * 86400)
				fuzz_fail("schedule accepted %d seconds", sched[i]);
	} else if (strncmp(err, "delivery.schedule: ", 19) != 0) {
		fuzz_fail("schedule refusal does not name the key: %s", err);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bh_config cfg;
	char err[1024];
	if (size > 64 * 1024)
		return -1;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		fuzz_fail("cannot write the memfd");
	int rc = bh_config_load(&cfg, path, err, sizeof(err));
	if (rc < 0) {
		size_t n = strlen(path);
		if (strncmp(err, path, n) != 0 || err[n] != ':')
			fuzz_fail("refusal not located as file:line: %s", err);
	} else {
		if (cfg.delivery_schedule_len < 1 || cfg.delivery_schedule_len > BH_SCHEDULE_MAX)
			fuzz_fail("accepted a schedule of %d attempts", cfg.delivery_schedule_len);
		if (strcmp(cfg.log_format, "text") != 0 && strcmp(cfg.log_format, "json") != 0)
			fuzz_fail("accepted log.format %s", cfg.log_format);
		if (cfg.api_host == NULL || cfg.db_url == NULL || cfg.kafka_brokers == NULL ||
		    cfg.topic_events == NULL || cfg.log_level == NULL)
			fuzz_fail("accepted configuration with a string unset");
		if (cfg.api_body_limit < 1024 || cfg.api_threads < 1)
			fuzz_fail("accepted an integer out of its range");
	}
	bh_config_free(&cfg);
	check_schedule(data, size);
	return 0;
}
