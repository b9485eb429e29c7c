/* SPDX-License-Identifier: MIT */
/*
 * mcbench: request/reply load through the middlecon relay, and the raw Unix-socket floor.
 *
 *   mcbench --socket PATH --serve [--responders K] [--name NAME]
 *   mcbench --socket PATH [--clients N] [--size BYTES] [--duration SEC | --requests N]
 *           [--mode closed|open] [--rate R] [--warmup N] [--name NAME]
 *   mcbench --uds-floor [--clients N] [--size BYTES] ...
 *
 * --serve registers NAME (default "bench.echo") from K connections (one thread each, a
 * load-balanced group at the relay) and answers every request with its own body; it prints
 * "ready" once every registration is accepted and serves until killed.
 *
 * The client side is middlecon/benchloop.c: one thread per client, each with its own connection
 * and a blocking mc_call() (one request in flight per client), closed or open loop. It prints one
 * line of key=value results (see benchloop_print()).
 *
 * --uds-floor replaces the relay by a direct socketpair to a forked echo process per client: the
 * same loop, the same N-byte messages, no relay, no framing — the floor a relay adds to.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "middlecon/benchloop.h"
#include "middlecon/libmiddlecon.h"

static const char *arg_socket = NULL;
static const char *arg_name = "bench.echo";
static bool arg_serve = false;
static bool arg_uds_floor = false;
static unsigned arg_responders = 1;
static struct benchloop_config arg_cfg = { .clients = 1,
					   .size = 64,
					   .duration = 5,
					   .warmup = 100,
					   .rate = 1000 };

/* middlecon transport */

static int mc_bench_client_new(void *ctx, unsigned idx, void **ret)
{
	struct mc_client *c = NULL;
	int r;

	r = mc_connect(arg_socket, "mcbench", &c);
	if (r < 0)
		return r;
	*ret = c;
	return 0;
}

static int mc_bench_call(void *client, const void *body, size_t len)
{
	/* A status > 0 is a failed reply (counted); -errno ends the client. */
	return mc_call(client, arg_name, NULL, body, len, 5000, NULL);
}

static void mc_bench_client_free(void *client)
{
	mc_client_free(client);
}

static const struct benchloop_ops mc_ops = {
	.client_new = mc_bench_client_new,
	.call = mc_bench_call,
	.client_free = mc_bench_client_free,
};

/* raw Unix-socket floor: one socketpair and one forked echo process per client */

struct uds_client {
	int fd;
	pid_t pid;
	char *buf;
};

