/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A minimal polled virtio-mmio (version 2) driver for the test guests virtio_blk.c and
 * virtio_net.c: device discovery from "virtio_mmio.device=<size>@<base>:<irq>" on the command
 * line, the bring-up sequence of the Linux driver (drivers/virtio/virtio_mmio.c), and split
 * virtqueues whose used ring is polled (the guests never enable interrupts).
 *
 * Written from the virtio 1.1 specification as an independent second implementation, so the
 * tests check the device against the spec rather than against itself.
 */

#include "sandbox/microvm/guests/guest.h"

#define VIO_MAGIC 0x000
#define VIO_VERSION 0x004
#define VIO_DEVICE_ID 0x008
#define VIO_DEVICE_FEATURES 0x010
#define VIO_DEVICE_FEATURES_SEL 0x014
#define VIO_DRIVER_FEATURES 0x020
#define VIO_DRIVER_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL 0x030
#define VIO_QUEUE_NUM_MAX 0x034
#define VIO_QUEUE_NUM 0x038
#define VIO_QUEUE_READY 0x044
#define VIO_QUEUE_NOTIFY 0x050
#define VIO_INTERRUPT_STATUS 0x060
#define VIO_INTERRUPT_ACK 0x064
#define VIO_STATUS 0x070
#define VIO_QUEUE_DESC 0x080
#define VIO_QUEUE_DRIVER 0x090
#define VIO_QUEUE_DEVICE 0x0a0
#define VIO_CONFIG 0x100

#define VIO_S_ACK 1u
#define VIO_S_DRIVER 2u
#define VIO_S_DRIVER_OK 4u
#define VIO_S_FEATURES_OK 8u
#define VIO_S_NEEDS_RESET 0x40u

#define VIO_F_VERSION_1 (1ull << 32)

#define VRING_F_NEXT 1
#define VRING_F_WRITE 2

/* Every queue of the guests has 8 entries; rings live in the guest's .bss. */
#define GQ_NUM 8

struct gdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct gavail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[GQ_NUM];
	uint16_t used_event;
};

struct gused_elem {
	uint32_t id;
	uint32_t len;
};

struct gused {
	uint16_t flags;
	uint16_t idx;
	struct gused_elem ring[GQ_NUM];
	uint16_t avail_event;
};

struct gqueue {
	struct gdesc desc[GQ_NUM] __attribute__((aligned(16)));
	struct gavail avail __attribute__((aligned(2)));
	struct gused used __attribute__((aligned(4)));
	uint64_t base; /* device MMIO base */
	unsigned index;
	uint16_t avail_idx; /* next available slot the driver fills */
	uint16_t used_seen; /* used entries consumed */
};

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* A poll budget of 2^35 TSC cycles: ~10 s at 3 GHz, generous for a loaded host. */
#define GUEST_POLL_CYCLES (1ull << 35)

static inline uint64_t parse_hex(const char *p, const char **end)
{
	uint64_t v = 0;

	for (;; p++) {
		char c = *p;
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		v = v << 4 | d;
	}
	*end = p;
	return v;
}

/*
 * Finds the first virtio-mmio device with DeviceID @device_id among the command line's
 * "virtio_mmio.device=4K@0x<base>:<irq>" words. Returns its base (and its interrupt line in
 * *ret_irq, if not NULL), or 0.
 */
static inline uint64_t virtio_find(uint32_t device_id, unsigned *ret_irq)
{
	static const char key[] = "virtio_mmio.device=";
	const char *p = guest_cmdline();

	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - w) <= sizeof(key) - 1 || memcmp(w, key, sizeof(key) - 1) != 0)
			continue;
		const char *at = w + sizeof(key) - 1;
		while (at < p && *at != '@')
			at++;
		if (at + 3 >= p || at[1] != '0' || at[2] != 'x')
			continue;
		const char *end;
		uint64_t base = parse_hex(at + 3, &end);
		if (mmio_read32(base + VIO_MAGIC) != 0x74726976 ||
		    mmio_read32(base + VIO_VERSION) != 2 ||
		    mmio_read32(base + VIO_DEVICE_ID) != device_id)
			continue;
		if (ret_irq) {
			*ret_irq = 0;
			for (const char *c = end + (*end == ':'); c < p && *c >= '0' && *c <= '9';
			     c++)
				*ret_irq = *ret_irq * 10 + (unsigned)(*c - '0');
		}
		return base;
	}
	return 0;
}

