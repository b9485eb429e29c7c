/* SPDX-License-Identifier: MIT */
/*
 * proctrace_dump: prints the process events of one source of k2i/proctrace.c, for the
 * integration tests.
 *
 *   proctrace_dump [--source bpf|netlink|poll] [--seconds N] [--buffer-size BYTES]
 *                  [--poll-interval-ms MS] [--bpf-exit-live] [--log-level LEVEL]
 *
 * Once the source runs it prints "ready SOURCE PID". Then one line per event:
 *
 *   TYPE PID TID PPID UID EXIT_CODE SIGNAL START_TICKS TIME_NS COMM FILENAME
 *
 * with "-" for a value the source did not provide (EXIT_CODE and SIGNAL are "-" except in exit
 * events; FILENAME except in exec events). COMM and FILENAME escape bytes outside '!'..'~' and
 * the backslash as \xNN, so every line has eleven fields. Stops on SIGTERM, SIGINT or after
 * --seconds, then prints "stats received N lost N". Output is flushed every 20 ms.
 *
 * Exits 77 (with "unavailable SOURCE: WHY") if the source cannot run here, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "k2i/proctrace.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

DEFINE_CLEANUP_FUNC(struct event_base, event_base_free)
DEFINE_CLEANUP_FUNC(struct event, event_free)

#define FLUSH_INTERVAL_US 20000

static const char *arg_source = "bpf";
static uint32_t arg_seconds;
static struct proctrace_options arg_opts;

static void print_escaped(const char *s)
{
	if (!*s) {
		fputs("-", stdout);
		return;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < '!' || c > '~' || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void on_event(const struct proc_event *ev, void *userdata)
{
	printf("%s %d %d ", proc_event_type_to_string(ev->type), (int)ev->pid, (int)ev->tid);
	if (ev->has_ppid)
		printf("%d ", (int)ev->ppid);
	else
		fputs("- ", stdout);
	if (ev->has_ids)
		printf("%u ", (unsigned)ev->uid);
	else
		fputs("- ", stdout);
	if (ev->has_exit_status)
		printf("%d %d ", ev->exit_code, ev->exit_signal);
	else
		fputs("- - ", stdout);
	if (ev->has_start_ticks)
		printf("%" PRIu64 " ", ev->start_ticks);
	else
		fputs("- ", stdout);
	printf("%" PRIu64 " ", ev->time_ns);
	print_escaped(ev->has_comm ? ev->comm : "");
	putchar(' ');
	print_escaped(ev->has_filename ? ev->filename : "");
	putchar('\n');
}

static void on_flush(evutil_socket_t fd, short what, void *userdata)
{
	fflush(stdout);
}

static void on_stop(evutil_socket_t fd, short what, void *userdata)
{
	event_base_loopbreak(userdata);
}

static int parse_argv(int argc, char **argv)
{
	enum {
		ARG_SOURCE = 0x100,
		ARG_SECONDS,
		ARG_BUFFER_SIZE,
		ARG_POLL_INTERVAL,
		ARG_EXIT_LIVE,
		ARG_LOG_LEVEL
	};
	static const struct option options[] = {
		{ "source", required_argument, NULL, ARG_SOURCE },
		{ "seconds", required_argument, NULL, ARG_SECONDS },
		{ "buffer-size", required_argument, NULL, ARG_BUFFER_SIZE },
		{ "poll-interval-ms", required_argument, NULL, ARG_POLL_INTERVAL },
		{ "bpf-exit-live", no_argument, NULL, ARG_EXIT_LIVE },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	int c, r;

	proctrace_options_init(&arg_opts);
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case ARG_SOURCE:
			if (proctrace_source_from_string(optarg) < 0) {
				fprintf(stderr, "proctrace_dump: unknown source '%s'\n", optarg);
				return -EINVAL;
			}
			arg_source = optarg;
			break;
		case ARG_SECONDS:
			r = safe_atou32_range(optarg, 1, 3600, &arg_seconds);
			if (r < 0) {
				fprintf(stderr, "proctrace_dump: invalid --seconds '%s'\n", optarg);
				return r;
			}
			break;
		case ARG_BUFFER_SIZE:
			r = safe_atou32(optarg, &arg_opts.buffer_size);
			if (r < 0) {
				fprintf(stderr, "proctrace_dump: invalid --buffer-size '%s'\n",
					optarg);
				return r;
			}
			break;
		case ARG_POLL_INTERVAL:
			r = safe_atou32(optarg, &arg_opts.poll_interval_ms);
			if (r < 0) {
				fprintf(stderr, "proctrace_dump: invalid --poll-interval-ms '%s'\n",
					optarg);
				return r;
			}
			break;
		case ARG_EXIT_LIVE:
			arg_opts.bpf_exit_by_live_count = true;
			break;
		case ARG_LOG_LEVEL:
			r = log_level_from_string(optarg);
			if (r < 0) {
				fprintf(stderr, "proctrace_dump: invalid --log-level '%s'\n",
					optarg);
				return r;
			}
			log_set_max_level(r);
			break;
		default:
			fprintf(stderr,
				"usage: proctrace_dump [--source bpf|netlink|poll] "
				"[--seconds N] [--buffer-size BYTES] [--poll-interval-ms MS] "
				"[--bpf-exit-live] [--log-level LEVEL]\n");
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "proctrace_dump: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_(event_base_freep) struct event_base *base = NULL;
	_cleanup_(proctrace_freep) struct proctrace *t = NULL;
	_cleanup_(event_freep) struct event *flush = NULL;
	_cleanup_(event_freep) struct event *sigterm = NULL;
	_cleanup_(event_freep) struct event *sigint = NULL;
	_cleanup_(event_freep) struct event *timeout = NULL;
	const struct timeval flush_tv = { 0, FLUSH_INTERVAL_US };
	struct proctrace_stats stats;
	int source, r;

	log_set_max_level(LOG_WARNING);
	if (parse_argv(argc, argv) < 0)
		return 2;
	source = proctrace_source_from_string(arg_source);
	if (source == PROCTRACE_SOURCE_NETLINK || source == PROCTRACE_SOURCE_POLL)
		arg_opts.no_bpf = true;
	if (source == PROCTRACE_SOURCE_POLL)
		arg_opts.no_netlink = true;

	base = event_base_new();
	if (!base)
		return log_oom(), 1;
	r = proctrace_new(base, &arg_opts, on_event, NULL, &t);
	if (r < 0) {
		log_err_errno(r, "Failed to start the process event source: %m");
		return 1;
	}
	if ((int)proctrace_source(t) != source) {
		printf("unavailable %s: %s\n", arg_source, proctrace_reason(t));
		return 77;
	}

	sigterm = evsignal_new(base, SIGTERM, on_stop, base);
	sigint = evsignal_new(base, SIGINT, on_stop, base);
	flush = event_new(base, -1, EV_PERSIST, on_flush, NULL);
	if (!sigterm || !sigint || !flush || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0 || event_add(flush, &flush_tv) < 0)
		return log_oom(), 1;
	if (arg_seconds) {
		const struct timeval tv = { arg_seconds, 0 };

		timeout = evtimer_new(base, on_stop, base);
		if (!timeout || evtimer_add(timeout, &tv) < 0)
			return log_oom(), 1;
	}

	/* Fully buffered: a burst must not cost a write per event. */
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	printf("ready %s %d\n", arg_source, (int)getpid());
	fflush(stdout);
	if (event_base_dispatch(base) < 0) {
		log_err("The event loop failed.");
		return 1;
	}

	proctrace_stats(t, &stats);
	printf("stats received %" PRIu64 " lost %" PRIu64 "\n", stats.received, stats.lost);
	return fflush(stdout) == 0 ? 0 : 1;
}
