/* SPDX-License-Identifier: MIT */
/*
 * A stand-in instance for tests/integration/supervise.sh: registers NAME with the relay through
 * libcommon/supervise.c and answers the supervision methods from a small state machine, so the
 * library can be tested on its own against a real middlecon (the launchers are tested with it in
 * their own suites).
 *
 *   sv_instance SOCKET NAME
 *
 * Methods: state (the state), pause, resume (state changes; pausing twice is refused with
 * -EBUSY), stop (answers, then exits 0 from the loop), echo (the body back as {"echo": ...}),
 * crash (exits at once without answering). Prints "registered" once the relay has the name.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "libcommon/supervise.h"

struct inst {
	struct event_base *base;
	struct supervise *sv;
	const char *state;
	struct event *tick;
	bool said;
};

static int handler(const char *method, const void *body, size_t len, char **ret_body,
		   char **ret_error, void *userdata)
{
	struct inst *in = userdata;
	json_t *j = NULL;

	if (strcmp(method, "state") == 0) {
		j = json_pack("{s:s}", "state", in->state);
	} else if (strcmp(method, "pause") == 0 || strcmp(method, "resume") == 0) {
		const char *want = method[0] == 'p' ? "paused" : "running";

		if (strcmp(in->state, want) == 0) {
			*ret_error = strdup(method[0] == 'p' ? "already paused" : "not paused");
			return -EBUSY;
		}
		in->state = want;
		j = json_pack("{s:s}", "state", in->state);
	} else if (strcmp(method, "stop") == 0) {
		in->state = "stopping";
		j = json_pack("{s:s}", "state", in->state);
		event_base_loopexit(in->base, &(struct timeval){ .tv_usec = 100000 });
	} else if (strcmp(method, "echo") == 0) {
		j = json_pack("{s:s%}", "echo", (const char *)body, len);
	} else if (strcmp(method, "crash") == 0) {
		_exit(3);
	} else {
		return -EOPNOTSUPP;
	}
	*ret_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return *ret_body ? 0 : -ENOMEM;
}

static void tick_cb(evutil_socket_t fd, short events, void *userdata)
{
	struct inst *in = userdata;
	bool reg = supervise_registered(in->sv);

	if (reg != in->said) {
		printf("%s\n", reg ? "registered" : "unregistered");
		fflush(stdout);
		in->said = reg;
	}
}

int main(int argc, char **argv)
{
	struct inst in = { .state = "running" };
	struct timeval tv = { .tv_usec = 20000 };
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: sv_instance SOCKET NAME\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	in.base = event_base_new();
	if (!in.base)
		return 1;
	r = supervise_start(in.base, argv[1], argv[2], handler, &in, &in.sv);
	if (r < 0) {
		fprintf(stderr, "supervise_start: %s\n", strerror(-r));
		return 1;
	}
	in.tick = event_new(in.base, -1, EV_PERSIST, tick_cb, &in);
	if (!in.tick || event_add(in.tick, &tv) < 0)
		return 1;
	event_base_dispatch(in.base);
	event_free(in.tick);
	supervise_free(in.sv);
	event_base_free(in.base);
	return 0;
}
