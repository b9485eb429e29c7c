/* SPDX-License-Identifier: MIT */
/*
 * middlecon: the host's request/reply relay between runtimes, sandboxes and microVM monitors,
 * on a Unix socket. A single-threaded libevent loop; see docs/middlecon-protocol.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/log.h"
#include "middlecon/acl.h"
#include "middlecon/config.h"
#include "middlecon/relay.h"

DEFINE_CLEANUP_FUNC(struct event_base, event_base_free)
DEFINE_CLEANUP_FUNC(struct event, event_free)
DEFINE_CLEANUP_FUNC(struct relay, relay_free)

static const char *arg_config = NULL;
static bool arg_check_config = false;
static bool arg_usage_error = false; /* exit status 2 */

enum {
	ARG_CHECK_CONFIG = 0x100,
	ARG_LOG_LEVEL,
	ARG_STATE_DIR,
	ARG_RUNDIR,
	ARG_SOCKET,
	ARG_VERSION,
	ARG_LISTEN,
	ARG_PEER,
	ARG_PEER_DNS,
	ARG_NODE_NAME,
};

static const struct option options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
	{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
	{ "state-dir", required_argument, NULL, ARG_STATE_DIR },
	{ "rundir", required_argument, NULL, ARG_RUNDIR },
	{ "socket", required_argument, NULL, ARG_SOCKET },
	{ "listen", required_argument, NULL, ARG_LISTEN },
	{ "peer", required_argument, NULL, ARG_PEER },
	{ "peer-dns", required_argument, NULL, ARG_PEER_DNS },
	{ "node-name", required_argument, NULL, ARG_NODE_NAME },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, ARG_VERSION },
	{},
};

/* Which config key each option sets (NULL: handled in parse_argv()). */
static const char *option_key(int opt)
{
	switch (opt) {
	case ARG_LOG_LEVEL:
		return "log_level";
	case ARG_STATE_DIR:
		return "state_dir";
	case ARG_RUNDIR:
		return "rundir";
	case ARG_SOCKET:
		return "socket";
	case ARG_LISTEN:
		return "listen";
	case ARG_PEER:
		return "peers";
	case ARG_PEER_DNS:
		return "peer_dns";
	case ARG_NODE_NAME:
		return "node_name";
	default:
		return NULL;
	}
}

static void help(void)
{
	printf("Usage: middlecon [OPTIONS]\n"
	       "Relay request/reply and publish/subscribe messages between local programs.\n\n"
	       "  -c, --config FILE      configuration file (default " MIDDLECON_DEFAULT_CONFIG
	       " if it exists)\n"
	       "      --check-config     check the configuration, print it, and exit\n"
	       "      --log-level LEVEL  err, warning, notice, info or debug\n"
	       "      --state-dir DIR    persistent state\n"
	       "      --rundir DIR       runtime files (the socket's default directory)\n"
	       "      --socket PATH      local socket (default <rundir>/middlecon.sock)\n"
	       "      --listen ADDR[:PORT]  accept peer links (mutual TLS; port " MIDDLECON_PEER_PORT
	       ")\n"
	       "      --peer HOST[:PORT]    link to this peer (repeatable)\n"
	       "      --peer-dns NAME[:PORT]  link to every address NAME resolves to\n"
	       "      --node-name NAME   this node's name (default: its certificate's)\n"
	       "  -h, --help             show this help\n"
	       "      --version          show the version\n\n"
	       "Access control (in the configuration file, repeatable; see\n"
	       "docs/middlecon-protocol.md):\n"
	       "  allow_register = PREFIX PRINCIPAL...   who may REGISTER names under PREFIX\n"
	       "  deny_register  = PREFIX PRINCIPAL...\n"
	       "  allow_call     = PREFIX PRINCIPAL...   who may REQUEST, PUBLISH, SUBSCRIBE\n"
	       "  deny_call      = PREFIX PRINCIPAL...\n"
	       "  acl_default    = allow|deny            names no rule covers (default allow)\n"
	       "PRINCIPAL is uid=USER, gid=GROUP (names or numbers, primary gid) or *; PREFIX is\n"
	       "a string prefix of the name, '>' for all. The longest matching prefix decides; a\n"
	       "prefix with allow rules admits only those listed, and root, unless a deny rule\n"
	       "names it.\n");
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "middlecon: %s '%s'\nTry 'middlecon --help' for more information.\n", what,
		arg);
	arg_usage_error = true;
	return -EINVAL;
}