static inline uint64_t virtio_device_features(uint64_t base)
{
	mmio_write32(base + VIO_DEVICE_FEATURES_SEL, 1);
	uint64_t hi = mmio_read32(base + VIO_DEVICE_FEATURES);
	mmio_write32(base + VIO_DEVICE_FEATURES_SEL, 0);
	return hi << 32 | mmio_read32(base + VIO_DEVICE_FEATURES);
}

/* Reset, ACKNOWLEDGE|DRIVER, negotiate @wanted ∩ offered (+VERSION_1), FEATURES_OK. Returns
 * the negotiated features, or 0 if the device refused. */
static inline uint64_t virtio_begin(uint64_t base, uint64_t wanted)
{
	mmio_write32(base + VIO_STATUS, 0);
	mmio_write32(base + VIO_STATUS, VIO_S_ACK);
	mmio_write32(base + VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER);
	uint64_t f = virtio_device_features(base) & (wanted | VIO_F_VERSION_1);
	if (!(f & VIO_F_VERSION_1))
		return 0;
	mmio_write32(base + VIO_DRIVER_FEATURES_SEL, 1);
	mmio_write32(base + VIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	mmio_write32(base + VIO_DRIVER_FEATURES_SEL, 0);
	mmio_write32(base + VIO_DRIVER_FEATURES, (uint32_t)f);
	mmio_write32(base + VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK);
	if (!(mmio_read32(base + VIO_STATUS) & VIO_S_FEATURES_OK))
		return 0;
	return f;
}

/* Sets up queue @index over @q (zeroed here). Returns 0, or -1 if the device lacks it. */
static inline int virtio_queue(uint64_t base, struct gqueue *q, unsigned index)
{
	memset(q, 0, sizeof(*q));
	q->base = base;
	q->index = index;
	mmio_write32(base + VIO_QUEUE_SEL, index);
	if (mmio_read32(base + VIO_QUEUE_READY) || mmio_read32(base + VIO_QUEUE_NUM_MAX) < GQ_NUM)
		return -1;
	mmio_write32(base + VIO_QUEUE_NUM, GQ_NUM);
	mmio_write32(base + VIO_QUEUE_DESC, (uint32_t)(uintptr_t)q->desc);
	mmio_write32(base + VIO_QUEUE_DESC + 4, (uint32_t)((uintptr_t)q->desc >> 32));
	mmio_write32(base + VIO_QUEUE_DRIVER, (uint32_t)(uintptr_t)&q->avail);
	mmio_write32(base + VIO_QUEUE_DRIVER + 4, (uint32_t)((uintptr_t)&q->avail >> 32));
	mmio_write32(base + VIO_QUEUE_DEVICE, (uint32_t)(uintptr_t)&q->used);
	mmio_write32(base + VIO_QUEUE_DEVICE + 4, (uint32_t)((uintptr_t)&q->used >> 32));
	mmio_write32(base + VIO_QUEUE_READY, 1);
	return mmio_read32(base + VIO_QUEUE_READY) == 1 ? 0 : -1;
}

static inline void virtio_driver_ok(uint64_t base)
{
	mmio_write32(base + VIO_STATUS,
		     VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK | VIO_S_DRIVER_OK);
}

/* Makes chain @head available and notifies the device. */
static inline void gq_submit(struct gqueue *q, uint16_t head)
{
	q->avail.ring[q->avail_idx % GQ_NUM] = head;
	guest_mb();
	q->avail_idx++;
	*(volatile uint16_t *)&q->avail.idx = q->avail_idx;
	guest_mb();
	mmio_write32(q->base + VIO_QUEUE_NOTIFY, q->index);
}

/* Waits for the next used element. Returns 0 and fills @ret, or -1 after the poll budget. */
static inline int gq_wait(struct gqueue *q, struct gused_elem *ret)
{
	uint64_t start = rdtsc();

	while (*(volatile uint16_t *)&q->used.idx == q->used_seen) {
		if (rdtsc() - start > GUEST_POLL_CYCLES)
			return -1;
		__asm__ volatile("pause");
	}
	guest_mb();
	*ret = q->used.ring[q->used_seen % GQ_NUM];
	q->used_seen++;
	return 0;
}
