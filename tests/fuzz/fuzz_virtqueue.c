/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the device side of a split virtqueue (sandbox/microvm/dev/virtqueue.c) the way a
 * hostile guest can: the input is a queue configuration followed by an image of guest memory.
 *
 * Input layout (little-endian):
 *   0  u16 num          queue size as written to QueueNum
 *   2  u16 desc         descriptor table offset in guest RAM (the guest-physical address)
 *   4  u16 avail        available ring offset
 *   6  u16 used         used ring offset
 *   8  u16 last_avail   the device's consumed index (models a queue running for a while)
 *  10  u8  flags        bit 0: INDIRECT_DESC negotiated; bit 1: rings in the high region;
 *                       bit 2: device mode (below); bit 3: the drive is read-only
 *  11  u8  pops         how many chains to pop at most
 *  12  ...              guest RAM image: 64 KiB at 0 and 4 KiB at 4 GiB, zero-filled past the
 *                       input's end
 * Every segment the parser returns must lie inside guest RAM and the totals must add up; the
 * target traps otherwise.
 *
 * Device mode runs the same guest memory through a whole virtio-blk device instead: a driver
 * configures the queue through the MMIO registers with the layout above and notifies it, and
 * the device serves whatever requests the rings hold against an 8-sector in-memory image (no
 * KVM: vm_fd -1, the main loop is run by hand). Nothing may crash or hang, and the device may
 * serve at most 256 requests per wakeup.
 */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/event.h>

#include "libcommon/log.h"
#include "sandbox/microvm/dev/device.h"
#include "sandbox/microvm/dev/virtio.h"
#include "sandbox/microvm/dev/virtqueue.h"

#define LOW_SIZE 0x10000u
#define HIGH_GPA 0x100000000ull
#define HIGH_SIZE 0x1000u
#define HDR 12

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];

		if (len == 0 || gpa < r->gpa || gpa - r->gpa >= r->size ||
		    len > r->size - (gpa - r->gpa))
			continue;
		return r->host + (gpa - r->gpa);
	}
	return NULL;
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static bool inside(const struct guest_mem *m, const uint8_t *p, uint32_t len)
{
	for (unsigned i = 0; i < m->n_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];

		if (p >= r->host && p < r->host + r->size && len <= (size_t)(r->host + r->size - p))
			return true;
	}
	return false;
}

static void check_chain(const struct guest_mem *m, const struct vq_chain *c, uint16_t num)
{
	uint64_t rlen = 0, wlen = 0;
	uint8_t buf[64];

	if (c->head >= num || c->n_segs > VQ_MAX_SIZE || c->n_readable > c->n_segs)
		__builtin_trap();
	for (unsigned i = 0; i < c->n_segs; i++) {
		const struct vq_seg *s = &c->segs[i];

		if (s->len == 0 || !inside(m, s->ptr, s->len) ||
		    s->writable != (i >= c->n_readable))
			__builtin_trap();
		if (s->writable)
			wlen += s->len;
		else
			rlen += s->len;
	}
	if (rlen != c->readable_len || wlen != c->writable_len)
		__builtin_trap();
	/* The copy helpers stay inside the segments (ASan checks the accesses). */
	if (vq_chain_read(c, rlen > 8 ? rlen - 8 : 0, buf, sizeof(buf)) > sizeof(buf))
		__builtin_trap();
	if (vq_chain_write(c, wlen > 4 ? wlen - 4 : 0, buf, 16) > 16)
		__builtin_trap();
}

static void w32(struct mmio_device *m, uint64_t off, uint32_t v)
{
	v = htole32(v);
	m->write(m, off, &v, 4);
}

static uint32_t r32(struct mmio_device *m, uint64_t off)
{
	uint32_t v;

	m->read(m, off, &v, 4);
	return le32toh(v);
}

/* Device mode: @q's layout is what the driver programs; the rings are whatever the input put
 * in guest memory. */
