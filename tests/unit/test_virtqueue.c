/* SPDX-License-Identifier: MIT */
/*
 * The split-virtqueue parser (sandbox/microvm/dev/virtqueue.c) over synthetic guest memory: two
 * RAM regions with a hole between them, rings built by hand as a driver would, and every kind of
 * broken chain a buggy or hostile guest can post. Then the virtio-mmio transport and the block
 * device, driven through their MMIO register callbacks exactly as a guest driver would, without
 * KVM (vm_fd -1: notifications take the register path, the main loop is run by hand).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "sandbox/microvm/dev/device.h"
#include "sandbox/microvm/dev/virtio.h"
#include "sandbox/microvm/dev/virtqueue.h"

/* Guest RAM: 64 KiB at 0, and 8 KiB at 4 GiB (the region above the MMIO hole). */
#define LOW_SIZE 0x10000u
#define HIGH_GPA 0x100000000ull
#define HIGH_SIZE 0x2000u

static uint8_t low_ram[LOW_SIZE] __attribute__((aligned(4096)));
static uint8_t high_ram[HIGH_SIZE] __attribute__((aligned(4096)));
static struct guest_mem mem;

/* The core's contract (device.h), reimplemented so the parser is tested on its own. */
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

/* Queue layout used by most tests: 8 entries. */
#define DESC 0x1000u
#define AVAIL 0x2000u
#define USED 0x3000u
#define QNUM 8

static struct vq_layout layout;
static struct vq_chain chain;

static int setup(void **state)
{
	memset(low_ram, 0, sizeof(low_ram));
	memset(high_ram, 0, sizeof(high_ram));
	mem = (struct guest_mem){
		.regions = { { .gpa = 0, .size = LOW_SIZE, .host = low_ram },
			     { .gpa = HIGH_GPA, .size = HIGH_SIZE, .host = high_ram } },
		.n_regions = 2,
	};
	layout = (struct vq_layout){ .desc = DESC, .avail = AVAIL, .used = USED, .num = QNUM };
	return 0;
}

/* Writes descriptor @i of the table at guest address @table (in low RAM). */
static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = low_ram + table + 16 * i;
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(p, &a, 8);
	memcpy(p + 8, &l, 4);
	memcpy(p + 12, &f, 2);
	memcpy(p + 14, &n, 2);
}

static void put_u16(uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(low_ram + gpa, &v, 2);
}

static uint16_t get_u16(uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, low_ram + gpa, 2);
	return le16toh(v);
}

static uint32_t get_u32(uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, low_ram + gpa, 4);
	return le32toh(v);
}

/* Posts head @head in available slot @slot and sets avail->idx to @idx. */
static void post(unsigned slot, uint16_t head, uint16_t idx)
{
	put_u16(AVAIL + 4 + 2 * (slot % layout.num), head);
	put_u16(AVAIL + 2, idx);
}

static int parse(uint16_t head, const char **why)
{
	*why = NULL;
	return vq_chain_parse(&mem, &layout, head, &chain, why);
}

/* ---- layout ---- */

static void test_layout(void **state)
{
	const char *why = NULL;
	struct vq_layout l = layout;

	assert_int_equal(vq_layout_check(&mem, &l, &why), 0);

	/* Rings in the high region are as good as in the low one. */
	l = (struct vq_layout){
		.desc = HIGH_GPA, .avail = HIGH_GPA + 0x800, .used = HIGH_GPA + 0x1000, .num = 64
	};
	assert_int_equal(vq_layout_check(&mem, &l, &why), 0);

	const uint16_t bad_num[] = { 0, 3, 6, 100, 512, 1024 };
	for (size_t i = 0; i < ELEMENTSOF(bad_num); i++) {
		l = layout;
		l.num = bad_num[i];
		why = NULL;
		assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
		assert_non_null(why);
	}

	l = layout;
	l.desc += 8; /* descriptor table must be 16-byte aligned */
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
	l = layout;
	l.avail += 1;
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
	l = layout;
	l.used += 2;
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);

	/* Rings that leave RAM: past the end, in the hole, straddling a region's end. */
	l = layout;
	l.desc = LOW_SIZE - 64; /* 8 × 16 = 128 bytes needed */
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
	assert_string_equal(why, "descriptor table outside guest RAM");
	l = layout;
	l.avail = 0xd0000000;
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
	assert_string_equal(why, "available ring outside guest RAM");
	l = layout;
	l.used = HIGH_GPA + HIGH_SIZE - 32; /* 4 + 64 bytes needed */
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
	assert_string_equal(why, "used ring outside guest RAM");
	l = layout;
	l.desc = UINT64_MAX - 15;
	assert_int_equal(vq_layout_check(&mem, &l, &why), -EINVAL);
}

/* ---- good chains ---- */

