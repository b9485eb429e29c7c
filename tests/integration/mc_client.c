/* SPDX-License-Identifier: MIT */
/*
 * A minimal middlecon client for the integration tests: speaks the frames of
 * docs/middlecon-protocol.md over a blocking Unix socket with middlecon/frame.h, so the relay
 * can be tested before (and independently of) libmiddlecon.
 *
 *   mc_client -s SOCK serve NAME [--reply TEXT] [--delay MS] [--count N] [--no-reply]
 *   mc_client -s SOCK call NAME DATA [--deadline-ms N] [--size BYTES]
 *   mc_client -s SOCK sub PATTERN [--count N]
 *   mc_client -s SOCK pub NAME DATA
 *   mc_client -s SOCK ping | bad-prefix | bad-header | no-hello
 *   mc_client -s SOCK sub-stall PATTERN | serve-stall NAME
 *   mc_client -s SOCK flood NAME --count N --size BYTES [--call] [--hold-ms MS]
 *
 * call prints "STATUS BODY"; serve prints "ready" once registered, "request BODY uid=UID
 * node=NODE" (the caller-* headers) for each request and "cancel STATUS" for each
 * CANCEL; sub prints "ready", then each message's body; bad-* print the reaction to a malformed
 * frame ("BAD_REQUEST closed", ...). pub prints the status of a refused PUBLISH. sub-stall and
 * serve-stall subscribe or register, print "ready" and then never read again (slow consumers);
 * flood sends N PUBLISH (or, with --call, REQUEST) frames without reading anything, prints
 * "sent N" (or "stuck K" when the relay stopped taking them for 2 s) and keeps the connection
 * open for --hold-ms.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/proto_io.h"
#include "middlecon/frame.h"
#include "proto/middlecon.pb-c.h"

typedef Middlecon__Frame Frame;

#define MAX_FRAME (64u << 20)

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = read(fd, b, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int send_frame(int fd, Frame *f, const void *body, size_t len)
{
	size_t need;
	uint8_t *buf;
	struct iovec iov[2];
	int n, r = -1;

	f->version = FRAME_VERSION;
	need = frame_head_size(f);
	buf = malloc(need);
	if (!buf)
		return -1;
	n = frame_encode(f, body, len, MAX_FRAME, buf, need, iov);
	if (n > 0 && write_all(fd, iov[0].iov_base, iov[0].iov_len) == 0 &&
	    (n < 2 || write_all(fd, iov[1].iov_base, iov[1].iov_len) == 0))
		r = 0;
	free(buf);
	return r;
}

/* Reads one frame; *body (malloc'ed, NUL-terminated) and *len. Returns NULL at EOF. */
static Frame *recv_frame(int fd, char **body, size_t *len)
{
	uint8_t prefix[PROTO_IO_PREFIX_SIZE];
	struct proto_io_frame pf;
	Frame *f = NULL;
	uint8_t *buf;
	size_t size;

	if (read_all(fd, prefix, sizeof(prefix)) < 0)
		return NULL;
	if (proto_io_decode(prefix, sizeof(prefix), MAX_FRAME, &pf) < 0)
		return NULL;
	size = pf.size;
	buf = malloc(size + 1);
	if (!buf)
		return NULL;
	memcpy(buf, prefix, sizeof(prefix));
	if (read_all(fd, buf + sizeof(prefix), size - sizeof(prefix)) < 0 ||
	    frame_decode(buf, size, MAX_FRAME, &pf, &f) != 1) {
		free(buf);
		return NULL;
	}
	*len = pf.body_len;
	*body = malloc(pf.body_len + 1);
	if (*body) {
		memcpy(*body, pf.body, pf.body_len);
		(*body)[pf.body_len] = '\0';
	}
	free(buf);
	return f;
}

static const char *status_name(int s)
{
	const char *n = frame_status_to_string(s);

	return n ? n : "UNKNOWN";
}

