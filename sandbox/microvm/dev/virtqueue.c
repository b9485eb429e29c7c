/* SPDX-License-Identifier: MIT */
#include "sandbox/microvm/dev/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "libcommon/cleanup.h"
#include "sandbox/microvm/dev/device.h"

/* A descriptor as it sits in guest memory. Only ever read with memcpy into a local copy. */
struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));

_Static_assert(sizeof(struct vq_desc) == 16, "virtq_desc is 16 bytes");

static bool is_pow2(unsigned v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

int vq_layout_check(const struct guest_mem *m, const struct vq_layout *q, const char **ret_why)
{
	const char *why = NULL;

	if (q->num == 0 || q->num > VQ_MAX_SIZE || !is_pow2(q->num))
		why = "queue size is not a power of two within 1..256";
	else if (q->desc % 16 || q->avail % 2 || q->used % 4)
		why = "ring address misaligned";
	else if (!guest_mem_ptr(m, q->desc, VQ_DESC_BYTES(q->num)))
		why = "descriptor table outside guest RAM";
	else if (!guest_mem_ptr(m, q->avail, VQ_AVAIL_BYTES(q->num)))
		why = "available ring outside guest RAM";
	else if (!guest_mem_ptr(m, q->used, VQ_USED_BYTES(q->num)))
		why = "used ring outside guest RAM";
	if (why) {
		*ret_why = why;
		return -EINVAL;
	}
	return 0;
}

static int fail(const char **ret_why, const char *why, int r)
{
	*ret_why = why;
	return r;
}

int vq_chain_parse(const struct guest_mem *m, const struct vq_layout *q, uint16_t head,
		   struct vq_chain *ret, const char **ret_why)
{
	const uint8_t *table;
	unsigned table_n = q->num, visited = 0, idx = head;
	bool in_indirect = false, seen_writable = false;

	table = guest_mem_ptr(m, q->desc, VQ_DESC_BYTES(q->num));
	if (!table)
		return fail(ret_why, "descriptor table outside guest RAM", -EFAULT);
	if (idx >= table_n)
		return fail(ret_why, "head descriptor index beyond the queue size", -ERANGE);

	ret->head = head;
	ret->n_segs = 0;
	ret->n_readable = 0;
	ret->readable_len = 0;
	ret->writable_len = 0;

	for (;;) {
		struct vq_desc d;
		uint64_t addr;
		uint32_t len;
		uint16_t flags;

		/* A chain without a loop visits each entry of its table at most once. */
		if (++visited > table_n)
			return fail(ret_why, "descriptor chain longer than its table (loop)",
				    -ELOOP);

		/* Copy once, then decide on the copy: the driver may change the table under us. */
		memcpy(&d, table + 16ull * idx, sizeof(d));
		addr = le64toh(d.addr);
		len = le32toh(d.len);
		flags = le16toh(d.flags);

		if (flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return fail(ret_why, "indirect descriptor without INDIRECT_DESC",
					    -EINVAL);
			if (in_indirect)
				return fail(ret_why, "nested indirect descriptor", -EINVAL);
			if (flags & VIRTQ_DESC_F_NEXT)
				return fail(ret_why, "indirect descriptor with NEXT", -EINVAL);
			if (len == 0 || len % 16 || len / 16 > VQ_MAX_SIZE)
				return fail(ret_why, "indirect table length invalid", -EINVAL);
			table = guest_mem_ptr(m, addr, len);
			if (!table)
				return fail(ret_why, "indirect table outside guest RAM", -EFAULT);
			/* The indirect table is a chain of its own starting at entry 0; the
			 * outer chain ends here (no NEXT). */
			table_n = len / 16;
			visited = 0;
			idx = 0;
			in_indirect = true;
			continue;
		}

		if (len > 0) {
			bool writable = flags & VIRTQ_DESC_F_WRITE;
			uint8_t *p;

			if (!writable && seen_writable)
				return fail(ret_why, "device-readable buffer after a writable one",
					    -EPROTO);
			if (ret->n_segs >= VQ_MAX_SIZE)
				return fail(ret_why, "descriptor chain has too many buffers",
					    -ELOOP);
			p = guest_mem_ptr(m, addr, len);
			if (!p)
				return fail(ret_why, "buffer outside guest RAM", -EFAULT);
			ret->segs[ret->n_segs++] =
				(struct vq_seg){ .ptr = p, .len = len, .writable = writable };
			/* At most 2 × 256 segments of < 4 GiB each: these sums cannot wrap. */
			if (writable) {
				seen_writable = true;
				ret->writable_len += len;
			} else {
				ret->n_readable++;
				ret->readable_len += len;
			}
		}

		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		idx = le16toh(d.next);
		if (idx >= table_n)
			return fail(ret_why, "next descriptor index beyond its table", -ERANGE);
	}
}

/* Ring indices are 16-bit fields the driver updates concurrently: read and write them whole. */
static uint16_t load_u16(const void *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static void store_u16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELAXED);
}

