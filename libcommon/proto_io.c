/* SPDX-License-Identifier: MIT */
#include "libcommon/proto_io.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

static uint32_t be32_read(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void be32_write(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int proto_io_decode(const void *buf, size_t len, size_t max_frame, struct proto_io_frame *ret)
{
	const uint8_t *p = buf;
	uint64_t frame_len, header_len, size;

	assert(ret);
	assert(max_frame >= PROTO_IO_FRAME_MIN);

	*ret = (struct proto_io_frame){ .size = PROTO_IO_PREFIX_SIZE };
	if (len < 4)
		return 0;

	/*
	 * Everything about the size is decided here, from the first four bytes, so a peer cannot
	 * make us wait for (or buffer) a frame we would refuse anyway. 64-bit arithmetic: 4 +
	 * frame_len does not fit a 32-bit size_t.
	 */
	frame_len = be32_read(p);
	size = 4 + frame_len;
	if (frame_len < PROTO_IO_FRAME_MIN - 4)
		return -EBADMSG;
	if (size > max_frame) {
		ret->size = (size_t)(size > SIZE_MAX ? SIZE_MAX : size);
		return -EMSGSIZE;
	}
	ret->size = (size_t)size;
	if (len < PROTO_IO_PREFIX_SIZE)
		return 0;

	header_len = be32_read(p + 4);
	if (header_len == 0 || header_len > frame_len - 4)
		return -EBADMSG;
	if (len < size)
		return 0;

	ret->header = p + PROTO_IO_PREFIX_SIZE;
	ret->header_len = (size_t)header_len;
	ret->body = ret->header + header_len;
	ret->body_len = (size_t)(frame_len - 4 - header_len);
	return 1;
}

int proto_io_prefix_write(uint8_t prefix[PROTO_IO_PREFIX_SIZE], size_t header_len, size_t body_len,
			  size_t max_frame)
{
	uint64_t size;

	if (header_len == 0)
		return -EINVAL;
	/* Each term is below 2^64 / 4 on any platform we build for, so the sum cannot wrap. */
	if (header_len > PROTO_IO_FRAME_LIMIT || body_len > PROTO_IO_FRAME_LIMIT)
		return -EMSGSIZE;
	size = (uint64_t)PROTO_IO_PREFIX_SIZE + header_len + body_len;
	if (size > PROTO_IO_FRAME_LIMIT || size > max_frame)
		return -EMSGSIZE;

	be32_write(prefix, (uint32_t)(size - 4));
	be32_write(prefix + 4, (uint32_t)header_len);
	return 0;
}

int proto_io_encode(uint8_t *buf, size_t buf_size, const void *header, size_t header_len,
		    const void *body, size_t body_len, size_t max_frame, struct iovec *ret_iov)
{
	int r;

	if (header_len == 0)
		return -EINVAL;
	if (buf_size < PROTO_IO_PREFIX_SIZE || buf_size - PROTO_IO_PREFIX_SIZE < header_len)
		return -ENOBUFS;
	r = proto_io_prefix_write(buf, header_len, body_len, max_frame);
	if (r < 0)
		return r;
	memcpy(buf + PROTO_IO_PREFIX_SIZE, header, header_len);

	ret_iov[0] =
		(struct iovec){ .iov_base = buf, .iov_len = PROTO_IO_PREFIX_SIZE + header_len };
	if (body_len == 0)
		return 1;
	/* writev() takes a non-const base; the body is only read. */
	ret_iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = body_len };
	return 2;
}
