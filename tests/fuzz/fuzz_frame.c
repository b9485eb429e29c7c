/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what middlecon does with bytes from a connection before dispatch: the length-prefix
 * decoder (libcommon/proto_io.c) and the protobuf-c unpack of each Frame header
 * (middlecon/frame.c), over a stream of frames as the relay's read loop walks it. Every decoded
 * frame is re-encoded and decoded again, which must give back a frame of the same kind and body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "libcommon/proto_io.h"
#include "middlecon/frame.h"
#include "proto/middlecon.pb-c.h"

/* Small, so that the fuzzer also reaches the size refusal. */
#define FUZZ_MAX_FRAME (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reencode(const Middlecon__Frame *f, const struct proto_io_frame *pf)
{
	_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
	_cleanup_free_ uint8_t *wire = NULL;
	size_t head = frame_head_size(f);
	struct proto_io_frame pg;
	struct iovec iov[2];
	int n;

	wire = malloc(head + pf->body_len);
	if (!wire)
		return;
	/* A re-packed header may differ in size (unknown fields, non-canonical varints). */
	n = frame_encode(f, pf->body, pf->body_len, SIZE_MAX, wire, head, iov);
	if (n < 0)
		abort();
	if (n == 2)
		memcpy(wire + head, pf->body, pf->body_len);
	if (frame_decode(wire, head + pf->body_len, SIZE_MAX, &pg, &g) != 1)
		abort();
	if (g->kind != f->kind || g->id != f->id || pg.body_len != pf->body_len ||
	    memcmp(pg.body, pf->body, pf->body_len) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		_cleanup_(frame_freep) Middlecon__Frame *f = NULL;
		struct proto_io_frame pf;
		int r;

		r = frame_decode(data + off, size - off, FUZZ_MAX_FRAME, &pf, &f);
		if (r <= 0) {
			if (r == 0 && pf.size <= size - off)
				abort(); /* "need more" although the bytes were there */
			break;
		}
		if (pf.size < PROTO_IO_FRAME_MIN || pf.size > size - off ||
		    pf.header != data + off + PROTO_IO_PREFIX_SIZE ||
		    pf.body + pf.body_len != data + off + pf.size)
			abort();
		(void)frame_kind_to_string(f->kind);
		(void)frame_status_to_string(f->status);
		reencode(f, &pf);
		off += pf.size;
	}
	return 0;
}
