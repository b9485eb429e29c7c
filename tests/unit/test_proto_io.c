/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <cmocka.h>

#include "libcommon/proto_io.h"
#include "middlecon/frame.h"
#include "proto/middlecon.pb-c.h"

#define MAX_FRAME (64u * 1024)

/* The bytes writev() would have sent: the iovecs of frame_encode() concatenated (malloc'ed). */
static uint8_t *wire_of(const Middlecon__Frame *f, const void *body, size_t body_len,
			size_t max_frame, size_t *ret_len)
{
	size_t head_size = frame_head_size(f);
	uint8_t *head = malloc(head_size);
	struct iovec iov[2];
	uint8_t *wire;
	size_t off = 0;
	int n;

	assert_non_null(head);
	n = frame_encode(f, body, body_len, max_frame, head, head_size, iov);
	assert_int_equal(n, body_len ? 2 : 1);
	assert_ptr_equal(iov[0].iov_base, head);
	assert_int_equal(iov[0].iov_len, head_size);
	if (n == 2)
		assert_ptr_equal(iov[1].iov_base, body); /* referenced, not copied */
	wire = malloc(head_size + body_len);
	assert_non_null(wire);
	for (int i = 0; i < n; i++) {
		memcpy(wire + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	free(head);
	*ret_len = off;
	return wire;
}

static void frame_fill(Middlecon__Frame *f, Middlecon__Frame__Header **hdrs, int kind)
{
	static Middlecon__Frame__Header h[2] = {
		MIDDLECON__FRAME__HEADER__INIT,
		MIDDLECON__FRAME__HEADER__INIT,
	};
	static uint32_t versions[] = { 1, 2 };

	middlecon__frame__init(f);
	f->version = FRAME_VERSION;
	f->kind = kind;
	f->id = UINT64_MAX - (uint64_t)kind;
	f->service = (char *)"vm.abc123";
	f->method = (char *)"pause";
	f->deadline = 1732245600123456789ull;
	f->status = MIDDLECON__FRAME__STATUS__DEADLINE_EXCEEDED;
	f->error = (char *)"too slow";
	f->origin = (char *)"node-a";
	h[0].key = (char *)"trace";
	h[0].value = (ProtobufCBinaryData){ .len = 3, .data = (uint8_t *)"a\0b" };
	h[1].key = (char *)"trace";
	h[1].value = (ProtobufCBinaryData){ .len = 0, .data = NULL };
	hdrs[0] = &h[0];
	hdrs[1] = &h[1];
	f->n_headers = 2;
	f->headers = hdrs;
	if (kind == MIDDLECON__FRAME__KIND__HELLO || kind == MIDDLECON__FRAME__KIND__PEER_HELLO) {
		f->n_versions = 2;
		f->versions = versions;
		f->max_frame_size = 1u << 20;
		f->client_name = (char *)"test_proto_io";
	}
}

static void frame_check(const Middlecon__Frame *g, const Middlecon__Frame *f)
{
	assert_int_equal(g->version, f->version);
	assert_int_equal(g->kind, f->kind);
	assert_true(g->id == f->id);
	assert_string_equal(g->service, f->service);
	assert_string_equal(g->method, f->method);
	assert_true(g->deadline == f->deadline);
	assert_int_equal(g->status, f->status);
	assert_string_equal(g->error, f->error);
	assert_string_equal(g->origin, f->origin);
	assert_int_equal(g->n_headers, 2);
	assert_string_equal(g->headers[0]->key, "trace");
	assert_int_equal(g->headers[0]->value.len, 3);
	assert_memory_equal(g->headers[0]->value.data, "a\0b", 3);
	assert_int_equal(g->headers[1]->value.len, 0);
	assert_int_equal(g->n_versions, f->n_versions);
	for (size_t i = 0; i < f->n_versions; i++)
		assert_int_equal(g->versions[i], f->versions[i]);
	assert_int_equal(g->max_frame_size, f->max_frame_size);
	assert_string_equal(g->client_name, f->client_name);
}

static void roundtrip(int kind, const uint8_t *body, size_t body_len, size_t max_frame)
{
	_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
	Middlecon__Frame__Header *hdrs[2];
	struct proto_io_frame pf;
	_cleanup_free_ uint8_t *wire = NULL;
	Middlecon__Frame f;
	size_t len;

	frame_fill(&f, hdrs, kind);
	wire = wire_of(&f, body, body_len, max_frame, &len);
	assert_int_equal(frame_decode(wire, len, max_frame, &pf, &g), 1);
	assert_int_equal(pf.size, len);
	assert_ptr_equal(pf.header, wire + PROTO_IO_PREFIX_SIZE);
	assert_int_equal(pf.body_len, body_len);
	assert_ptr_equal(pf.body, wire + len - body_len); /* a span of the input, not a copy */
	if (body_len)
		assert_memory_equal(pf.body, body, body_len);
	frame_check(g, &f);
}

static void test_roundtrip_every_kind(void **state)
{
	static const uint8_t body[] = "opaque \0 body bytes";

	for (int k = MIDDLECON__FRAME__KIND__HELLO; k <= MIDDLECON__FRAME__KIND__ROUTE_DEL; k++) {
		assert_non_null(frame_kind_to_string(k));
		roundtrip(k, NULL, 0, MAX_FRAME);
		roundtrip(k, body, sizeof(body), MAX_FRAME);
	}
	assert_string_equal(frame_kind_to_string(MIDDLECON__FRAME__KIND__REQUEST), "REQUEST");
	assert_string_equal(frame_status_to_string(MIDDLECON__FRAME__STATUS__NO_RESPONDERS),
			    "NO_RESPONDERS");
	assert_string_equal(frame_status_to_string(MIDDLECON__FRAME__STATUS__CANCELLED),
			    "CANCELLED");
	assert_null(frame_status_to_string(9999));
	assert_null(frame_kind_to_string(-1));
}

static void test_minimal_header(void **state)
{
	_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
	Middlecon__Frame f = MIDDLECON__FRAME__INIT;
	struct proto_io_frame pf;
	uint8_t buf[16];
	struct iovec iov[2];

	/* A PING with every other field at its default packs to two bytes (tag + kind). */
	f.kind = MIDDLECON__FRAME__KIND__PING;
	assert_int_equal(frame_head_size(&f), PROTO_IO_PREFIX_SIZE + 2);
	assert_int_equal(frame_encode(&f, NULL, 0, MAX_FRAME, buf, sizeof(buf), iov), 1);
	assert_int_equal(frame_decode(buf, iov[0].iov_len, MAX_FRAME, &pf, &g), 1);
	assert_int_equal(g->kind, MIDDLECON__FRAME__KIND__PING);
	assert_true(g->id == 0 && g->deadline == 0);
	assert_string_equal(g->service, ""); /* proto3: never NULL */
}

static void test_big_body(void **state)
{
	const size_t body_len = 1u << 20;
	_cleanup_free_ uint8_t *body = malloc(body_len);
	Middlecon__Frame__Header *hdrs[2];
	Middlecon__Frame f;
	uint8_t head[512];
	struct iovec iov[2];
	size_t size;

	assert_non_null(body);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (uint8_t)(i * 7 + (i >> 12));
	roundtrip(MIDDLECON__FRAME__KIND__REQUEST, body, body_len, 2u << 20);

	/* The limit covers the whole frame: exactly at it passes, one byte over is refused. */
	frame_fill(&f, hdrs, MIDDLECON__FRAME__KIND__REPLY);
	size = frame_head_size(&f) + body_len;
	assert_int_equal(frame_encode(&f, body, body_len, size, head, sizeof(head), iov), 2);
	assert_int_equal(frame_encode(&f, body, body_len, size - 1, head, sizeof(head), iov),
			 -EMSGSIZE);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void test_too_large_from_prefix(void **state)
{
	struct proto_io_frame pf;
	uint8_t p[PROTO_IO_PREFIX_SIZE];

	/* 4 + frame_len = MAX_FRAME + 1: refused with nothing but the length field. */
	put_be32(p, MAX_FRAME - 3);
	assert_int_equal(proto_io_decode(p, 3, MAX_FRAME, &pf), 0);
	assert_int_equal(proto_io_decode(p, 4, MAX_FRAME, &pf), -EMSGSIZE);
	assert_int_equal(pf.size, MAX_FRAME + 1);
	assert_null(pf.header);
	assert_null(pf.body);

	/* Exactly at the limit: accepted, and the size tells how much to wait for. */
	put_be32(p, MAX_FRAME - 4);
	assert_int_equal(proto_io_decode(p, 4, MAX_FRAME, &pf), 0);
	assert_int_equal(pf.size, MAX_FRAME);

	put_be32(p, UINT32_MAX);
	assert_int_equal(proto_io_decode(p, 4, MAX_FRAME, &pf), -EMSGSIZE);
	assert_true(pf.size == (size_t)UINT32_MAX + 4);
	assert_int_equal(proto_io_decode(p, 4, SIZE_MAX, &pf), 0);

	/* The sender refuses too, before writing anything. */
	assert_int_equal(proto_io_prefix_write(p, 1, MAX_FRAME, MAX_FRAME), -EMSGSIZE);
	assert_int_equal(proto_io_prefix_write(p, 1, (size_t)UINT32_MAX, SIZE_MAX), -EMSGSIZE);
	assert_int_equal(proto_io_prefix_write(p, 1, (size_t)UINT32_MAX - 5, SIZE_MAX), 0);
	assert_int_equal(proto_io_prefix_write(p, SIZE_MAX, SIZE_MAX, SIZE_MAX), -EMSGSIZE);
}

/* Decodes an 8-byte prefix followed by @extra bytes of 0x10 (a valid varint tag of field 2). */
static int decode_lengths(uint32_t frame_len, uint32_t header_len, size_t extra)
{
	uint8_t buf[64] = { 0 };
	struct proto_io_frame pf;

	assert_true(PROTO_IO_PREFIX_SIZE + extra <= sizeof(buf));
	put_be32(buf, frame_len);
	put_be32(buf + 4, header_len);
	memset(buf + 8, 0x10, extra);
	return proto_io_decode(buf, PROTO_IO_PREFIX_SIZE + extra, MAX_FRAME, &pf);
}

static void test_malformed_lengths(void **state)
{
	/* frame_len below 4 + a one-byte header, whatever follows. */
	for (uint32_t fl = 0; fl < 5; fl++)
		assert_int_equal(decode_lengths(fl, 1, 4), -EBADMSG);
	/* Decided from the first four bytes: no need to wait for header_len. */
	{
		uint8_t p[4] = { 0, 0, 0, 4 };
		struct proto_io_frame pf;

		assert_int_equal(proto_io_decode(p, 4, MAX_FRAME, &pf), -EBADMSG);
	}
	assert_int_equal(decode_lengths(20, 0, 16), -EBADMSG); /* empty header */
	assert_int_equal(decode_lengths(20, 17, 16), -EBADMSG); /* header past the end */
	assert_int_equal(decode_lengths(20, UINT32_MAX, 16), -EBADMSG); /* no wrap-around */
	assert_int_equal(decode_lengths(20, 17, 0), -EBADMSG); /* before the header came */
	assert_int_equal(decode_lengths(20, 16, 16), 1); /* header fills it: no body */
	assert_int_equal(decode_lengths(20, 1, 16), 1); /* one-byte header */
	assert_int_equal(decode_lengths(20, 16, 15), 0); /* one byte short */
}

static int unpack_header(const uint8_t *header, size_t header_len)
{
	_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
	uint8_t buf[64];
	struct proto_io_frame pf;
	int r;

	assert_true(header_len + PROTO_IO_PREFIX_SIZE <= sizeof(buf));
	put_be32(buf, (uint32_t)(header_len + 4));
	put_be32(buf + 4, (uint32_t)header_len);
	memcpy(buf + 8, header, header_len);
	r = frame_decode(buf, header_len + 8, MAX_FRAME, &pf, &g);
	if (r == 1)
		assert_non_null(g);
	else
		assert_null(g);
	return r;
}

static void test_malformed_headers(void **state)
{
	static const uint8_t ok[] = { 0x10, 0x04 }; /* kind = REQUEST */
	static const uint8_t no_kind[] = { 0x18, 0x07 }; /* id = 7, kind unset */
	static const uint8_t truncated_varint[] = { 0x10, 0x84 }; /* continuation, no end */
	static const uint8_t bad_wire_type[] = { 0x17, 0x00 }; /* field 2, wire type 7 */
	static const uint8_t string_past_end[] = { 0x10, 0x04, 0x22, 0x10, 'v', 'm' };
	static const uint8_t unknown_field[] = { 0x10, 0x04, 0xf8, 0x07, 0x01 }; /* field 127 */
	static const uint8_t unknown_kind[] = { 0x10, 0x63 }; /* kind 99 */
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	assert_int_equal(unpack_header(ok, sizeof(ok)), 1);
	assert_int_equal(unpack_header(no_kind, sizeof(no_kind)), -EBADMSG);
	assert_int_equal(unpack_header(truncated_varint, sizeof(truncated_varint)), -EBADMSG);
	assert_int_equal(unpack_header(bad_wire_type, sizeof(bad_wire_type)), -EBADMSG);
	assert_int_equal(unpack_header(string_past_end, sizeof(string_past_end)), -EBADMSG);
	assert_int_equal(unpack_header(garbage, sizeof(garbage)), -EBADMSG);
	/* A newer peer's fields are skipped and its kinds passed up, for the dispatcher to judge. */
	assert_int_equal(unpack_header(unknown_field, sizeof(unknown_field)), 1);
	assert_int_equal(unpack_header(unknown_kind, sizeof(unknown_kind)), 1);
}

static void test_byte_at_a_time(void **state)
{
	static const uint8_t body[] = "0123456789abcdef";
	Middlecon__Frame__Header *hdrs[2];
	_cleanup_free_ uint8_t *wire = NULL;
	Middlecon__Frame f;
	size_t len;

	frame_fill(&f, hdrs, MIDDLECON__FRAME__KIND__REQUEST);
	wire = wire_of(&f, body, sizeof(body), MAX_FRAME, &len);
	for (size_t n = 0; n <= len; n++) {
		/* An exact-size copy, so that ASan sees any read past what has "arrived". */
		_cleanup_free_ uint8_t *part = malloc(n ? n : 1);
		_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
		struct proto_io_frame pf;
		int r;

		assert_non_null(part);
		memcpy(part, wire, n);
		r = frame_decode(part, n, MAX_FRAME, &pf, &g);
		if (n < len) {
			assert_int_equal(r, 0);
			assert_true(pf.size > n);
			assert_int_equal(pf.size, n < 4 ? PROTO_IO_PREFIX_SIZE : len);
			assert_null(g);
		} else {
			assert_int_equal(r, 1);
			assert_int_equal(pf.size, len);
			assert_memory_equal(pf.body, body, sizeof(body));
			frame_check(g, &f);
		}
	}
}

static void test_back_to_back(void **state)
{
	static const uint8_t body[] = "first body";
	Middlecon__Frame__Header *hdrs[2];
	_cleanup_free_ uint8_t *a = NULL;
	_cleanup_free_ uint8_t *b = NULL;
	_cleanup_free_ uint8_t *both = NULL;
	Middlecon__Frame f;
	size_t alen, blen, off = 0;
	int count = 0;

	frame_fill(&f, hdrs, MIDDLECON__FRAME__KIND__REQUEST);
	a = wire_of(&f, body, sizeof(body), MAX_FRAME, &alen);
	frame_fill(&f, hdrs, MIDDLECON__FRAME__KIND__REPLY);
	b = wire_of(&f, NULL, 0, MAX_FRAME, &blen);
	both = malloc(alen + blen + 3);
	assert_non_null(both);
	memcpy(both, a, alen);
	memcpy(both + alen, b, blen);
	memcpy(both + alen + blen, a, 3); /* the start of a third frame */

	for (;;) {
		_cleanup_(frame_freep) Middlecon__Frame *g = NULL;
		struct proto_io_frame pf;
		int r = frame_decode(both + off, alen + blen + 3 - off, MAX_FRAME, &pf, &g);

		if (r == 0)
			break;
		assert_int_equal(r, 1);
		assert_int_equal(g->kind, count == 0 ? MIDDLECON__FRAME__KIND__REQUEST :
						       MIDDLECON__FRAME__KIND__REPLY);
		assert_int_equal(pf.body_len, count == 0 ? sizeof(body) : 0);
		off += pf.size;
		count++;
	}
	assert_int_equal(count, 2);
	assert_int_equal(off, alen + blen);
}

static void test_encode_errors(void **state)
{
	Middlecon__Frame f = MIDDLECON__FRAME__INIT;
	struct proto_io_frame pf;
	uint8_t buf[32];
	struct iovec iov[2];

	/* Generic encoder: header copied into the buffer, body referenced. */
	assert_int_equal(proto_io_encode(buf, sizeof(buf), "hdr", 3, "body", 4, MAX_FRAME, iov), 2);
	assert_int_equal(iov[0].iov_len, 11);
	assert_int_equal(iov[1].iov_len, 4);
	assert_int_equal(proto_io_decode(buf, 11, MAX_FRAME, &pf), 0);
	assert_int_equal(pf.size, 15);
	assert_int_equal(proto_io_encode(buf, sizeof(buf), "hdr", 3, NULL, 0, MAX_FRAME, iov), 1);
	assert_int_equal(proto_io_decode(buf, 11, MAX_FRAME, &pf), 1);
	assert_memory_equal(pf.header, "hdr", 3);
	assert_int_equal(pf.body_len, 0);
	assert_int_equal(proto_io_encode(buf, 10, "hdr", 3, NULL, 0, MAX_FRAME, iov), -ENOBUFS);
	assert_int_equal(proto_io_encode(buf, 4, "hdr", 3, NULL, 0, MAX_FRAME, iov), -ENOBUFS);
	assert_int_equal(proto_io_encode(buf, sizeof(buf), "", 0, NULL, 0, MAX_FRAME, iov),
			 -EINVAL);
	assert_int_equal(proto_io_encode(buf, sizeof(buf), "hdr", 3, "b", 5, 15, iov), -EMSGSIZE);

	/* A Frame without a kind is never sent; a too small buffer is refused. */
	assert_int_equal(frame_encode(&f, NULL, 0, MAX_FRAME, buf, sizeof(buf), iov), -EINVAL);
	f.kind = MIDDLECON__FRAME__KIND__PING;
	f.service = (char *)"a.long.enough.service.name.to.overflow";
	assert_int_equal(frame_encode(&f, NULL, 0, MAX_FRAME, buf, sizeof(buf), iov), -ENOBUFS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_kind),
		cmocka_unit_test(test_minimal_header),
		cmocka_unit_test(test_big_body),
		cmocka_unit_test(test_too_large_from_prefix),
		cmocka_unit_test(test_malformed_lengths),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_back_to_back),
		cmocka_unit_test(test_encode_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
