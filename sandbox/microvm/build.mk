# SPDX-License-Identifier: MIT
#
# microvm: the Firecracker-like KVM launcher (main.c, vm, vcpu, boot, api, dev/) and its test
# guests (guests/). The virtio devices come from sandbox/microvm/virtio.mk (optional, included
# below after the guest macro it uses): it sets MICROVM_VIRTIO_OBJS (linked into microvm) and
# MICROVM_GUEST_EXTRA (more guest images).

MICROVM_PKGS := libevent jansson
MICROVM_SRCS := \
	sandbox/microvm/api.c \
	sandbox/microvm/boot.c \
	sandbox/microvm/mem.c \
	sandbox/microvm/vcpu.c \
	sandbox/microvm/vm.c \
	sandbox/microvm/dev/serial.c \
	sandbox/microvm/dev/i8042.c \
	sandbox/microvm/dev/boot_timer.c
MICROVM_CORE_OBJS := $(MICROVM_SRCS:%.c=$(B)/obj/%.o)
MICROVM_MAIN_OBJ := $(B)/obj/sandbox/microvm/main.o
# The pure request/config parser, for the unit test and the fuzz target.
MICROVM_API_OBJS := $(B)/obj/sandbox/microvm/api.o
ALL_OBJS += $(MICROVM_CORE_OBJS) $(MICROVM_MAIN_OBJ)
BINS += $(B)/bin/microvm

# ---- test guests ----
# Freestanding x86-64 code, linked at 1 MiB by guests/guest.ld. Always built with gcc and never
# with sanitizer or hardening flags: they run inside the VM, not in this process.
GUEST_CC ?= gcc
MICROVM_GUEST_CFLAGS := -std=gnu11 -O2 -g -I. -ffreestanding -fno-builtin -nostdlib -fno-pic \
	-fno-pie -fno-stack-protector -mno-red-zone -mgeneral-regs-only -mcmodel=small \
	-fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns -fcf-protection=none \
	-Wall -Wextra -MMD -MP $(if $(filter 1,$(WERROR)),-Werror)
MICROVM_GUEST_RT := $(B)/guests/obj/entry.o $(B)/guests/obj/runtime.o
MICROVM_GUESTS :=
MICROVM_GUEST_OBJS := $(MICROVM_GUEST_RT)

$(B)/guests/obj/%.o: sandbox/microvm/guests/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GUESTCC $@")
	$(Q)$(GUEST_CC) $(MICROVM_GUEST_CFLAGS) -c $< -o $@

$(B)/guests/obj/%.o: sandbox/microvm/guests/%.S
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GUESTAS $@")
	$(Q)$(GUEST_CC) $(MICROVM_GUEST_CFLAGS) -c $< -o $@

# $(eval $(call microvm_guest,NAME,SOURCES)): links sandbox/microvm/guests/*.c SOURCES with the
# runtime into $(B)/guests/NAME.elf (a 64-bit Linux-entry ELF and a PVH ELF at once).
define microvm_guest
MICROVM_GUESTS += $(B)/guests/$(1).elf
MICROVM_GUEST_OBJS += $(patsubst sandbox/microvm/guests/%.c,$(B)/guests/obj/%.o,$(2))
$(B)/guests/$(1).elf: $(patsubst sandbox/microvm/guests/%.c,$(B)/guests/obj/%.o,$(2)) \
		$(MICROVM_GUEST_RT) sandbox/microvm/guests/guest.ld
	@mkdir -p $$(@D)
	@$(if $(Q),echo "  GUESTLD $$@")
	$(Q)ld -nostdlib -static -no-pie --build-id=none -z noexecstack \
		-T sandbox/microvm/guests/guest.ld -o $$@ \
		$(patsubst sandbox/microvm/guests/%.c,$(B)/guests/obj/%.o,$(2)) $(MICROVM_GUEST_RT)
endef

$(eval $(call microvm_guest,bootcheck,sandbox/microvm/guests/bootcheck.c))
$(eval $(call microvm_guest,smp,sandbox/microvm/guests/smp.c))

# A bzImage of bootcheck: the setup sectors (guests/bzsetup.S, sizes passed with --defsym)
# followed by the flat payload from 1 MiB, whose 64-bit entry sits at +0x200.
$(B)/guests/bootcheck.bzimage: $(B)/guests/bootcheck.elf sandbox/microvm/guests/bzsetup.S
	@$(if $(Q),echo "  BZIMAGE $@")
	$(Q)objcopy -O binary $< $@.payload
	$(Q)init=$$(( 0x$$(nm $< | awk '$$3 == "__image_end" {print $$1}') - 0x100000 )); \
		$(GUEST_CC) -c -o $@.setup.o \
		-Wa,--defsym,PAYLOAD_SIZE=$$(stat -c %s $@.payload) -Wa,--defsym,INIT_SIZE=$$init \
		sandbox/microvm/guests/bzsetup.S
	$(Q)objcopy -O binary -j .text $@.setup.o $@.setup
	$(Q)cat $@.setup $@.payload > $@
	$(Q)rm -f $@.setup $@.setup.o $@.payload

-include sandbox/microvm/virtio.mk

MICROVM_VIRTIO_OBJS ?=
MICROVM_GUEST_EXTRA ?=
all: $(MICROVM_GUESTS) $(MICROVM_GUEST_EXTRA) $(B)/guests/bootcheck.bzimage
-include $(MICROVM_GUEST_OBJS:.o=.d)

# vm.c creates virtio devices only when their code is linked in.
$(MICROVM_CORE_OBJS) $(MICROVM_MAIN_OBJ): PKG_CFLAGS := $(call pkg_cflags,$(MICROVM_PKGS)) \
	$(if $(strip $(MICROVM_VIRTIO_OBJS)),-DMICROVM_HAVE_VIRTIO)

$(B)/bin/microvm: $(MICROVM_MAIN_OBJ) $(MICROVM_CORE_OBJS) $(MICROVM_VIRTIO_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(MICROVM_PKGS) libprotobuf-c) -lpthread

$(eval $(call unit_test,microvm_boot,$(B)/obj/sandbox/microvm/boot.o $(B)/obj/sandbox/microvm/mem.o,))
$(eval $(call unit_test,microvm_api,$(MICROVM_API_OBJS),jansson))
$(eval $(call fuzz_target,vmapi,$(MICROVM_API_OBJS),jansson))
$(eval $(call unit_test,microvm_devices,$(B)/obj/sandbox/microvm/dev/serial.o \
	$(B)/obj/sandbox/microvm/dev/i8042.o $(B)/obj/sandbox/microvm/dev/boot_timer.o,jansson))
