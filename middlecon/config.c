/* SPDX-License-Identifier: MIT */
#include "middlecon/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/fdutil.h"
#include "libcommon/paths.h"
#include "libcommon/strutil.h"
#include "middlecon/acl.h"

#define CONFIG_FILE_MAX (1024 * 1024)

#define ITEM(k, t, m, lo, hi, h) CONF_ITEM(k, t, struct middlecon_config, m, lo, hi, false, h)

/*
 * The limits are clamped so that one connection can never make the relay hold more than
 * max_frame + output_buffer bytes for it: 64 MiB frames and a 1 GiB queue at the very most.
 */
static const struct conf_item items[] = {
	ITEM("state_dir", CONF_STRING, state_dir, 0, 0, "directory of persistent state"),
	ITEM("rundir", CONF_STRING, rundir, 0, 0, "directory of sockets and instance records"),
	ITEM("socket", CONF_STRING, socket, 0, 0, "local socket (default <rundir>/middlecon.sock)"),
	ITEM("max_frame_kb", CONF_U32, max_frame_kb, 1, 64 * 1024,
	     "largest frame accepted or sent, KiB"),
	ITEM("max_inflight", CONF_U32, max_inflight, 1, 1024 * 1024,
	     "requests one connection may have in flight"),
	ITEM("output_buffer_kb", CONF_U32, output_buffer_kb, 64, 1024 * 1024,
	     "per-connection output queue limit, KiB"),
	ITEM("default_deadline_ms", CONF_U32, default_deadline_ms, 1, 3600 * 1000,
	     "deadline of a request that sets none, ms"),
	ITEM("max_connections", CONF_U32, max_connections, 1, 65536, "connections at once"),
	ITEM("slow_consumer_timeout_ms", CONF_U32, slow_consumer_timeout_ms, 100, 3600 * 1000,
	     "close a connection whose queued output makes no progress this long, ms"),
	ITEM("acl_default", CONF_STRING, acl_default, 0, 0,
	     "allow or deny names no ACL rule covers (root is always allowed there); rules: "
	     "allow_register|deny_register|allow_call|deny_call = PREFIX uid=U,gid=G,*"),
	ITEM("log_level", CONF_LOG_LEVEL, log_level, 0, 0, "err, warning, notice, info or debug"),
	ITEM("node_name", CONF_STRING, node_name, 0, 0,
	     "this node's name (default: the identity in tls_cert)"),
	ITEM("listen", CONF_STRV, listen, 0, 0,
	     "peer link listen addresses, ADDR[:PORT] (port " MIDDLECON_PEER_PORT ")"),
	ITEM("peers", CONF_STRV, peers, 0, 0, "peers to link to, HOST[:PORT]"),
	ITEM("peer_dns", CONF_STRV, peer_dns, 0, 0,
	     "DNS names whose every A/AAAA record is a peer, NAME[:PORT]"),
	ITEM("peer_dns_refresh_s", CONF_U32, peer_dns_refresh_s, 1, 86400,
	     "how often peer_dns is resolved again, s"),
	ITEM("tls_cert", CONF_STRING, tls_cert, 0, 0,
	     "node certificate chain (PEM; default generated in state_dir)"),
	ITEM("tls_key", CONF_STRING, tls_key, 0, 0, "node private key (PEM)"),
	ITEM("tls_ca", CONF_STRING, tls_ca, 0, 0, "CA bundle that signs every node (PEM)"),
	ITEM("peer_heartbeat_ms", CONF_U32, peer_heartbeat_ms, 50, 600 * 1000,
	     "PING interval on a link, ms"),
	ITEM("peer_timeout_ms", CONF_U32, peer_timeout_ms, 100, 3600 * 1000,
	     "a link silent this long is dead, ms"),
	ITEM("peer_backoff_min_ms", CONF_U32, peer_backoff_min_ms, 10, 3600 * 1000,
	     "first reconnect delay, ms"),
	ITEM("peer_backoff_max_ms", CONF_U32, peer_backoff_max_ms, 10, 3600 * 1000,
	     "longest reconnect delay, ms"),
	ITEM("peer_max_inflight", CONF_U32, peer_max_inflight, 1, 16 * 1024 * 1024,
	     "requests one peer node may have in flight here"),
};

const struct conf_item *const middlecon_config_items = items;
const size_t middlecon_config_n_items = ELEMENTSOF(items);

