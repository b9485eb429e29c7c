# SPDX-License-Identifier: MIT
#
# virtio-mmio transport, virtqueues and the block and net devices of microvm (included by
# sandbox/microvm/build.mk). MICROVM_VIRTIO_OBJS is what the microvm binary links; the objects
# are also built on their own by `all`, so they keep compiling whether or not the binary links
# them yet.
MICROVM_VIRTIO_PKGS := libevent jansson
MICROVM_VIRTIO_SRCS := \
	sandbox/microvm/dev/virtqueue.c \
	sandbox/microvm/dev/virtio.c \
	sandbox/microvm/dev/blk.c \
	sandbox/microvm/dev/net.c
VIRTIO_OBJS := $(MICROVM_VIRTIO_SRCS:%.c=$(B)/obj/%.o)
MICROVM_VIRTIO_OBJS := $(VIRTIO_OBJS)
ALL_OBJS += $(VIRTIO_OBJS)
all: $(VIRTIO_OBJS)

$(VIRTIO_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(MICROVM_VIRTIO_PKGS))

# The chain parser is pure (guest memory in, segments or an error out): tested and fuzzed over
# synthetic guest memory, with the test's own guest_mem_ptr(). The unit test also drives the
# transport and both devices through their register callbacks, without KVM (net over a tap in a
# private network namespace, when root); the fuzz target has a virtio-blk device mode too.
$(eval $(call unit_test,virtqueue,$(VIRTIO_OBJS),$(MICROVM_VIRTIO_PKGS)))
$(eval $(call fuzz_target,virtqueue,$(VIRTIO_OBJS),$(MICROVM_VIRTIO_PKGS)))

# Test guests of tests/integration/microvm_virtio.sh: polled virtio-mmio drivers
# (guests/virtio_guest.h) for the block and the net device.
$(eval $(call microvm_guest,virtio_blk,sandbox/microvm/guests/virtio_blk.c))
$(eval $(call microvm_guest,virtio_net,sandbox/microvm/guests/virtio_net.c))
MICROVM_GUEST_EXTRA := $(B)/guests/virtio_blk.elf $(B)/guests/virtio_net.elf
