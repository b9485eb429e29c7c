# SPDX-License-Identifier: MIT
#
# proto/NAME.proto -> $(B)/gen/proto/NAME.pb-c.{c,h} (protoc-c; generated, never committed) ->
# $(B)/obj/proto/NAME.pb-c.o, which the programs speaking the protocol link with -lprotobuf-c.
# Sources include the header as "proto/NAME.pb-c.h" (BASE_CFLAGS has -I$(B)/gen). An object that
# includes a generated header lists $(PROTO_GEN_HDRS) as an order-only prerequisite, so the first
# build generates it before compiling; later builds follow the -MMD dependencies.
PROTOC_C ?= protoc-c
PROTO_PKGS := libprotobuf-c
PROTO_NAMES := middlecon
PROTO_GEN_HDRS := $(PROTO_NAMES:%=$(B)/gen/proto/%.pb-c.h)
PROTO_OBJS := $(PROTO_NAMES:%=$(B)/obj/proto/%.pb-c.o)
ALL_OBJS += $(PROTO_OBJS)

# A pattern rule with two targets makes both files in one run.
$(B)/gen/proto/%.pb-c.c $(B)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	@$(if $(Q),echo "  PROTOC  $@")
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(@D) $<

$(PROTO_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(PROTO_PKGS))
$(B)/obj/proto/%.pb-c.o: $(B)/gen/proto/%.pb-c.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(PKG_CFLAGS) -c $< -o $@
