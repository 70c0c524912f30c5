# tollgate: hand-written Makefile. Debian packages through pkg-config.
# make run | test | asan | valgrind | bench | fuzz | demo | format | format-check | clean

CC      ?= cc
PKGS     = libevent libevent_openssl libevent_pthreads openssl hiredis inih jansson
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -MMD -MP -Isrc -Ibuild/$(FLAVOR)/gen
LDLIBS  += -lhttp_parser -lpthread -lm
BUILD    = build/$(FLAVOR)
FLAVOR  ?= release

ifeq ($(FLAVOR),asan)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

SRCS     = $(wildcard src/*/*.c)
LIB_SRCS = $(filter-out src/core/main.c,$(SRCS))
LUA      = $(wildcard src/budget/lua/*.lua src/cache/lua/*.lua)
LUA_LIB  = $(wildcard src/budget/lua/lib/*.lua)
WEB      = $(wildcard src/report/web/*)
OBJS     = $(patsubst src/%.c,$(BUILD)/%.o,$(LIB_SRCS)) $(BUILD)/lua_scripts.o $(BUILD)/web_assets.o
UNIT     = $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/test_*.c))

.PHONY: all deps run test asan valgrind bench fuzz demo format format-check clean unit
all: $(BUILD)/tollgate $(UNIT)

# Install missing Debian packages (when root) and the npm test clients.
deps:
	@scripts/deps.sh

$(BUILD)/.pkg-flags: | deps
	@mkdir -p $(BUILD)
	@pkg-config --cflags $(PKGS) > $@.c && pkg-config --libs $(PKGS) > $@.l && touch $@

$(BUILD)/%.o: src/%.c $(BUILD)/.pkg-flags
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) $$(cat $(BUILD)/.pkg-flags.c) -c $< -o $@

# Lua scripts are embedded as C strings, runnable by hand with redis-cli --eval.
$(BUILD)/lua_scripts.c: $(LUA) $(LUA_LIB) scripts/embed-lua.sh
	@mkdir -p $(BUILD)
	@scripts/embed-lua.sh $(LUA) > $@
$(BUILD)/lua_scripts.o: $(BUILD)/lua_scripts.c $(BUILD)/.pkg-flags
	@$(CC) $(CFLAGS) -c $< -o $@

# Web assets (the dashboard) are embedded too: web_NAME, one self-contained page.
$(BUILD)/web_assets.c: $(WEB) scripts/embed-lua.sh
	@mkdir -p $(BUILD)
	@EMBED_PREFIX=web_ scripts/embed-lua.sh $(WEB) > $@
$(BUILD)/web_assets.o: $(BUILD)/web_assets.c $(BUILD)/.pkg-flags
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtollgate.a: $(OBJS)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/tollgate: $(BUILD)/core/main.o $(BUILD)/libtollgate.a
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $$(cat $(BUILD)/.pkg-flags.l) $(LDLIBS)

# Unit tests link one module (and what it needs) from the library.
$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libtollgate.a tests/unit/check.h tests/unit/redis_server.h tests/unit/capture.h
	@mkdir -p $(dir $@)
	@echo "  TEST  $@"
	@$(CC) $(CFLAGS) -Itests/unit $$(cat $(BUILD)/.pkg-flags.c) $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libtollgate.a $$(cat $(BUILD)/.pkg-flags.l) $(LDLIBS)

# The unit tests that need no server (those that start a redis-server include
# tests/unit/redis_server.h and run with `make test`): quick, for every edit.
UNIT_PURE = $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(shell grep -L 'redis_server.h' tests/unit/test_*.c))
unit: $(UNIT_PURE)
	@pass=0; fail=0; for t in $(UNIT_PURE); do \
	    if out=$$($$t 2>&1); then pass=$$((pass + 1)); echo "ok    $$(basename $$t): $$(echo "$$out" | tail -1)"; \
	    else fail=$$((fail + 1)); echo "FAIL  $$(basename $$t)"; echo "$$out" | tail -20 | sed 's/^/    /'; fi; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

run: all
	@scripts/run.sh $(BUILD)/tollgate

test: all
	@scripts/deps.sh test
	@TOLLGATE_BUILD=$(BUILD) tests/run.sh

asan:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory FLAVOR=asan all
	@TOLLGATE_BUILD=build/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh

valgrind: all
	@TOLLGATE_BUILD=$(BUILD) TOLLGATE_VALGRIND=1 tests/run.sh

bench: all
	@bench/run.sh $(BUILD)/tollgate

# A month of synthetic traffic for ~30 tenants, then the margin report.
demo: all
	@scripts/deps.sh demo
	@demo/run.sh $(BUILD)/tollgate

# Fuzz targets (fuzz/): libFuzzer + ASan + UBSan with clang, else corpus replay with gcc.
FUZZ_SECONDS ?= 300
fuzz:
	@fuzz/run.sh $(FUZZ_SECONDS)

FORMAT_FILES = $(wildcard src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: ok"

clean:
	rm -rf build var/test

-include $(wildcard build/*/*/*.d build/*/unit/*.d)
