/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.1 §5.2) over a raw image file or block device.
 *
 * I/O is synchronous on the main loop: each request is one preadv/pwritev/fdatasync straight
 * into or out of guest memory while the device lock is held. That keeps the device simple and
 * ordered; the price is that a slow disk stalls the loop (and any vCPU touching this device's
 * registers) for the duration of one request batch. Batches are bounded (BLK_BATCH requests),
 * after which the queue re-kicks itself so other events get their turn.
 */
#include "sandbox/microvm/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/fs.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"

#define VIRTIO_ID_BLOCK 2

/* Feature bits (§5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9

/* Request types and status values (§5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR_SIZE 512u
#define BLK_ID_BYTES 20 /* GET_ID: a serial of up to 20 bytes, NUL-padded */
#define BLK_BATCH 256 /* requests served per wakeup before yielding to the loop */
#define BLK_CONFIG_SIZE 60 /* struct virtio_blk_config up to and including the zeroes fields */

struct virtio_blk {
	struct virtio_dev dev; /* first: container_of is a cast */
	int fd;
	bool read_only;
	uint64_t capacity; /* in 512-byte sectors */
	char serial[BLK_ID_BYTES];
	uint8_t config[BLK_CONFIG_SIZE]; /* little-endian, as the guest reads it */
	struct vq_chain chain; /* scratch for the request being served (main loop, lock held) */
	struct iovec iov[VQ_MAX_SIZE];
	/* Counters (relaxed atomics: read by metrics without the lock). */
	uint64_t read_ops, read_bytes, write_ops, write_bytes, flush_ops, get_id_ops;
	uint64_t io_errors, unsupported;
};

