/* SPDX-License-Identifier: MIT */
/*
 * mcctl: the middlecon command line, a thin user of libmiddlecon.
 *
 *   mcctl [--socket PATH] call NAME [DATA]      (DATA absent: stdin)
 *   mcctl [--socket PATH] serve NAME -- CMD ARGS...
 *   mcctl [--socket PATH] list | stats | pub NAME [DATA] | sub PATTERN
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/paths.h"
#include "libcommon/strutil.h"
#include "middlecon/libmiddlecon.h"

/* Exit statuses: 0 OK, 1 local failure, 2 usage, MCCTL_EXIT_STATUS + status for a non-OK one. */
#define MCCTL_EXIT_FAILURE 1
#define MCCTL_EXIT_USAGE 2
#define MCCTL_EXIT_STATUS 10
/* The exit status for a status this version does not know. */
#define MCCTL_EXIT_UNKNOWN (MCCTL_EXIT_STATUS + _MC_STATUS_MAX)
/* The most a command's output or stdin DATA may be; the relay's frame limit applies anyway. */
#define MCCTL_MAX_DATA (64u * 1024 * 1024)

extern char **environ;

static const char *arg_socket;
static const char *arg_method = "";
static unsigned arg_timeout_ms;
static const char *arg_node; /* --node: ask that node's relay ($sys.*@NODE) */
static bool arg_json;

DEFINE_CLEANUP_FUNC(struct mc_client, mc_client_free)
DEFINE_CLEANUP_FUNC(struct mc_reply, mc_reply_free)

static void help(void)
{
	printf("Usage: mcctl [OPTIONS] COMMAND ...\n"
	       "\n"
	       "Commands:\n"
	       "  call NAME [DATA]        call NAME with DATA (or stdin) and print the reply body\n"
	       "  serve NAME -- CMD ARGS  answer requests for NAME (a pattern may use * and >) by\n"
	       "                          running CMD with the request body on stdin; its stdout is\n"
	       "                          the reply; a non-zero exit answers BAD_REQUEST\n"
	       "  list                    registered names ($sys.list, JSON)\n"
	       "  stats                   relay counters ($sys.stats, JSON)\n"
	       "  peers                   links to other nodes: state, round-trip time, routes\n"
	       "                          ($sys.peers; --json for the JSON)\n"
	       "  pub NAME [DATA]         publish DATA (or stdin) under NAME\n"
	       "  sub PATTERN             print each message published under PATTERN, one a line\n"
	       "\n"
	       "Options:\n"
	       "  -s, --socket PATH       the relay's socket (default <rundir>/middlecon.sock)\n"
	       "  -m, --method METHOD     the method of a call\n"
	       "  -t, --timeout MS        a call's deadline (default: the relay's, 30 s)\n"
	       "  -n, --node NODE         list, stats, peers: ask the relay of node NODE\n"
	       "      --json              peers: print the JSON\n"
	       "NAME@NODE calls NAME on node NODE only.\n"
	       "  -h, --help              this text\n"
	       "\n"
	       "Exit status of call, list and stats: 0 OK, 1 local failure (no relay, ...),\n"
	       "2 usage error, otherwise the reply's status, whose name is printed on stderr:\n");
	for (int s = 1; s < _MC_STATUS_MAX; s++)
		printf("  %-2d %s\n", MCCTL_EXIT_STATUS + s, mc_status_to_string(s));
	printf("  %-2d a status unknown to this version\n", MCCTL_EXIT_UNKNOWN);
}

static int usage(const char *msg)
{
	fprintf(stderr, "mcctl: %s\nTry 'mcctl --help' for more information.\n", msg);
	return MCCTL_EXIT_USAGE;
}

static int connect_relay(struct mc_client **ret)
{
	_cleanup_free_ char *rundir = NULL;
	_cleanup_free_ char *path = NULL;
	const char *p = arg_socket;
	int r;

	if (!p) {
		r = paths_default_rundir(&rundir);
		if (r >= 0)
			r = path_join(rundir, "middlecon.sock", &path);
		if (r < 0) {
			fprintf(stderr, "mcctl: no default socket path: %s\n", strerror(-r));
			return r;
		}
		p = path;
	}
	r = mc_connect(p, "mcctl", ret);
	if (r < 0)
		fprintf(stderr, "mcctl: cannot connect to '%s': %s\n", p, strerror(-r));
	return r;
}

