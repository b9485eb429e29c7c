/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * cgroup v2 limits for one sandbox: a child cgroup "sandbox-<id>" of the launcher's own cgroup
 * with memory.max, pids.max and cpu.max, removed again when the sandbox exits. Hosts without a
 * cgroup v2 hierarchy that offers the controllers get a clear error, never a silent run
 * without the limits that were asked for.
 */

#include <stdint.h>
#include <sys/types.h>

struct policy;

struct sbx_cgroup {
	char *path; /* malloc'ed; NULL when no cgroup was created */
};

/*
 * Creates the cgroup and writes the policy's limits. Does nothing (returns 0, path NULL) when
 * the policy sets none. Returns -EOPNOTSUPP with a logged reason when cgroup v2 or a needed
 * controller is missing, or -errno.
 */
int sbx_cgroup_create(struct sbx_cgroup *cg, const struct policy *p, const char *id);

/* Moves @pid into the cgroup (no-op without one). Returns 0 or -errno. */
int sbx_cgroup_attach(struct sbx_cgroup *cg, pid_t pid);

/* Removes the (empty) cgroup and frees the path. */
void sbx_cgroup_done(struct sbx_cgroup *cg);
