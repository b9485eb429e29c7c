/* SPDX-License-Identifier: MIT */
/*
 * natsbench: the NATS side of bench_middlecon.sh, with Debian's libnats (nats.c 3.4) against a
 * local nats-server, driven by the same load generator as mcbench (middlecon/benchloop.c).
 *
 *   natsbench --url nats://127.0.0.1:PORT --serve [--responders K] [--name SUBJECT]
 *   natsbench --url nats://127.0.0.1:PORT [--clients N] [--size BYTES]
 *             [--duration SEC | --requests N] [--mode closed|open] [--rate R] [--warmup N]
 *
 * --serve: K connections subscribe to SUBJECT (default "bench.echo") in queue group "q" (as
 * `nats bench service serve` does) and publish every request's body back to its reply subject.
 * The client side: one thread and one connection per client, natsConnection_Request() (the
 * muxed-inbox request style, the default), one request in flight each.
 *
 * Fairness: every connection sets natsOptions_SetSendAsap(true). Without it nats.c 3.4 leaves a
 * publish made from a callback to its flusher thread, which adds about 1 ms to every reply
 * (research/middlecon.md §2.6, §9.3); with it each PUB is written at once, as middlecon writes a
 * complete frame at once. No TLS, no auth, loopback TCP.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "middlecon/benchloop.h"

static const char *arg_url = NULL;
static const char *arg_name = "bench.echo";
static bool arg_serve = false;
static unsigned arg_responders = 1;
static struct benchloop_config arg_cfg = { .clients = 1,
					   .size = 64,
					   .duration = 5,
					   .warmup = 100,
					   .rate = 1000 };

static int nats_connect(natsConnection **ret)
{
	natsOptions *opts = NULL;
	natsStatus s;

	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, arg_url);
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(opts, true);
	if (s == NATS_OK)
		s = natsConnection_Connect(ret, opts);
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		fprintf(stderr, "natsbench: cannot connect to %s: %s\n", arg_url,
			natsStatus_GetText(s));
		return s == NATS_NO_MEMORY ? -ENOMEM : -ECONNREFUSED;
	}
	return 0;
}

static int nats_client_new(void *ctx, unsigned idx, void **ret)
{
	natsConnection *nc = NULL;
	int r;

	r = nats_connect(&nc);
	if (r < 0)
		return r;
	*ret = nc;
	return 0;
}

static int nats_call(void *client, const void *body, size_t len)
{
	natsMsg *reply = NULL;
	natsStatus s;

	s = natsConnection_Request(&reply, client, arg_name, body, (int)len, 5000);
	natsMsg_Destroy(reply);
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_CONNECTION_CLOSED:
	case NATS_NO_MEMORY:
		return -ECONNRESET;
	default:
		return 1; /* timeout, no responders, ...: a failed request */
	}
}

static void nats_client_free(void *client)
{
	natsConnection_Destroy(client);
}

static const struct benchloop_ops nats_ops = {
	.client_new = nats_client_new,
	.call = nats_call,
	.client_free = nats_client_free,
};

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	const char *reply = natsMsg_GetReply(msg);

	if (reply)
		(void)natsConnection_Publish(nc, reply, natsMsg_GetData(msg),
					     natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static int serve(void)
{
	for (unsigned i = 0; i < arg_responders; i++) {
		natsConnection *nc = NULL;
		natsSubscription *sub = NULL;
		natsStatus s;

		if (nats_connect(&nc) < 0)
			return 1;
		s = natsConnection_QueueSubscribe(&sub, nc, arg_name, "q", on_request, NULL);
		if (s == NATS_OK)
			s = natsConnection_Flush(nc); /* the server has the subscription */
		if (s != NATS_OK) {
			fprintf(stderr, "natsbench: cannot subscribe to %s: %s\n", arg_name,
				natsStatus_GetText(s));
			return 1;
		}
		/* Both live until the process is killed; each subscription has its own thread. */
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static void help(void)
{
	printf("natsbench [OPTIONS]\n\n"
	       "Request/reply load through nats-server with libnats (the peer of mcbench).\n\n"
	       "  -u --url URL         nats://127.0.0.1:PORT\n"
	       "     --name SUBJECT    subject (default bench.echo)\n"
	       "     --serve           answer requests (echo, queue group \"q\")\n"
	       "     --responders K    --serve: K connections (default 1)\n"
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
	enum { ARG_NAME = 0x100, ARG_SERVE, ARG_RESPONDERS, ARG_COMMON };
	static const struct option options[] = { { "url", required_argument, NULL, 'u' },
						 { "name", required_argument, NULL, ARG_NAME },
						 { "serve", no_argument, NULL, ARG_SERVE },
						 { "responders", required_argument, NULL,
						   ARG_RESPONDERS },
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

	while ((idx = -1, opt = getopt_long(argc, argv, "u:c:d:n:h", options, &idx)) >= 0) {
		const char *common = NULL;

		switch (opt) {
		case 'h':
			help();
			return 0;
		case 'u':
			arg_url = optarg;
			break;
		case ARG_NAME:
			arg_name = optarg;
			break;
		case ARG_SERVE:
			arg_serve = true;
			break;
		case ARG_RESPONDERS:
			arg_responders = (unsigned)strtoul(optarg, NULL, 10);
			if (arg_responders < 1 || arg_responders > 1024) {
				fprintf(stderr, "natsbench: invalid --responders '%s'\n", optarg);
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
			fprintf(stderr, "Try 'natsbench --help' for more information.\n");
			return -EINVAL;
		}
		if (common && benchloop_parse_option(&arg_cfg, common, optarg) <= 0) {
			fprintf(stderr, "natsbench: invalid --%s '%s'\n", common, optarg);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "natsbench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!arg_url) {
		fprintf(stderr, "natsbench: --url is required\n");
		return -EINVAL;
	}
	if (arg_cfg.size > INT32_MAX)
		return -EINVAL;
	return 1;
}

int main(int argc, char **argv)
{
	struct benchloop_result res;
	int r;

	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	signal(SIGPIPE, SIG_IGN);
	if (arg_serve)
		return serve();

	r = benchloop_run(&arg_cfg, &nats_ops, NULL, &res);
	if (r < 0) {
		fprintf(stderr, "natsbench: %s\n", strerror(-r));
		return 1;
	}
	benchloop_print("nats", &arg_cfg, &res);
	return res.errors > 0 ? 1 : 0;
}
