/* SPDX-License-Identifier: MIT */
#include "sandbox/syscall/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "sandbox/syscall/policy.h"

/* The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo. */
static int cgroup2_mount(char **ret)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t n = 0;
	if (!f)
		return negative_errno();
	while (getline(&line, &n, f) > 0) {
		/* ... mountpoint ... - fstype source options */
		char *sep = strstr(line, " - ");
		char mp[4096];
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		free(line);
		*ret = strdup(mp);
		return *ret ? 0 : -ENOMEM;
	}
	free(line);
	return -ENOENT;
}

/* The launcher's own cgroup v2 path ("0::/path" in /proc/self/cgroup). */
static int own_cgroup(char **ret)
{
	_cleanup_free_ char *text = NULL;
	int r = read_full_file_at(AT_FDCWD, "/proc/self/cgroup", 64 * 1024, &text, NULL);
	if (r < 0)
		return r;
	for (char *l = text; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		const char *p = startswith(l, "0::");
		if (p) {
			*ret = strdup(p);
			return *ret ? 0 : -ENOMEM;
		}
		l = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

static int write_file(const char *dir, const char *name, const char *value)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	_cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	return loop_write(fd, value, strlen(value));
}

static bool has_controller(const char *dir, const char *name)
{
	_cleanup_free_ char *p = NULL;
	_cleanup_free_ char *text = NULL;
	_cleanup_(strv_freep) char **l = NULL;
	if (asprintf(&p, "%s/cgroup.controllers", dir) < 0)
		return false;
	if (read_full_file_at(AT_FDCWD, p, 4096, &text, NULL) < 0)
		return false;
	if (strv_split(text, " \n", &l) < 0)
		return false;
	return strv_contains(l, name);
}

int sbx_cgroup_create(struct sbx_cgroup *cg, const struct policy *p, const char *id)
{
	_cleanup_free_ char *mnt = NULL;
	_cleanup_free_ char *own = NULL;
	_cleanup_free_ char *parent = NULL;
	_cleanup_free_ char *dir = NULL;
	const char *need[3];
	size_t n_need = 0;
	int r;

	cg->path = NULL;
	if (p->memory_max)
		need[n_need++] = "memory";
	if (p->pids_max)
		need[n_need++] = "pids";
	if (p->cpu_max_pct)
		need[n_need++] = "cpu";
	if (n_need == 0)
		return 0;
	if (cgroup2_mount(&mnt) < 0 || own_cgroup(&own) < 0) {
		log_err("Resource limits need cgroup v2, which this host does not offer.");
		return -EOPNOTSUPP;
	}
	if (asprintf(&parent, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own) < 0 ||
	    asprintf(&dir, "%s/sandbox-%s", parent, id) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n_need; i++) {
		if (!has_controller(parent, need[i])) {
			log_err("The cgroup v2 controller '%s' is not available in '%s' (it may be "
				"bound to a cgroup v1 hierarchy).",
				need[i], parent);
			return -EOPNOTSUPP;
		}
		char en[32];
		snprintf(en, sizeof(en), "+%s", need[i]);
		r = write_file(parent, "cgroup.subtree_control", en);
		if (r < 0)
			return log_err_errno(r, "Failed to enable the '%s' controller in '%s': %m",
					     need[i], parent);
	}
	if (mkdir(dir, 0755) < 0)
		return log_err_errno(errno, "Failed to create the cgroup '%s': %m", dir);
	cg->path = TAKE_PTR(dir);
	char v[64];
	if (p->memory_max) {
		snprintf(v, sizeof(v), "%" PRIu64, p->memory_max);
		if ((r = write_file(cg->path, "memory.max", v)) < 0 ||
		    (r = write_file(cg->path, "memory.swap.max", "0")) < 0)
			if (r != -ENOENT)
				return log_err_errno(r, "Failed to set memory.max: %m");
	}
	if (p->pids_max) {
		snprintf(v, sizeof(v), "%" PRIu64, p->pids_max);
		if ((r = write_file(cg->path, "pids.max", v)) < 0)
			return log_err_errno(r, "Failed to set pids.max: %m");
	}
	if (p->cpu_max_pct) {
		/* quota per 100 ms period */
		snprintf(v, sizeof(v), "%" PRIu64 " 100000", p->cpu_max_pct * 1000);
		if ((r = write_file(cg->path, "cpu.max", v)) < 0)
			return log_err_errno(r, "Failed to set cpu.max: %m");
	}
	return 0;
}

int sbx_cgroup_attach(struct sbx_cgroup *cg, pid_t pid)
{
	char v[32];
	if (!cg->path)
		return 0;
	snprintf(v, sizeof(v), "%d", pid);
	return write_file(cg->path, "cgroup.procs", v);
}

void sbx_cgroup_done(struct sbx_cgroup *cg)
{
	if (!cg->path)
		return;
	if (rmdir(cg->path) < 0 && errno != ENOENT)
		log_debug_errno(errno, "Failed to remove the cgroup '%s': %m", cg->path);
	free(cg->path);
	cg->path = NULL;
}