static void run_blk(struct guest_mem *mem, const struct vq *q, bool read_only)
{
	static struct event_base *base;
	static char path[64];
	struct virtio_dev *d = NULL;
	struct mmio_device *m;

	if (!base) {
		/* Once per process: the loop and an 8-sector image in a memfd. */
		int fd = memfd_create("fuzz-virtqueue-disk", 0);

		base = event_base_new();
		if (!base || fd < 0 || ftruncate(fd, 8 * 512) < 0)
			__builtin_trap();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		log_set_max_level(LOG_CRIT);
	}
	struct device_env env = {
		.vm_fd = -1, .mem = mem, .base = base, .mmio_base = 0xd0000000, .gsi = 5
	};
	if (virtio_blk_new(&env, "fuzz", path, read_only, &d) < 0)
		__builtin_trap();
	m = virtio_dev_mmio(d);

	w32(m, 0x70, 3); /* ACKNOWLEDGE | DRIVER */
	w32(m, 0x24, 0);
	w32(m, 0x20, r32(m, 0x10) & ~(q->l.indirect ? 0 : 1u << 28));
	w32(m, 0x24, 1);
	w32(m, 0x20, 1); /* VERSION_1 */
	w32(m, 0x70, 0xb); /* + FEATURES_OK */
	w32(m, 0x30, 0);
	w32(m, 0x38, q->l.num);
	w32(m, 0x80, (uint32_t)q->l.desc);
	w32(m, 0x84, (uint32_t)(q->l.desc >> 32));
	w32(m, 0x90, (uint32_t)q->l.avail);
	w32(m, 0x94, (uint32_t)(q->l.avail >> 32));
	w32(m, 0xa0, (uint32_t)q->l.used);
	w32(m, 0xa4, (uint32_t)(q->l.used >> 32));
	w32(m, 0x44, 1);
	w32(m, 0x70, 0xf); /* + DRIVER_OK */
	w32(m, 0x50, 0);
	/* The device serves at most 256 requests per wakeup, then re-kicks itself. */
	for (int i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	/* The rings and buffers may overlap in hostile inputs (a read can land on the used
	 * index), so check the device's own count: four wakeups serve at most 4 × 256. */
	if (d->q[0].vq.used_idx > 4 * 256)
		__builtin_trap();
	virtio_dev_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vq_chain chain;
	uint8_t *low, *high;
	struct guest_mem mem;
	struct vq q = { 0 };
	const char *why;
	size_t n;
	uint8_t flags, pops;

	if (size < HDR)
		return 0;
	low = calloc(1, LOW_SIZE);
	high = calloc(1, HIGH_SIZE);
	if (!low || !high)
		goto out;
	n = size - HDR < LOW_SIZE ? size - HDR : LOW_SIZE;
	memcpy(low, data + HDR, n);
	if (size - HDR > LOW_SIZE) {
		n = size - HDR - LOW_SIZE < HIGH_SIZE ? size - HDR - LOW_SIZE : HIGH_SIZE;
		memcpy(high, data + HDR + LOW_SIZE, n);
	}
	mem = (struct guest_mem){
		.regions = { { .gpa = 0, .size = LOW_SIZE, .host = low },
			     { .gpa = HIGH_GPA, .size = HIGH_SIZE, .host = high } },
		.n_regions = 2,
	};

	flags = data[10];
	pops = data[11];
	q.l.num = rd16(data);
	q.l.desc = rd16(data + 2);
	q.l.avail = rd16(data + 4);
	q.l.used = rd16(data + 6);
	q.l.indirect = flags & 1;
	if (flags & 2) {
		q.l.desc += HIGH_GPA;
		q.l.avail += HIGH_GPA;
		q.l.used += HIGH_GPA;
	}
	q.last_avail = rd16(data + 8);
	q.used_idx = q.last_avail;

	if (flags & 4) {
		/* Any layout, even an invalid one: the device must refuse it cleanly. */
		run_blk(&mem, &q, flags & 8);
		goto out;
	}

	/* The parser on its own, from every possible head of a small queue. */
	if (vq_layout_check(&mem, &q.l, &why) < 0)
		goto out;
	for (unsigned head = 0; head < q.l.num && head < 16; head++)
		if (vq_chain_parse(&mem, &q.l, (uint16_t)head, &chain, &why) == 0)
			check_chain(&mem, &chain, q.l.num);

	/* The device loop: pop what the ring offers, give it back. */
	for (unsigned i = 0; i < pops; i++) {
		int r = vq_pop(&q, &mem, &chain, &why);

		if (r <= 0)
			break;
		check_chain(&mem, &chain, q.l.num);
		if (vq_push(&q, &mem, chain.head, (uint32_t)chain.writable_len) < 0)
			__builtin_trap();
		(void)vq_wants_interrupt(&q, &mem);
	}
out:
	free(low);
	free(high);
	return 0;
}
