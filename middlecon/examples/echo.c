/* SPDX-License-Identifier: MIT */
/*
 * libmiddlecon example: a responder and a caller in one program, on one libevent base.
 *
 *   mc_echo [SOCKET [COUNT]]
 *
 * The responder registers "example.echo.<pid>" (mc_register) and answers every request with its
 * body. The caller starts COUNT (default 100) asynchronous calls at once (mc_call_async) and runs
 * the base, which drives both connections, until every reply is in. (A blocking mc_call() is
 * shown by middlecon/mcctl.c: it reads only its own connection while it waits, so it cannot
 * call a responder served by the same thread.) It prints
 * "N/N replies OK" and exits 0 when every reply matched its request, 1 otherwise.
 *
 * Build: cc echo.c -lmiddlecon $(pkg-config --cflags --libs libprotobuf-c libevent)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "middlecon/libmiddlecon.h"

struct echo_state {
	struct event_base *base;
	int outstanding;
	int ok;
};

struct echo_call {
	struct echo_state *state;
	char body[32];
};

/* The responder: answer at once with the request's own body. */
static void on_request(struct mc_client *c, const struct mc_request *req, void *userdata)
{
	(void)mc_respond(c, req->token, MC_STATUS_OK, req->body, req->len);
}

/* The caller's completion: compare, count, stop the base after the last one. */
static void on_reply(struct mc_client *c, int status, const struct mc_reply *reply, void *userdata)
{
	struct echo_call *call = userdata;
	struct echo_state *st = call->state;

	if (status == MC_STATUS_OK && reply->len == strlen(call->body) &&
	    memcmp(reply->body, call->body, reply->len) == 0)
		st->ok++;
	else
		fprintf(stderr, "call '%s': %s\n", call->body,
			status < 0 ? strerror(-status) : mc_status_to_string(status));
	free(call);
	if (--st->outstanding == 0)
		event_base_loopbreak(st->base);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/run/k2i/middlecon.sock";
	int count = argc > 2 ? atoi(argv[2]) : 100;
	struct echo_state st = { 0 };
	struct mc_client *responder = NULL, *caller = NULL;
	char name[64];
	int r, ret = 1;

	if (count < 1 || count > 100000) {
		fprintf(stderr, "COUNT must be 1..100000\n");
		return 2;
	}
	snprintf(name, sizeof(name), "example.echo.%d", (int)getpid());

	st.base = event_base_new();
	if (!st.base)
		return 1;
	r = mc_connect(path, "echo-responder", &responder);
	if (r >= 0)
		r = mc_connect(path, "echo-caller", &caller);
	if (r < 0) {
		fprintf(stderr, "connect '%s': %s\n", path, strerror(-r));
		goto out;
	}
	r = mc_register(responder, name, on_request, NULL);
	if (r != 0) {
		fprintf(stderr, "register: %s\n", r < 0 ? strerror(-r) : mc_status_to_string(r));
		goto out;
	}
	if (mc_client_attach_event_base(responder, st.base) < 0 ||
	    mc_client_attach_event_base(caller, st.base) < 0)
		goto out;

	for (int i = 0; i < count; i++) {
		struct echo_call *call = calloc(1, sizeof(*call));

		if (!call)
			goto out;
		call->state = &st;
		snprintf(call->body, sizeof(call->body), "message %d", i);
		r = mc_call_async(caller, name, "echo", call->body, strlen(call->body), 5000,
				  on_reply, call);
		if (r != 0) {
			fprintf(stderr, "call_async: %s\n",
				r < 0 ? strerror(-r) : mc_status_to_string(r));
			free(call);
			goto out;
		}
		st.outstanding++;
	}
	event_base_dispatch(st.base);
	printf("%d/%d replies OK\n", st.ok, count);
	ret = st.ok == count ? 0 : 1;
out:
	mc_client_free(caller);
	mc_client_free(responder);
	event_base_free(st.base);
	return ret;
}