/*
 * Two passes, as k2i: the first finds --config and --help, the second (after the file was
 * read) applies the overrides, so flags always win over the file.
 */
static int parse_argv(int argc, char **argv, struct middlecon_config *cfg, bool apply)
{
	bool seen[ARG_NODE_NAME + 1] = { false };
	int opt, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
		const char *key = option_key(opt);

		if (opt == 'h') {
			help();
			return 0;
		} else if (opt == ARG_VERSION) {
			printf("middlecon 0.1.0\n");
			return 0;
		} else if (opt == 'c') {
			arg_config = optarg;
		} else if (opt == ARG_CHECK_CONFIG) {
			arg_check_config = true;
		} else if (opt == '?') {
			fprintf(stderr, "Try 'middlecon --help' for more information.\n");
			arg_usage_error = true;
			return -EINVAL;
		} else if (key && apply) {
			/* The first of a repeatable flag replaces the file's list; later ones add. */
			r = conf_set(middlecon_config_items, middlecon_config_n_items, cfg, key,
				     optarg, !seen[opt]);
			seen[opt] = true;
			if (r == -ENOMEM)
				return log_oom();
			if (r < 0)
				return usage_error("invalid value", optarg);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument", argv[optind]);
	return 1;
}

static int print_config(const struct middlecon_config *cfg)
{
	for (size_t i = 0; i < middlecon_config_n_items; i++) {
		_cleanup_free_ char *v = NULL;

		if (conf_format_value(&middlecon_config_items[i], cfg, &v) < 0)
			return log_oom();
		printf("%s = %s\n", middlecon_config_items[i].key, v);
	}
	acl_print(cfg->acl, stdout);
	return 0;
}

static void on_signal(evutil_socket_t sig, short events, void *userdata)
{
	struct event_base *base = userdata;

	log_info("Received %s, shutting down", strsignal((int)sig));
	event_base_loopexit(base, NULL);
}

static int run(int argc, char **argv)
{
	_cleanup_(event_base_freep) struct event_base *base = NULL;
	_cleanup_(event_freep) struct event *sigint = NULL;
	_cleanup_(event_freep) struct event *sigterm = NULL;
	_cleanup_(relay_freep) struct relay *relay = NULL;
	_cleanup_free_ char *err = NULL;
	struct middlecon_config cfg;
	int r;

	r = middlecon_config_init(&cfg);
	if (r < 0)
		return log_oom();
	r = parse_argv(argc, argv, &cfg, false);
	if (r <= 0)
		goto out;
	r = middlecon_config_parse_file(&cfg, arg_config ? arg_config : MIDDLECON_DEFAULT_CONFIG,
					&err);
	if (r == -ENOENT && !arg_config)
		r = 0; /* the default file is optional */
	if (r < 0) {
		log_err("Invalid configuration: %s", err ? err : strerror(-r));
		goto out;
	}
	r = parse_argv(argc, argv, &cfg, true);
	if (r <= 0)
		goto out;
	free(TAKE_PTR(err));
	r = middlecon_config_validate(&cfg, &err);
	if (r < 0) {
		log_err("Invalid configuration: %s", err ? err : "out of memory");
		goto out;
	}
	log_set_max_level(cfg.log_level);
	if (arg_check_config) {
		r = print_config(&cfg);
		goto out;
	}

	/* A peer that closes mid-write must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);

	base = event_base_new();
	if (!base) {
		r = log_oom();
		goto out;
	}
	r = relay_new(base, &cfg, &relay);
	if (r < 0) {
		log_err_errno(r, "Cannot listen on '%s': %m", cfg.socket);
		goto out;
	}
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0) {
		r = log_oom();
		goto out;
	}
	log_info("middlecon 0.1.0 ready (pid %d)", (int)getpid());
	if (event_base_dispatch(base) < 0)
		r = log_err_errno(EIO, "Event loop failed");
	/* Before the base goes: the relay's events belong to it. */
	relay = relay_free(relay);
out:
	middlecon_config_done(&cfg);
	return r;
}

int main(int argc, char **argv)
{
	int r = run(argc, argv);

	if (arg_usage_error)
		return 2;
	return r < 0 ? 1 : 0;
}
