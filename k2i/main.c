/* SPDX-License-Identifier: MIT */
/*
 * k2i: the host's process table as JSON over HTTPS (HTTP/2 with HTTP/1.1 fallback), with mutual
 * TLS. A single-threaded libevent loop; see README.md and ARCHITECTURE.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "k2i/config.h"
#include "k2i/events.h"
#include "k2i/instances.h"
#include "k2i/lifecycle.h"
#include "k2i/metrics.h"
#include "k2i/routes.h"
#include "k2i/server.h"
#include "libcommon/certgen.h"
#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/paths.h"
#include "libcommon/tls.h"

DEFINE_CLEANUP_FUNC(struct event_base, event_base_free)
DEFINE_CLEANUP_FUNC(struct event, event_free)
DEFINE_CLEANUP_FUNC(struct routes, routes_free)
DEFINE_CLEANUP_FUNC(struct k2i_server, server_free)
DEFINE_CLEANUP_FUNC(struct event_hub, event_hub_free)
DEFINE_CLEANUP_FUNC(struct lifecycle, lifecycle_free)
DEFINE_CLEANUP_FUNC(struct instances, instances_free)

static const char *arg_config = NULL;
static bool arg_check_config = false;
static bool arg_usage_error = false; /* exit status 2 */

enum {
	ARG_CHECK_CONFIG = 0x100,
	ARG_LOG_LEVEL,
	ARG_STATE_DIR,
	ARG_RUNDIR,
	ARG_LISTEN,
	ARG_TLS_CERT,
	ARG_TLS_KEY,
	ARG_TLS_CA,
	ARG_TOKEN_FILE,
	ARG_NO_BPF,
	ARG_VERSION,
};

static const struct option options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
	{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
	{ "state-dir", required_argument, NULL, ARG_STATE_DIR },
	{ "rundir", required_argument, NULL, ARG_RUNDIR },
	{ "listen", required_argument, NULL, ARG_LISTEN },
	{ "tls-cert", required_argument, NULL, ARG_TLS_CERT },
	{ "tls-key", required_argument, NULL, ARG_TLS_KEY },
	{ "tls-ca", required_argument, NULL, ARG_TLS_CA },
	{ "token-file", required_argument, NULL, ARG_TOKEN_FILE },
	{ "no-bpf", no_argument, NULL, ARG_NO_BPF },
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
	case ARG_LISTEN:
		return "listen";
	case ARG_TLS_CERT:
		return "tls_cert";
	case ARG_TLS_KEY:
		return "tls_key";
	case ARG_TLS_CA:
		return "tls_ca";
	case ARG_TOKEN_FILE:
		return "token_file";
	case ARG_NO_BPF:
		return "no_bpf";
	default:
		return NULL;
	}
}

static void help(void)
{
	printf("Usage: k2i [OPTIONS]\n"
	       "Serve this host's process table as JSON over HTTPS (HTTP/2 and HTTP/1.1).\n\n"
	       "  -c, --config FILE      configuration file (default " K2I_DEFAULT_CONFIG
	       " if it exists)\n"
	       "      --check-config     check the configuration, print it, and exit\n"
	       "      --log-level LEVEL  err, warning, notice, info or debug\n"
	       "      --state-dir DIR    generated TLS material (ca.pem node.pem client.pem ...)\n"
	       "      --rundir DIR       sockets and instance records\n"
	       "      --listen ADDR:PORT listen address, repeatable (default :%d)\n"
	       "      --tls-cert FILE    server certificate (with --tls-key and --tls-ca)\n"
	       "      --tls-key FILE     server private key\n"
	       "      --tls-ca FILE      CA that signs client certificates\n"
	       "      --token-file FILE  also accept these bearer tokens\n"
	       "      --no-bpf           process events from the process connector (or polling)\n"
	       "  -h, --help             show this help\n"
	       "      --version          show the version\n\n"
	       "With no TLS material configured, a private CA, a node certificate and a client\n"
	       "certificate are generated in the state directory on first run.\n",
	       K2I_DEFAULT_PORT);
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "k2i: %s '%s'", what, arg);
	fprintf(stderr, "\nTry 'k2i --help' for more information.\n");
	arg_usage_error = true;
	return -EINVAL;
}

/*
 * Parses the command line in two passes: the first finds --config and --help, the second (after
 * the file was read) applies the overrides, so flags always win over the file.
 */
