/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The sandbox policy: what the sandboxed program may see, write, run and reach, how its root is
 * built, and its resource limits; plus the seccomp filter built from it.
 *
 * A policy starts from built-in defaults (policy_init()), then a policy file is applied
 * (policy_parse_file()/policy_parse_string(), format in docs/sandbox.md), then the command-line
 * flags (policy_add_line() with the same directives). Later rules win over earlier ones of the
 * same specificity, so flags override the file and the file overrides the defaults.
 *
 * Path rules name absolute paths whose components may hold fnmatch(3) patterns ("*", "?",
 * "[..]") matching one component each. A rule covers its path and everything beneath it; for a
 * given path the rule with the most components wins, the last one on a tie.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define POLICY_MAX_RULES 1024
#define POLICY_MAX_LINE 4096
#define POLICY_MAX_SIZE (1024 * 1024)

enum policy_access {
	POLICY_HIDE, /* invisible: masked in the mount view, every open refused */
	POLICY_RO, /* readable, never writable */
	POLICY_RW, /* readable and writable (if the mount view allows it) */
	_POLICY_ACCESS_MAX,
};

enum policy_net {
	POLICY_NET_NONE, /* a private network namespace with only loopback */
	POLICY_NET_HOST, /* the host's network namespace */
};

enum policy_mount_kind {
	POLICY_MOUNT_RO_BIND,
	POLICY_MOUNT_BIND,
	POLICY_MOUNT_TMPFS,
};

/* A path rule: access or exec permission for a path pattern and everything beneath it. */
struct policy_path_rule {
	char **components; /* strv of the pattern's components; empty for "/" */
	size_t n_components;
	bool is_exec; /* an exec/noexec rule rather than an access rule */
	enum policy_access access; /* access rules */
	bool exec; /* exec rules: true for "exec", false for "noexec" */
};

/* A mount operation of the sandbox's root, applied in order after the default root. */
struct policy_mount {
	enum policy_mount_kind kind;
	char *source; /* host path (binds only) */
	char *dest; /* path inside the sandbox */
};

/* An allowed network endpoint: family, address prefix, port range. */
struct policy_net_rule {
	bool is_bind; /* "allow-bind" rather than "allow-connect" */
	int family; /* AF_INET, AF_INET6, or AF_UNSPEC for "*" (any address of either family) */
	uint8_t addr[16];
	unsigned prefix; /* prefix length in bits */
	uint16_t port_min, port_max;
};

enum policy_rlimit {
	POLICY_RLIMIT_AS,
	POLICY_RLIMIT_CORE,
	POLICY_RLIMIT_CPU,
	POLICY_RLIMIT_FSIZE,
	POLICY_RLIMIT_NOFILE,
	POLICY_RLIMIT_NPROC,
	POLICY_RLIMIT_STACK,
	_POLICY_RLIMIT_MAX,
};

struct policy {
	struct policy_path_rule *rules;
	size_t n_rules;
	struct policy_mount *mounts;
	size_t n_mounts;
	struct policy_net_rule *net_rules;
	size_t n_net_rules;
	enum policy_net net;
	char *rootfs; /* NULL: a root made of read-only binds of the host's system directories */
	uint64_t memory_max; /* bytes; 0: no limit */
	uint64_t pids_max; /* 0: no limit */
	uint64_t cpu_max_pct; /* percent of one CPU (150 = 1.5 CPUs); 0: no limit */
	bool rlimit_set[_POLICY_RLIMIT_MAX];
	uint64_t rlimits[_POLICY_RLIMIT_MAX]; /* UINT64_MAX: unlimited */
};

/* Fills @p with the built-in defaults (docs/sandbox.md "Defaults"). Returns 0 or -ENOMEM. */
int policy_init(struct policy *p);

/* Frees everything @p owns; @p may be half-built or zeroed. */
void policy_done(struct policy *p);

/*
 * Applies one directive line (without its newline), e.g. "hide /root" or "allow-connect
 * 127.0.0.1 80". Blank lines and '#' comments are accepted and ignored. Returns 0, -EINVAL for
 * a malformed line, -E2BIG if the policy would exceed POLICY_MAX_RULES, or -ENOMEM. On -EINVAL
 * a static description of the problem is stored in *ret_why (if not NULL).
 */
int policy_add_line(struct policy *p, const char *line, const char **ret_why);

/*
 * Applies @len bytes of policy text. @name is used in messages. On the first bad line returns
 * its error and, if @ret_error is not NULL, a malloc'ed "name:line: why" in *ret_error; the
 * lines before it stay applied.
 */
int policy_parse_string(struct policy *p, const char *name, const char *text, size_t len,
			char **ret_error);

/* As policy_parse_string() for a file of at most POLICY_MAX_SIZE bytes. */
int policy_parse_file(struct policy *p, const char *path, char **ret_error);

/*
 * Access for the canonical absolute path @path (no "." or ".." components, no trailing
 * slash except for "/"). A path matching no rule is POLICY_HIDE.
 */
enum policy_access policy_access_for(const struct policy *p, const char *path);

/* Whether binaries under the canonical path @path may run. No matching rule: false. */
bool policy_exec_for(const struct policy *p, const char *path);

/*
 * Whether connecting (@is_bind false) or binding (@is_bind true) to the AF_INET/AF_INET6
 * address @sa of @len bytes is allowed. Malformed addresses are refused.
 */
bool policy_net_allowed(const struct policy *p, bool is_bind, const struct sockaddr *sa,
			size_t len);

/* "hide", "ro", "rw". */
const char *policy_access_to_string(enum policy_access a);

/* Writes the policy in its own text format to @f (sandbox --check-policy). */
void policy_dump(const struct policy *p, FILE *f);

/* Lexically checks that @path is absolute and canonical (see policy_access_for()). */
bool policy_path_is_canonical(const char *path);

/*
 * Builds the seccomp filter as classic BPF (libseccomp, native architecture only; other
 * architectures and the x32 ABI kill the process). Returns 0 with a malloc'ed array of
 * struct sock_filter in *ret and its length in *ret_len, or -errno.
 */
int policy_build_filter(const struct policy *p, void **ret, size_t *ret_len);

/* Fills @ret with the numbers of the syscalls the filter sends to the supervisor (for tests
 * and docs), sendto included although only a sendto with a destination address is sent;
 * returns how many there are (at most @n are written). */
size_t policy_notified_syscalls(int *ret, size_t n);
