/* SPDX-License-Identifier: MIT */
/*
 * Policy parsing, path and network decisions, and the seccomp filter.
 *
 * Parsing is strict: every directive has a fixed number of arguments, paths must be absolute
 * and canonical, numbers are range-checked. The decision functions only see canonical paths
 * that the supervisor obtained from the kernel (d_path of a descriptor), so no lexical
 * normalisation happens here.
 */
#include "sandbox/syscall/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <seccomp.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

DEFINE_CLEANUP_FUNC(void, seccomp_release)

static const char *const default_rules[] = {
	/* Everything mounted is readable; what is writable or hidden is listed. */
	"ro /",
	"noexec /",
	"exec /usr",
	"exec /bin",
	"exec /sbin",
	"exec /lib",
	"exec /lib32",
	"exec /lib64",
	"exec /libx32",
	/* Programs built in the sandbox run from /tmp (compilers, test suites). */
	"exec /tmp",
	"rw /tmp",
	"rw /dev/null",
	"rw /dev/zero",
	"rw /dev/full",
	"rw /dev/random",
	"rw /dev/urandom",
	"rw /dev/tty",
	"rw /dev/shm",
	"rw /dev/pts",
	"rw /dev/ptmx",
	/* /proc/self and /proc/thread-self are rewritten to /proc/<pid> by the supervisor. */
	"rw /proc/[1-9]*",
	"hide /root",
	"hide /home/*/.ssh",
	"hide /home/*/.gnupg",
	"hide /etc/shadow",
	"hide /etc/shadow-",
	"hide /etc/gshadow",
	"hide /etc/gshadow-",
	"hide /etc/sudoers",
	"hide /etc/sudoers.d",
	"hide /etc/ssh",
	"hide /etc/ssl/private",
	"hide /etc/k2i",
	/* Another process's memory is the ptrace primitive the filter refuses. */
	"hide /proc/[1-9]*/mem",
	"hide /proc/[1-9]*/task/*/mem",
	"hide /proc/kcore",
	"hide /proc/sysrq-trigger",
};

static const char *const access_names[_POLICY_ACCESS_MAX] = {
	[POLICY_HIDE] = "hide",
	[POLICY_RO] = "ro",
	[POLICY_RW] = "rw",
};

static const char *const rlimit_names[_POLICY_RLIMIT_MAX] = {
	[POLICY_RLIMIT_AS] = "as",	   [POLICY_RLIMIT_CORE] = "core",
	[POLICY_RLIMIT_CPU] = "cpu",	   [POLICY_RLIMIT_FSIZE] = "fsize",
	[POLICY_RLIMIT_NOFILE] = "nofile", [POLICY_RLIMIT_NPROC] = "nproc",
	[POLICY_RLIMIT_STACK] = "stack",
};

const char *policy_access_to_string(enum policy_access a)
{
	return a < _POLICY_ACCESS_MAX ? access_names[a] : "?";
}