static int write_all(int fd, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0) {
		ssize_t k = write(fd, s, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EPIPE;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	char *s = p;

	while (n > 0) {
		ssize_t k = read(fd, s, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -ECONNRESET;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The echo process: only read(), write() and _exit(), since it is forked from a threaded parent. */
static _Noreturn void uds_echo(int fd)
{
	static char buf[65536];

	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || write_all(fd, buf, (size_t)k) < 0)
			_exit(0);
	}
}

static int uds_client_new(void *ctx, unsigned idx, void **ret)
{
	struct uds_client *u;
	int sv[2];

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->buf = malloc(arg_cfg.size ? arg_cfg.size : 1);
	if (!u->buf) {
		free(u);
		return -ENOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		int r = -errno;

		free(u->buf);
		free(u);
		return r;
	}
	u->pid = fork();
	if (u->pid < 0) {
		int r = -errno;

		close(sv[0]);
		close(sv[1]);
		free(u->buf);
		free(u);
		return r;
	}
	if (u->pid == 0) {
		/*
		 * Keep only our end: a copy of another client's socket, inherited from a sibling
		 * thread, would keep that client's echo process from ever seeing EOF.
		 */
		if (dup2(sv[1], 3) < 0)
			_exit(1);
		close_range(4, ~0u, 0);
		uds_echo(3);
	}
	close(sv[1]);
	u->fd = sv[0];
	*ret = u;
	return 0;
}

static int uds_call(void *client, const void *body, size_t len)
{
	struct uds_client *u = client;
	int r;

	r = write_all(u->fd, body, len);
	if (r < 0)
		return r;
	return read_all(u->fd, u->buf, len);
}

static void uds_client_free(void *client)
{
	struct uds_client *u = client;

	close(u->fd);
	while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(u->buf);
	free(u);
}

static const struct benchloop_ops uds_ops = {
	.client_new = uds_client_new,
	.call = uds_call,
	.client_free = uds_client_free,
};

/* --serve */

static void on_request(struct mc_client *c, const struct mc_request *req, void *userdata)
{
	(void)mc_respond(c, req->token, MC_STATUS_OK, req->body, req->len);
}

static void *responder_main(void *userdata)
{
	int r = mc_serve(userdata);

	fprintf(stderr, "mcbench: responder ended: %s\n", strerror(-r));
	exit(1);
}

static int serve(void)
{
	for (unsigned i = 0; i < arg_responders; i++) {
		struct mc_client *c = NULL;
		pthread_t t;
		int r;

		r = mc_connect(arg_socket, "mcbench-serve", &c);
		if (r < 0) {
			fprintf(stderr, "mcbench: cannot connect to %s: %s\n", arg_socket,
				strerror(-r));
			return 1;
		}
		r = mc_register(c, arg_name, on_request, NULL);
		if (r != 0) {
			fprintf(stderr, "mcbench: cannot register %s: %s\n", arg_name,
				r < 0 ? strerror(-r) : mc_status_to_string(r));
			return 1;
		}
		/* The client is handed over to its thread and used only there from now on. */
		r = -pthread_create(&t, NULL, responder_main, c);
		if (r < 0) {
			fprintf(stderr, "mcbench: pthread_create: %s\n", strerror(-r));
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static void help(void)
{
	printf("mcbench [OPTIONS]\n\n"
	       "Request/reply load through the middlecon relay (or the raw Unix-socket floor).\n\n"
	       "  -s --socket PATH     the relay's socket\n"
	       "     --name NAME       service name (default bench.echo)\n"
	       "     --serve           answer requests (echo) instead of making them\n"
	       "     --responders K    --serve: K connections registered under NAME (default 1)\n"
	       "     --uds-floor       raw socketpair ping-pong to a forked echo process, no relay\n"
	       "  -c --clients N       client threads, one request in flight each (default 1)\n"
	       "     --size BYTES      request (and reply) body size (default 64)\n"
	       "  -d --duration SEC    run time (default 5)\n"
	       "  -n --requests N      total requests instead of a duration\n"
	       "     --mode MODE       closed (default) or open (fixed rate)\n"
	       "     --rate R          open loop: total requests per second (default 1000)\n"
	       "     --warmup N        untimed calls per client first (default 100)\n"
	       "  -h --help            this text\n");
}

static int parse_argv(int argc, char **argv)
{
	enum { ARG_NAME = 0x100, ARG_SERVE, ARG_RESPONDERS, ARG_UDS_FLOOR, ARG_COMMON };
	static const struct option options[] = { { "socket", required_argument, NULL, 's' },
						 { "name", required_argument, NULL, ARG_NAME },
						 { "serve", no_argument, NULL, ARG_SERVE },
						 { "responders", required_argument, NULL,
						   ARG_RESPONDERS },
						 { "uds-floor", no_argument, NULL, ARG_UDS_FLOOR },
						 { "clients", required_argument, NULL, 'c' },
						 { "size", required_argument, NULL, ARG_COMMON },
						 { "duration", required_argument, NULL, 'd' },
						 { "requests", required_argument, NULL, 'n' },
						 { "mode", required_argument, NULL, ARG_COMMON },
						 { "rate", required_argument, NULL, ARG_COMMON },
						 { "warmup", required_argument, NULL, ARG_COMMON },
						 { "help", no_argument, NULL, 'h' },
						 {} };
	int opt, idx = -1;

	while ((idx = -1, opt = getopt_long(argc, argv, "s:c:d:n:h", options, &idx)) >= 0) {
		const char *common = NULL;

		switch (opt) {
		case 'h':
			help();
			return 0;
		case 's':
			arg_socket = optarg;
			break;
		case ARG_NAME:
			arg_name = optarg;
			break;
		case ARG_SERVE:
			arg_serve = true;
			break;
		case ARG_UDS_FLOOR:
			arg_uds_floor = true;
			break;
		case ARG_RESPONDERS:
			arg_responders = (unsigned)strtoul(optarg, NULL, 10);
			if (arg_responders < 1 || arg_responders > 1024) {
				fprintf(stderr, "mcbench: invalid --responders '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case 'c':
			common = "clients";
			break;
		case 'd':
			common = "duration";
			break;
		case 'n':
			common = "requests";
			break;
		case ARG_COMMON:
			common = options[idx].name;
			break;
		default:
			fprintf(stderr, "Try 'mcbench --help' for more information.\n");
			return -EINVAL;
		}
		if (common && benchloop_parse_option(&arg_cfg, common, optarg) <= 0) {
			fprintf(stderr, "mcbench: invalid --%s '%s'\n", common, optarg);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mcbench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!arg_uds_floor && !arg_socket) {
		fprintf(stderr, "mcbench: --socket is required\n");
		return -EINVAL;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct benchloop_result res;
	int r;

	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	/* A responder or relay that goes away must end a write with EPIPE, not kill the bench. */
	signal(SIGPIPE, SIG_IGN);
	if (arg_serve)
		return serve();

	r = benchloop_run(&arg_cfg, arg_uds_floor ? &uds_ops : &mc_ops, NULL, &res);
	if (r < 0) {
		fprintf(stderr, "mcbench: %s\n", strerror(-r));
		return 1;
	}
	benchloop_print(arg_uds_floor ? "uds" : "middlecon", &arg_cfg, &res);
	return res.errors > 0 ? 1 : 0;
}
