# SPDX-License-Identifier: MIT
K2I_PKGS := libevent libevent_openssl libnghttp2 jansson openssl

# The procfs reader and query engine (unit-tested and fuzzed on their own).
K2I_CORE_SRCS := \
	k2i/procinfo.c \
	k2i/procquery.c \
	k2i/events.c

# The daemon: configuration, authentication, routes, HTTPS front end.
K2I_SRCS := \
	k2i/auth.c \
	k2i/config.c \
	k2i/metrics.c \
	k2i/routes.c \
	k2i/server.c \
	k2i/h2.c \
	k2i/lifecycle.c \
	k2i/instances.c \
	k2i/main.c

K2I_CORE_OBJS := $(K2I_CORE_SRCS:%.c=$(B)/obj/%.o)
K2I_OBJS := $(K2I_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(K2I_CORE_OBJS) $(K2I_OBJS)
BINS += $(B)/bin/k2i

$(K2I_CORE_OBJS) $(K2I_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(K2I_PKGS))

# The process-lifecycle event source (BPF ring buffer, process connector, /proc polling); also
# linked into $(B)/tests/proctrace_dump by tests/build.mk.
K2I_TRACE_PKGS := libbpf libevent
K2I_TRACE_SRCS := k2i/proctrace.c
K2I_TRACE_OBJS := $(K2I_TRACE_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(K2I_TRACE_OBJS)

$(K2I_TRACE_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(K2I_TRACE_PKGS))
# The generated skeleton must exist before the first compile (later, -MMD records it).
$(B)/obj/k2i/proctrace.o: $(B)/gen/bpf/proctrace.skel.h

$(B)/bin/k2i: $(K2I_OBJS) $(K2I_CORE_OBJS) $(K2I_TRACE_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(K2I_PKGS) $(K2I_TRACE_PKGS))

# k2ps, the fleet client: the concurrent HTTPS fetcher and the ps-like front end.
K2PS_SRCS := \
	k2i/fetch.c \
	k2i/k2ps.c

K2PS_OBJS := $(K2PS_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(K2PS_OBJS)
BINS += $(B)/bin/k2ps

$(K2PS_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(K2I_PKGS))

$(B)/bin/k2ps: $(K2PS_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(K2I_PKGS))
