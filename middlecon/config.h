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
	char *state_dir; /* persistent state (TLS material for peer links, later) */
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
};

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
