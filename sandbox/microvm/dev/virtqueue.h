/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Split virtqueues (virtio 1.1 §2.6), device side, as pure functions over guest memory.
 *
 * Nothing here trusts the guest: every guest-physical range goes through guest_mem_ptr(), every
 * descriptor is copied once into host memory before it is checked (the driver may rewrite the
 * ring concurrently from another vCPU), indices are range-checked, chains are bounded, and each
 * failure comes with a one-line reason so the device can log it and ask for a reset.
 *
 * Layout reminder (all little-endian):
 *   descriptor table  num × { u64 addr; u32 len; u16 flags; u16 next; }     16-byte aligned
 *   available ring    { u16 flags; u16 idx; u16 ring[num]; u16 used_event; }  2-byte aligned
 *   used ring         { u16 flags; u16 idx; { u32 id; u32 len; } ring[num]; u16 avail_event; }
 *                                                                              4-byte aligned
 */

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;

/* The largest queue our devices offer (QueueNumMax). It also bounds one chain's segments. */
#define VQ_MAX_SIZE 256

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Bytes of each ring for a queue of @num entries (without the optional event fields). */
#define VQ_DESC_BYTES(num) (16ull * (num))
#define VQ_AVAIL_BYTES(num) (4ull + 2ull * (num))
#define VQ_USED_BYTES(num) (4ull + 8ull * (num))

/* Where a queue lives in guest memory, as the driver configured it. */
struct vq_layout {
	uint64_t desc; /* guest-physical address of the descriptor table */
	uint64_t avail; /* ... of the available ("driver") ring */
	uint64_t used; /* ... of the used ("device") ring */
	uint16_t num; /* queue size: a power of two, 1..VQ_MAX_SIZE */
	bool indirect; /* VIRTIO_RING_F_INDIRECT_DESC was negotiated */
};

/* One buffer of a descriptor chain, resolved to host memory. */
struct vq_seg {
	uint8_t *ptr; /* host address inside guest RAM; borrowed from the guest_mem mapping */
	uint32_t len; /* never 0: zero-length descriptors are skipped */
	bool writable; /* device-writable (VIRTQ_DESC_F_WRITE) */
};

/*
 * A parsed chain. Device-readable segments come first (segs[0 .. n_readable)), then the
 * device-writable ones; a chain that interleaves them is refused.
 */
struct vq_chain {
	uint16_t head; /* descriptor index to return in the used ring */
	uint16_t n_segs;
	uint16_t n_readable;
	uint64_t readable_len; /* sum of the readable segments' lengths */
	uint64_t writable_len;
	struct vq_seg segs[VQ_MAX_SIZE];
};

/*
 * Checks that a queue layout is usable: num a power of two in 1..VQ_MAX_SIZE, each ring aligned
 * as the spec requires and wholly inside guest RAM. Returns 0, or -EINVAL with *ret_why set to a
 * static description.
 */
int vq_layout_check(const struct guest_mem *m, const struct vq_layout *q, const char **ret_why);

/*
 * Walks the descriptor chain that starts at descriptor @head of queue @q and resolves every
 * buffer into @ret (caller-provided; overwritten). Direct descriptors are followed at most
 * q->num times and an indirect table (only if q->indirect; only as the chain's last descriptor,
 * never nested, length a non-zero multiple of 16 and at most VQ_MAX_SIZE entries) at most its
 * own length, so loops end. @q must have passed vq_layout_check(). Pure: reads guest memory
 * only.
 * Returns 0, or a negative errno with *ret_why set to a static description:
 *   -ERANGE  a head or next index beyond its table
 *   -ELOOP   more descriptors than the table holds (a loop) or more than VQ_MAX_SIZE segments
 *   -EFAULT  a descriptor table, indirect table or buffer not wholly inside guest RAM
 *   -EINVAL  indirect misuse (not negotiated, nested, with NEXT, bad length)
 *   -EPROTO  a device-readable buffer after a device-writable one
 */
int vq_chain_parse(const struct guest_mem *m, const struct vq_layout *q, uint16_t head,
		   struct vq_chain *ret, const char **ret_why);

/* The device's running state of one queue. Zero-initialise, then set .l before use. */
struct vq {
	struct vq_layout l;
	uint16_t last_avail; /* next available-ring slot to consume */
	uint16_t used_idx; /* next used-ring slot to fill (mirrors used->idx) */
};

/*
 * Takes the next available chain: returns 1 and fills @ret, 0 if the driver has posted nothing
 * new, or a negative errno with *ret_why set: -EPROTO if the available index moved more than
 * q->num entries past the last one consumed, -EFAULT if a ring left guest RAM, or any error of
 * vq_chain_parse(). On error nothing is consumed.
 */
int vq_pop(struct vq *q, const struct guest_mem *m, struct vq_chain *ret, const char **ret_why);

/* Returns 1 if the driver has posted chains not yet consumed, 0 if not, -EFAULT if the ring is
 * outside guest RAM. */
int vq_has_avail(const struct vq *q, const struct guest_mem *m);

/*
 * Puts chain @head back to the driver in the used ring with @len bytes written, and publishes
 * the new used index (release ordering: the buffers and the used element are visible before the
 * index). Returns 0 or -EFAULT if the used ring is outside guest RAM.
 */
int vq_push(struct vq *q, const struct guest_mem *m, uint16_t head, uint32_t len);

/* After vq_push(): whether the driver wants an interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT clear). */
bool vq_wants_interrupt(const struct vq *q, const struct guest_mem *m);

/*
 * Copy helpers over a chain's segments, treating the readable (or writable) segments as one
 * contiguous byte stream. They copy up to @len bytes starting @off bytes into that stream and
 * return how many bytes were copied (less than @len when the stream is shorter).
 */
uint64_t vq_chain_read(const struct vq_chain *c, uint64_t off, void *dst, uint64_t len);
uint64_t vq_chain_write(const struct vq_chain *c, uint64_t off, const void *src, uint64_t len);