/* DATA from the command line, or all of stdin. */
static int get_data(int argc, char **argv, int i, char **ret, size_t *ret_len)
{
	char *d;
	int r;

	if (i < argc) {
		d = strdup(argv[i]);
		if (!d)
			return -ENOMEM;
		*ret = d;
		*ret_len = strlen(d);
		return 0;
	}
	r = read_full_fd(STDIN_FILENO, MCCTL_MAX_DATA, ret, ret_len);
	if (r < 0)
		fprintf(stderr, "mcctl: cannot read stdin: %s\n", strerror(-r));
	return r;
}

static int exit_for_status(int status)
{
	if (status == MC_STATUS_OK)
		return 0;
	if (status > 0 && status < _MC_STATUS_MAX)
		return MCCTL_EXIT_STATUS + status;
	return MCCTL_EXIT_UNKNOWN;
}

static int do_call(const char *name, const void *data, size_t len, bool newline)
{
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	_cleanup_(mc_reply_freep) struct mc_reply *reply = NULL;
	const char *sname;
	int r;

	if (connect_relay(&c) < 0)
		return MCCTL_EXIT_FAILURE;
	r = mc_call(c, name, arg_method, data, len, (int)arg_timeout_ms, &reply);
	if (r < 0) {
		fprintf(stderr, "mcctl: call '%s': %s\n", name, strerror(-r));
		return MCCTL_EXIT_FAILURE;
	}
	if (r != MC_STATUS_OK) {
		sname = mc_status_to_string(r);
		if (sname)
			fprintf(stderr, "%s", sname);
		else
			fprintf(stderr, "STATUS_%d", r);
		fprintf(stderr, "%s%s\n", *reply->error ? ": " : "", reply->error);
	}
	if (reply->len > 0 && fwrite(reply->body, 1, reply->len, stdout) != reply->len)
		return MCCTL_EXIT_FAILURE;
	if (newline && reply->len > 0 && ((char *)reply->body)[reply->len - 1] != '\n')
		putchar('\n');
	if (fflush(stdout) != 0)
		return MCCTL_EXIT_FAILURE;
	return exit_for_status(r);
}

/* ---- serve ---- */

/*
 * Runs @argv with @in (@in_len bytes) on its stdin and collects its stdout in *ret_out. Both
 * pipes are driven by one poll() loop, so a command that writes before reading all its input
 * cannot deadlock against us. The child is killed when @deadline_ns (CLOCK_REALTIME) passes.
 * Returns the wait status, or -errno.
 */