int middlecon_config_init(struct middlecon_config *c)
{
	int r;

	*c = (struct middlecon_config){
		.max_frame_kb = 1024,
		.max_inflight = 1024,
		.output_buffer_kb = 4096,
		.default_deadline_ms = 30000,
		.max_connections = 4096,
		.slow_consumer_timeout_ms = 10000,
		.acl_default_allow = true,
		.log_level = LOG_INFO,
		.peer_dns_refresh_s = 30,
		.peer_heartbeat_ms = 1000,
		.peer_timeout_ms = 3000,
		.peer_backoff_min_ms = 100,
		.peer_backoff_max_ms = 5000,
		.peer_max_inflight = 65536,
	};
	/* Allow by default: a single-host start works before anyone writes rules. */
	c->acl_default = strdup("allow");
	c->acl = acl_new();
	if (!c->acl_default || !c->acl)
		return -ENOMEM;
	r = paths_default_state_dir(&c->state_dir);
	if (r < 0)
		return r;
	return paths_default_rundir(&c->rundir);
}

void middlecon_config_done(struct middlecon_config *c)
{
	conf_done(middlecon_config_items, middlecon_config_n_items, c);
	c->acl = acl_free(c->acl);
}

int middlecon_config_parse_file(struct middlecon_config *c, const char *path, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len, line = 0;
	int r;

	r = read_full_file_at(AT_FDCWD, path, CONFIG_FILE_MAX, &text, &len);
	if (r < 0)
		return r;
	/*
	 * A rule line keeps its blanks and commas, which the table's list type would split, so
	 * rule lines are taken out here and blanked (keeping the line numbers of the rest).
	 */
	for (char *s = text; s < text + len;) {
		char *eol = memchr(s, '\n', (size_t)(text + len - s));
		char *end = eol ? eol : text + len;
		char *k = (char *)skip_blanks(s), *ke = k;
		_cleanup_free_ char *key = NULL;
		_cleanup_free_ char *value = NULL;
		_cleanup_free_ char *err = NULL;

		line++;
		while (ke < end && *ke != '=' && *ke != ' ' && *ke != '\t')
			ke++;
		key = strndup(k, (size_t)(ke - k));
		if (!key)
			return -ENOMEM;
		if (k < end && *k != '#' && acl_is_key(key)) {
			char *v = (char *)skip_blanks(ke);

			if (v >= end || *v != '=') {
				if (ret_error &&
				    asprintf(ret_error, "%s:%zu: expected '='", path, line) < 0)
					*ret_error = NULL;
				return -EINVAL;
			}
			value = strndup(v + 1, (size_t)(end - v - 1));
			if (!value)
				return -ENOMEM;
			r = acl_add(c->acl, key, value, &err);
			if (r < 0) {
				if (ret_error && asprintf(ret_error, "%s:%zu: %s: %s", path, line,
							  key, err ? err : strerror(-r)) < 0)
					*ret_error = NULL;
				return r;
			}
			memset(s, ' ', (size_t)(end - s));
		}
		s = end + 1;
	}
	return conf_parse_string(middlecon_config_items, middlecon_config_n_items, c, path, text,
				 len, ret_error);
}

int middlecon_config_validate(struct middlecon_config *c, char **ret_error)
{
	if (!c->socket) {
		if (!c->rundir || !*c->rundir) {
			*ret_error = strdup("either rundir or socket must be set");
			return -EINVAL;
		}
		if (path_join(c->rundir, "middlecon.sock", &c->socket) < 0)
			return -ENOMEM;
	}
	if (!*c->socket) {
		*ret_error = strdup("socket must not be empty");
		return -EINVAL;
	}
	if (c->acl_default && strcmp(c->acl_default, "allow") == 0) {
		c->acl_default_allow = true;
	} else if (c->acl_default && strcmp(c->acl_default, "deny") == 0) {
		c->acl_default_allow = false;
	} else {
		if (asprintf(ret_error, "acl_default must be 'allow' or 'deny', not '%s'",
			     c->acl_default ? c->acl_default : "") < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	acl_set_default(c->acl, c->acl_default_allow);
	if (c->peer_backoff_min_ms > c->peer_backoff_max_ms) {
		*ret_error = strdup("peer_backoff_min_ms must not exceed peer_backoff_max_ms");
		return -EINVAL;
	}
	if (c->peer_timeout_ms <= c->peer_heartbeat_ms) {
		*ret_error = strdup("peer_timeout_ms must exceed peer_heartbeat_ms");
		return -EINVAL;
	}
	if ((c->tls_cert || c->tls_key || c->tls_ca) && !(c->tls_cert && c->tls_key && c->tls_ca)) {
		*ret_error = strdup("tls_cert, tls_key and tls_ca must be set together");
		return -EINVAL;
	}
	if (c->node_name && !node_name_valid(c->node_name)) {
		if (asprintf(ret_error, "invalid node_name '%s'", c->node_name) < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	return 0;
}

bool middlecon_config_mesh(const struct middlecon_config *c)
{
	return strv_length(c->listen) > 0 || strv_length(c->peers) > 0 ||
	       strv_length(c->peer_dns) > 0;
}

bool node_name_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= NODE_NAME_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}
