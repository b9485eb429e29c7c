# SPDX-License-Identifier: MIT
#
# The one non-recursive build. Each folder's build.mk lists its sources, binaries and tests;
# everything is written under $(B) (build/, or build/asan/ with SANITIZE=...).
#
#   make                  build everything
#   make test             unit tests, integration tests, fuzz-corpus replays
#   make asan             the same under ASan+UBSan (build/asan/)
#   make bench            benchmarks against the peers named in the issues
#   make fuzz             libFuzzer runs (clang), FUZZ_SECONDS per target
#   make run              start k2i with working defaults
#   make install          PREFIX=/usr/local DESTDIR=
#   make format / format-check / compdb / deps / clean

.DELETE_ON_ERROR:
.SECONDARY:
.DEFAULT_GOAL := all

PKG_CONFIG ?= pkg-config
CC ?= cc
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DESTDIR ?=
FUZZ_SECONDS ?= 30

V ?= 0
ifeq ($(V),1)
Q :=
else
Q := @
endif

# BUILD names the output tree; separate trees let several builds run side by side.
BUILD ?= build
SANITIZE ?=
FUZZ ?=
ifeq ($(FUZZ),1)
B := $(BUILD)/fuzz
CC := clang
SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
else ifneq ($(SANITIZE),)
B := $(BUILD)/asan
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
else
B := $(BUILD)
SAN_FLAGS :=
endif

# Missing build or test dependencies are installed before anything else is evaluated, so a fresh
# Debian 12 machine needs nothing by hand. Goals that need no toolchain skip the check.
NODEPS_GOALS := clean format format-check help
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell scripts/install-deps.sh --check >/dev/null 2>&1 && echo ok),ok)
$(info Installing missing dependencies (scripts/install-deps.sh)...)
DEPS_RESULT := $(shell scripts/install-deps.sh 1>&2 && echo ok)
ifneq ($(DEPS_RESULT),ok)
$(error scripts/install-deps.sh failed; run it by hand to see why)
endif
endif
endif

WARNINGS := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wold-style-definition -Wundef -Wwrite-strings -Wimplicit-fallthrough \
	-Werror=implicit-function-declaration -Wno-unused-parameter
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif
HARDENING := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
CFLAGS ?= -O2 -g
BASE_CFLAGS = -std=gnu11 -D_GNU_SOURCE -I. -I$(B)/gen $(WARNINGS) $(HARDENING) $(SAN_FLAGS) \
	$(CFLAGS) -MMD -MP
BASE_LDFLAGS = -pie -Wl,-z,relro,-z,now $(SAN_FLAGS) $(LDFLAGS)

# pkg-config is asked once per package list, at parse time.
pkg_cflags = $(if $(1),$(shell $(PKG_CONFIG) --cflags $(1)))
pkg_libs = $(if $(1),$(shell $(PKG_CONFIG) --libs $(1)))

BINS :=
UNIT_TESTS :=
FUZZ_TARGETS :=
ALL_OBJS :=

include proto/build.mk
include libcommon/build.mk
include bpf/build.mk
include k2i/build.mk
include middlecon/build.mk
include tests/build.mk
# The launchers come after tests/build.mk: they declare their tests with its macros.
include sandbox/syscall/build.mk
include sandbox/microvm/build.mk
include deploy/build.mk

# Objects: the per-object PKGS variable (set target-specific by each build.mk) picks the cflags.
$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

.PHONY: all test asan bench fuzz fuzz-targets run install clean format format-check compdb deps help
all: $(BINS) $(UNIT_TESTS) $(FUZZ_TARGETS)

test: all
	$(Q)B=$(B) tests/run.sh

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined test

bench: all
	$(Q)B=$(B) tests/bench/run.sh

run: all
	$(Q)scripts/run.sh

deps:
	$(Q)scripts/install-deps.sh

# libFuzzer runs: the targets are rebuilt by clang with FUZZ=1 into $(BUILD)/fuzz/.
fuzz:
	$(Q)$(MAKE) --no-print-directory FUZZ=1 fuzz-targets
	$(Q)B=$(BUILD)/fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

fuzz-targets: $(FUZZ_TARGETS)

install: all install-deploy
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/k2i
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	test -e $(DESTDIR)$(SYSCONFDIR)/k2i/k2i.conf || \
		install -m 0644 deploy/k2i.conf $(DESTDIR)$(SYSCONFDIR)/k2i/k2i.conf

clean:
	rm -rf build compile_commands.json

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' | grep -v -E '^(build/|.*/vendor/)')
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

compdb:
	bear --output compile_commands.json -- $(MAKE) -B all

help:
	@sed -n '3,15p' Makefile

-include $(ALL_OBJS:.o=.d)
