/* SPDX-License-Identifier: MIT */
#pragma once

/* middlecon's configuration: defaults, the middlecon.conf table, and validation. */

#include <stddef.h>
#include <stdint.h>

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
	int log_level;
};

/* The key table of middlecon.conf (also used for --check-config). */
extern const struct conf_item *const middlecon_config_items;
extern const size_t middlecon_config_n_items;

/* Sets every default. Returns 0 or -ENOMEM. */
int middlecon_config_init(struct middlecon_config *c);

/* Frees everything the config owns. */
void middlecon_config_done(struct middlecon_config *c);

/*
 * Checks the settings after the file and the flags were applied and fills in derived defaults
 * (the socket path). Returns 0, -ENOMEM, or -EINVAL with a malloc'ed message in *ret_error.
 */
int middlecon_config_validate(struct middlecon_config *c, char **ret_error);