static void test_good_chain(void **state)
{
	const char *why;

	/* A virtio-blk style chain: header (readable), data (writable), status (writable). */
	put_desc(DESC, 2, 0x4000, 16, VIRTQ_DESC_F_NEXT, 5);
	put_desc(DESC, 5, 0x5000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(DESC, 1, HIGH_GPA + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);

	assert_int_equal(parse(2, &why), 0);
	assert_int_equal(chain.head, 2);
	assert_int_equal(chain.n_segs, 3);
	assert_int_equal(chain.n_readable, 1);
	assert_int_equal(chain.readable_len, 16);
	assert_int_equal(chain.writable_len, 513);
	assert_ptr_equal(chain.segs[0].ptr, low_ram + 0x4000);
	assert_false(chain.segs[0].writable);
	assert_ptr_equal(chain.segs[1].ptr, low_ram + 0x5000);
	assert_int_equal(chain.segs[1].len, 512);
	assert_true(chain.segs[1].writable);
	assert_ptr_equal(chain.segs[2].ptr, high_ram + 0x100);
	assert_true(chain.segs[2].writable);
}

static void test_single_and_zero_length(void **state)
{
	const char *why;

	put_desc(DESC, 0, 0x4000, 100, 0, 0);
	assert_int_equal(parse(0, &why), 0);
	assert_int_equal(chain.n_segs, 1);
	assert_int_equal(chain.readable_len, 100);
	assert_int_equal(chain.writable_len, 0);

	/* Zero-length descriptors carry nothing and are skipped (even with a wild address). */
	put_desc(DESC, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 3);
	put_desc(DESC, 3, 0x4000, 10, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 4);
	put_desc(DESC, 4, 0, 0, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(parse(0, &why), 0);
	assert_int_equal(chain.n_segs, 1);
	assert_int_equal(chain.writable_len, 10);
}

static void test_full_length_chain(void **state)
{
	const char *why;

	/* A chain using every descriptor of the table is legal. */
	for (unsigned i = 0; i < QNUM; i++)
		put_desc(DESC, i, 0x4000 + 0x100 * i, 0x100, i + 1 < QNUM ? VIRTQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	assert_int_equal(parse(0, &why), 0);
	assert_int_equal(chain.n_segs, QNUM);
	assert_int_equal(chain.readable_len, 0x100 * QNUM);
}

/* ---- bad chains ---- */

static void test_bad_indices(void **state)
{
	const char *why;

	assert_int_equal(parse(QNUM, &why), -ERANGE);
	assert_non_null(why);
	assert_int_equal(parse(0xffff, &why), -ERANGE);

	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, QNUM);
	assert_int_equal(parse(0, &why), -ERANGE);
	assert_string_equal(why, "next descriptor index beyond its table");
	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	assert_int_equal(parse(0, &why), -ERANGE);
}

static void test_loops(void **state)
{
	const char *why;

	/* Self-loop. */
	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 0);
	assert_int_equal(parse(0, &why), -ELOOP);
	assert_string_equal(why, "descriptor chain longer than its table (loop)");

	/* 1 -> 2 -> 3 -> 1 entered at 1, and entered from outside the cycle at 0. */
	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, 0x4000, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(DESC, 2, 0x4000, 16, VIRTQ_DESC_F_NEXT, 3);
	put_desc(DESC, 3, 0x4000, 16, VIRTQ_DESC_F_NEXT, 1);
	assert_int_equal(parse(1, &why), -ELOOP);
	assert_int_equal(parse(0, &why), -ELOOP);

	/* Zero-length descriptors in a loop still count. */
	for (unsigned i = 0; i < QNUM; i++)
		put_desc(DESC, i, 0, 0, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % QNUM));
	assert_int_equal(parse(0, &why), -ELOOP);
}

static void test_outside_ram(void **state)
{
	const char *why;
	const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ LOW_SIZE, 1 }, /* just past the low region */
		{ LOW_SIZE - 4, 8 }, /* straddling its end */
		{ 0xd0000000, 4 }, /* in the MMIO hole */
		{ HIGH_GPA - 1, 2 }, /* straddling into the high region */
		{ HIGH_GPA + HIGH_SIZE - 1, 2 },
		{ UINT64_MAX, 1 },
		{ UINT64_MAX - 10, 100 }, /* addr + len wraps around */
		{ 0x4000, UINT32_MAX }, /* length overflows the region */
	};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 1);
		put_desc(DESC, 1, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE, 0);
		assert_int_equal(parse(0, &why), -EFAULT);
		assert_string_equal(why, "buffer outside guest RAM");
	}

	/* The descriptor table itself outside RAM (layout changed after the check). */
	layout.desc = LOW_SIZE;
	assert_int_equal(parse(0, &why), -EFAULT);
}

static void test_wrong_direction(void **state)
{
	const char *why;

	/* readable, writable, readable: a driver must put writable buffers last. */
	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, 0x5000, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(DESC, 2, 0x6000, 16, 0, 0);
	assert_int_equal(parse(0, &why), -EPROTO);
	assert_string_equal(why, "device-readable buffer after a writable one");
}