static int run_command(char **argv, const void *in, size_t in_len, uint64_t deadline_ns,
		       char **ret_out, size_t *ret_len)
{
	int in_pipe[2] = { -EBADF, -EBADF }, out_pipe[2] = { -EBADF, -EBADF };
	posix_spawn_file_actions_t fa;
	_cleanup_free_ char *out = NULL;
	size_t out_len = 0, out_cap = 0, in_off = 0;
	bool killed = false;
	pid_t pid;
	int r, ws;

	if (pipe2(in_pipe, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0) {
		r = -errno;
		goto out_close;
	}
	r = -posix_spawn_file_actions_init(&fa);
	if (r < 0)
		goto out_close;
	/* dup2 clears O_CLOEXEC on the copies; the originals close at exec. */
	r = -posix_spawn_file_actions_adddup2(&fa, in_pipe[0], STDIN_FILENO);
	if (r == 0)
		r = -posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
	if (r == 0)
		r = -posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r < 0)
		goto out_close;
	close(TAKE_FD(in_pipe[0]));
	close(TAKE_FD(out_pipe[1]));
	(void)fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
	if (in_len == 0)
		close(TAKE_FD(in_pipe[1]));

	while (out_pipe[0] >= 0) {
		struct pollfd pfd[2] = { { .fd = out_pipe[0], .events = POLLIN },
					 { .fd = in_pipe[1], .events = POLLOUT } };
		int timeout = -1;
		ssize_t n;

		if (deadline_ns && !killed) {
			struct timespec ts;
			uint64_t now;

			clock_gettime(CLOCK_REALTIME, &ts);
			now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
			if (now >= deadline_ns) {
				/* The relay has answered DEADLINE_EXCEEDED already. */
				kill(pid, SIGKILL);
				killed = true;
			} else {
				timeout = (int)((deadline_ns - now) / 1000000u) + 1;
			}
		}
		if (poll(pfd, in_pipe[1] >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			if (out_cap - out_len < 4096) {
				size_t cap = out_cap ? out_cap * 2 : 8192;
				char *nb;

				if (cap > MCCTL_MAX_DATA) {
					kill(pid, SIGKILL);
					killed = true;
					close(TAKE_FD(out_pipe[0]));
					break;
				}
				nb = realloc(out, cap);
				if (!nb) {
					r = -ENOMEM;
					kill(pid, SIGKILL);
					close(TAKE_FD(out_pipe[0]));
					break;
				}
				out = nb;
				out_cap = cap;
			}
			n = read(out_pipe[0], out + out_len, out_cap - out_len);
			if (n > 0)
				out_len += (size_t)n;
			else if (n == 0 || errno != EINTR)
				close(TAKE_FD(out_pipe[0]));
		}
		if (in_pipe[1] >= 0 && pfd[1].revents) {
			n = write(in_pipe[1], (const char *)in + in_off, in_len - in_off);
			if (n > 0)
				in_off += (size_t)n;
			/* EPIPE: the command does not want the rest of its input. */
			if ((n < 0 && errno != EINTR && errno != EAGAIN) || in_off == in_len)
				close(TAKE_FD(in_pipe[1]));
		}
	}
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR) {
			r = -errno;
			goto out_close;
		}
	if (r == 0 && killed)
		r = -ETIMEDOUT;
	if (r == 0) {
		*ret_out = TAKE_PTR(out);
		*ret_len = out_len;
		r = ws;
	}
out_close:
	for (int i = 0; i < 2; i++) {
		if (in_pipe[i] >= 0)
			close(in_pipe[i]);
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
	}
	return r;
}

/* One request at a time: the command runs while the loop waits, which keeps the tool simple;
 * run several `mcctl serve` for concurrency (they form a load-balanced group). */
static void on_serve_request(struct mc_client *c, const struct mc_request *req, void *userdata)
{
	char **argv = userdata;
	_cleanup_free_ char *out = NULL;
	char err[128];
	size_t len = 0;
	int r;

	r = run_command(argv, req->body, req->len, req->deadline_ns, &out, &len);
	if (r == -ETIMEDOUT) {
		/* The relay has answered the caller already and drops this; said for the record. */
		(void)mc_respond_error(c, req->token, MC_STATUS_DEADLINE_EXCEEDED,
				       "the command was killed at the deadline");
		return;
	}
	if (r < 0) {
		snprintf(err, sizeof(err), "cannot run '%s': %s", argv[0], strerror(-r));
		fprintf(stderr, "mcctl: %s\n", err);
		(void)mc_respond_error(c, req->token, MC_STATUS_BAD_REQUEST, err);
		return;
	}
	if (WIFEXITED(r) && WEXITSTATUS(r) == 0) {
		(void)mc_respond(c, req->token, MC_STATUS_OK, out, len);
		return;
	}
	if (WIFEXITED(r))
		snprintf(err, sizeof(err), "'%s' exited with status %d", argv[0], WEXITSTATUS(r));
	else
		snprintf(err, sizeof(err), "'%s' killed by signal %d", argv[0],
			 WIFSIGNALED(r) ? WTERMSIG(r) : 0);
	(void)mc_respond_error(c, req->token, MC_STATUS_BAD_REQUEST, err);
}