static int connect_relay(const char *path, bool hello)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	if (hello) {
		Frame f = MIDDLECON__FRAME__INIT, *r;
		uint32_t versions[] = { 1 };
		char *body = NULL;
		size_t len;

		f.kind = MIDDLECON__FRAME__KIND__HELLO;
		f.n_versions = 1;
		f.versions = versions;
		f.max_frame_size = MAX_FRAME;
		f.client_name = (char *)"mc_client";
		if (send_frame(fd, &f, NULL, 0) < 0 || !(r = recv_frame(fd, &body, &len)) ||
		    r->kind != MIDDLECON__FRAME__KIND__HELLO || r->status != 0) {
			fprintf(stderr, "HELLO failed\n");
			exit(1);
		}
		frame_free(r);
		free(body);
	}
	return fd;
}

/* Sends a one-shot control frame and waits for its REPLY. Returns the status. */
static int control(int fd, int kind, uint64_t id, const char *service)
{
	Frame f = MIDDLECON__FRAME__INIT, *r;
	char *body = NULL;
	size_t len;
	int st;

	f.kind = kind;
	f.id = id;
	f.service = (char *)service;
	if (send_frame(fd, &f, NULL, 0) < 0)
		return -1;
	r = recv_frame(fd, &body, &len);
	if (!r)
		return -1;
	st = r->status;
	frame_free(r);
	free(body);
	return st;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

static bool flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

static int cmd_serve(int fd, int argc, char **argv)
{
	const char *reply = opt(argc, argv, "--reply", NULL);
	long delay = atol(opt(argc, argv, "--delay", "0"));
	long count = atol(opt(argc, argv, "--count", "0"));
	bool no_reply = flag(argc, argv, "--no-reply");
	long served = 0;
	int st = control(fd, MIDDLECON__FRAME__KIND__REGISTER, 1, argv[1]);

	if (st != 0) {
		printf("register %s\n", status_name(st));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		char *body = NULL;
		size_t len;
		Frame *f = recv_frame(fd, &body, &len);

		if (!f)
			return 0;
		if (f->kind == MIDDLECON__FRAME__KIND__CANCEL) {
			printf("cancel %s\n", status_name(f->status));
			fflush(stdout);
		} else if (f->kind == MIDDLECON__FRAME__KIND__REQUEST) {
			Frame out = MIDDLECON__FRAME__INIT;
			const char *uid = "", *node = "";
			int uid_len = 0, node_len = 0;

			for (size_t i = 0; i < f->n_headers; i++)
				if (strcmp(f->headers[i]->key, "caller-uid") == 0) {
					uid = (const char *)f->headers[i]->value.data;
					uid_len = (int)f->headers[i]->value.len;
				} else if (strcmp(f->headers[i]->key, "caller-node") == 0) {
					node = (const char *)f->headers[i]->value.data;
					node_len = (int)f->headers[i]->value.len;
				}
			printf("request %.*s uid=%.*s node=%.*s\n", (int)len, body, uid_len, uid,
			       node_len, node);
			fflush(stdout);
			if (!no_reply) {
				if (delay > 0)
					usleep((useconds_t)delay * 1000);
				out.kind = MIDDLECON__FRAME__KIND__REPLY;
				out.id = f->id;
				send_frame(fd, &out, reply ? reply : body,
					   reply ? strlen(reply) : len);
			}
			served++;
		}
		frame_free(f);
		free(body);
		if (count > 0 && served >= count)
			return 0;
	}
}

static int cmd_call(int fd, int argc, char **argv)
{
	long deadline_ms = atol(opt(argc, argv, "--deadline-ms", "0"));
	long size = atol(opt(argc, argv, "--size", "-1"));
	Frame f = MIDDLECON__FRAME__INIT, *r;
	char *data = argv[2], *body = NULL;
	size_t dlen = strlen(argv[2]), len;

	if (size >= 0) {
		data = malloc((size_t)size + 1);
		if (!data)
			return 1;
		memset(data, 'x', (size_t)size);
		dlen = (size_t)size;
	}
	f.kind = MIDDLECON__FRAME__KIND__REQUEST;
	f.id = 42;
	f.service = argv[1];
	if (deadline_ms > 0)
		f.deadline = now_ns() + (uint64_t)deadline_ms * 1000000u;
	if (send_frame(fd, &f, data, dlen) < 0) {
		if (data != argv[2])
			free(data);
		printf("send failed\n");
		return 1;
	}
	r = recv_frame(fd, &body, &len);
	if (!r) {
		printf("closed\n");
		return 1;
	}
	printf("%s %s%s%s\n", status_name(r->status), body ? body : "", r->error[0] ? " # " : "",
	       r->error);
	/* A second call on the same connection shows it survived (TOO_LARGE must not close it). */
	if (flag(argc, argv, "--then-ping")) {
		Frame p = MIDDLECON__FRAME__INIT, *q;
		char *b2 = NULL;

		p.kind = MIDDLECON__FRAME__KIND__PING;
		p.id = 7;
		send_frame(fd, &p, NULL, 0);
		q = recv_frame(fd, &b2, &len);
		printf("%s\n", q && q->kind == MIDDLECON__FRAME__KIND__PONG ? "PONG" : "no pong");
		frame_free(q);
		free(b2);
	}
	frame_free(r);
	free(body);
	if (data != argv[2])
		free(data);
	return 0;
}

static int cmd_sub(int fd, int argc, char **argv)
{
	long count = atol(opt(argc, argv, "--count", "0"));
	long got = 0;
	int st = control(fd, MIDDLECON__FRAME__KIND__SUBSCRIBE, 5, argv[1]);

	if (st != 0) {
		printf("subscribe %s\n", status_name(st));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		char *body = NULL;
		size_t len;
		Frame *f = recv_frame(fd, &body, &len);

		if (!f)
			return 0;
		if (f->kind == MIDDLECON__FRAME__KIND__PUBLISH) {
			printf("%s %s\n", f->service, body);
			fflush(stdout);
			got++;
		}
		frame_free(f);
		free(body);
		if (count > 0 && got >= count)
			return 0;
	}
}

static int cmd_pub(int fd, int argc, char **argv)
{
	Frame f = MIDDLECON__FRAME__INIT;

	f.kind = MIDDLECON__FRAME__KIND__PUBLISH;
	f.service = argv[1];
	if (send_frame(fd, &f, argv[2], strlen(argv[2])) < 0)
		return 1;
	/*
	 * A PING round trip makes sure the relay has handled the PUBLISH before we exit; a refused
	 * PUBLISH is answered by a REPLY that arrives before the PONG.
	 */
	{
		Frame p = MIDDLECON__FRAME__INIT, *r;
		char *body = NULL;
		size_t len;
		int st = 0;

		p.kind = MIDDLECON__FRAME__KIND__PING;
		p.id = 1;
		if (send_frame(fd, &p, NULL, 0) < 0)
			return 1;
		while ((r = recv_frame(fd, &body, &len))) {
			bool pong = r->kind == MIDDLECON__FRAME__KIND__PONG;

			if (r->kind == MIDDLECON__FRAME__KIND__REPLY && r->status != 0) {
				printf("%s\n", status_name(r->status));
				st = 1;
			}
			frame_free(r);
			free(body);
			body = NULL;
			if (pong)
				return st;
		}
		return 1;
	}
}

/* Registers or subscribes, then never reads: the relay's queue for us only grows. */
static int cmd_stall(int fd, int kind, const char *name)
{
	int st = control(fd, kind, 5, name);

	if (st != 0) {
		printf("%s %s\n",
		       kind == MIDDLECON__FRAME__KIND__REGISTER ? "register" : "subscribe",
		       status_name(st));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static int cmd_flood(int fd, int argc, char **argv)
{
	long count = atol(opt(argc, argv, "--count", "1000"));
	long size = atol(opt(argc, argv, "--size", "1024"));
	long hold = atol(opt(argc, argv, "--hold-ms", "0"));
	bool call = flag(argc, argv, "--call");
	struct timeval tv = { .tv_sec = 2 };
	char *body;
	long i;

	if (count < 0 || size < 0)
		return 2;
	body = malloc((size_t)size + 1);
	if (!body)
		return 1;
	memset(body, 'f', (size_t)size);
	/* A relay that stops reading us (backpressure) must not hang the test: give up after 2 s. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (i = 0; i < count; i++) {
		Frame f = MIDDLECON__FRAME__INIT;

		f.kind = call ? MIDDLECON__FRAME__KIND__REQUEST : MIDDLECON__FRAME__KIND__PUBLISH;
		f.id = (uint64_t)i + 1;
		f.service = argv[1];
		if (send_frame(fd, &f, body, (size_t)size) < 0)
			break;
	}
	free(body);
	printf("%s %ld\n", i == count ? "sent" : "stuck", i);
	fflush(stdout);
	if (hold > 0)
		usleep((useconds_t)hold * 1000);
	return 0;
}

/* Writes @n raw bytes and reports what the relay answered and whether it closed. */
static int raw_probe(int fd, const void *bytes, size_t n)
{
	Frame *r;
	char *body = NULL;
	size_t len;

	if (write_all(fd, bytes, n) < 0) {
		printf("write failed\n");
		return 1;
	}
	r = recv_frame(fd, &body, &len);
	if (!r) {
		printf("closed\n");
		return 0;
	}
	printf("%s", status_name(r->status));
	frame_free(r);
	free(body);
	body = NULL;
	r = recv_frame(fd, &body, &len);
	printf(" %s\n", r ? "open" : "closed");
	frame_free(r);
	free(body);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock;
	const char *cmd;
	int fd;

	if (argc < 4 || strcmp(argv[1], "-s") != 0) {
		fprintf(stderr, "usage: mc_client -s SOCKET COMMAND ARGS...\n");
		return 2;
	}
	sock = argv[2];
	cmd = argv[3];
	argc -= 3;
	argv += 3;
	if (strcmp(cmd, "no-hello") == 0) {
		fd = connect_relay(sock, false);
		Frame f = MIDDLECON__FRAME__INIT;

		f.kind = MIDDLECON__FRAME__KIND__PING;
		f.id = 3;
		send_frame(fd, &f, NULL, 0);
		return raw_probe(fd, "", 0);
	}
	fd = connect_relay(sock, true);
	if (strcmp(cmd, "serve") == 0 && argc >= 2)
		return cmd_serve(fd, argc, argv);
	if (strcmp(cmd, "call") == 0 && argc >= 3)
		return cmd_call(fd, argc, argv);
	if (strcmp(cmd, "sub") == 0 && argc >= 2)
		return cmd_sub(fd, argc, argv);
	if (strcmp(cmd, "pub") == 0 && argc >= 3)
		return cmd_pub(fd, argc, argv);
	if (strcmp(cmd, "sub-stall") == 0 && argc >= 2)
		return cmd_stall(fd, MIDDLECON__FRAME__KIND__SUBSCRIBE, argv[1]);
	if (strcmp(cmd, "serve-stall") == 0 && argc >= 2)
		return cmd_stall(fd, MIDDLECON__FRAME__KIND__REGISTER, argv[1]);
	if (strcmp(cmd, "flood") == 0 && argc >= 2)
		return cmd_flood(fd, argc, argv);
	if (strcmp(cmd, "ping") == 0) {
		int st = control(fd, MIDDLECON__FRAME__KIND__PING, 9, "");

		printf("%s\n", st == 0 ? "PONG" : "no pong");
		return st != 0;
	}
	if (strcmp(cmd, "bad-prefix") == 0) {
		/* frame_len 3: shorter than any valid frame. */
		static const uint8_t bad[] = { 0, 0, 0, 3, 0, 0, 0, 1 };

		return raw_probe(fd, bad, sizeof(bad));
	}
	if (strcmp(cmd, "bad-header") == 0) {
		/* A valid prefix around a header that is not a protobuf message (field 0). */
		static const uint8_t bad[] = { 0, 0, 0, 8, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff };

		return raw_probe(fd, bad, sizeof(bad));
	}
	fprintf(stderr, "mc_client: unknown command '%s'\n", cmd);
	return 2;
}
