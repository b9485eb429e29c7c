/* SPDX-License-Identifier: MIT */
#include "middlecon/frame.h"

#include <errno.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "libcommon/proto_io.h"
#include "proto/middlecon.pb-c.h"

size_t frame_head_size(const struct Middlecon__Frame *f)
{
	return PROTO_IO_PREFIX_SIZE + middlecon__frame__get_packed_size(f);
}

int frame_encode(const struct Middlecon__Frame *f, const void *body, size_t body_len,
		 size_t max_frame, uint8_t *buf, size_t buf_size, struct iovec *ret_iov)
{
	size_t header_len;
	int r;

	if (f->kind == MIDDLECON__FRAME__KIND__KIND_UNSPECIFIED)
		return -EINVAL;
	/*
	 * Sizing walks the message once more than packing alone would; it is what lets the header
	 * be packed in place behind the prefix, with no scratch buffer and no copy, and lets the
	 * size limit be checked before anything is written.
	 */
	header_len = middlecon__frame__get_packed_size(f);
	if (buf_size < PROTO_IO_PREFIX_SIZE || buf_size - PROTO_IO_PREFIX_SIZE < header_len)
		return -ENOBUFS;
	r = proto_io_prefix_write(buf, header_len, body_len, max_frame);
	if (r < 0)
		return r;
	if (middlecon__frame__pack(f, buf + PROTO_IO_PREFIX_SIZE) != header_len)
		return -EINVAL; /* cannot happen for a well-formed message; never send a torn frame */

	ret_iov[0] =
		(struct iovec){ .iov_base = buf, .iov_len = PROTO_IO_PREFIX_SIZE + header_len };
	if (body_len == 0)
		return 1;
	ret_iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = body_len };
	return 2;
}

int frame_unpack(const struct proto_io_frame *pf, struct Middlecon__Frame **ret)
{
	Middlecon__Frame *f;

	/* NULL allocator: protobuf-c's system allocator, matched by frame_free(). */
	f = middlecon__frame__unpack(NULL, pf->header_len, pf->header);
	if (!f)
		return -EBADMSG;
	if (f->kind == MIDDLECON__FRAME__KIND__KIND_UNSPECIFIED) {
		middlecon__frame__free_unpacked(f, NULL);
		return -EBADMSG;
	}
	*ret = f;
	return 0;
}

int frame_decode(const void *buf, size_t len, size_t max_frame, struct proto_io_frame *ret_span,
		 struct Middlecon__Frame **ret)
{
	int r;

	r = proto_io_decode(buf, len, max_frame, ret_span);
	if (r <= 0)
		return r;
	r = frame_unpack(ret_span, ret);
	if (r < 0)
		return r;
	return 1;
}

struct Middlecon__Frame *frame_free(struct Middlecon__Frame *f)
{
	if (f)
		middlecon__frame__free_unpacked(f, NULL);
	return NULL;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);

	return v ? v->name : NULL;
}

const char *frame_kind_to_string(int kind)
{
	return enum_name(&middlecon__frame__kind__descriptor, kind);
}

const char *frame_status_to_string(int status)
{
	return enum_name(&middlecon__frame__status__descriptor, status);
}
