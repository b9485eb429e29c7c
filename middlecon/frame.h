/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * middlecon frames: the protobuf-c Frame header (proto/middlecon.proto, generated into
 * $(B)/gen/proto/middlecon.pb-c.h) on top of the generic framing of libcommon/proto_io.h.
 *
 * On the wire: 4-byte big-endian frame_len, 4-byte big-endian header_len, the packed Frame, then
 * the opaque body (see proto_io.h for the exact layout). The body is never part of the protobuf
 * message, so the relay decodes only the header and forwards the body span it received.
 *
 * This lives in middlecon/, not libcommon/, because it needs the generated code of one program's
 * protocol and libcommon never depends on a program folder; everything that does not know what a
 * Frame is (lengths, limits, spans, iovecs) is in libcommon/proto_io.c and is shared.
 *
 * Sending (no copy of the body; the header is packed straight into the caller's buffer):
 *
 *	uint8_t head[256];        (or malloc(frame_head_size(&f)))
 *	struct iovec iov[2];
 *	int n = frame_encode(&f, body, body_len, max_frame, head, sizeof(head), iov);
 *	if (n >= 0) writev(fd, iov, n);
 *
 * Receiving: proto_io_decode() on the accumulated bytes, then frame_unpack() on the result (or
 * frame_decode(), which does both); drain proto_io_frame.size bytes when done with the spans.
 */

#include <stddef.h>
#include <stdint.h>

#include "libcommon/cleanup.h"

struct iovec;
struct proto_io_frame;
struct Middlecon__Frame;

/* The protocol version this code speaks, sent in Frame.version and HELLO's versions. */
#define FRAME_VERSION 1u

/*
 * Returns the number of bytes frame_encode() writes into its buffer for @f (borrowed): the
 * 8-byte prefix plus the packed header.
 */
size_t frame_head_size(const struct Middlecon__Frame *f);

/*
 * Packs (@ret_iov has room for two iovecs) the prefix and the header @f (borrowed) into @buf (@buf_size bytes, caller-owned) and
 * points ret_iov[0] at them and ret_iov[1] at @body (@body_len bytes, borrowed until the write
 * completes; may be NULL when @body_len is 0). The body is not copied.
 *
 * Returns the number of iovecs to hand to writev() (1 without a body, 2 with one), -EINVAL if
 * f->kind is KIND_UNSPECIFIED (such a frame would be refused by every receiver), -ENOBUFS if
 * @buf_size < frame_head_size(@f), or -EMSGSIZE if the whole frame exceeds @max_frame.
 */
int frame_encode(const struct Middlecon__Frame *f, const void *body, size_t body_len,
		 size_t max_frame, uint8_t *buf, size_t buf_size, struct iovec *ret_iov);

/*
 * Unpacks the header span of @pf (borrowed, from proto_io_decode()) into a new Frame, allocated
 * with protobuf-c's system allocator, in *ret. The caller owns it and frees it with
 * frame_free() (which is middlecon__frame__free_unpacked(f, NULL)), or _cleanup_(frame_freep).
 * The body is not copied: pf->body still points into the receive buffer.
 *
 * Returns 0, or -EBADMSG if the header is not a valid Frame or its kind is KIND_UNSPECIFIED.
 * protobuf-c's unpack returns NULL for malformed input and for OOM alike; both end up here, and
 * both mean the connection gets closed. Kinds and versions this code does not know are returned
 * as they are: refusing them (BAD_REQUEST with the frame's id) is the dispatcher's decision.
 * *ret is untouched on failure.
 */
int frame_unpack(const struct proto_io_frame *pf, struct Middlecon__Frame **ret);

/*
 * proto_io_decode() followed by frame_unpack(): looks for one frame at the start of @buf (@len
 * bytes, borrowed). Returns 1 with *ret_span and *ret (owned by the caller) set, 0 when more
 * bytes are needed (ret_span->size says how many in total), or -EMSGSIZE / -EBADMSG as the two
 * functions do. *ret is untouched unless 1 is returned.
 */
int frame_decode(const void *buf, size_t len, size_t max_frame, struct proto_io_frame *ret_span,
		 struct Middlecon__Frame **ret);

/* Frees a Frame from frame_unpack(). Accepts NULL; returns NULL. */
struct Middlecon__Frame *frame_free(struct Middlecon__Frame *f);
DEFINE_CLEANUP_FUNC(struct Middlecon__Frame, frame_free)

/* Returns the name of a Frame.Kind ("REQUEST") or Frame.Status ("NO_RESPONDERS") value, or NULL
 * for a value this version does not know. The strings are static. */
const char *frame_kind_to_string(int kind);
const char *frame_status_to_string(int status);
