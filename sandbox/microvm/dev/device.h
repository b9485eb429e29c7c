/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The contract between the VMM core (vm.c, vcpu.c) and its MMIO devices (dev/).
 *
 * Threads: each vCPU runs KVM_RUN on its own thread and delivers MMIO exits to the device that
 * owns the address by calling its read/write callbacks on that vCPU thread. Everything else (the
 * API socket, ioeventfds, tap and disk I/O, timers) runs on the main thread's libevent base. A
 * device that shares state between the two guards it with its own lock.
 *
 * Guest memory is never trusted: every guest-physical range a device touches goes through
 * guest_mem_ptr(), which refuses any range not wholly inside guest RAM.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Guest RAM: up to two regions, below the 32-bit MMIO hole and above 4 GiB. */
#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem_region {
	uint64_t gpa; /* guest-physical start */
	uint64_t size;
	uint8_t *host; /* mmap'ed host address of gpa */
};

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned n_regions;
};

/* Returns a host pointer to guest-physical [gpa, gpa + len) if it lies wholly inside one region
 * (len 0 is refused), or NULL. Overflow-safe. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* An MMIO device: the core routes KVM_EXIT_MMIO for [base, base + size) to it. */
struct mmio_device {
	const char *name; /* for logs and GET /metrics */
	uint64_t base, size;
	/* @len is 1, 2, 4 or 8; @offset is relative to base. A read must fill @data (zeros for an
	 * unknown register); an unknown write is logged (rate-limited) and ignored. */
	void (*read)(struct mmio_device *d, uint64_t offset, void *data, uint32_t len);
	void (*write)(struct mmio_device *d, uint64_t offset, const void *data, uint32_t len);
	void *priv;
};

/*
 * What a device needs from the VM when it is created: the VM fd (for KVM_IOEVENTFD and
 * KVM_IRQFD), guest memory, the main loop, and where it sits. The core assigns MMIO slots of
 * 4 KiB from MICROVM_MMIO_BASE upward and one GSI per device from MICROVM_FIRST_DEVICE_GSI.
 */
#define MICROVM_MMIO_BASE 0xd0000000ull
#define MICROVM_MMIO_SLOT 0x1000ull
#define MICROVM_FIRST_DEVICE_GSI 5

struct device_env {
	int vm_fd;
	const struct guest_mem *mem;
	struct event_base *base;
	uint64_t mmio_base; /* this device's slot */
	uint32_t gsi; /* this device's interrupt line (IOAPIC pin), edge-triggered through irqfd */
};
