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