static int parse_argv(int argc, char **argv, struct k2i_config *cfg, bool apply)
{
	bool listen_seen = false;
	int opt, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
		const char *key = option_key(opt);

		if (opt == 'h') {
			help();
			return 0;
		} else if (opt == ARG_VERSION) {
			printf("k2i 0.1.0\n");
			return 0;
		} else if (opt == 'c') {
			arg_config = optarg;
		} else if (opt == ARG_CHECK_CONFIG) {
			arg_check_config = true;
		} else if (opt == '?') {
			/* getopt_long() already said what was wrong. */
			fprintf(stderr, "Try 'k2i --help' for more information.\n");
			arg_usage_error = true;
			return -EINVAL;
		} else if (key && apply) {
			/* The first --listen replaces the configured list; later ones add to it. */
			r = conf_set(k2i_config_items, k2i_config_n_items, cfg, key,
				     opt == ARG_NO_BPF ? "yes" : optarg,
				     opt == ARG_LISTEN ? !listen_seen : true);
			if (opt == ARG_LISTEN)
				listen_seen = true;
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

static int print_config(const struct k2i_config *cfg)
{
	for (size_t i = 0; i < k2i_config_n_items; i++) {
		_cleanup_free_ char *v = NULL;

		if (conf_format_value(&k2i_config_items[i], cfg, &v) < 0)
			return log_oom();
		printf("%s = %s\n", k2i_config_items[i].key, v);
	}
	return 0;
}

/* Without configured TLS material, uses (and on first run creates) the state directory's. */
static int setup_tls_material(struct k2i_config *cfg)
{
	char host[256] = "localhost";
	bool created = false;
	int r;

	if (cfg->tls_cert)
		return 0;
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	r = certgen_ensure(cfg->state_dir, host, &created);
	if (r < 0)
		return log_err_errno(r, "Cannot set up TLS material in '%s': %m", cfg->state_dir);
	if (path_join(cfg->state_dir, "node.pem", &cfg->tls_cert) < 0 ||
	    path_join(cfg->state_dir, "node.key", &cfg->tls_key) < 0 ||
	    path_join(cfg->state_dir, "ca.pem", &cfg->tls_ca) < 0)
		return log_oom();
	if (created)
		log_notice(
			"Generated a private CA and node and client certificates in '%s'. "
			"Clients authenticate with client.pem/client.key; copy ca.pem and ca.key "
			"to other hosts' state directories to make them share this CA.",
			cfg->state_dir);
	else
		log_info("Using TLS material in '%s'", cfg->state_dir);
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
	static const char *const alpn[] = { "h2", "http/1.1", NULL };
	_cleanup_(event_base_freep) struct event_base *base = NULL;
	_cleanup_(event_freep) struct event *sigint = NULL;
	_cleanup_(event_freep) struct event *sigterm = NULL;
	_cleanup_(SSL_CTX_freep) SSL_CTX *ssl_ctx = NULL;
	_cleanup_(event_hub_freep) struct event_hub *hub = NULL;
	_cleanup_(routes_freep) struct routes *routes = NULL;
	/* After routes, so freed before it: routes borrows it. */
	_cleanup_(instances_freep) struct instances *instances = NULL;
	_cleanup_(lifecycle_freep) struct lifecycle *lifecycle = NULL;
	_cleanup_(server_freep) struct k2i_server *server = NULL;
	_cleanup_free_ char *err = NULL;
	struct k2i_config cfg;
	struct k2i_metrics metrics = { 0 };
	struct tls_config tls;
	int r;

	r = k2i_config_init(&cfg);
	if (r < 0)
		return log_oom();
	r = parse_argv(argc, argv, &cfg, false);
	if (r <= 0)
		goto out;
	r = conf_parse_file(k2i_config_items, k2i_config_n_items, &cfg,
			    arg_config ? arg_config : K2I_DEFAULT_CONFIG, &err);
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
	r = k2i_config_validate(&cfg, &err);
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

	r = setup_tls_material(&cfg);
	if (r < 0)
		goto out;
	tls = (struct tls_config){
		.cert_file = cfg.tls_cert,
		.key_file = cfg.tls_key,
		.ca_file = cfg.tls_ca,
		.alpn = alpn,
		/* Handshakes succeed without a valid client certificate so that such clients get
		 * a 401/403 JSON answer instead of a bare TLS alert; routes.c enforces it. */
		.require_peer_cert = false,
	};
	r = tls_server_ctx_new(&tls, &ssl_ctx);
	if (r < 0) {
		log_err_errno(r, "Cannot set up TLS with '%s', '%s' and '%s': %m", cfg.tls_cert,
			      cfg.tls_key, cfg.tls_ca);
		goto out;
	}

	metrics.start_time = (double)time(NULL);
	r = event_hub_new(cfg.exits_max, (size_t)cfg.stream_backlog_kb * 1024, &hub);
	if (r < 0) {
		log_oom();
		goto out;
	}
	r = routes_new(&cfg, &metrics, hub, &routes);
	if (r < 0)
		goto out;
	base = event_base_new();
	if (!base) {
		r = log_oom();
		goto out;
	}
	/* Without the instance directory k2i still serves processes; the routes then say why. */
	r = instances_new(base, cfg.rundir, &instances);
	if (r < 0)
		log_warn_errno(r,
			       "Cannot watch the instance records under '%s', not reporting "
			       "instances: %m",
			       cfg.rundir);
	else
		routes_set_instances(routes, instances);
	{
		struct lifecycle_options lo = {
			.no_bpf = cfg.no_bpf,
			.reconcile_interval_s = cfg.reconcile_interval_s,
			.cmdline_max = cfg.cmdline_max,
		};

		r = lifecycle_new(base, &lo, hub, routes, &lifecycle);
		if (r < 0) {
			log_err_errno(r, "Cannot start process lifecycle events: %m");
			goto out;
		}
		routes_set_lifecycle(routes, lifecycle);
	}
	r = server_new(base, &cfg, ssl_ctx, routes, &metrics, &server);
	if (r < 0)
		goto out;
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0) {
		r = log_oom();
		goto out;
	}
	log_info("k2i 0.1.0 ready (pid %d)", (int)getpid());
	if (event_base_dispatch(base) < 0)
		r = log_err_errno(EIO, "Event loop failed");
	server = server_free(server);
out:
	k2i_config_done(&cfg);
	return r;
}

int main(int argc, char **argv)
{
	int r = run(argc, argv);

	if (arg_usage_error)
		return 2;
	return r < 0 ? 1 : 0;
}
