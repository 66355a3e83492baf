# bankhook: one static library (common/) and three small programs.
#
#   make                 build bin/bankhook-{api,scheduler,worker}
#   make run             install what is missing, start the stack, follow logs
#   make up / down       the same stack in the background / stop it
#   make test            unit tests + end-to-end tests on a private stack
#   make bench           the benchmark (PRODUCT.md section 9)
#   make soak            mixed load + faults for SOAK_SECONDS (600), then a report
#   make fuzz            libFuzzer targets (clang, ASan+UBSan), FUZZ_SECONDS each
#   make SANITIZE=address,undefined test
#   make V=1             show the commands

CC       ?= cc
PKGS     := rdkafka libpq libcurl jansson yaml-0.1 libmicrohttpd libcrypto
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wundef -Werror
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -Icommon \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lpthread -lm

ifdef SANITIZE
BUILD    := build/san
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
else
BUILD    := build/release
endif
BIN      := bin

ifndef V
Q        := @
endif

COMMON_SRC    := $(wildcard common/*.c)
API_SRC       := $(wildcard api/*.c)
SCHEDULER_SRC := $(wildcard scheduler/*.c)
WORKER_SRC    := $(wildcard worker/*.c)
UNIT_SRC      := $(wildcard tests/unit/test_*.c)
BENCH_SRC     := $(wildcard tests/bench/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBCOMMON := $(BUILD)/libbankhook.a
PROGRAMS  := $(BIN)/bankhook-api $(BIN)/bankhook-scheduler $(BIN)/bankhook-worker
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all clean setup run up down test unit e2e bench soak fuzz fuzz-build format format-check

all: $(PROGRAMS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
	@$(if $(Q),echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

# The programs are rebuilt into bin/ whichever BUILD flavour was asked for,
# so the scripts always start bin/bankhook-*.
$(BIN)/bankhook-api: $(call obj,$(API_SRC)) $(LIBCOMMON)
$(BIN)/bankhook-scheduler: $(call obj,$(SCHEDULER_SRC)) $(LIBCOMMON)
$(BIN)/bankhook-worker: $(call obj,$(WORKER_SRC)) $(LIBCOMMON)
$(PROGRAMS): $(BUILD)/.flavour
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

# Switching between a sanitizer build and a plain one must relink bin/.
$(BUILD)/.flavour: FORCE
	@mkdir -p $(BUILD)
	@echo "$(SANITIZE)" | cmp -s - $(BIN)/.flavour || \
		{ mkdir -p $(BIN); echo "$(SANITIZE)" > $(BIN)/.flavour; touch $@; }
.PHONY: FORCE

$(BUILD)/tests/%: tests/unit/%.c $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -Iworker $(LDFLAGS) -o $@ $< $(filter %.o,$^) $(LIBCOMMON) $(LDLIBS) -lcmocka

# The worker's pure policy (no libcurl, no I/O) is tested against its own object.
$(BUILD)/tests/test_destination: $(call obj,worker/destination.c)

$(BIN)/bankhook-bench-receiver: $(call obj,$(BENCH_SRC)) $(LIBCOMMON)
	@mkdir -p $(BIN)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- fuzzing: libFuzzer targets tests/fuzz/fuzz_<name>.c, built with clang
# and ASan+UBSan into build/fuzz (the library is compiled again there with
# coverage instrumentation). tests/fuzz/run.sh runs each for FUZZ_SECONDS
# over its corpus tests/fuzz/corpus/<name>/ and fails on any finding.
FUZZ_CC      ?= $(shell command -v clang-14 || command -v clang || echo clang-14)
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# librdkafka's RD_KAFKA_V_* macros are GNU statement expressions, which clang flags.
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE $(WARN) -Wno-gnu-statement-expression -MMD -MP \
                -Icommon -Iapi -Itests/fuzz $(shell pkg-config --cflags $(PKGS)) $(FUZZ_SAN) \
                -fsanitize=fuzzer-no-link
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
# Everything but main(): a target that #includes one of these .c files (to
# reach its static functions) defines its symbols first, so the archive
# member is never pulled in beside it.
FUZZ_LIB     := $(FUZZ_BUILD)/libbankhook-fuzz.a
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(COMMON_SRC) $(filter-out api/main.c,$(API_SRC)))

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	$(Q)$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/tests/fuzz/harness.o $(FUZZ_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

.PRECIOUS: $(FUZZ_BUILD)/%.o

fuzz-build: $(FUZZ_TARGETS)

# Ends with "fuzz: N passed, N failed"; non-zero when a target found something.
fuzz: fuzz-build
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_TARGETS)

setup:
	$(Q)bash deploy/setup.sh

run: setup all
	$(Q)bash deploy/run.sh run

up: setup all
	$(Q)bash deploy/run.sh up

down:
	$(Q)bash deploy/run.sh down

unit: $(UNIT_TESTS)
	$(Q)bash tests/run_unit.sh $(UNIT_TESTS)

e2e: all
	$(Q)python3 -m pytest -q tests/e2e $(PYTEST_ARGS)

# Everything, ending with one "N passed, N failed" line.
test: setup all $(UNIT_TESTS)
	$(Q)bash tests/run_all.sh $(UNIT_TESTS)

bench: setup all $(BIN)/bankhook-bench-receiver
	$(Q)python3 tests/bench/bench.py

# Mixed load with a worker kill and a Kafka restart; SOAK_SECONDS (600).
soak: setup all
	$(Q)python3 tests/soak/soak.py

format:
	$(Q)clang-format -i $(COMMON_SRC) $(API_SRC) $(SCHEDULER_SRC) $(WORKER_SRC) common/*.h

format-check:
	$(Q)clang-format --dry-run --Werror $(COMMON_SRC) $(API_SRC) $(SCHEDULER_SRC) $(WORKER_SRC) common/*.h

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
