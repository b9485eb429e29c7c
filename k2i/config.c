/* SPDX-License-Identifier: MIT */
#include "k2i/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/paths.h"
#include "libcommon/strutil.h"

#define ITEM(k, t, m, lo, hi, h) CONF_ITEM(k, t, struct k2i_config, m, lo, hi, false, h)

static const struct conf_item items[] = {
	ITEM("listen", CONF_STRV, listen, 0, 0,
	     "HTTPS listen addresses (ADDR:PORT, [V6]:PORT, :PORT)"),
	ITEM("state_dir", CONF_STRING, state_dir, 0, 0, "directory of generated TLS material"),
	ITEM("rundir", CONF_STRING, rundir, 0, 0, "directory of sockets and instance records"),
	ITEM("tls_cert", CONF_STRING, tls_cert, 0, 0, "server certificate chain (PEM)"),
	ITEM("tls_key", CONF_STRING, tls_key, 0, 0, "server private key (PEM)"),
	ITEM("tls_ca", CONF_STRING, tls_ca, 0, 0, "CA bundle for client certificates (PEM)"),
	ITEM("allowed_sans", CONF_STRV, allowed_sans, 0, 0,
	     "client certificate names allowed (empty: any the CA signed)"),
	ITEM("token_file", CONF_STRING, token_file, 0, 0, "bearer token file (optional)"),
	ITEM("scan_max_age_ms", CONF_U32, scan_max_age_ms, 0, 60000,
	     "requests within this many ms share one /proc scan"),
	ITEM("cmdline_max", CONF_U32, cmdline_max, 256, 1024 * 1024,
	     "bytes of a command line exported before it is truncated"),
	ITEM("proc_cache_ttl_ms", CONF_U32, proc_cache_ttl_ms, 0, 600000,
	     "reuse a process's cmdline, exe, cgroup and ns for this long unless it execs (0: never)"),
	ITEM("exits_max", CONF_U32, exits_max, 1, 1000000, "recent exits kept for /v1/exits"),
	ITEM("stream_backlog_kb", CONF_U32, stream_backlog_kb, 16, 1024 * 1024,
	     "an event stream whose client lets more queue up is cut off"),
	ITEM("max_connections", CONF_U32, max_connections, 1, 65536, "connections at once"),
	ITEM("max_header_bytes", CONF_U32, max_header_bytes, 1024, 65536,
	     "request header size limit"),
	ITEM("max_streams", CONF_U32, max_streams, 1, 1000, "HTTP/2 streams per connection"),
	ITEM("idle_timeout_s", CONF_U32, idle_timeout_s, 1, 86400, "idle connection timeout"),
	ITEM("no_bpf", CONF_BOOL, no_bpf, 0, 0,
	     "never load the BPF program (process connector or polling)"),
	ITEM("reconcile_interval_s", CONF_U32, reconcile_interval_s, 1, 3600,
	     "seconds between /proc scans that reconcile the live process table"),
	ITEM("log_level", CONF_LOG_LEVEL, log_level, 0, 0, "err, warning, notice, info or debug"),
};

const struct conf_item *const k2i_config_items = items;
const size_t k2i_config_n_items = ELEMENTSOF(items);

int k2i_config_init(struct k2i_config *c)
{
	int r;

	*c = (struct k2i_config){
		.scan_max_age_ms = 1000,
		.cmdline_max = 4096,
		.proc_cache_ttl_ms = 10000,
		.exits_max = 4096,
		.stream_backlog_kb = 1024,
		.max_connections = 1024,
		.max_header_bytes = 8192,
		.max_streams = 100,
		.idle_timeout_s = 60,
		.reconcile_interval_s = 30,
		.log_level = LOG_INFO,
	};
	r = strv_extend(&c->listen, ":9400");
	if (r < 0)
		return r;
	r = paths_default_state_dir(&c->state_dir);
	if (r < 0)
		return r;
	return paths_default_rundir(&c->rundir);
}

void k2i_config_done(struct k2i_config *c)
{
	conf_done(k2i_config_items, k2i_config_n_items, c);
}

static int fail(char **ret_error, const char *msg)
{
	*ret_error = strdup(msg);
	return -EINVAL;
}

int k2i_config_validate(const struct k2i_config *c, char **ret_error)
{
	bool any_tls = c->tls_cert || c->tls_key || c->tls_ca;

	if (any_tls && !(c->tls_cert && c->tls_key && c->tls_ca))
		return fail(ret_error, "tls_cert, tls_key and tls_ca must be set together "
				       "(or none of them, to use generated material)");
	if (!c->tls_cert && (!c->state_dir || !*c->state_dir))
		return fail(ret_error, "state_dir is required when no TLS material is configured");
	if (strv_length(c->listen) == 0)
		return fail(ret_error, "at least one listen address is required");
	return 0;
}
