/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Crafted /proc trees for the procinfo and procquery tests: a mkdtemp() directory with the
 * top-level files a scanner reads (stat with btime, meminfo, uptime, loadavg, boot_id) and
 * per-process directories written from a struct fx_proc. Included by test files only; every
 * helper fails the test (cmocka's assert) rather than return errors.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FX_BOOT_ID "0b1e5c3a-8f2d-4e61-9a7b-2c4d6e8f0a1b"
#define FX_BTIME 1700000000ULL
#define FX_MEM_TOTAL_KB 1024000ULL

struct fx_proc {
	pid_t pid;
	pid_t ppid;
	const char *comm;
	char state;
	unsigned flags;
	int tty_nr;
	unsigned long long utime, stime, start, vsize, rss;
	int nice;
	int threads;
	uid_t uid;
	gid_t gid;
	pid_t tgid; /* status Tgid; 0: same as pid */
	const char *cmdline; /* NUL-separated; NULL: no cmdline file */
	size_t cmdline_len;
	const char *cgroup; /* file content; NULL: no cgroup file */
	const char *exe; /* symlink target; NULL: no exe link */
	bool ns; /* ns/ links for net, pid, mnt, user (the others absent) */
	bool no_status;
	unsigned long long start_code;
};

/* A malloc'ed, formatted path (the test fails if it cannot be built). */
static inline char *fx_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *fx_path(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	assert_true(r >= 0);
	return p;
}

static inline void fx_mkdir_p(const char *path)
{
	char *buf = strdup(path);

	assert_non_null(buf);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0755) < 0)
				assert_int_equal(errno, EEXIST);
			*p = '/';
		}
	if (mkdir(buf, 0755) < 0)
		assert_int_equal(errno, EEXIST);
	free(buf);
}

/* Creates the parent directories of @path. */
static inline void fx_mkdir_parent(const char *path)
{
	char *dir = strdup(path);

	assert_non_null(dir);
	*strrchr(dir, '/') = '\0';
	fx_mkdir_p(dir);
	free(dir);
}