bool policy_path_is_canonical(const char *path)
{
	if (!path || path[0] != '/')
		return false;
	if (strlen(path) >= PATH_MAX)
		return false;
	if (path[1] == '\0')
		return true;
	for (const char *c = path; *c;) {
		/* c points at a '/'; the component runs to the next '/' or the end. */
		const char *comp = c + 1;
		size_t n = strcspn(comp, "/");
		if (n == 0)
			return false; /* "//" or a trailing slash */
		if ((n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
			return false;
		c = comp + n;
	}
	return true;
}

static void path_rule_done(struct policy_path_rule *r)
{
	strv_free(r->components);
	r->components = NULL;
}

void policy_done(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++)
		path_rule_done(&p->rules[i]);
	free(p->rules);
	for (size_t i = 0; i < p->n_mounts; i++) {
		free(p->mounts[i].source);
		free(p->mounts[i].dest);
	}
	free(p->mounts);
	free(p->net_rules);
	free(p->rootfs);
	*p = (struct policy){};
}

int policy_init(struct policy *p)
{
	*p = (struct policy){ .net = POLICY_NET_NONE };
	/* Core dumps of sandboxed programs would be written by the host's core handler. */
	p->rlimit_set[POLICY_RLIMIT_CORE] = true;
	p->rlimits[POLICY_RLIMIT_CORE] = 0;
	for (size_t i = 0; i < ELEMENTSOF(default_rules); i++) {
		int r = policy_add_line(p, default_rules[i], NULL);
		if (r < 0) {
			policy_done(p);
			return r;
		}
	}
	return 0;
}

/* Splits a canonical path into components ("/" gives none). */
static int split_path(const char *path, char ***ret, size_t *ret_n)
{
	_cleanup_(strv_freep) char **l = NULL;
	int r = strv_split(path, "/", &l);
	if (r < 0)
		return r;
	*ret_n = strv_length(l);
	*ret = TAKE_PTR(l);
	return 0;
}

static int add_path_rule(struct policy *p, const char *path, bool is_exec, enum policy_access a,
			 bool exec, const char **why)
{
	if (!policy_path_is_canonical(path)) {
		*why = "path must be absolute, without '.', '..', '//' or a trailing '/'";
		return -EINVAL;
	}
	if (p->n_rules >= POLICY_MAX_RULES)
		return -E2BIG;
	struct policy_path_rule *n = reallocarray(p->rules, p->n_rules + 1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	p->rules = n;
	struct policy_path_rule rule = { .is_exec = is_exec, .access = a, .exec = exec };
	int r = split_path(path, &rule.components, &rule.n_components);
	if (r < 0)
		return r;
	p->rules[p->n_rules++] = rule;
	return 0;
}

static int add_mount(struct policy *p, enum policy_mount_kind kind, const char *src,
		     const char *dst, const char **why)
{
	if ((src && !policy_path_is_canonical(src)) || !policy_path_is_canonical(dst) ||
	    strcmp(dst, "/") == 0) {
		*why = "mount paths must be absolute and canonical, and not '/'";
		return -EINVAL;
	}
	if (p->n_mounts >= POLICY_MAX_RULES)
		return -E2BIG;
	struct policy_mount *n = reallocarray(p->mounts, p->n_mounts + 1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	p->mounts = n;
	_cleanup_free_ char *s = src ? strdup(src) : NULL;
	_cleanup_free_ char *d = strdup(dst);
	if ((src && !s) || !d)
		return -ENOMEM;
	p->mounts[p->n_mounts++] =
		(struct policy_mount){ .kind = kind, .source = TAKE_PTR(s), .dest = TAKE_PTR(d) };
	/* A mount also sets the access of its destination, as the flags do in bwrap. */
	return add_path_rule(p, dst, false, kind == POLICY_MOUNT_RO_BIND ? POLICY_RO : POLICY_RW,
			     false, why);
}

/* "1024", "64K", "512M", "2G" (binary units). */
static int parse_size(const char *s, uint64_t *ret)
{
	size_t n = strlen(s);
	uint64_t mult = 1;
	if (n == 0 || n > 32)
		return -EINVAL;
	char buf[40];
	memcpy(buf, s, n + 1);
	switch (buf[n - 1]) {
	case 'k':
	case 'K':
		mult = 1ULL << 10;
		break;
	case 'm':
	case 'M':
		mult = 1ULL << 20;
		break;
	case 'g':
	case 'G':
		mult = 1ULL << 30;
		break;
	default:
		break;
	}
	if (mult != 1)
		buf[n - 1] = '\0';
	uint64_t v;
	int r = safe_atou64(buf, &v);
	if (r < 0)
		return r;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*ret = v * mult;
	return 0;
}

/* "50%" or "1.5" (CPUs) to percent of one CPU, 1..100000. */
static int parse_cpu(const char *s, uint64_t *ret)
{
	uint64_t v;
	size_t n = strlen(s);
	if (n == 0 || n > 16)
		return -EINVAL;
	if (s[n - 1] == '%') {
		char buf[20];
		memcpy(buf, s, n - 1);
		buf[n - 1] = '\0';
		if (safe_atou64(buf, &v) < 0)
			return -EINVAL;
	} else {
		/* Whole CPUs with up to two decimals. */
		const char *dot = strchr(s, '.');
		char ip[20], fp[3] = "00";
		size_t il = dot ? (size_t)(dot - s) : n;
		if (il == 0 || il >= sizeof(ip))
			return -EINVAL;
		memcpy(ip, s, il);
		ip[il] = '\0';
		if (dot) {
			size_t fl = strlen(dot + 1);
			if (fl == 0 || fl > 2 || strspn(dot + 1, "0123456789") != fl)
				return -EINVAL;
			memcpy(fp, dot + 1, fl);
		}
		uint64_t i, f;
		if (safe_atou64(ip, &i) < 0 || safe_atou64(fp, &f) < 0 || i > 1000)
			return -EINVAL;
		v = i * 100 + f;
	}
	if (v < 1 || v > 100000)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int parse_port_range(const char *s, uint16_t *lo, uint16_t *hi)
{
	if (strcmp(s, "*") == 0) {
		*lo = 0;
		*hi = 65535;
		return 0;
	}
	const char *dash = strchr(s, '-');
	uint32_t a, b;
	if (dash) {
		char buf[8];
		size_t n = (size_t)(dash - s);
		if (n == 0 || n >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (safe_atou32_range(buf, 0, 65535, &a) < 0 ||
		    safe_atou32_range(dash + 1, 0, 65535, &b) < 0 || a > b)
			return -EINVAL;
	} else {
		if (safe_atou32_range(s, 0, 65535, &a) < 0)
			return -EINVAL;
		b = a;
	}
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

static int parse_net_rule(const char *addr, const char *port, bool is_bind,
			  struct policy_net_rule *ret)
{
	struct policy_net_rule n = { .is_bind = is_bind };
	if (parse_port_range(port, &n.port_min, &n.port_max) < 0)
		return -EINVAL;
	if (strcmp(addr, "*") == 0) {
		n.family = AF_UNSPEC;
		*ret = n;
		return 0;
	}
	char buf[INET6_ADDRSTRLEN + 8];
	if (strlen(addr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, addr);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, n.addr) == 1) {
		n.family = AF_INET;
		n.prefix = 32;
	} else if (inet_pton(AF_INET6, buf, n.addr) == 1) {
		n.family = AF_INET6;
		n.prefix = 128;
	} else
		return -EINVAL;
	if (slash) {
		uint32_t pl;
		if (safe_atou32_range(slash + 1, 0, n.prefix, &pl) < 0)
			return -EINVAL;
		n.prefix = pl;
	}
	*ret = n;
	return 0;
}

int policy_add_line(struct policy *p, const char *line, const char **ret_why)
{
	const char *why_dummy = NULL;
	const char **why = ret_why ? ret_why : &why_dummy;
	_cleanup_(strv_freep) char **w = NULL;
	int r;

	*why = "malformed directive";
	if (strlen(line) > POLICY_MAX_LINE) {
		*why = "line too long";
		return -EINVAL;
	}
	const char *s = skip_blanks(line);
	if (*s == '\0' || *s == '#')
		return 0;
	r = strv_split(s, " \t\r", &w);
	if (r < 0)
		return r;
	size_t n = strv_length(w);
	if (n == 0)
		return 0; /* only blanks and carriage returns */
	const char *k = w[0];

#define NARGS(x)                                                          \
	do {                                                              \
		if (n != (x) + 1) {                                       \
			*why = "wrong number of arguments for directive"; \
			return -EINVAL;                                   \
		}                                                         \
	} while (0)

	for (enum policy_access a = 0; a < _POLICY_ACCESS_MAX; a++)
		if (strcmp(k, access_names[a]) == 0) {
			NARGS(1);
			return add_path_rule(p, w[1], false, a, false, why);
		}
	if (strcmp(k, "exec") == 0 || strcmp(k, "noexec") == 0) {
		NARGS(1);
		return add_path_rule(p, w[1], true, POLICY_RO, k[0] == 'e', why);
	}
	if (strcmp(k, "ro-bind") == 0 || strcmp(k, "bind") == 0) {
		NARGS(2);
		return add_mount(p, k[0] == 'r' ? POLICY_MOUNT_RO_BIND : POLICY_MOUNT_BIND, w[1],
				 w[2], why);
	}
	if (strcmp(k, "tmpfs") == 0) {
		NARGS(1);
		return add_mount(p, POLICY_MOUNT_TMPFS, NULL, w[1], why);
	}
	if (strcmp(k, "rootfs") == 0) {
		NARGS(1);
		if (!policy_path_is_canonical(w[1])) {
			*why = "rootfs must be an absolute canonical path";
			return -EINVAL;
		}
		char *d = strdup(w[1]);
		if (!d)
			return -ENOMEM;
		free(p->rootfs);
		p->rootfs = d;
		return 0;
	}
	if (strcmp(k, "net") == 0) {
		NARGS(1);
		if (strcmp(w[1], "none") == 0)
			p->net = POLICY_NET_NONE;
		else if (strcmp(w[1], "host") == 0)
			p->net = POLICY_NET_HOST;
		else {
			*why = "net must be 'none' or 'host'";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "allow-connect") == 0 || strcmp(k, "allow-bind") == 0) {
		NARGS(2);
		struct policy_net_rule nr;
		if (parse_net_rule(w[1], w[2], k[6] == 'b', &nr) < 0) {
			*why = "expected ADDRESS[/PREFIX]|* PORT[-PORT]|*";
			return -EINVAL;
		}
		if (p->n_net_rules >= POLICY_MAX_RULES)
			return -E2BIG;
		struct policy_net_rule *a =
			reallocarray(p->net_rules, p->n_net_rules + 1, sizeof(*a));
		if (!a)
			return -ENOMEM;
		p->net_rules = a;
		p->net_rules[p->n_net_rules++] = nr;
		return 0;
	}
	if (strcmp(k, "memory") == 0) {
		NARGS(1);
		if (parse_size(w[1], &p->memory_max) < 0 || p->memory_max < (1 << 20)) {
			*why = "memory must be a size of at least 1M (e.g. 256M)";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "pids") == 0) {
		NARGS(1);
		if (safe_atou64(w[1], &p->pids_max) < 0 || p->pids_max < 1 ||
		    p->pids_max > 4194304) {
			*why = "pids must be 1..4194304";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "cpu") == 0) {
		NARGS(1);
		if (parse_cpu(w[1], &p->cpu_max_pct) < 0) {
			*why = "cpu must be CPUs (0.5, 2) or a percentage (50%)";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "rlimit") == 0) {
		NARGS(2);
		for (int i = 0; i < _POLICY_RLIMIT_MAX; i++) {
			if (strcmp(w[1], rlimit_names[i]) != 0)
				continue;
			uint64_t v;
			if (strcmp(w[2], "unlimited") == 0)
				v = UINT64_MAX;
			else if (parse_size(w[2], &v) < 0) {
				*why = "rlimit value must be a number or 'unlimited'";
				return -EINVAL;
			}
			p->rlimit_set[i] = true;
			p->rlimits[i] = v;
			return 0;
		}
		*why = "unknown rlimit (as, core, cpu, fsize, nofile, nproc, stack)";
		return -EINVAL;
	}
#undef NARGS
	*why = "unknown directive";
	return -EINVAL;
}

int policy_parse_string(struct policy *p, const char *name, const char *text, size_t len,
			char **ret_error)
{
	size_t lineno = 0;
	if (len > POLICY_MAX_SIZE)
		return -EFBIG;
	for (size_t off = 0; off < len;) {
		const char *start = text + off;
		const char *nl = memchr(start, '\n', len - off);
		size_t l = nl ? (size_t)(nl - start) : len - off;
		off += l + (nl ? 1 : 0);
		lineno++;
		const char *why = "malformed directive";
		int r;
		if (memchr(start, '\0', l)) {
			why = "NUL byte in line";
			r = -EINVAL;
		} else if (l > POLICY_MAX_LINE) {
			why = "line too long";
			r = -EINVAL;
		} else {
			_cleanup_free_ char *line = strndup(start, l);
			if (!line)
				return -ENOMEM;
			r = policy_add_line(p, line, &why);
		}
		if (r < 0) {
			if (r == -E2BIG)
				why = "too many rules";
			if (ret_error && r != -ENOMEM &&
			    asprintf(ret_error, "%s:%zu: %s", name, lineno, why) < 0)
				*ret_error = NULL;
			return r;
		}
	}
	return 0;
}

int policy_parse_file(struct policy *p, const char *path, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = read_full_file_at(AT_FDCWD, path, POLICY_MAX_SIZE, &text, &len);
	if (r < 0)
		return r;
	return policy_parse_string(p, path, text, len, ret_error);
}

#define MAX_COMPONENTS 256

/* Whether the rule's pattern covers @comps (the path's components), component by component:
 * plain names compare with strcmp, patterns with fnmatch. */
static bool rule_match(const struct policy_path_rule *rule, char *const *comps, size_t n)
{
	if (rule->n_components > n)
		return false;
	for (size_t i = 0; i < rule->n_components; i++) {
		const char *pat = rule->components[i];
		if (strpbrk(pat, "*?[") ? fnmatch(pat, comps[i], FNM_PATHNAME) != 0 :
					  strcmp(pat, comps[i]) != 0)
			return false;
	}
	return true;
}

/* The deciding rule for @path: most components, the last one on a tie. This runs for every
 * notified call, so the path is split in place in a stack copy, without allocations. */
static const struct policy_path_rule *best_rule(const struct policy *p, const char *path,
						bool is_exec)
{
	char buf[PATH_MAX];
	char *comps[MAX_COMPONENTS];
	size_t n = 0, len;
	const struct policy_path_rule *best = NULL;

	if (!policy_path_is_canonical(path))
		return NULL;
	len = strlen(path);
	memcpy(buf, path, len + 1);
	for (char *c = path[1] ? buf : buf + 1; *c;) {
		/* c points at a '/' ("/" itself has no components) */
		*c = '\0';
		if (n == MAX_COMPONENTS)
			return NULL; /* deeper than any sane path: no rule applies */
		comps[n++] = c + 1;
		c = strchrnul(c + 1, '/');
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_path_rule *r = &p->rules[i];
		if (r->is_exec != is_exec)
			continue;
		if ((!best || r->n_components >= best->n_components) && rule_match(r, comps, n))
			best = r;
	}
	return best;
}

enum policy_access policy_access_for(const struct policy *p, const char *path)
{
	const struct policy_path_rule *r = best_rule(p, path, false);
	return r ? r->access : POLICY_HIDE;
}

bool policy_exec_for(const struct policy *p, const char *path)
{
	const struct policy_path_rule *r = best_rule(p, path, true);
	return r && r->exec;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rem = bits % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rem == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rem));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool policy_net_allowed(const struct policy *p, bool is_bind, const struct sockaddr *sa, size_t len)
{
	uint8_t addr[16];
	int family;
	uint16_t port;
	bool loopback;

	if (len < sizeof(sa_family_t))
		return false;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		family = AF_INET;
		memcpy(addr, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
		loopback = addr[0] == 127;
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		family = AF_INET6;
		memcpy(addr, &in6->sin6_addr, 16);
		port = ntohs(in6->sin6_port);
		loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
		/* A v4-mapped address is judged as the IPv4 address it carries. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			family = AF_INET;
			memmove(addr, addr + 12, 4);
			loopback = addr[0] == 127;
		}
	} else
		return false;

	/* In a private network namespace only loopback exists: reaching it is harmless, and
	 * binding anything is invisible outside. */
	if (p->net == POLICY_NET_NONE && (is_bind || loopback))
		return true;
	for (size_t i = 0; i < p->n_net_rules; i++) {
		const struct policy_net_rule *r = &p->net_rules[i];
		if (r->is_bind != is_bind || port < r->port_min || port > r->port_max)
			continue;
		if (r->family == AF_UNSPEC ||
		    (r->family == family && prefix_match(r->addr, addr, r->prefix)))
			return true;
	}
	return false;
}

static void dump_path(const struct policy_path_rule *r, FILE *f)
{
	if (r->n_components == 0)
		fputs("/", f);
	for (size_t i = 0; i < r->n_components; i++)
		fprintf(f, "/%s", r->components[i]);
}

void policy_dump(const struct policy *p, FILE *f)
{
	fprintf(f, "net %s\n", p->net == POLICY_NET_NONE ? "none" : "host");
	if (p->rootfs)
		fprintf(f, "rootfs %s\n", p->rootfs);
	for (size_t i = 0; i < p->n_mounts; i++) {
		const struct policy_mount *m = &p->mounts[i];
		if (m->kind == POLICY_MOUNT_TMPFS)
			fprintf(f, "tmpfs %s\n", m->dest);
		else
			fprintf(f, "%s %s %s\n", m->kind == POLICY_MOUNT_BIND ? "bind" : "ro-bind",
				m->source, m->dest);
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_path_rule *r = &p->rules[i];
		fprintf(f, "%s ",
			r->is_exec ? (r->exec ? "exec" : "noexec") :
				     policy_access_to_string(r->access));
		dump_path(r, f);
		fputc('\n', f);
	}
	for (size_t i = 0; i < p->n_net_rules; i++) {
		const struct policy_net_rule *r = &p->net_rules[i];
		char a[INET6_ADDRSTRLEN] = "*";
		if (r->family != AF_UNSPEC)
			inet_ntop(r->family, r->addr, a, sizeof(a));
		fprintf(f, "%s %s", r->is_bind ? "allow-bind" : "allow-connect", a);
		if (r->family != AF_UNSPEC && r->prefix != (r->family == AF_INET ? 32u : 128u))
			fprintf(f, "/%u", r->prefix);
		if (r->port_min == 0 && r->port_max == 65535)
			fputs(" *\n", f);
		else if (r->port_min == r->port_max)
			fprintf(f, " %u\n", r->port_min);
		else
			fprintf(f, " %u-%u\n", r->port_min, r->port_max);
	}
	if (p->memory_max)
		fprintf(f, "memory %" PRIu64 "\n", p->memory_max);
	if (p->pids_max)
		fprintf(f, "pids %" PRIu64 "\n", p->pids_max);
	if (p->cpu_max_pct)
		fprintf(f, "cpu %" PRIu64 "%%\n", p->cpu_max_pct);
	for (int i = 0; i < _POLICY_RLIMIT_MAX; i++) {
		if (!p->rlimit_set[i])
			continue;
		if (p->rlimits[i] == UINT64_MAX)
			fprintf(f, "rlimit %s unlimited\n", rlimit_names[i]);
		else
			fprintf(f, "rlimit %s %" PRIu64 "\n", rlimit_names[i], p->rlimits[i]);
	}
}

/*
 * Syscalls no sandboxed program needs: they reach kernel code that is a common attack surface
 * (module loading, BPF, perf, io_uring, keyrings, userfaultfd), would undo the confinement
 * (mount API, namespaces, ptrace, process_vm_writev, seccomp stacking), or change host state.
 */
static const char *const deny_eperm[] = {
	"init_module",
	"finit_module",
	"delete_module",
	"kexec_load",
	"kexec_file_load",
	"bpf",
	"perf_event_open",
	"ptrace",
	"process_vm_writev",
	"process_vm_readv",
	"mount",
	"umount",
	"umount2",
	"mount_setattr",
	"move_mount",
	"open_tree",
	"fsopen",
	"fsconfig",
	"fsmount",
	"fspick",
	"pivot_root",
	"chroot",
	"keyctl",
	"add_key",
	"request_key",
	"userfaultfd",
	"open_by_handle_at",
	"name_to_handle_at",
	"unshare",
	"setns",
	"swapon",
	"swapoff",
	"reboot",
	"acct",
	"settimeofday",
	"clock_settime",
	"clock_adjtime",
	"adjtimex",
	"iopl",
	"ioperm",
	"quotactl",
	"quotactl_fd",
	"lookup_dcookie",
	"nfsservctl",
	"vhangup",
	"syslog",
	"seccomp",
	"pidfd_getfd",
	"fanotify_init",
	"kcmp",
	"uselib",
	"sethostname",
	"setdomainname",
};

/* Refused as "not implemented" so libc falls back to an older call we can inspect (clone3's
 * flags live in memory; fchmodat2 has a flag fchmodat lacks) or to a plain path. */
static const char *const deny_enosys[] = {
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
	"clone3",
};
#define NR_FCHMODAT2 452 /* not in libseccomp 2.5.4's table */

/*
 * Sent to the supervisor, which performs them (or refuses them) on the program's behalf.
 * close, fork, clone, exit and the other non-restartable calls are deliberately absent: a
 * signal arriving before the supervisor receives a notification makes it fail with EINTR.
 */
static const char *const notified[] = {
	"open",	    "openat",	 "openat2",  "creat",	  "execve", "execveat", "unlink",
	"unlinkat", "rename",	 "renameat", "renameat2", "mkdir",  "mkdirat",	"rmdir",
	"symlink",  "symlinkat", "link",     "linkat",	  "chmod",  "fchmodat", "truncate",
	"connect",  "bind",	 "sendmsg",  "sendmmsg",
};

/* Notified only with some arguments (rules in policy_build_filter()). */
static const char *const notified_conditionally[] = { "sendto" };

size_t policy_notified_syscalls(int *ret, size_t n)
{
	const size_t always = ELEMENTSOF(notified);
	size_t k = 0;
	for (size_t i = 0; i < always + ELEMENTSOF(notified_conditionally); i++) {
		const char *name = i < always ? notified[i] : notified_conditionally[i - always];
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR)
			continue;
		if (k < n)
			ret[k] = nr;
		k++;
	}
	return k;
}

static int add_named(scmp_filter_ctx ctx, uint32_t action, const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR) {
		log_debug("Syscall '%s' unknown to libseccomp, not in the filter.", name);
		return 0;
	}
	return seccomp_rule_add(ctx, action, nr, 0);
}

int policy_build_filter(const struct policy *p, void **ret, size_t *ret_len)
{
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!ctx)
		return -ENOMEM;
	/* Only the native architecture: i386 (int 0x80) and x32 calls kill the process. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r < 0)
		return r;
	/* The caller sets no_new_privs itself, before dropping capabilities. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (r < 0)
		return r;
	/*
	 * A binary tree of syscall numbers instead of a linear list of ~100 rules: every call the
	 * filter lets through (most of a program's) is decided in a few comparisons. libseccomp
	 * before 2.5 lacks the attribute; the filter is then just slower.
	 */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (r < 0 && r != -EINVAL && r != -EOPNOTSUPP)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(deny_eperm); i++)
		if ((r = add_named(ctx, SCMP_ACT_ERRNO(EPERM), deny_eperm[i])) < 0)
			return r;
	for (size_t i = 0; i < ELEMENTSOF(deny_enosys); i++)
		if ((r = add_named(ctx, SCMP_ACT_ERRNO(ENOSYS), deny_enosys[i])) < 0)
			return r;
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), NR_FCHMODAT2, 0);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(notified); i++)
		if ((r = add_named(ctx, SCMP_ACT_NOTIFY, notified[i])) < 0)
			return r;

	/*
	 * Sends that name a destination reach addresses connect() would refuse (a datagram to a
	 * forbidden IP, an AF_UNIX socket file the policy keeps read-only, an abstract name in the
	 * host's namespace) or connect themselves (TCP Fast Open). sendto's address is a register
	 * argument, so only sendto with a non-NULL one is notified, an exact and race-free test;
	 * send() and sendto(NULL) keep the socket's connected peer, which connect() judged, and
	 * stay in the kernel. sendmsg and sendmmsg keep the address in memory, which the filter
	 * cannot see, so they are notified above whatever the net mode: AF_UNIX paths reach the
	 * host's socket files with "net none" too.
	 */
	r = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(sendto), 1, SCMP_A4(SCMP_CMP_NE, 0, 0));
	if (r < 0)
		return r;

	/* clone() with any namespace flag; the flags are a register argument, so this check is
	 * exact (clone3, whose flags are in memory, is refused above). */
	static const uint64_t ns_flags[] = { CLONE_NEWNS,    CLONE_NEWUSER, CLONE_NEWPID,
					     CLONE_NEWNET,   CLONE_NEWUTS,  CLONE_NEWIPC,
					     CLONE_NEWCGROUP };
	for (size_t i = 0; i < ELEMENTSOF(ns_flags); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
		if (r < 0)
			return r;
	}
	/* Faking terminal input (TIOCSTI) or console tricks (TIOCLINUX) could type commands into
	 * the caller's shell; the command number is 32 bits, compare it masked. */
	static const uint64_t bad_ioctls[] = { TIOCSTI, TIOCLINUX };
	for (size_t i = 0; i < ELEMENTSOF(bad_ioctls); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, bad_ioctls[i]));
		if (r < 0)
			return r;
	}
	/* Device nodes (the kernel refuses them in a user namespace anyway); FIFOs and sockets
	 * stay possible. */
	static const uint64_t dev_types[] = { S_IFCHR, S_IFBLK };
	for (size_t i = 0; i < ELEMENTSOF(dev_types); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknod), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]));
		if (r >= 0)
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknodat), 1,
					     SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]));
		if (r < 0)
			return r;
	}
	/* Stacking another filter through prctl (seccomp() itself is refused above). */
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1,
			     SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP, 0));
	if (r < 0)
		return r;

	fd = memfd_create("sandbox-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return r;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return negative_errno();
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	r = read_full_fd(fd, 1024 * 1024, &buf, &len);
	if (r < 0)
		return r;
	if (len == 0 || len % 8 != 0)
		return -EIO;
	*ret = TAKE_PTR(buf);
	*ret_len = len / 8;
	return 0;
}