static int do_serve(const char *name, char **cmd)
{
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	int r;

	if (connect_relay(&c) < 0)
		return MCCTL_EXIT_FAILURE;
	r = mc_register(c, name, on_serve_request, cmd);
	if (r != 0) {
		fprintf(stderr, "mcctl: cannot register '%s': %s\n", name,
			r < 0 ? strerror(-r) : mc_status_to_string(r));
		return r < 0 ? MCCTL_EXIT_FAILURE : exit_for_status(r);
	}
	r = mc_serve(c);
	fprintf(stderr, "mcctl: connection to the relay ended: %s\n", strerror(-r));
	return MCCTL_EXIT_FAILURE;
}

/* ---- pub/sub ---- */

static int do_pub(const char *name, const void *data, size_t len)
{
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	int r;

	if (connect_relay(&c) < 0)
		return MCCTL_EXIT_FAILURE;
	r = mc_publish(c, name, data, len);
	if (r == 0)
		r = mc_client_flush(c, 10000);
	if (r > 0) {
		fprintf(stderr, "%s\n", mc_status_to_string(r));
		return exit_for_status(r);
	}
	if (r < 0) {
		fprintf(stderr, "mcctl: publish '%s': %s\n", name, strerror(-r));
		return MCCTL_EXIT_FAILURE;
	}
	return 0;
}

static void on_message(struct mc_client *c, const char *name, const struct mc_header *headers,
		       size_t n_headers, const void *body, size_t len, void *userdata)
{
	fwrite(body, 1, len, stdout);
	if (len == 0 || ((const char *)body)[len - 1] != '\n')
		putchar('\n');
	fflush(stdout);
}

static int do_sub(const char *pattern)
{
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	int r;

	if (connect_relay(&c) < 0)
		return MCCTL_EXIT_FAILURE;
	r = mc_subscribe(c, pattern, on_message, NULL);
	if (r != 0) {
		fprintf(stderr, "mcctl: cannot subscribe to '%s': %s\n", pattern,
			r < 0 ? strerror(-r) : mc_status_to_string(r));
		return r < 0 ? MCCTL_EXIT_FAILURE : exit_for_status(r);
	}
	r = mc_serve(c);
	fprintf(stderr, "mcctl: connection to the relay ended: %s\n", strerror(-r));
	return MCCTL_EXIT_FAILURE;
}

/* The $sys service @what, on --node's relay if set. Returns a malloc'ed name or NULL. */
static char *sys_name(const char *what)
{
	char *n = NULL;

	if (asprintf(&n, "$sys.%s%s%s", what, arg_node ? "@" : "", arg_node ? arg_node : "") < 0)
		return NULL;
	return n;
}

