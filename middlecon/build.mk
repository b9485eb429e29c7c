# SPDX-License-Identifier: MIT
#
# middlecon: so far the frame helpers every middlecon binary shares (the relay, libmiddlecon,
# mcctl, mcbench). MIDDLECON_FRAME_OBJS is what a binary or test links to speak the protocol,
# with the pkg-config modules in MIDDLECON_FRAME_PKGS.
MIDDLECON_FRAME_PKGS := libprotobuf-c
MIDDLECON_FRAME_OBJS := $(B)/obj/middlecon/frame.o $(PROTO_OBJS)
ALL_OBJS += $(B)/obj/middlecon/frame.o

$(B)/obj/middlecon/frame.o: PKG_CFLAGS := $(call pkg_cflags,$(MIDDLECON_FRAME_PKGS))
$(B)/obj/middlecon/frame.o: | $(PROTO_GEN_HDRS)

# libmiddlecon (the client library for runtimes written in C), mcctl and the library's example.
# The archive carries everything its users need from this tree (client, Frame helpers, generated
# protobuf-c code, libcommon's framing), so an outside program links only it plus
# `pkg-config --libs libprotobuf-c libevent`.
LIBMIDDLECON_PKGS := libprotobuf-c libevent
LIBMIDDLECON := $(B)/lib/libmiddlecon.a
LIBMIDDLECON_OBJS := $(B)/obj/middlecon/client.o $(MIDDLECON_FRAME_OBJS) \
	$(B)/obj/libcommon/proto_io.o
MCCTL_OBJS := $(B)/obj/middlecon/client.o $(B)/obj/middlecon/mcctl.o \
	$(B)/obj/middlecon/examples/echo.o
ALL_OBJS += $(MCCTL_OBJS)
BINS += $(B)/bin/mcctl
all: $(LIBMIDDLECON) $(B)/examples/mc_echo

$(MCCTL_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(LIBMIDDLECON_PKGS) jansson)
$(MCCTL_OBJS): | $(PROTO_GEN_HDRS)

$(LIBMIDDLECON): $(LIBMIDDLECON_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/bin/mcctl: $(B)/obj/middlecon/mcctl.o $(LIBMIDDLECON) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(LIBMIDDLECON_PKGS) jansson)

$(B)/examples/mc_echo: $(B)/obj/middlecon/examples/echo.o $(LIBMIDDLECON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(LIBMIDDLECON_PKGS))

# The relay daemon.
MIDDLECON_PKGS := libevent libevent_openssl openssl libprotobuf-c jansson
MIDDLECON_SRCS := \
	middlecon/acl.c \
	middlecon/config.c \
	middlecon/relay.c \
	middlecon/peer.c \
	middlecon/main.c
MIDDLECON_OBJS := $(MIDDLECON_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(MIDDLECON_OBJS)
BINS += $(B)/bin/middlecon

$(MIDDLECON_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(MIDDLECON_PKGS))
$(MIDDLECON_OBJS): | $(PROTO_GEN_HDRS)

$(B)/bin/middlecon: $(MIDDLECON_OBJS) $(MIDDLECON_FRAME_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(MIDDLECON_PKGS))

# mcbench: closed/open-loop request/reply load through the relay, and the raw Unix-socket floor.
# middlecon/benchloop.c is the load generator it shares with tests/bench/natsbench.c.
MCBENCH_OBJS := $(B)/obj/middlecon/mcbench.o $(B)/obj/middlecon/benchloop.o
ALL_OBJS += $(MCBENCH_OBJS)
BINS += $(B)/bin/mcbench

$(MCBENCH_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(LIBMIDDLECON_PKGS))
$(MCBENCH_OBJS): | $(PROTO_GEN_HDRS)

$(B)/bin/mcbench: $(MCBENCH_OBJS) $(LIBMIDDLECON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(LIBMIDDLECON_PKGS)) -lpthread -lm
