# SPDX-License-Identifier: MIT
LIBCOMMON_PKGS := openssl jansson libevent libprotobuf-c
LIBCOMMON_SRCS := \
	libcommon/tls.c \
	libcommon/certgen.c \
	libcommon/log.c \
	libcommon/strutil.c \
	libcommon/fdutil.c \
	libcommon/conf.c \
	libcommon/http.c \
	libcommon/paths.c \
	libcommon/proto_io.c \
	libcommon/netaddr.c \
	libcommon/ctlsock.c \
	libcommon/instance.c \
	libcommon/supervise.c

LIBCOMMON_OBJS := $(LIBCOMMON_SRCS:%.c=$(B)/obj/%.o)
LIBCOMMON := $(B)/libcommon.a
ALL_OBJS += $(LIBCOMMON_OBJS)

$(LIBCOMMON_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(LIBCOMMON_PKGS))

# supervise.c speaks the middlecon protocol: the generated code goes into the archive too.
$(B)/obj/libcommon/supervise.o: | $(PROTO_GEN_HDRS)

$(LIBCOMMON): $(LIBCOMMON_OBJS) $(PROTO_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^
