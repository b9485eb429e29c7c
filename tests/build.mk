# SPDX-License-Identifier: MIT
#
# Unit tests (cmocka) and fuzz targets. Each is declared with the objects it links beside
# libcommon and the pkg-config modules it needs.

# $(call unit_test,NAME,OBJECTS,PKGS): tests/unit/test_NAME.c -> $(B)/tests/test_NAME
define unit_test
UNIT_TESTS += $(B)/tests/test_$(1)
ALL_OBJS += $(B)/obj/tests/unit/test_$(1).o
$(B)/obj/tests/unit/test_$(1).o: PKG_CFLAGS := $(call pkg_cflags,cmocka $(3))
$(B)/tests/test_$(1): $(B)/obj/tests/unit/test_$(1).o $(2) $(LIBCOMMON)
	@mkdir -p $$(@D)
	@$(if $(Q),echo "  LD      $$@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $$@ $$^ $(call pkg_libs,cmocka $(3))
endef

# $(call fuzz_target,NAME,OBJECTS,PKGS): tests/fuzz/fuzz_NAME.c -> $(B)/fuzz/fuzz_NAME.
# Normally linked with a replay main() that runs the files of tests/fuzz/corpus/NAME/ (make
# test); with FUZZ=1 (make fuzz) built by clang and linked with libFuzzer.
ifeq ($(FUZZ),1)
FUZZ_MAIN_OBJ :=
FUZZ_LINK := -fsanitize=fuzzer
else
FUZZ_MAIN_OBJ := $(B)/obj/tests/fuzz/replay_main.o
FUZZ_LINK :=
ALL_OBJS += $(FUZZ_MAIN_OBJ)
endif

define fuzz_target
FUZZ_TARGETS += $(B)/fuzz/fuzz_$(1)
ALL_OBJS += $(B)/obj/tests/fuzz/fuzz_$(1).o
$(B)/obj/tests/fuzz/fuzz_$(1).o: PKG_CFLAGS := $(call pkg_cflags,$(3))
$(B)/fuzz/fuzz_$(1): $(B)/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_MAIN_OBJ) $(2) $(LIBCOMMON)
	@mkdir -p $$(@D)
	@$(if $(Q),echo "  LD      $$@")
	$(Q)$(CC) $(BASE_LDFLAGS) $(FUZZ_LINK) -o $$@ $$^ $(call pkg_libs,$(3))
endef

$(eval $(call unit_test,strutil,,))
$(eval $(call unit_test,log,,))
$(eval $(call unit_test,conf,,))
$(eval $(call fuzz_target,conf,,))
$(eval $(call unit_test,http,,))
$(eval $(call fuzz_target,http,,))
$(eval $(call unit_test,tls,,openssl))
$(eval $(call unit_test,certgen,,openssl))
$(eval $(call unit_test,procinfo,$(B)/obj/k2i/procinfo.o,jansson))
$(eval $(call unit_test,procquery,$(K2I_CORE_OBJS),jansson))
$(eval $(call fuzz_target,procstat,$(B)/obj/k2i/procinfo.o,jansson))
$(eval $(call fuzz_target,procquery,$(K2I_CORE_OBJS),jansson))
# proctrace (unit test and proctrace_dump): the event sources of k2i/proctrace.c.
PROCTRACE_DUMP_PKGS := libbpf libevent jansson
$(eval $(call unit_test,events,$(B)/obj/k2i/events.o,jansson))
$(eval $(call unit_test,proctrace,$(K2I_TRACE_OBJS) $(B)/obj/k2i/procinfo.o,$(PROCTRACE_DUMP_PKGS)))

# Programs of the integration tests (tests/integration/*.sh run them from $(B)/tests/).
# proctrace_dump prints the events of one source of k2i/proctrace.c; burst forks children that
# exec exit_with, which is linked statically and without sanitizers so that each lives a fraction
# of a millisecond.
TEST_PROGS := $(B)/tests/proctrace_dump $(B)/tests/burst $(B)/tests/exit_with $(B)/tests/vm_init
ALL_OBJS += $(B)/obj/tests/integration/proctrace_dump.o $(B)/obj/tests/integration/burst.o
all: $(TEST_PROGS)