/* Writes @len bytes to root/rel, creating parent directories. */
static inline void fx_write(const char *root, const char *rel, const void *data, size_t len)
{
	char *path = fx_path("%s/%s", root, rel);
	int fd;

	fx_mkdir_parent(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(path);
}

static inline void fx_writes(const char *root, const char *rel, const char *s)
{
	fx_write(root, rel, s, strlen(s));
}

static inline void fx_symlink(const char *root, const char *rel, const char *target)
{
	char *path = fx_path("%s/%s", root, rel);

	fx_mkdir_parent(path);
	unlink(path);
	assert_int_equal(symlink(target, path), 0);
	free(path);
}

static inline int fx_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static inline void fx_rm_rf(const char *root)
{
	nftw(root, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates a tree with the top-level files; returns its malloc'ed path. */
static inline char *fx_new_root(void)
{
	char tmpl[] = "/tmp/k2i-proc-test.XXXXXX";
	char *root;

	assert_non_null(mkdtemp(tmpl));
	root = strdup(tmpl);
	assert_non_null(root);
	fx_writes(root, "sys/kernel/random/boot_id", FX_BOOT_ID "\n");
	fx_writes(root, "stat",
		  "cpu  1 2 3 4 5 6 7 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\nintr 12345 1 2 3\n"
		  "ctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 1\n");
	fx_writes(root, "meminfo",
		  "MemTotal:        1024000 kB\nMemFree:          512000 kB\n"
		  "MemAvailable:     768000 kB\nBuffers:            1000 kB\n"
		  "SwapTotal:        204800 kB\nSwapFree:         102400 kB\n");
	fx_writes(root, "uptime", "12345.67 890.12\n");
	fx_writes(root, "loadavg", "0.50 0.25 0.10 1/234 5678\n");
	return root;
}

/* Writes the stat file of @p to root/dir/stat (52 fields, as Linux 5.x+ prints). */
static inline void fx_write_stat(const char *root, const char *dir, const struct fx_proc *p)
{
	char *rel, *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fprintf(f,
		"%d (%s) %c %d %d %d %d -1 %u 10 0 0 0 %llu %llu 0 0 20 %d %d 0 %llu %llu %llu "
		"18446744073709551615 %llu %llu 140737488347136 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 "
		"0 0 0 %llu %llu 140737488351000 140737488352000 0\n",
		(int)p->pid, p->comm ? p->comm : "x", p->state ? p->state : 'S', (int)p->ppid,
		(int)p->pid, (int)p->pid, p->tty_nr, p->flags, p->utime, p->stime, p->nice,
		p->threads ? p->threads : 1, p->start, p->vsize, p->rss, p->start_code,
		p->start_code + 4096, 140737488349000ULL, 140737488350000ULL);
	fclose(f);
	rel = fx_path("%s/stat", dir);
	fx_write(root, rel, buf, len);
	free(rel);
	free(buf);
}

/* Writes the directory @dir (relative: "42" or "42/task/43") of process @p. */
static inline void fx_add_dir(const char *root, const char *dir, const struct fx_proc *p)
{
	char *rel;

	fx_write_stat(root, dir, p);
	if (!p->no_status) {
		char *status = fx_path(
			"Name:\t%s\nUmask:\t0022\nState:\t%c (sleeping)\nTgid:\t%d\nNgid:\t0\n"
			"Pid:\t%d\nPPid:\t%d\nTracerPid:\t0\nUid:\t%u\t%u\t%u\t%u\n"
			"Gid:\t%u\t%u\t%u\t%u\nFDSize:\t64\n",
			p->comm ? p->comm : "x", p->state ? p->state : 'S',
			(int)(p->tgid ? p->tgid : p->pid), (int)p->pid, (int)p->ppid, 4242u,
			(unsigned)p->uid, (unsigned)p->uid, (unsigned)p->uid, 4343u,
			(unsigned)p->gid, (unsigned)p->gid, (unsigned)p->gid);

		rel = fx_path("%s/status", dir);
		fx_writes(root, rel, status);
		free(rel);
		free(status);
	}
	if (p->cmdline) {
		rel = fx_path("%s/cmdline", dir);
		fx_write(root, rel, p->cmdline, p->cmdline_len);
		free(rel);
	}
	if (p->cgroup) {
		rel = fx_path("%s/cgroup", dir);
		fx_writes(root, rel, p->cgroup);
		free(rel);
	}
	if (p->exe) {
		rel = fx_path("%s/exe", dir);
		fx_symlink(root, rel, p->exe);
		free(rel);
	}
	if (p->ns) {
		static const char *const links[][2] = {
			{ "net", "net:[4026531993]" },
			{ "pid", "pid:[4026531836]" },
			{ "mnt", "mnt:[4026531841]" },
			{ "user", "user:[4026531837]" },
		};

		for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
			rel = fx_path("%s/ns/%s", dir, links[i][0]);
			fx_symlink(root, rel, links[i][1]);
			free(rel);
		}
	}
}

static inline void fx_add_proc(const char *root, const struct fx_proc *p)
{
	char *dir = fx_path("%d", (int)p->pid);

	fx_add_dir(root, dir, p);
	free(dir);
}

/* Adds thread @tid of process @p as <pid>/task/<tid>, with @comm and ticks of its own. */
static inline void fx_add_thread(const char *root, const struct fx_proc *p, pid_t tid,
				 const char *comm, unsigned long long utime,
				 unsigned long long start)
{
	struct fx_proc t = *p;
	char *dir = fx_path("%d/task/%d", (int)p->pid, (int)tid);

	t.pid = tid;
	t.tgid = p->pid;
	t.comm = comm;
	t.utime = utime;
	t.stime = 0;
	t.start = start;
	fx_add_dir(root, dir, &t);
	free(dir);
}

/* Removes root/rel recursively. */
static inline void fx_remove(const char *root, const char *rel)
{
	char *path = fx_path("%s/%s", root, rel);

	fx_rm_rf(path);
	free(path);
}

/* A test clock: fixed times that a test moves forward by hand. */
struct fx_clock {
	uint64_t realtime_ns, monotonic_ns, boottime_ns;
};

static inline int fx_clock_cb(clockid_t clock, uint64_t *ret_ns, void *userdata)
{
	const struct fx_clock *c = userdata;

	*ret_ns = clock == CLOCK_REALTIME ? c->realtime_ns :
		  clock == CLOCK_BOOTTIME ? c->boottime_ns :
					    c->monotonic_ns;
	return 0;
}

static inline void fx_clock_advance(struct fx_clock *c, double seconds)
{
	/* Negative steps undo earlier ones (the clocks start far from 0). */
	int64_t ns = (int64_t)(seconds * 1e9);

	c->realtime_ns += (uint64_t)ns;
	c->monotonic_ns += (uint64_t)ns;
	c->boottime_ns += (uint64_t)ns;
}
