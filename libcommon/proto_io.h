/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Length-prefixed framing: a header of any encoding (middlecon uses a protobuf-c Frame) followed
 * by an opaque body, over plain byte spans. No I/O, no allocation, no libevent: a caller hands in
 * the bytes it has accumulated (a socket buffer, an evbuffer made contiguous with pullup) and gets
 * back spans pointing into them.
 *
 * Wire layout of one frame (integers big-endian):
 *
 *   offset  size         field
 *   0       4            frame_len:  number of bytes after this field = 4 + header_len + body_len
 *   4       4            header_len: number of header bytes, >= 1
 *   8       header_len   header
 *   8+hl    body_len     body = frame_len - 4 - header_len bytes (may be 0)
 *
 * The whole frame takes 4 + frame_len bytes on the wire; that total is what a maximum frame size
 * limits, so a receiver refuses an oversize frame from the first four bytes, before the rest
 * arrives. The header length is a fixed 4-byte field rather than a varint so that the body's
 * offset is known after 8 bytes without parsing, and a relay can forward the body span untouched.
 *
 * The header is never empty: every header the project defines carries a non-zero field (the
 * middlecon Frame's kind), and refusing header_len 0 catches a stream that is out of step.
 */

#include <stddef.h>
#include <stdint.h>

struct iovec;

/* The two 4-byte length fields in front of the header. */
#define PROTO_IO_PREFIX_SIZE 8u

/* The smallest valid frame: the prefix and a one-byte header. */
#define PROTO_IO_FRAME_MIN (PROTO_IO_PREFIX_SIZE + 1u)

/* The largest frame the layout can express: frame_len is a uint32. */
#define PROTO_IO_FRAME_LIMIT ((uint64_t)UINT32_MAX + 4u)

/*
 * One decoded frame. The spans point into the buffer given to proto_io_decode() (borrowed: they
 * are valid as long as those bytes are, and must not be used after the caller drains or moves
 * them). @size is the whole frame on the wire, prefix included: the number of bytes to drain.
 */
struct proto_io_frame {
	const uint8_t *header;
	size_t header_len;
	const uint8_t *body; /* points just past the header even when body_len is 0 */
	size_t body_len;
	size_t size;
};

/*
 * Looks for one frame at the start of @buf (@len bytes, borrowed; may be NULL when @len is 0).
 * Frames larger than @max_frame bytes on the wire (prefix included) are refused; @max_frame must
 * be at least PROTO_IO_FRAME_MIN.
 *
 * Returns:
 *  1           a whole frame is there: *ret holds its spans, pointing into @buf, and its size.
 *              More frames may follow at @buf + ret->size.
 *  0           need more bytes: ret->size is the total length @buf must reach before a call can
 *              return anything but 0 (PROTO_IO_PREFIX_SIZE until the prefix is there, then the
 *              whole frame), so a caller may use it as a read watermark. The spans are NULL/0.
 *  -EMSGSIZE   the prefix announces a frame over @max_frame (decided from the first 4 bytes);
 *              ret->size is the announced size, for a caller that prefers draining the frame
 *              to closing the connection. The spans are NULL/0.
 *  -EBADMSG    malformed prefix: frame_len < 5, header_len 0, or header_len > frame_len - 4.
 *              The stream cannot be resynchronised; close it.
 * The header bytes themselves are not looked at; see the header's own unpack function.
 */
int proto_io_decode(const void *buf, size_t len, size_t max_frame, struct proto_io_frame *ret);

/*
 * Writes the 8-byte prefix for a frame with a @header_len byte header and a @body_len byte body
 * into @prefix. Returns 0, -EINVAL if @header_len is 0, or -EMSGSIZE if the frame would exceed
 * @max_frame or PROTO_IO_FRAME_LIMIT. @prefix is untouched on failure.
 */
int proto_io_prefix_write(uint8_t prefix[PROTO_IO_PREFIX_SIZE], size_t header_len, size_t body_len,
			  size_t max_frame);

/*
 * Builds a frame for writev(2) without copying the body (@ret_iov has room for two iovecs):
 * writes the prefix and a copy of
 * @header (@header_len bytes, borrowed, small) into @buf (@buf_size bytes, caller-owned, at
 * least PROTO_IO_PREFIX_SIZE + @header_len), then points ret_iov[0] at them and ret_iov[1] at
 * @body (@body_len bytes, borrowed: it must stay valid until the write completes; may be NULL
 * when @body_len is 0).
 *
 * Returns the number of iovecs to write (1 without a body, 2 with one), -EINVAL if @header_len
 * is 0, -ENOBUFS if @buf is too small, or -EMSGSIZE if the frame would exceed @max_frame.
 * Headers packed in place (see middlecon/frame.h) use proto_io_prefix_write() instead and skip
 * the header copy.
 */
int proto_io_encode(uint8_t *buf, size_t buf_size, const void *header, size_t header_len,
		    const void *body, size_t body_len, size_t max_frame, struct iovec *ret_iov);