$(B)/obj/tests/integration/proctrace_dump.o: PKG_CFLAGS := $(call pkg_cflags,$(PROCTRACE_DUMP_PKGS))
$(B)/tests/proctrace_dump: $(B)/obj/tests/integration/proctrace_dump.o $(K2I_TRACE_OBJS) \
		$(B)/obj/k2i/procinfo.o $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PROCTRACE_DUMP_PKGS))

$(B)/tests/burst: $(B)/obj/tests/integration/burst.o $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^

$(B)/tests/exit_with: tests/integration/exit_with.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -static -o $@ $<
$(eval $(call fuzz_target,eventsub,$(B)/obj/k2i/events.o,jansson))

# The /init of the initramfs microvm_linux.sh boots a real kernel with: static, no sanitizers.
$(B)/tests/vm_init: tests/integration/vm_init.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -static -o $@ $<

# blackhole accepts TCP connections and never answers them (k2ps_multihost.sh's timeout test).
TEST_PROGS += $(B)/tests/blackhole
all: $(B)/tests/blackhole
$(B)/tests/blackhole: tests/integration/blackhole.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 $(WARNINGS) -O2 -o $@ $<

# middlecon framing: the generic decoder (libcommon/proto_io.c) and the Frame header on top of it.
$(eval $(call unit_test,proto_io,$(MIDDLECON_FRAME_OBJS),$(MIDDLECON_FRAME_PKGS)))
$(eval $(call fuzz_target,frame,$(MIDDLECON_FRAME_OBJS),$(MIDDLECON_FRAME_PKGS)))
$(B)/obj/tests/unit/test_proto_io.o $(B)/obj/tests/fuzz/fuzz_frame.o: | $(PROTO_GEN_HDRS)

# libmiddlecon's pure parts (name patterns, status names).
$(eval $(call unit_test,libmiddlecon,$(LIBMIDDLECON),$(LIBMIDDLECON_PKGS)))
$(B)/obj/tests/unit/test_libmiddlecon.o: | $(PROTO_GEN_HDRS)

# mc_client speaks the middlecon protocol directly over a blocking socket (middlecon.sh).
TEST_PROGS += $(B)/tests/mc_client
ALL_OBJS += $(B)/obj/tests/integration/mc_client.o
all: $(B)/tests/mc_client
$(B)/obj/tests/integration/mc_client.o: PKG_CFLAGS := $(call pkg_cflags,$(MIDDLECON_FRAME_PKGS))
$(B)/obj/tests/integration/mc_client.o: | $(PROTO_GEN_HDRS)
$(B)/tests/mc_client: $(B)/obj/tests/integration/mc_client.o $(MIDDLECON_FRAME_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(MIDDLECON_FRAME_PKGS))

# natsbench: the NATS peer of mcbench (tests/bench/bench_middlecon.sh), Debian's libnats, driven
# by the same load generator (middlecon/benchloop.c).
TEST_PROGS += $(B)/tests/natsbench
ALL_OBJS += $(B)/obj/tests/bench/natsbench.o
all: $(B)/tests/natsbench
$(B)/obj/tests/bench/natsbench.o: PKG_CFLAGS := $(call pkg_cflags,libnats)
$(B)/tests/natsbench: $(B)/obj/tests/bench/natsbench.o $(B)/obj/middlecon/benchloop.o
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,libnats) -lpthread -lm

$(eval $(call unit_test,acl,$(B)/obj/middlecon/acl.o,))
$(eval $(call unit_test,netaddr,,))

# sv_instance: a stand-in instance answering supervision calls through libcommon/supervise.c.
TEST_PROGS += $(B)/tests/sv_instance
ALL_OBJS += $(B)/obj/tests/integration/sv_instance.o
all: $(B)/tests/sv_instance
$(B)/obj/tests/integration/sv_instance.o: PKG_CFLAGS := $(call pkg_cflags,libevent jansson)
$(B)/tests/sv_instance: $(B)/obj/tests/integration/sv_instance.o $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,libevent jansson libprotobuf-c)

# The control sockets of the launchers and their instance records (libcommon/ctlsock.c,
# libcommon/instance.c).
$(eval $(call unit_test,ctlsock,,libevent jansson))
$(eval $(call unit_test,instance,,jansson))
$(eval $(call fuzz_target,ctlreq,,libevent jansson))
