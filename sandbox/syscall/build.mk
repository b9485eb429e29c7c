# SPDX-License-Identifier: MIT
#
# sandbox: the seccomp-notify launcher (sandbox/syscall/), its unit tests, fuzz target and the
# helper programs of its integration tests and benchmark.
SANDBOX_PKGS := libseccomp libevent jansson
SANDBOX_POLICY_OBJS := $(B)/obj/sandbox/syscall/policy.o
SANDBOX_SRCS := \
	sandbox/syscall/main.c \
	sandbox/syscall/launch.c \
	sandbox/syscall/cgroup.c \
	sandbox/syscall/supervisor.c \
	sandbox/syscall/handlers/fs.c \
	sandbox/syscall/handlers/exec.c \
	sandbox/syscall/handlers/net.c
SANDBOX_OBJS := $(SANDBOX_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(SANDBOX_OBJS) $(SANDBOX_POLICY_OBJS)
BINS += $(B)/bin/sandbox

$(SANDBOX_OBJS) $(SANDBOX_POLICY_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(SANDBOX_PKGS))

$(B)/bin/sandbox: $(SANDBOX_OBJS) $(SANDBOX_POLICY_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(SANDBOX_PKGS) $(LIBCOMMON_PKGS))

# Helper programs run inside the sandbox (and inside bwrap/runsc by the benchmark). Static and
# without sanitizers: they run in roots that may not hold their libraries.
SANDBOX_TEST_PROGS := $(B)/tests/sbx_escape $(B)/tests/sbx_bench
TEST_PROGS += $(SANDBOX_TEST_PROGS)
all: $(SANDBOX_TEST_PROGS)
$(B)/tests/sbx_escape: tests/integration/sbx_escape.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -static -pthread -o $@ $<
$(B)/tests/sbx_bench: tests/bench/sbx_bench.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -static -o $@ $<

# Unit tests and the policy parser's fuzz target.
$(eval $(call unit_test,sandbox_policy,$(SANDBOX_POLICY_OBJS),$(SANDBOX_PKGS)))
$(eval $(call fuzz_target,sbxpolicy,$(SANDBOX_POLICY_OBJS),$(SANDBOX_PKGS)))