static void test_indirect(void **state)
{
	const char *why;
	const uint64_t table = 0x8000;

	layout.indirect = true;
	put_desc(table, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(table, 2, 0x5000, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(table, 1, 0x6000, 1, VIRTQ_DESC_F_WRITE, 0);
	/* The WRITE flag of the descriptor naming the table is ignored. */
	put_desc(DESC, 3, table, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(parse(3, &why), 0);
	assert_int_equal(chain.head, 3);
	assert_int_equal(chain.n_segs, 3);
	assert_int_equal(chain.n_readable, 1);
	assert_int_equal(chain.writable_len, 4097);
	assert_ptr_equal(chain.segs[2].ptr, low_ram + 0x6000);

	/* Direct descriptors may precede the indirect one. */
	put_desc(DESC, 0, 0x7000, 8, VIRTQ_DESC_F_NEXT, 3);
	assert_int_equal(parse(0, &why), 0);
	assert_int_equal(chain.n_segs, 4);
	assert_int_equal(chain.readable_len, 24);

	/* Not negotiated. */
	layout.indirect = false;
	assert_int_equal(parse(3, &why), -EINVAL);
	assert_string_equal(why, "indirect descriptor without INDIRECT_DESC");
	layout.indirect = true;

	/* INDIRECT together with NEXT. */
	put_desc(DESC, 3, table, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 4);
	assert_int_equal(parse(3, &why), -EINVAL);
	assert_string_equal(why, "indirect descriptor with NEXT");

	/* Bad table lengths: zero, not a multiple of 16, more than 256 entries. */
	const uint32_t bad_len[] = { 0, 8, 3 * 16 + 1, 257 * 16, UINT32_MAX };
	for (size_t i = 0; i < ELEMENTSOF(bad_len); i++) {
		put_desc(DESC, 3, table, bad_len[i], VIRTQ_DESC_F_INDIRECT, 0);
		assert_int_equal(parse(3, &why), -EINVAL);
		assert_string_equal(why, "indirect table length invalid");
	}

	/* The table outside RAM. */
	put_desc(DESC, 3, LOW_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	assert_int_equal(parse(3, &why), -EFAULT);
	assert_string_equal(why, "indirect table outside guest RAM");

	/* Nested indirect. */
	put_desc(DESC, 3, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(table, 1, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	assert_int_equal(parse(3, &why), -EINVAL);
	assert_string_equal(why, "nested indirect descriptor");

	/* next beyond the indirect table (but within the queue size). */
	put_desc(table, 1, 0x6000, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	assert_int_equal(parse(3, &why), -ERANGE);

	/* A loop inside the indirect table. */
	put_desc(table, 1, 0x6000, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	assert_int_equal(parse(3, &why), -ELOOP);

	/* A buffer of the indirect table outside RAM. */
	put_desc(table, 1, 0xfee00000, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(parse(3, &why), -EFAULT);
}

static void test_too_many_segments(void **state)
{
	const char *why;
	const uint64_t table = 0x8000; /* 256 × 16 = 4 KiB */

	/* 8 direct buffers, then an indirect table of 256: 264 > VQ_MAX_SIZE segments. */
	layout.indirect = true;
	for (unsigned i = 0; i < QNUM - 1; i++)
		put_desc(DESC, i, 0x4000, 4, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	put_desc(DESC, QNUM - 1, table, VQ_MAX_SIZE * 16, VIRTQ_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < VQ_MAX_SIZE; i++)
		put_desc(table, i, 0x5000, 4, i + 1 < VQ_MAX_SIZE ? VIRTQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	assert_int_equal(parse(0, &why), -ELOOP);
	assert_string_equal(why, "descriptor chain has too many buffers");

	/* The 256-entry table on its own is fine. */
	assert_int_equal(parse(QNUM - 1, &why), 0);
	assert_int_equal(chain.n_segs, VQ_MAX_SIZE);
}

/* ---- the rings ---- */

static void test_pop_push(void **state)
{
	struct vq q = { .l = layout };
	const char *why;

	assert_int_equal(vq_layout_check(&mem, &q.l, &why), 0);
	assert_int_equal(vq_has_avail(&q, &mem), 0);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 0);

	put_desc(DESC, 0, 0x4000, 64, VIRTQ_DESC_F_WRITE, 0);
	put_desc(DESC, 1, 0x5000, 32, 0, 0);
	post(0, 1, 1);
	post(1, 0, 2);
	assert_int_equal(vq_has_avail(&q, &mem), 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 1);
	assert_int_equal(chain.head, 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 1);
	assert_int_equal(chain.head, 0);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 0);
	assert_int_equal(q.last_avail, 2);

	assert_int_equal(vq_push(&q, &mem, 1, 0), 0);
	assert_int_equal(vq_push(&q, &mem, 0, 64), 0);
	assert_int_equal(get_u16(USED + 2), 2);
	assert_int_equal(get_u32(USED + 4), 1);
	assert_int_equal(get_u32(USED + 8), 0);
	assert_int_equal(get_u32(USED + 12), 0);
	assert_int_equal(get_u32(USED + 16), 64);

	/* Interrupt suppression. */
	assert_true(vq_wants_interrupt(&q, &mem));
	put_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_false(vq_wants_interrupt(&q, &mem));
}

static void test_pop_bad(void **state)
{
	struct vq q = { .l = layout };
	const char *why;

	/* The available index jumps by more than the queue size. */
	put_desc(DESC, 0, 0x4000, 64, 0, 0);
	post(0, 0, QNUM + 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), -EPROTO);
	assert_string_equal(why, "available index moved by more than the queue size");
	assert_int_equal(q.last_avail, 0);

	/* Exactly the queue size is fine. */
	for (unsigned i = 0; i < QNUM; i++)
		post(i, 0, QNUM);
	for (unsigned i = 0; i < QNUM; i++)
		assert_int_equal(vq_pop(&q, &mem, &chain, &why), 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 0);

	/* A bad head in the ring is not consumed. */
	post(QNUM, 200, QNUM + 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), -ERANGE);
	assert_int_equal(q.last_avail, QNUM);
}

static void test_index_wrap(void **state)
{
	struct vq q = { .l = layout, .last_avail = 0xfffe, .used_idx = 0xffff };
	const char *why;

	put_desc(DESC, 0, 0x4000, 64, 0, 0);
	post(0xfffe, 0, 0xffff);
	post(0xffff, 0, 0x0000);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 1);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 1);
	assert_int_equal(q.last_avail, 0);
	assert_int_equal(vq_pop(&q, &mem, &chain, &why), 0);

	assert_int_equal(vq_push(&q, &mem, 0, 7), 0);
	assert_int_equal(get_u16(USED + 2), 0);
	assert_int_equal(get_u32(USED + 4 + 8 * (0xffff % QNUM) + 4), 7);
}

static void test_chain_copy(void **state)
{
	const char *why;
	uint8_t buf[32];

	put_desc(DESC, 0, 0x4000, 3, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, 0x5000, 5, VIRTQ_DESC_F_NEXT, 2);
	put_desc(DESC, 2, 0x6000, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	put_desc(DESC, 3, 0x7000, 4, VIRTQ_DESC_F_WRITE, 0);
	memcpy(low_ram + 0x4000, "abc", 3);
	memcpy(low_ram + 0x5000, "defgh", 5);
	assert_int_equal(parse(0, &why), 0);

	memset(buf, 0, sizeof(buf));
	assert_int_equal(vq_chain_read(&chain, 0, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(vq_chain_read(&chain, 2, buf, 4), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(vq_chain_read(&chain, 8, buf, 4), 0);

	/* Writes go only to the writable segments, across their boundary. */
	assert_int_equal(vq_chain_write(&chain, 2, "WXYZ", 4), 4);
	assert_memory_equal(low_ram + 0x6002, "WX", 2);
	assert_memory_equal(low_ram + 0x7000, "YZ", 2);
	assert_int_equal(vq_chain_write(&chain, 6, "1234", 4), 2);
	assert_memory_equal(low_ram + 0x7002, "12", 2);
	assert_memory_equal(low_ram + 0x4000, "abc", 3);
}

/* ---- the transport and virtio-blk through the MMIO registers ---- */

#define MMIO_BASE 0xd0000000ull
#define DISK_SECTORS 8

struct dev_fixture {
	struct event_base *base;
	struct device_env env;
	char path[64];
	struct virtio_dev *dev;
	struct mmio_device *mmio;
	uint16_t avail_idx;
	int pkt; /* net: packet socket on the tap */
};

static uint32_t r32(struct dev_fixture *f, uint64_t off)
{
	uint32_t v;

	f->mmio->read(f->mmio, off, &v, 4);
	return le32toh(v);
}

static void w32(struct dev_fixture *f, uint64_t off, uint32_t v)
{
	v = htole32(v);
	f->mmio->write(f->mmio, off, &v, 4);
}

/* The image: sector s is filled with the byte 's'. */
static int blk_setup(void **state)
{
	struct dev_fixture *f = calloc(1, sizeof(*f));
	uint8_t sector[512];
	int fd;

	setup(NULL);
	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->env = (struct device_env){
		.vm_fd = -1, .mem = &mem, .base = f->base, .mmio_base = MMIO_BASE, .gsi = 5
	};
	snprintf(f->path, sizeof(f->path), "/tmp/test_virtqueue.XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	for (unsigned s = 0; s < DISK_SECTORS; s++) {
		memset(sector, 's' + (int)s, sizeof(sector));
		assert_int_equal(write(fd, sector, sizeof(sector)), sizeof(sector));
	}
	close(fd);
	*state = f;
	return 0;
}

static int blk_teardown(void **state)
{
	struct dev_fixture *f = *state;

	f->dev = virtio_dev_free(f->dev);
	unlink(f->path);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void blk_open(struct dev_fixture *f, bool read_only)
{
	assert_int_equal(virtio_blk_new(&f->env, "disk0", f->path, read_only, &f->dev), 0);
	f->mmio = virtio_dev_mmio(f->dev);
	assert_int_equal(f->mmio->base, MMIO_BASE);
	f->avail_idx = 0;
}

/* Queue @i's rings: queue 0 at DESC/AVAIL/USED, queue 1 0x800 bytes above each. */
#define QOFF(i) (0x800u * (i))

/* The Linux driver's bring-up sequence (drivers/virtio/virtio_mmio.c) with @n_queues 8-entry
 * queues. */
static void driver_init_n(struct dev_fixture *f, uint32_t features_hi, unsigned n_queues)
{
	w32(f, 0x70, 0);
	w32(f, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	w32(f, 0x14, 0);
	w32(f, 0x24, 0);
	w32(f, 0x20, r32(f, 0x10));
	w32(f, 0x24, 1);
	w32(f, 0x20, features_hi);
	w32(f, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	for (unsigned i = 0; i < n_queues; i++) {
		w32(f, 0x30, i);
		assert_int_equal(r32(f, 0x34), VQ_MAX_SIZE);
		w32(f, 0x38, QNUM);
		w32(f, 0x80, DESC + QOFF(i));
		w32(f, 0x84, 0);
		w32(f, 0x90, AVAIL + QOFF(i));
		w32(f, 0x94, 0);
		w32(f, 0xa0, USED + QOFF(i));
		w32(f, 0xa4, 0);
		w32(f, 0x44, 1);
	}
	w32(f, 0x70,
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		    VIRTIO_STATUS_DRIVER_OK);
}

static void driver_init(struct dev_fixture *f, uint32_t features_hi)
{
	driver_init_n(f, features_hi, 1);
}

/* Runs the main loop until nothing is pending. */
static void run_loop(struct dev_fixture *f)
{
	for (int i = 0; i < 4; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* Posts a request {type, sector} with @data_len bytes of data at 0x5000 (device-writable when
 * @in) and a status byte at 0x6000, notifies, runs the loop. Returns the status byte. */
static int blk_do(struct dev_fixture *f, uint32_t type, uint64_t sector, uint32_t data_len, bool in)
{
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} __attribute__((packed)) hdr = { htole32(type), 0, htole64(sector) };
	uint16_t head = (uint16_t)(f->avail_idx % QNUM);

	memcpy(low_ram + 0x4000, &hdr, sizeof(hdr));
	low_ram[0x6000] = 0xee;
	/* Three descriptors per request, from a table slot that depends on nothing in flight. */
	put_desc(DESC, 0, 0x4000, sizeof(hdr), VIRTQ_DESC_F_NEXT, data_len ? 1 : 2);
	put_desc(DESC, 1, 0x5000, data_len, VIRTQ_DESC_F_NEXT | (in ? VIRTQ_DESC_F_WRITE : 0), 2);
	put_desc(DESC, 2, 0x6000, 1, VIRTQ_DESC_F_WRITE, 0);
	(void)head;
	f->avail_idx++;
	post(f->avail_idx - 1, 0, f->avail_idx);
	w32(f, 0x50, 0);
	run_loop(f);
	return low_ram[0x6000];
}

static uint16_t used_idx(void)
{
	return get_u16(USED + 2);
}

static void test_blk_registers(void **state)
{
	struct dev_fixture *f = *state;
	char cmdline[64];
	uint8_t cfg[8];
	uint64_t cap;

	blk_open(f, false);
	assert_int_equal(r32(f, 0x000), 0x74726976);
	assert_int_equal(r32(f, 0x004), 2);
	assert_int_equal(r32(f, 0x008), 2);
	w32(f, 0x14, 1);
	assert_true(r32(f, 0x10) & 1); /* VIRTIO_F_VERSION_1 */
	w32(f, 0x14, 0);
	assert_true(r32(f, 0x10) & (1u << 9)); /* FLUSH */
	assert_false(r32(f, 0x10) & (1u << 5)); /* not RO */
	/* Capacity in the configuration space, read with 8 single bytes. */
	for (unsigned i = 0; i < 8; i++)
		f->mmio->read(f->mmio, 0x100 + i, &cfg[i], 1);
	memcpy(&cap, cfg, 8);
	assert_int_equal(le64toh(cap), DISK_SECTORS);
	/* Queue 1 does not exist. */
	w32(f, 0x30, 1);
	assert_int_equal(r32(f, 0x34), 0);
	/* Narrow register accesses read as zero. */
	uint16_t v16 = 0xffff;
	f->mmio->read(f->mmio, 0x000, &v16, 2);
	assert_int_equal(v16, 0);

	assert_int_equal(virtio_dev_cmdline(f->dev, cmdline, sizeof(cmdline)),
			 (int)strlen(" virtio_mmio.device=4K@0xd0000000:5"));
	assert_string_equal(cmdline, " virtio_mmio.device=4K@0xd0000000:5");
	assert_int_equal(virtio_dev_cmdline(f->dev, cmdline, 10), -ENOBUFS);

	/* A driver without VERSION_1 (legacy) is refused at FEATURES_OK. */
	driver_init(f, 0);
	assert_false(r32(f, 0x70) & VIRTIO_STATUS_FEATURES_OK);
	/* A modern one is accepted. */
	driver_init(f, 1);
	assert_int_equal(r32(f, 0x70), 0xf);
	assert_int_equal(r32(f, 0x44), 1);
}

static void test_blk_io(void **state)
{
	struct dev_fixture *f = *state;
	uint8_t buf[1024];
	int fd;

	blk_open(f, false);
	driver_init(f, 1);

	/* Read sector 3. */
	assert_int_equal(blk_do(f, 0, 3, 512, true), 0);
	assert_int_equal(used_idx(), 1);
	assert_int_equal(get_u32(USED + 4), 0);
	assert_int_equal(get_u32(USED + 8), 513);
	memset(buf, 's' + 3, 512);
	assert_memory_equal(low_ram + 0x5000, buf, 512);

	/* Write sector 5, then flush, and find it in the file. */
	memset(low_ram + 0x5000, 'W', 512);
	assert_int_equal(blk_do(f, 1, 5, 512, false), 0);
	assert_int_equal(get_u32(USED + 4 + 8 + 4), 1);
	assert_int_equal(blk_do(f, 4, 0, 0, false), 0);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 512, 5 * 512), 512);
	close(fd);
	memset(buf + 512, 'W', 512);
	assert_memory_equal(buf, buf + 512, 512);

	/* Out of range: the sector after the last, a 2-sector read of the last, a huge sector. */
	assert_int_equal(blk_do(f, 0, DISK_SECTORS, 512, true), 1);
	assert_int_equal(blk_do(f, 0, DISK_SECTORS - 1, 1024, true), 1);
	assert_int_equal(blk_do(f, 1, UINT64_MAX, 512, false), 1);
	assert_int_equal(blk_do(f, 1, UINT64_MAX / 512 + 1, 512, false), 1);
	/* Not a multiple of the sector size. */
	assert_int_equal(blk_do(f, 0, 0, 100, true), 1);

	/* GET_ID answers with the drive id, NUL-padded to 20 bytes. */
	memset(low_ram + 0x5000, 0xff, 20);
	assert_int_equal(blk_do(f, 8, 0, 20, true), 0);
	assert_memory_equal(low_ram + 0x5000, "disk0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
	/* Unknown request type. */
	assert_int_equal(blk_do(f, 99, 0, 0, false), 2);

	json_auto_t *m = virtio_dev_metrics(f->dev);
	assert_non_null(m);
	assert_int_equal(json_integer_value(json_object_get(m, "read_ops")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "write_ops")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "io_errors")), 5);
	assert_string_equal(json_string_value(json_object_get(m, "kind")), "blk");
	assert_false(json_boolean_value(json_object_get(m, "needs_reset")));
}

static void test_blk_read_only(void **state)
{
	struct dev_fixture *f = *state;
	uint8_t buf[512], want[512];
	int fd;

	blk_open(f, true);
	w32(f, 0x14, 0);
	assert_true(r32(f, 0x10) & (1u << 5)); /* VIRTIO_BLK_F_RO */
	driver_init(f, 1);
	memset(low_ram + 0x5000, 'W', 512);
	assert_int_equal(blk_do(f, 1, 2, 512, false), 1);
	assert_int_equal(blk_do(f, 0, 2, 512, true), 0);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 512, 2 * 512), 512);
	close(fd);
	memset(want, 's' + 2, 512);
	assert_memory_equal(buf, want, 512);
}

static void test_blk_bad_chain_needs_reset(void **state)
{
	struct dev_fixture *f = *state;

	blk_open(f, false);
	driver_init(f, 1);
	assert_int_equal(blk_do(f, 0, 0, 512, true), 0);

	/* A loop: the device stops and asks for a reset, with a config-change interrupt. */
	put_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_NEXT, 0);
	f->avail_idx++;
	post(f->avail_idx - 1, 0, f->avail_idx);
	w32(f, 0x50, 0);
	run_loop(f);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(r32(f, 0x60) & 2);
	assert_int_equal(used_idx(), 1);

	/* Further requests are ignored until a reset. */
	low_ram[0x6000] = 0xee;
	assert_int_equal(blk_do(f, 0, 0, 512, true), 0xee);
	assert_int_equal(used_idx(), 1);
	json_auto_t *m = virtio_dev_metrics(f->dev);
	assert_true(json_boolean_value(json_object_get(m, "needs_reset")));

	/* After a reset and a fresh bring-up it works again. */
	memset(low_ram + AVAIL, 0, 0x100);
	memset(low_ram + USED, 0, 0x100);
	f->avail_idx = 0;
	driver_init(f, 1);
	assert_int_equal(r32(f, 0x70), 0xf);
	assert_int_equal(blk_do(f, 0, 1, 512, true), 0);
	assert_int_equal(used_idx(), 1);

	/* A header shorter than 16 bytes. */
	put_desc(DESC, 0, 0x4000, 8, VIRTQ_DESC_F_NEXT, 2);
	put_desc(DESC, 2, 0x6000, 1, VIRTQ_DESC_F_WRITE, 0);
	f->avail_idx++;
	post(f->avail_idx - 1, 0, f->avail_idx);
	w32(f, 0x50, 0);
	run_loop(f);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_bad_queue_layout(void **state)
{
	struct dev_fixture *f = *state;

	blk_open(f, false);
	w32(f, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	w32(f, 0x24, 1);
	w32(f, 0x20, 1);
	w32(f, 0x70, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	w32(f, 0x30, 0);
	w32(f, 0x38, 3); /* not a power of two */
	w32(f, 0x80, DESC);
	w32(f, 0x90, AVAIL);
	w32(f, 0xa0, USED);
	w32(f, 0x44, 1);
	assert_int_equal(r32(f, 0x44), 0);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_pause(void **state)
{
	struct dev_fixture *f = *state;

	blk_open(f, false);
	driver_init(f, 1);
	virtio_dev_set_paused(f->dev, true);
	assert_int_equal(blk_do(f, 0, 4, 512, true), 0xee);
	assert_int_equal(used_idx(), 0);
	virtio_dev_set_paused(f->dev, false);
	run_loop(f);
	assert_int_equal(used_idx(), 1);
	assert_int_equal(low_ram[0x6000], 0);
	assert_int_equal(low_ram[0x5000], 's' + 4);
}

static void test_blk_open_errors(void **state)
{
	struct dev_fixture *f = *state;
	struct virtio_dev *d = NULL;
	char empty[] = "/tmp/test_virtqueue.empty.XXXXXX";
	int fd;

	assert_int_equal(virtio_blk_new(&f->env, "x", "/nonexistent/image", false, &d), -ENOENT);
	fd = mkstemp(empty);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(virtio_blk_new(&f->env, "x", empty, false, &d), -EINVAL);
	unlink(empty);
	assert_null(d);
	assert_null(virtio_dev_free(NULL));
}

/* ---- virtio-net over a tap in a private network namespace ---- */

#define ETH_TEST 0x88b5
#define NET_HDR 12
#define RXQ_BUF(i) (0x9000u + 0x800u * (i))
#define TX_BUF 0xe000u

static const uint8_t guest_mac[6] = { 0x02, 0, 0, 0, 0, 0x42 };

/* Runs in a fresh network namespace (the tap and its traffic stay private to this process);
 * creates the device on a new tap "vqtap0", brings the link up and opens a packet socket on
 * it. Sets f->skip when the machine does not allow any of it. */
static int net_setup(void **state)
{
	struct dev_fixture *f;
	struct ifreq ifr = { 0 };
	struct sockaddr_ll sll = { 0 };
	int s;

	blk_setup(state);
	f = *state;
	/* main() checked that this works before listing the net tests. */
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	/* No IPv6 on the new link: its neighbour discovery frames would take the guest's
	 * buffers. (The file is absent when the kernel has no IPv6, which is as good.) */
	s = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
	if (s >= 0) {
		assert_int_equal(write(s, "1", 1), 1);
		close(s);
	}
	assert_int_equal(virtio_net_new(&f->env, "eth0", "vqtap0", guest_mac, &f->dev), 0);
	f->mmio = virtio_dev_mmio(f->dev);

	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	memcpy(ifr.ifr_name, "vqtap0", sizeof("vqtap0"));
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);

	f->pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_TEST));
	assert_true(f->pkt >= 0);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_TEST);
	sll.sll_ifindex = (int)if_nametoindex("vqtap0");
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(f->pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return 0;
}

static int net_teardown(void **state)
{
	struct dev_fixture *f = *state;

	if (f->pkt > 0)
		close(f->pkt);
	return blk_teardown(state);
}

/* A 60-byte test frame: @dst, the host's MAC, EtherType 0x88b5, @text. */
static void make_frame(uint8_t *fr, const uint8_t *dst, const char *text)
{
	static const uint8_t host_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

	memset(fr, 0, 60);
	memcpy(fr, dst, 6);
	memcpy(fr + 6, host_mac, 6);
	fr[12] = ETH_TEST >> 8;
	fr[13] = ETH_TEST & 0xff;
	memcpy(fr + 14, text, strlen(text));
}

/* Queue @q's used index. */
static uint16_t used_idx_q(unsigned q)
{
	return get_u16(USED + QOFF(q) + 2);
}

/* Posts one rx buffer (descriptor @i, 1526 writable bytes) and notifies queue 0. */
static void post_rx_buf(struct dev_fixture *f, unsigned i, uint16_t *avail)
{
	put_desc(DESC, i, RXQ_BUF(i), NET_HDR + 1514, VIRTQ_DESC_F_WRITE, 0);
	put_u16(AVAIL + 4 + 2 * (*avail % QNUM), (uint16_t)i);
	put_u16(AVAIL + 2, ++*avail);
	w32(f, 0x50, 0);
}

/* Runs the loop until queue @q's used index reaches @want (at most a second). */
static bool wait_used(struct dev_fixture *f, unsigned q, uint16_t want)
{
	for (int i = 0; i < 100; i++) {
		run_loop(f);
		if (used_idx_q(q) == want)
			return true;
		usleep(10000);
	}
	return false;
}

static void test_net_tx_rx(void **state)
{
	struct dev_fixture *f = *state;
	uint8_t frame[60], got[128], cfg[6];
	struct pollfd pfd;
	uint16_t rx_avail = 0, nb;

	w32(f, 0x14, 0);
	assert_true(r32(f, 0x10) & (1u << 5)); /* VIRTIO_NET_F_MAC */
	for (unsigned i = 0; i < 6; i++)
		f->mmio->read(f->mmio, 0x100 + i, &cfg[i], 1);
	assert_memory_equal(cfg, guest_mac, 6);
	driver_init_n(f, 1, 2);

	/* Transmit: header and frame in two descriptors of queue 1. */
	memset(low_ram + TX_BUF, 0, NET_HDR);
	make_frame(low_ram + TX_BUF + 0x100, (const uint8_t *)"\xff\xff\xff\xff\xff\xff", "tx");
	memcpy(low_ram + TX_BUF + 0x106, guest_mac, 6);
	put_desc(DESC + QOFF(1), 0, TX_BUF, NET_HDR, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC + QOFF(1), 1, TX_BUF + 0x100, 60, 0, 0);
	put_u16(AVAIL + QOFF(1) + 4, 0);
	put_u16(AVAIL + QOFF(1) + 2, 1);
	w32(f, 0x50, 1);
	assert_true(wait_used(f, 1, 1));
	pfd = (struct pollfd){ .fd = f->pkt, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(recv(f->pkt, got, sizeof(got), 0), 60);
	assert_memory_equal(got, low_ram + TX_BUF + 0x100, 60);

	/* A frame for the guest before it posted any buffer waits in the tap. */
	make_frame(frame, guest_mac, "rx one");
	assert_int_equal(send(f->pkt, frame, 60, 0), 60);
	run_loop(f);
	assert_int_equal(used_idx_q(0), 0);
	/* Two buffers: the waiting frame lands in the first, with num_buffers = 1. */
	post_rx_buf(f, 0, &rx_avail);
	post_rx_buf(f, 1, &rx_avail);
	assert_true(wait_used(f, 0, 1));
	assert_int_equal(get_u32(USED + 4), 0);
	assert_int_equal(get_u32(USED + 8), NET_HDR + 60);
	nb = get_u16(RXQ_BUF(0) + 10);
	assert_int_equal(nb, 1);
	assert_memory_equal(low_ram + RXQ_BUF(0) + NET_HDR, frame, 60);

	/* The next frame takes the second buffer as it arrives. */
	make_frame(frame, guest_mac, "rx two");
	assert_int_equal(send(f->pkt, frame, 60, 0), 60);
	assert_true(wait_used(f, 0, 2));
	assert_memory_equal(low_ram + RXQ_BUF(1) + NET_HDR, frame, 60);

	/* Out of buffers: the third frame waits until the driver posts one (rx resumes on the
	 * notification). */
	make_frame(frame, guest_mac, "rx three");
	assert_int_equal(send(f->pkt, frame, 60, 0), 60);
	assert_false(wait_used(f, 0, 3));
	post_rx_buf(f, 0, &rx_avail);
	assert_true(wait_used(f, 0, 3));
	assert_memory_equal(low_ram + RXQ_BUF(0) + NET_HDR, frame, 60);

	json_auto_t *m = virtio_dev_metrics(f->dev);
	assert_non_null(m);
	assert_int_equal(json_integer_value(json_object_get(m, "rx_packets")), 3);
	assert_int_equal(json_integer_value(json_object_get(m, "tx_packets")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "tx_bytes")), 60);
	assert_string_equal(json_string_value(json_object_get(m, "tap")), "vqtap0");
}

static void test_net_bad_chains(void **state)
{
	struct dev_fixture *f = *state;

	driver_init_n(f, 1, 2);
	/* An rx buffer the device could only read. */
	put_desc(DESC, 0, RXQ_BUF(0), 1526, 0, 0);
	put_u16(AVAIL + 4, 0);
	put_u16(AVAIL + 2, 1);
	w32(f, 0x50, 0);
	run_loop(f);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx_q(0), 0);

	/* After a reset: a tx chain with a device-writable buffer. */
	memset(low_ram + AVAIL, 0, 0x1000);
	memset(low_ram + USED, 0, 0x1000);
	driver_init_n(f, 1, 2);
	assert_int_equal(r32(f, 0x70), 0xf);
	put_desc(DESC + QOFF(1), 0, TX_BUF, NET_HDR, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC + QOFF(1), 1, TX_BUF + 0x100, 60, VIRTQ_DESC_F_WRITE, 0);
	put_u16(AVAIL + QOFF(1) + 4, 0);
	put_u16(AVAIL + QOFF(1) + 2, 1);
	w32(f, 0x50, 1);
	run_loop(f);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx_q(1), 0);

	/* A tx chain shorter than the virtio-net header, after another reset. */
	memset(low_ram + AVAIL, 0, 0x1000);
	memset(low_ram + USED, 0, 0x1000);
	driver_init_n(f, 1, 2);
	put_desc(DESC + QOFF(1), 0, TX_BUF, 8, 0, 0);
	put_u16(AVAIL + QOFF(1) + 2, 1);
	w32(f, 0x50, 1);
	run_loop(f);
	assert_true(r32(f, 0x70) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_net_open_errors(void **state)
{
	struct dev_fixture *f = *state;
	struct virtio_dev *d = NULL;

	assert_int_equal(virtio_net_new(&f->env, "x", "a-name-much-too-long-for-linux", NULL, &d),
			 -EINVAL);
	assert_int_equal(virtio_net_new(&f->env, "x", "", NULL, &d), -EINVAL);
	assert_null(d);
}

/* Whether this process may make a network namespace and a tap in it (root, with tun). Tried
 * in a child, which exits with the answer. */
static bool can_make_tap(void)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return false;
	if (pid == 0) {
		struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
		int fd;

		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
		memcpy(ifr.ifr_name, "vqprobe0", sizeof("vqprobe0"));
		_exit(fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0 ? 0 : 1);
	}
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_layout, setup),
		cmocka_unit_test_setup(test_good_chain, setup),
		cmocka_unit_test_setup(test_single_and_zero_length, setup),
		cmocka_unit_test_setup(test_full_length_chain, setup),
		cmocka_unit_test_setup(test_bad_indices, setup),
		cmocka_unit_test_setup(test_loops, setup),
		cmocka_unit_test_setup(test_outside_ram, setup),
		cmocka_unit_test_setup(test_wrong_direction, setup),
		cmocka_unit_test_setup(test_indirect, setup),
		cmocka_unit_test_setup(test_too_many_segments, setup),
		cmocka_unit_test_setup(test_pop_push, setup),
		cmocka_unit_test_setup(test_pop_bad, setup),
		cmocka_unit_test_setup(test_index_wrap, setup),
		cmocka_unit_test_setup(test_chain_copy, setup),
		cmocka_unit_test_setup_teardown(test_blk_registers, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_io, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_read_only, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_bad_chain_needs_reset, blk_setup,
						blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_bad_queue_layout, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_pause, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_blk_open_errors, blk_setup, blk_teardown),
		cmocka_unit_test_setup_teardown(test_net_open_errors, blk_setup, blk_teardown),
		/* These two last: they need root for a network namespace with a tap. */
		cmocka_unit_test_setup_teardown(test_net_tx_rx, net_setup, net_teardown),
		cmocka_unit_test_setup_teardown(test_net_bad_chains, net_setup, net_teardown),
	};
	size_t n = ELEMENTSOF(tests);

	if (!can_make_tap()) {
		printf("# skipping the 2 virtio-net tap tests: cannot create a network namespace "
		       "with a tap device here\n");
		n -= 2;
	}
	return _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
}
