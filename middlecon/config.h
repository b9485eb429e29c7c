/* SPDX-License-Identifier: MIT */
#pragma once

/* middlecon's configuration: defaults, the middlecon.conf table, and validation. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acl;
struct conf_item;

#define MIDDLECON_DEFAULT_CONFIG "/etc/k2i/middlecon.conf"

struct middlecon_config {
	char *state_dir; /* persistent state: generated TLS material for peer links */
	char *rundir; /* runtime files; the socket defaults to <rundir>/middlecon.sock */
	char *socket; /* the local socket's path; NULL until middlecon_config_validate() */
	uint32_t max_frame_kb; /* largest frame (4 + frame_len) accepted or sent, in KiB */
	uint32_t max_inflight; /* requests one connection may have in flight at once */
	uint32_t output_buffer_kb; /* per-connection output queue above which it is overloaded */
	uint32_t default_deadline_ms; /* deadline of a REQUEST whose deadline is 0 */
	uint32_t max_connections; /* connections at once; more are refused at accept */
	/*
	 * How long a connection with output queued may make no write progress before it is closed
	 * as a slow consumer (its reads are paused from the moment it is over output_buffer_kb).
	 */
	uint32_t slow_consumer_timeout_ms;
	char *acl_default; /* "allow" or "deny": names no ACL rule covers */
	bool acl_default_allow; /* acl_default, parsed by middlecon_config_validate() */
	struct acl *acl; /* owned; the allow_* and deny_* rules, never NULL after _init() */
	int log_level;

	/*
	 * The mesh (docs/middlecon-protocol.md, "Across hosts"). Peer links exist only when listen,
	 * peers or peer_dns is set; a relay with none of them serves its host alone.
	 */
	char *node_name; /* this node's name: the identity in tls_cert; NULL = from tls_cert */
	char **listen; /* peer link listen addresses, ADDR[:PORT] (strv) */
	char **peers; /* peers to dial, HOST[:PORT] (strv) */
	char **peer_dns; /* DNS names whose every address is a peer, NAME[:PORT] (strv) */
	uint32_t peer_dns_refresh_s; /* how often peer_dns is resolved again */
	char *tls_cert, *tls_key, *tls_ca; /* NULL = generated in state_dir (certgen.h) */
	uint32_t peer_heartbeat_ms; /* PING interval on an idle link */
	uint32_t peer_timeout_ms; /* a link that received nothing this long is dead */
	uint32_t peer_backoff_min_ms, peer_backoff_max_ms; /* reconnect delay range */
	uint32_t peer_max_inflight; /* requests one peer node may have in flight here */
};

/* The default TCP port of peer links. */
#define MIDDLECON_PEER_PORT "9401"

/* Node names are host names: 1..253 bytes of letters, digits, '.', '-' and '_'. */
#define NODE_NAME_MAX 253
bool node_name_valid(const char *s);

/* Whether @c asks for peer links at all. */
bool middlecon_config_mesh(const struct middlecon_config *c);

/* The key table of middlecon.conf (also used for --check-config). */
extern const struct conf_item *const middlecon_config_items;
extern const size_t middlecon_config_n_items;

/* Sets every default. Returns 0 or -ENOMEM. */
int middlecon_config_init(struct middlecon_config *c);

/*
 * Parses the file @path: the ACL rule keys (acl.h) go to c->acl, every other line to the
 * middlecon_config_items table. Returns 0, -ENOENT if the file does not exist, or what
 * conf_parse_string() and acl_add() return, with a malloc'ed "path:line: …" in *ret_error.
 */
int middlecon_config_parse_file(struct middlecon_config *c, const char *path, char **ret_error);

/* Frees everything the config owns. */
void middlecon_config_done(struct middlecon_config *c);

/*
 * Checks the settings after the file and the flags were applied and fills in derived defaults
 * (the socket path). Returns 0, -ENOMEM, or -EINVAL with a malloc'ed message in *ret_error.
 */
int middlecon_config_validate(struct middlecon_config *c, char **ret_error);