static struct virtio_blk *to_blk(const struct virtio_dev *d)
{
	return (struct virtio_blk *)d;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/*
 * Fills b->iov with the bytes [@off, @off + @len) of the chain's readable (@writable false) or
 * writable stream. Returns the number of iovecs. The caller checked that the stream is long
 * enough.
 */
static int build_iov(struct virtio_blk *b, bool writable, uint64_t off, uint64_t len)
{
	const struct vq_chain *c = &b->chain;
	unsigned i = writable ? c->n_readable : 0, end = writable ? c->n_segs : c->n_readable;
	int n = 0;

	for (; i < end && len > 0; i++) {
		const struct vq_seg *s = &c->segs[i];
		uint64_t take;

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		take = MIN((uint64_t)s->len - off, len);
		b->iov[n++] = (struct iovec){ .iov_base = s->ptr + off, .iov_len = take };
		len -= take;
		off = 0;
	}
	return n;
}

/* preadv/pwritev of the whole iovec array at @pos, resuming after short transfers. Returns 0,
 * -EIO on an unexpected end of file, or -errno. */
static int full_io(struct virtio_blk *b, int n, uint64_t pos, bool write)
{
	struct iovec *iov = b->iov;

	while (n > 0) {
		ssize_t r;

		if (write)
			r = pwritev(b->fd, iov, n, (off_t)pos);
		else
			r = preadv(b->fd, iov, n, (off_t)pos);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* the image shrank under us */
		pos += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* Sector range check without overflow: [sector, sector + bytes / 512) inside the disk. */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	return sector <= b->capacity && bytes / SECTOR_SIZE <= b->capacity - sector;
}

/*
 * Serves the request in b->chain and sets *ret_used to the number of bytes written into the
 * chain (data plus the status byte). Returns 0, or -EPROTO after failing the device for a
 * malformed chain.
 */
static int blk_request(struct virtio_blk *b, uint32_t *ret_used)
{
	const struct vq_chain *c = &b->chain;
	struct {
		uint32_t type;
		uint32_t reserved;
		uint64_t sector;
	} __attribute__((packed)) hdr;
	uint64_t sector, len, used = 0;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint32_t type;
	int r, n;

	/* The framing does not matter (VERSION_1 implies ANY_LAYOUT): a 16-byte header at the
	 * start of the readable bytes, the status byte at the end of the writable ones. */
	if (c->readable_len < sizeof(hdr)) {
		virtio_dev_fail(&b->dev, "request header shorter than 16 bytes");
		return -EPROTO;
	}
	if (c->writable_len < 1) {
		virtio_dev_fail(&b->dev, "request without a writable status byte");
		return -EPROTO;
	}
	vq_chain_read(c, 0, &hdr, sizeof(hdr));
	type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);

	switch (type) {
	case VIRTIO_BLK_T_IN:
		len = c->writable_len - 1;
		/* The used length is 32 bits: a single read of 4 GiB or more is refused. */
		if (len % SECTOR_SIZE || len >= UINT32_MAX || !in_range(b, sector, len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		n = build_iov(b, true, 0, len);
		r = full_io(b, n, sector * SECTOR_SIZE, false);
		if (r < 0) {
			log_warn_errno(
				r, "%s: read of %" PRIu64 " bytes at sector %" PRIu64 " failed: %m",
				b->dev.name, len, sector);
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		used = len;
		count(&b->read_ops, 1);
		count(&b->read_bytes, len);
		break;
	case VIRTIO_BLK_T_OUT:
		len = c->readable_len - sizeof(hdr);
		/* A read-only disk answers writes with IOERR (§5.2.6.1). */
		if (b->read_only || len % SECTOR_SIZE || !in_range(b, sector, len)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		n = build_iov(b, false, sizeof(hdr), len);
		r = full_io(b, n, sector * SECTOR_SIZE, true);
		if (r < 0) {
			log_warn_errno(r,
				       "%s: write of %" PRIu64 " bytes at sector %" PRIu64
				       " failed: %m",
				       b->dev.name, len, sector);
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		count(&b->write_ops, 1);
		count(&b->write_bytes, len);
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (!b->read_only && fdatasync(b->fd) < 0) {
			log_warn_errno(errno, "%s: fdatasync failed: %m", b->dev.name);
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		count(&b->flush_ops, 1);
		break;
	case VIRTIO_BLK_T_GET_ID:
		used = vq_chain_write(c, 0, b->serial,
				      MIN(c->writable_len - 1, (uint64_t)BLK_ID_BYTES));
		count(&b->get_id_ops, 1);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		count(&b->unsupported, 1);
		break;
	}
	if (status == VIRTIO_BLK_S_IOERR)
		count(&b->io_errors, 1);
	vq_chain_write(c, c->writable_len - 1, &status, 1);
	*ret_used = (uint32_t)(used + 1);
	return 0;
}

static void blk_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_blk *b = to_blk(d);
	unsigned served = 0;
	uint32_t used;
	int r;

	while (served < BLK_BATCH) {
		r = virtio_dev_pop(d, q, &b->chain);
		if (r <= 0)
			break;
		if (blk_request(b, &used) < 0)
			break;
		virtio_dev_push(d, q, b->chain.head, used);
		served++;
	}
	if (served > 0)
		virtio_dev_interrupt(d, q);
	/* More may be waiting: come back after the loop has served other events. */
	if (served == BLK_BATCH)
		virtio_dev_kick(d, q);
}

static int blk_metrics(const struct virtio_dev *d, json_t *o)
{
	const struct virtio_blk *b = to_blk(d);
	json_auto_t *m = NULL;

#define C(x) ((json_int_t)__atomic_load_n(&b->x, __ATOMIC_RELAXED))
	m = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "read_ops", C(read_ops),
		      "read_bytes", C(read_bytes), "write_ops", C(write_ops), "write_bytes",
		      C(write_bytes), "flush_ops", C(flush_ops), "get_id_ops", C(get_id_ops),
		      "io_errors", C(io_errors), "unsupported", C(unsupported), "capacity_sectors",
		      (json_int_t)b->capacity, "read_only", b->read_only);
#undef C
	if (!m || json_object_update(o, m) < 0)
		return -ENOMEM;
	return 0;
}

static void blk_destroy(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);

	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

static const struct virtio_dev_ops blk_ops = {
	.kind = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.n_queues = 1,
	.queue_notify = blk_queue_notify,
	.metrics = blk_metrics,
	.destroy = blk_destroy,
};

static int image_size(int fd, const char *path, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return log_err_errno(errno, "Failed to stat '%s': %m", path);
	if (S_ISREG(st.st_mode)) {
		*ret = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, ret) < 0)
			return log_err_errno(errno, "BLKGETSIZE64 on '%s' failed: %m", path);
		return 0;
	}
	return log_err_errno(EINVAL, "'%s' is neither a regular file nor a block device", path);
}

int virtio_blk_new(const struct device_env *env, const char *id, const char *path, bool read_only,
		   struct virtio_dev **ret)
{
	struct virtio_blk *b;
	uint64_t size = 0, cap;
	uint32_t seg_max;
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return log_oom();
	b->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
	if (b->fd < 0) {
		r = log_err_errno(errno, "Failed to open drive '%s' image '%s': %m", id, path);
		free(b);
		return r;
	}
	r = image_size(b->fd, path, &size);
	if (r >= 0 && size < SECTOR_SIZE)
		r = log_err_errno(EINVAL, "Drive '%s' image '%s' is smaller than one sector", id,
				  path);
	if (r < 0) {
		close(b->fd);
		free(b);
		return r;
	}
	if (size % SECTOR_SIZE)
		log_notice(
			"Drive '%s': image '%s' is not a multiple of 512 bytes; the last %" PRIu64
			" bytes are not visible to the guest",
			id, path, size % SECTOR_SIZE);
	b->capacity = size / SECTOR_SIZE;
	b->read_only = read_only;
	/* GET_ID answers with the drive id: up to 20 bytes, NUL-padded (calloc'ed). */
	memcpy(b->serial, id, MIN(strlen(id), sizeof(b->serial)));

	/* Configuration space: capacity at 0, seg_max at 12 (§5.2.4). A request carries a header
	 * and a status besides its data segments, all within one chain of at most 256. */
	cap = htole64(b->capacity);
	memcpy(b->config, &cap, 8);
	seg_max = htole32(VQ_MAX_SIZE - 2);
	memcpy(b->config + 12, &seg_max, 4);

	r = virtio_dev_init(&b->dev, env, id, &blk_ops,
			    1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_FLUSH |
				    (read_only ? 1ull << VIRTIO_BLK_F_RO : 0),
			    b->config, sizeof(b->config));
	if (r < 0) {
		virtio_dev_free(&b->dev);
		return r;
	}
	log_debug("%s: '%s', %" PRIu64 " sectors%s", b->dev.name, path, b->capacity,
		  read_only ? ", read-only" : "");
	*ret = &b->dev;
	return 0;
}