int vq_has_avail(const struct vq *q, const struct guest_mem *m)
{
	const uint8_t *avail = guest_mem_ptr(m, q->l.avail, VQ_AVAIL_BYTES(q->l.num));

	if (!avail)
		return -EFAULT;
	return load_u16(avail + 2) != q->last_avail;
}

int vq_pop(struct vq *q, const struct guest_mem *m, struct vq_chain *ret, const char **ret_why)
{
	const uint8_t *avail = guest_mem_ptr(m, q->l.avail, VQ_AVAIL_BYTES(q->l.num));
	uint16_t avail_idx, head;
	int r;

	if (!avail)
		return fail(ret_why, "available ring outside guest RAM", -EFAULT);
	avail_idx = load_u16(avail + 2);
	if (avail_idx == q->last_avail)
		return 0;
	/* The driver can have at most num chains outstanding; a bigger jump is garbage. */
	if ((uint16_t)(avail_idx - q->last_avail) > q->l.num)
		return fail(ret_why, "available index moved by more than the queue size", -EPROTO);
	/* Read the ring entry (and the chain) only after seeing the index that covers it. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = load_u16(avail + 4 + 2 * (q->last_avail % q->l.num));
	r = vq_chain_parse(m, &q->l, head, ret, ret_why);
	if (r < 0)
		return r;
	q->last_avail++;
	return 1;
}

int vq_push(struct vq *q, const struct guest_mem *m, uint16_t head, uint32_t len)
{
	uint8_t *used = guest_mem_ptr(m, q->l.used, VQ_USED_BYTES(q->l.num));
	uint8_t *elem;
	uint32_t v;

	if (!used)
		return -EFAULT;
	elem = used + 4 + 8 * (q->used_idx % q->l.num);
	v = htole32(head);
	memcpy(elem, &v, 4);
	v = htole32(len);
	memcpy(elem + 4, &v, 4);
	/* The data written into the buffers and the element precede the index the driver polls. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->used_idx++;
	store_u16(used + 2, q->used_idx);
	return 0;
}

bool vq_wants_interrupt(const struct vq *q, const struct guest_mem *m)
{
	const uint8_t *avail = guest_mem_ptr(m, q->l.avail, VQ_AVAIL_BYTES(q->l.num));

	if (!avail)
		return true;
	/* Order the used-index store before reading the driver's suppression flag. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(load_u16(avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* Copies between a flat buffer and the readable (@writable false) or writable segments. */
static uint64_t chain_copy(const struct vq_chain *c, bool writable, uint64_t off, uint8_t *buf,
			   uint64_t len, bool to_chain)
{
	unsigned i = writable ? c->n_readable : 0;
	unsigned end = writable ? c->n_segs : c->n_readable;
	uint64_t done = 0;

	for (; i < end && done < len; i++) {
		const struct vq_seg *s = &c->segs[i];
		uint64_t n;

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = MIN(s->len - off, len - done);
		if (to_chain)
			memcpy(s->ptr + off, buf + done, n);
		else
			memcpy(buf + done, s->ptr + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t vq_chain_read(const struct vq_chain *c, uint64_t off, void *dst, uint64_t len)
{
	return chain_copy(c, false, off, dst, len, false);
}

uint64_t vq_chain_write(const struct vq_chain *c, uint64_t off, const void *src, uint64_t len)
{
	return chain_copy(c, true, off, (uint8_t *)src, len, true);
}