/* peers: $sys.peers as a table of links, then the peers that are not linked and why. */
static int do_peers(void)
{
	_cleanup_(mc_client_freep) struct mc_client *c = NULL;
	_cleanup_(mc_reply_freep) struct mc_reply *reply = NULL;
	_cleanup_free_ char *name = sys_name("peers");
	json_auto_t *j = NULL;
	json_error_t err;
	json_t *v;
	size_t i;
	int r;

	if (!name)
		return MCCTL_EXIT_FAILURE;
	if (arg_json)
		return do_call(name, NULL, 0, true);
	if (connect_relay(&c) < 0)
		return MCCTL_EXIT_FAILURE;
	r = mc_call(c, name, "", NULL, 0, (int)arg_timeout_ms, &reply);
	if (r < 0) {
		fprintf(stderr, "mcctl: call '%s': %s\n", name, strerror(-r));
		return MCCTL_EXIT_FAILURE;
	}
	if (r != MC_STATUS_OK) {
		fprintf(stderr, "%s%s%s\n", mc_status_to_string(r) ?: "?",
			*reply->error ? ": " : "", reply->error);
		return exit_for_status(r);
	}
	j = json_loadb(reply->body, reply->len, 0, &err);
	if (!j) {
		fprintf(stderr, "mcctl: unparsable answer: %s\n", err.text);
		return MCCTL_EXIT_FAILURE;
	}
	printf("node %s\n", json_string_value(json_object_get(j, "node")) ?: "?");
	printf("%-24s %-24s %-4s %-9s %9s %9s %7s %7s\n", "NODE", "ADDR", "DIR", "STATE", "RTT_MS",
	       "CLOCK_MS", "ROUTES", "INFLIGHT");
	json_array_foreach(json_object_get(j, "links"), i, v)
	{
		json_t *clock = json_object_get(v, "clock_offset_ms");
		char offset[32] = "-";

		if (json_is_number(clock))
			snprintf(offset, sizeof(offset), "%+.1f", json_number_value(clock));
		printf("%-24s %-24s %-4s %-9s %9.3f %9s %7zu %7lld\n",
		       json_string_value(json_object_get(v, "node")) ?: "?",
		       json_string_value(json_object_get(v, "addr")) ?: "?",
		       json_string_value(json_object_get(v, "direction")) ?: "?",
		       json_string_value(json_object_get(v, "state")) ?: "?",
		       json_number_value(json_object_get(v, "rtt_ms")), offset,
		       json_array_size(json_object_get(v, "routes")),
		       (long long)(json_integer_value(json_object_get(v, "requests_in")) +
				   json_integer_value(json_object_get(v, "requests_out"))));
	}
	json_array_foreach(json_object_get(j, "peers"), i, v)
	{
		const char *state = json_string_value(json_object_get(v, "state")) ?: "?";
		const char *e = json_string_value(json_object_get(v, "last_error"));

		if (strcmp(state, "linked") == 0)
			continue;
		printf("peer %s (%s): %s%s%s\n",
		       json_string_value(json_object_get(v, "addr"))	     ?:
			       json_string_value(json_object_get(v, "peer")) ?:
									       "?",
		       json_string_value(json_object_get(v, "peer")) ?: "?", state, e ? ": " : "",
		       e ? e : "");
	}
	return fflush(stdout) == 0 ? 0 : MCCTL_EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "method", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "node", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	const char *cmd;
	int c;

	/* '+': options stop at the command, so that serve's CMD keeps its own options. */
	while ((c = getopt_long(argc, argv, "+s:m:t:n:h", options, NULL)) >= 0) {
		switch (c) {
		case 's':
			arg_socket = optarg;
			break;
		case 'm':
			arg_method = optarg;
			break;
		case 't':
			if (safe_atou32_range(optarg, 1, 24u * 3600 * 1000, &arg_timeout_ms) < 0)
				return usage("--timeout takes milliseconds, 1..86400000");
			break;
		case 'n':
			arg_node = optarg;
			break;
		case 'J':
			arg_json = true;
			break;
		case 'h':
			help();
			return 0;
		default:
			return usage("unknown option");
		}
	}
	if (optind >= argc)
		return usage("missing command");
	cmd = argv[optind++];
	/* A command that dies on a closed pipe must not take mcctl serve with it. */
	signal(SIGPIPE, SIG_IGN);

	if (strcmp(cmd, "call") == 0 || strcmp(cmd, "pub") == 0) {
		if (optind >= argc)
			return usage("missing NAME");
		if (argc - optind > 2)
			return usage("too many arguments");
		if (get_data(argc, argv, optind + 1, &data, &len) < 0)
			return MCCTL_EXIT_FAILURE;
		if (cmd[0] == 'c')
			return do_call(argv[optind], data, len, false);
		return do_pub(argv[optind], data, len);
	}
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "stats") == 0 || strcmp(cmd, "peers") == 0) {
		_cleanup_free_ char *name = NULL;

		if (optind < argc)
			return usage("too many arguments");
		if (cmd[0] == 'p')
			return do_peers();
		name = sys_name(cmd[0] == 'l' ? "list" : "stats");
		if (!name)
			return MCCTL_EXIT_FAILURE;
		return do_call(name, NULL, 0, true);
	}
	if (strcmp(cmd, "serve") == 0) {
		const char *name;

		if (optind >= argc)
			return usage("missing NAME");
		name = argv[optind++];
		if (optind < argc && strcmp(argv[optind], "--") == 0)
			optind++;
		if (optind >= argc)
			return usage("missing CMD after NAME --");
		return do_serve(name, argv + optind);
	}
	if (strcmp(cmd, "sub") == 0) {
		if (argc - optind != 1)
			return usage("sub takes one PATTERN");
		return do_sub(argv[optind]);
	}
	return usage("unknown command");
}
