/* SPDX-License-Identifier: MIT */
#pragma once

/* k2i's configuration: defaults, the k2i.conf table, and validation. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_item;

#define K2I_DEFAULT_PORT 9400
#define K2I_DEFAULT_CONFIG "/etc/k2i/k2i.conf"

struct k2i_config {
	char **listen; /* "ADDR:PORT", "[V6]:PORT" or ":PORT" (every address) */
	char *state_dir; /* generated TLS material; default per libcommon/paths.h */
	char *rundir; /* sockets and instance records */
	char *tls_cert; /* this node's certificate chain (PEM) */
	char *tls_key; /* its private key */
	char *tls_ca; /* CA bundle that signs client certificates */
	char **allowed_sans; /* if set, a client certificate must name one of these */
	char *token_file; /* optional bearer tokens, one per line (or sha256:<hex>) */
	uint32_t scan_max_age_ms; /* requests within this window share one /proc scan */
	uint32_t cmdline_max; /* bytes of a command line exported before truncation */
	uint32_t proc_cache_ttl_ms; /* reuse of a live process's cmdline/exe/cgroup/ns */
	uint32_t exits_max; /* recent exits kept for GET /v1/exits */
	uint32_t stream_backlog_kb; /* an event stream with more queued is cut off */
	uint32_t max_connections; /* accepted connections at once */
	uint32_t max_header_bytes; /* request head (h1) or header list (h2) size limit */
	uint32_t max_streams; /* concurrent HTTP/2 streams per connection */
	uint32_t idle_timeout_s; /* an idle connection is closed after this */
	bool no_bpf; /* use the process connector or polling, not BPF */
	uint32_t reconcile_interval_s; /* /proc scan that reconciles the live table */
	int log_level;
};

/* The key table of k2i.conf (also used for --check-config and GET /v1/config). */
extern const struct conf_item *const k2i_config_items;
extern const size_t k2i_config_n_items;

/* Sets every default. Returns 0 or -ENOMEM. */
int k2i_config_init(struct k2i_config *c);

/* Frees everything the config owns. */
void k2i_config_done(struct k2i_config *c);

/*
 * Checks the combination of settings after the file and the flags were applied (for example:
 * a certificate without its key). Returns 0, or -EINVAL with a malloc'ed message in *ret_error.
 */
int k2i_config_validate(const struct k2i_config *c, char **ret_error);
