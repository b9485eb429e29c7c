/* SPDX-License-Identifier: MIT */
#include "k2i/proctrace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/connector.h>
#include <linux/netlink.h>
/*
 * <linux/cn_proc.h> calls its message struct proc_event and its event types PROC_EVENT_FORK,
 * _EXEC and _EXIT, the names of our API: rename the kernel's while including it.
 */
#define proc_event cn_proc_event
#define PROC_EVENT_FORK CN_PROC_EVENT_FORK
#define PROC_EVENT_EXEC CN_PROC_EVENT_EXEC
#define PROC_EVENT_EXIT CN_PROC_EVENT_EXIT
#include <linux/cn_proc.h>
#undef proc_event
#undef PROC_EVENT_FORK
#undef PROC_EVENT_EXEC
#undef PROC_EVENT_EXIT

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <event2/event.h>

#include "bpf/proctrace.h"
#include "bpf/proctrace.skel.h"
#include "k2i/procinfo.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"

DEFINE_CLEANUP_FUNC(struct proctrace_bpf, proctrace_bpf__destroy)
DEFINE_CLEANUP_FUNC(struct ring_buffer, ring_buffer__free)
DEFINE_CLEANUP_FUNC(struct btf, btf__free)
DEFINE_CLEANUP_FUNC(struct event, event_free)

/* From include/linux/sched.h; visible in /proc/<pid>/stat, so stable. */
#define PF_FORKNOEXEC 0x00000040u
#define PF_KTHREAD 0x00200000u

#define NSEC_PER_SEC UINT64_C(1000000000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define VMLINUX_BTF_PATH "/sys/kernel/btf/vmlinux"
/* A stat line is under 1 KiB (comm is at most 64 bytes); more means a crafted or future file. */
#define STAT_BUF_SIZE 4096
/* How long proctrace_new() waits for the process connector to acknowledge PROC_CN_MCAST_LISTEN. */
#define NETLINK_ACK_TIMEOUT_MS 1000
/* Datagrams read per wake-up, so a flood cannot keep the loop from its other work. */
#define NETLINK_BATCH 256
#define NETLINK_BUF_SIZE 8192
/* Processes whose leader exited before their other threads, waiting for their last thread. */
#define NETLINK_PENDING_MAX 64

struct poll_proc {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	gid_t gid;
	uint32_t flags; /* PF_* */
	uint64_t start_ticks;
	uint64_t start_code, end_code; /* 0 when /proc hides them */
	bool zombie; /* the whole process is dead, not yet reaped */
	bool exit_reported; /* EXIT was emitted (or the process was a zombie at the first scan) */
	/*
	 * The leader was seen dead with other threads running: the zombie's exit_code will then be
	 * the leader's, not the process's status, so none is reported.
	 */
	bool leader_exited;
	bool has_status; /* status is the zombie's wait status */
	uint32_t status;
	char comm[PROC_EVENT_COMM_MAX];
};

struct proctrace {
	struct event_base *base; /* borrowed */
	struct proctrace_options opts;
	proc_event_cb_t cb;
	void *userdata;
	enum proctrace_source source;
	uint64_t received; /* events delivered to cb */
	uint64_t nl_overruns; /* ENOBUFS from the netlink socket */
	char reason[512]; /* see proctrace_reason() */
	/* EV_READ on the ring buffer's epoll fd or on the socket, or the poll source's timer */
	struct event *event;
	int proc_fd; /* /proc, for the netlink and poll sources */

	/* PROCTRACE_SOURCE_BPF */
	struct proctrace_bpf *skel;
	struct ring_buffer *rb;
	uint64_t *lost_values; /* one per possible CPU, for reading the per-CPU counter */
	int ncpus;
	int64_t boot_to_real_ns; /* CLOCK_REALTIME - CLOCK_BOOTTIME, refreshed per wake-up */

	/* PROCTRACE_SOURCE_NETLINK */
	int nl_fd;
	uint32_t nl_port;
	/*
	 * Exits of leaders whose other threads still ran: the process's EXIT, filled from /proc
	 * while the leader was a zombie, waits here for its last thread (oldest first).
	 */
	struct proc_event *pending;
	size_t n_pending;
	int64_t mono_to_real_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC, refreshed per wake-up */
	int64_t mono_to_boot_ns; /* CLOCK_BOOTTIME - CLOCK_MONOTONIC */

	/* PROCTRACE_SOURCE_POLL: the previous scan and the buffer of the next, sorted by pid */
	DIR *proc_dir;
	struct poll_proc *prev;
	size_t n_prev, size_prev;
	struct poll_proc *cur;
	size_t n_cur, size_cur;
};

static const char *const proc_event_type_names[_PROC_EVENT_TYPE_MAX] = {
	[PROC_EVENT_FORK] = "fork",
	[PROC_EVENT_EXEC] = "exec",
	[PROC_EVENT_EXIT] = "exit",
};

static const char *const proctrace_source_names[_PROCTRACE_SOURCE_MAX] = {
	[PROCTRACE_SOURCE_BPF] = "bpf",
	[PROCTRACE_SOURCE_NETLINK] = "netlink",
	[PROCTRACE_SOURCE_POLL] = "poll",
};

const char *proc_event_type_to_string(enum proc_event_type type)
{
	if ((unsigned)type >= _PROC_EVENT_TYPE_MAX)
		return NULL;
	return proc_event_type_names[type];
}

const char *proctrace_source_to_string(enum proctrace_source source)
{
	if ((unsigned)source >= _PROCTRACE_SOURCE_MAX)
		return NULL;
	return proctrace_source_names[source];
}

int proctrace_source_from_string(const char *s)
{
	for (int i = 0; s && i < _PROCTRACE_SOURCE_MAX; i++)
		if (strcmp(s, proctrace_source_names[i]) == 0)
			return i;
	return -EINVAL;
}

void proctrace_options_init(struct proctrace_options *opts)
{
	*opts = (struct proctrace_options){
		.buffer_size = PROCTRACE_BUFFER_SIZE_DEFAULT,
		.poll_interval_ms = PROCTRACE_POLL_INTERVAL_DEFAULT_MS,
	};
}

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	/* These clocks cannot fail with a valid clock ID and pointer. */
	(void)clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Adds "name: why" to the reason a better source was not used. */
static void reason_add(struct proctrace *t, const char *name, const char *why)
{
	size_t len = strlen(t->reason);

	snprintf(t->reason + len, sizeof(t->reason) - len, "%s%s: %s", len ? "; " : "", name, why);
}

/* Decodes a wait(2) status into @ev. */
static void event_set_status(struct proc_event *ev, uint32_t status)
{
	if ((status & 0x7f) == 0) {
		ev->exit_code = (int)((status >> 8) & 0xff);
	} else {
		ev->exit_signal = (int)(status & 0x7f);
		ev->core_dumped = status & 0x80;
	}
	ev->has_exit_status = true;
}

static void emit(struct proctrace *t, const struct proc_event *ev)
{
	t->received++;
	t->cb(ev, t->userdata);
}

/* libbpf's diagnostics (including verifier logs) are for debugging only. */
__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level level,
							      const char *format, va_list ap)
{
	char buf[1024];
	int n;

	if (log_get_max_level() < LOG_DEBUG)
		return 0;
	n = vsnprintf(buf, sizeof(buf), format, ap);
	if (n > 0 && (size_t)n < sizeof(buf) && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	log_debug("libbpf: %s", buf);
	return n;
}

/*
 * /proc/<pid> readers shared by the netlink and poll sources.
 */

/*
 * Reads /proc/<pid>/stat into @buf (NUL-terminated) and the owner of the file, which is the
 * process's effective uid and gid as for the process table (see procinfo.c), into *ret_st.
 * Returns the length, -ENOENT or -ESRCH if the process is gone, -EBADMSG if the file does not
 * fit, or another -errno.
 */
static int stat_read(int proc_fd, pid_t pid, char *buf, size_t size, struct stat *ret_st)
{
	_cleanup_close_ int fd = -EBADF;
	char path[32];
	ssize_t n;

	snprintf(path, sizeof(path), "%d/stat", (int)pid);
	fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	/* A seq_file of one record: a single read returns all of it. */
	n = read(fd, buf, size - 1);
	if (n < 0)
		return negative_errno();
	if ((size_t)n >= size - 1)
		return -EBADMSG;
	buf[n] = '\0';
	if (fstat(fd, ret_st) < 0)
		return negative_errno();
	return (int)n;
}

/*
 * Field 52 of /proc/<pid>/stat, the thread's exit_code (a wait(2) status) since Linux 3.5, shown
 * as 0 to readers that may not ptrace the process. Returns true and stores it if present.
 */
static bool stat_exit_status(const char *buf, size_t len, uint32_t *ret)
{
	const char *p = memrchr(buf, ')', len), *end = buf + len;
	int field = 2;

	if (!p)
		return false;
	for (p++; p < end;) {
		const char *tok;
		uint64_t v = 0;

		while (p < end && (*p == ' ' || *p == '\n'))
			p++;
		if (p == end)
			break;
		tok = p;
		while (p < end && *p != ' ' && *p != '\n')
			p++;
		if (++field != 52)
			continue;
		for (const char *q = tok; q < p; q++) {
			if (*q < '0' || *q > '9' || v > UINT32_MAX)
				return false;
			v = v * 10 + (uint64_t)(*q - '0');
		}
		if (p == tok || v > UINT32_MAX)
			return false;
		*ret = (uint32_t)v;
		return true;
	}
	return false;
}

static void comm_copy(char dst[PROC_EVENT_COMM_MAX], const char *src, size_t len)
{
	len = MIN(len, (size_t)PROC_EVENT_COMM_MAX - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Stores the target of /proc/<pid>/exe in ev->filename. */
static void event_read_exe(int proc_fd, struct proc_event *ev)
{
	char path[32];
	ssize_t n;

	snprintf(path, sizeof(path), "%d/exe", (int)ev->pid);
	n = readlinkat(proc_fd, path, ev->filename, sizeof(ev->filename));
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(ev->filename)) {
		n = sizeof(ev->filename) - 1;
		ev->filename_truncated = true;
	}
	ev->filename[n] = '\0';
	ev->has_filename = true;
}

/*
 * PROCTRACE_SOURCE_BPF
 */

/*
 * Whether the kernel's sched_process_exit tracepoint passes group_dead: its BTF prototype
 * btf_trace_sched_process_exit is void (*)(void *, struct task_struct *, bool) on recent
 * kernels and has one argument less before. Returns 1, 0, or -errno.
 */
static int sched_exit_has_group_dead(void)
{
	_cleanup_(btf__freep) struct btf *btf = NULL;
	const struct btf_type *type;
	int id;

	btf = btf__load_vmlinux_btf();
	if (!btf)
		return negative_errno();
	id = btf__find_by_name_kind(btf, "btf_trace_sched_process_exit", BTF_KIND_TYPEDEF);
	if (id < 0)
		return id;
	type = btf__type_by_id(btf, id);
	type = type ? btf__type_by_id(btf, type->type) : NULL;
	if (!type || !btf_is_ptr(type))
		return -EBADMSG;
	type = btf__type_by_id(btf, type->type);
	if (!type || !btf_is_func_proto(type))
		return -EBADMSG;
	return btf_vlen(type) >= 3;
}

static int bpf_on_record(void *ctx, void *data, size_t size)
{
	struct proctrace *t = ctx;
	const struct proctrace_record *r = data;
	struct proc_event ev = {};

	if (size < sizeof(*r))
		return 0;
	switch (r->type) {
	case PROCTRACE_FORK:
		ev.type = PROC_EVENT_FORK;
		break;
	case PROCTRACE_EXEC:
		ev.type = PROC_EVENT_EXEC;
		break;
	case PROCTRACE_EXIT:
		ev.type = PROC_EVENT_EXIT;
		event_set_status(&ev, r->exit_status);
		break;
	default:
		return 0;
	}
	ev.time_ns = r->time_ns + (uint64_t)t->boot_to_real_ns;
	ev.pid = (pid_t)r->pid;
	ev.tid = (pid_t)r->tid;
	ev.ppid = (pid_t)r->ppid;
	ev.uid = r->uid;
	ev.gid = r->gid;
	ev.start_ticks = r->start_ticks;
	ev.cgroup_id = r->cgroup_id;
	ev.has_ppid = ev.has_ids = ev.has_comm = ev.has_start_ticks = ev.has_cgroup_id = true;
	comm_copy(ev.comm, r->comm, strnlen(r->comm, sizeof(r->comm)));
	if (r->type == PROCTRACE_EXEC && r->filename[0]) {
		size_t n = strnlen(r->filename, sizeof(r->filename) - 1);

		memcpy(ev.filename, r->filename, n);
		ev.filename[n] = '\0';
		ev.has_filename = true;
		ev.filename_truncated = r->flags & PROCTRACE_F_FILENAME_TRUNC;
	}
	if (r->type == PROCTRACE_EXEC && r->args_len > 0) {
		size_t n = MIN((size_t)r->args_len, sizeof(ev.args));

		memcpy(ev.args, r->args, n);
		ev.args_len = (uint16_t)n;
		ev.has_args = true;
		ev.args_truncated = r->flags & PROCTRACE_F_ARGS_TRUNC;
	}
	emit(t, &ev);
	return 0;
}

static void bpf_on_readable(evutil_socket_t fd, short what, void *userdata)
{
	struct proctrace *t = userdata;
	int r;

	t->boot_to_real_ns = (int64_t)(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME));
	r = ring_buffer__consume(t->rb);
	if (r < 0)
		log_debug_errno(r, "Failed to consume the process event ring buffer: %m");
}

/* The ring buffer's size must be a power of two and a multiple of the page size. */
static uint32_t ringbuf_size(uint32_t size)
{
	uint32_t pow2 = (uint32_t)sysconf(_SC_PAGESIZE);

	while (pow2 < size)
		pow2 <<= 1;
	return pow2;
}

static int bpf_start(struct proctrace *t)
{
	_cleanup_(proctrace_bpf__destroyp) struct proctrace_bpf *skel = NULL;
	_cleanup_(ring_buffer__freep) struct ring_buffer *rb = NULL;
	_cleanup_(event_freep) struct event *ev = NULL;
	_cleanup_free_ uint64_t *lost_values = NULL;
	bool group_dead;
	int ncpus, r;

	/* CO-RE needs the running kernel's BTF; say so rather than let libbpf fail later. */
	if (access(VMLINUX_BTF_PATH, R_OK) < 0) {
		r = negative_errno();
		reason_add(t, "bpf",
			   r == -ENOENT ? "the kernel has no BTF (" VMLINUX_BTF_PATH ")" :
					  strerror(-r));
		return r;
	}
	ncpus = libbpf_num_possible_cpus();
	if (ncpus < 0) {
		reason_add(t, "bpf", strerror(-ncpus));
		return ncpus;
	}
	lost_values = calloc((size_t)ncpus, sizeof(*lost_values));
	if (!lost_values)
		return -ENOMEM;

	r = sched_exit_has_group_dead();
	if (r < 0) {
		log_debug_errno(r, "Cannot read the sched_process_exit prototype from BTF: %m");
		reason_add(t, "bpf", "cannot read the kernel's BTF");
		return r;
	}
	group_dead = r > 0 && !t->opts.bpf_exit_by_live_count;

	skel = proctrace_bpf__open();
	if (!skel) {
		r = negative_errno();
		reason_add(t, "bpf", strerror(-r));
		return r;
	}
	r = bpf_map__set_max_entries(skel->maps.events, ringbuf_size(t->opts.buffer_size));
	if (r < 0) {
		reason_add(t, "bpf", strerror(-r));
		return r;
	}
	/*
	 * Load one exit program: proctrace_exit reads an argument that older kernels do not pass
	 * (it would fail verification there), proctrace_exit_live works everywhere.
	 */
	r = bpf_program__set_autoload(
		group_dead ? skel->progs.proctrace_exit_live : skel->progs.proctrace_exit, false);
	if (r >= 0 && group_dead)
		/* Only the live-count program uses it; the kernel rounds this up to the CPU count. */
		r = bpf_map__set_max_entries(skel->maps.exit_seen, 1);
	if (r < 0) {
		reason_add(t, "bpf", strerror(-r));
		return r;
	}

	r = proctrace_bpf__load(skel);
	if (r < 0) {
		log_debug_errno(r, "Failed to load the proctrace BPF object: %m");
		reason_add(
			t, "bpf",
			r == -EPERM || r == -EACCES ?
				"not permitted (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)" :
				strerror(-r));
		return r;
	}
	r = proctrace_bpf__attach(skel);
	if (r < 0) {
		log_debug_errno(r, "Failed to attach the proctrace BPF programs: %m");
		reason_add(t, "bpf", strerror(-r));
		return r;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), bpf_on_record, t, NULL);
	if (!rb) {
		r = negative_errno();
		reason_add(t, "bpf", strerror(-r));
		return r;
	}
	/* Level-triggered: readable while records are waiting, and each wake-up drains them all. */
	ev = event_new(t->base, ring_buffer__epoll_fd(rb), EV_READ | EV_PERSIST, bpf_on_readable,
		       t);
	if (!ev || event_add(ev, NULL) < 0)
		return -ENOMEM;

	log_debug("proctrace: BPF programs attached, ring buffer %" PRIu32 " bytes, exit by %s",
		  ringbuf_size(t->opts.buffer_size), group_dead ? "group_dead" : "signal->live");
	t->skel = TAKE_PTR(skel);
	t->rb = TAKE_PTR(rb);
	t->event = TAKE_PTR(ev);
	t->lost_values = TAKE_PTR(lost_values);
	t->ncpus = ncpus;
	t->source = PROCTRACE_SOURCE_BPF;
	return 0;
}

static uint64_t bpf_lost(const struct proctrace *t)
{
	uint64_t sum = 0;
	uint32_t key = 0;
	int r;

	r = bpf_map__lookup_elem(t->skel->maps.lost, &key, sizeof(key), t->lost_values,
				 (size_t)t->ncpus * sizeof(*t->lost_values), 0);
	if (r < 0) {
		log_debug_errno(r, "Failed to read the lost-event counters: %m");
		return 0;
	}
	for (int i = 0; i < t->ncpus; i++)
		sum += t->lost_values[i];
	return sum;
}

/*
 * PROCTRACE_SOURCE_NETLINK
 */

/* Sends PROC_CN_MCAST_LISTEN or _IGNORE to the process connector. */
static int netlink_send_op(struct proctrace *t, int fd, enum proc_cn_mcast_op op, uint32_t seq)
{
	union {
		struct nlmsghdr hdr;
		char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(op))];
	} msg = {};
	struct cn_msg cn = {
		.id = { .idx = CN_IDX_PROC, .val = CN_VAL_PROC },
		.seq = seq,
		.ack = t->nl_port,
		.len = sizeof(op),
	};

	msg.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(cn) + sizeof(op));
	msg.hdr.nlmsg_type = NLMSG_DONE;
	msg.hdr.nlmsg_pid = t->nl_port;
	msg.hdr.nlmsg_seq = seq;
	memcpy(NLMSG_DATA(&msg.hdr), &cn, sizeof(cn));
	memcpy((char *)NLMSG_DATA(&msg.hdr) + sizeof(cn), &op, sizeof(op));
	/* Unconnected: the default destination is the kernel. */
	if (send(fd, &msg, msg.hdr.nlmsg_len, 0) < 0)
		return negative_errno();
	return 0;
}

/*
 * Calls @fn for each process connector message in @buf; the event is copied out because it
 * sits at offset 36 of the datagram while it holds a 64-bit member.
 */
static void netlink_parse(const char *buf, size_t len,
			  void (*fn)(void *userdata, const struct cn_msg *cn,
				     const struct cn_proc_event *pev),
			  void *userdata)
{
	int left = (int)len;

	for (const struct nlmsghdr *nlh = (const void *)buf; NLMSG_OK(nlh, left);
	     nlh = NLMSG_NEXT(nlh, left)) {
		struct cn_proc_event pev = {};
		struct cn_msg cn;
		size_t payload = NLMSG_PAYLOAD(nlh, 0);

		if (nlh->nlmsg_type == NLMSG_ERROR || nlh->nlmsg_type == NLMSG_NOOP ||
		    payload < sizeof(cn))
			continue;
		memcpy(&cn, NLMSG_DATA(nlh), sizeof(cn));
		if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC ||
		    cn.len > payload - sizeof(cn) ||
		    cn.len < offsetof(struct cn_proc_event, event_data))
			continue;
		memcpy(&pev, (const char *)NLMSG_DATA(nlh) + sizeof(cn),
		       MIN((size_t)cn.len, sizeof(pev)));
		fn(userdata, &cn, &pev);
	}
}

struct netlink_ack {
	uint32_t ack; /* what we sent: our port ID, unique among the listeners */
	bool seen;
	uint32_t err;
};

static void netlink_on_ack(void *userdata, const struct cn_msg *cn, const struct cn_proc_event *pev)
{
	struct netlink_ack *a = userdata;

	/* The kernel echoes ack + 1 but replaces seq with its own per-CPU sequence number. */
	if (pev->what == PROC_EVENT_NONE && cn->ack == a->ack + 1) {
		a->seen = true;
		a->err = pev->event_data.ack.err;
	}
}

/*
 * Waits up to NETLINK_ACK_TIMEOUT_MS for the acknowledgement of PROC_CN_MCAST_LISTEN, dropping
 * the events that arrive first (nobody is listening yet). The kernel sends none when it ignores
 * the request (a requester outside the initial user or PID namespace) and its error otherwise.
 */
static int netlink_wait_ack(struct proctrace *t, int fd)
{
	struct netlink_ack a = { .ack = t->nl_port };
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + NETLINK_ACK_TIMEOUT_MS * NSEC_PER_MSEC;
	_cleanup_free_ char *buf = malloc(NETLINK_BUF_SIZE);

	if (!buf)
		return -ENOMEM;
	while (!a.seen) {
		struct sockaddr_nl addr = {};
		socklen_t alen = sizeof(addr);
		ssize_t n;

		n = recvfrom(fd, buf, NETLINK_BUF_SIZE, 0, (struct sockaddr *)&addr, &alen);
		if (n < 0) {
			uint64_t now = clock_ns(CLOCK_MONOTONIC);
			struct pollfd pfd = { .fd = fd, .events = POLLIN };

			if (errno == EINTR || errno == ENOBUFS)
				continue;
			if (errno != EAGAIN)
				return negative_errno();
			if (now >= deadline)
				return -ETIMEDOUT;
			if (poll(&pfd, 1, (int)((deadline - now) / NSEC_PER_MSEC) + 1) < 0 &&
			    errno != EINTR)
				return negative_errno();
			continue;
		}
		if (addr.nl_pid != 0)
			continue;
		netlink_parse(buf, (size_t)n, netlink_on_ack, &a);
	}
	return a.err ? -(int)a.err : 0;
}

/*
 * Fills what the process connector does not carry from /proc/<pid>, if the process there is the
 * event's: a process that reused the PID started after the event (@event_boot_ns, boot time).
 * Returns false if there was nothing to read; otherwise, if @ret is not NULL, stores the parsed
 * stat (its comm points into freed memory) in *ret.
 */
static bool netlink_fill(struct proctrace *t, struct proc_event *ev, uint64_t event_boot_ns,
			 struct proc_stat *ret)
{
	char buf[STAT_BUF_SIZE];
	struct proc_stat st;
	struct stat sb;
	int r;

	r = stat_read(t->proc_fd, ev->pid, buf, sizeof(buf), &sb);
	if (r < 0 || proc_parse_stat(buf, (size_t)r, &st) < 0)
		return false;
	if (st.start_ticks * PROCTRACE_NSEC_PER_TICK > event_boot_ns)
		return false;
	ev->start_ticks = st.start_ticks;
	ev->has_start_ticks = true;
	comm_copy(ev->comm, st.comm, st.comm_len);
	ev->has_comm = true;
	if (!ev->has_ppid) {
		ev->ppid = st.ppid;
		ev->has_ppid = true;
	}
	ev->uid = sb.st_uid;
	ev->gid = sb.st_gid;
	ev->has_ids = true;
	if (ret) {
		*ret = st;
		ret->comm = NULL;
	}
	return true;
}

static void netlink_pending_remove(struct proctrace *t, size_t i)
{
	memmove(&t->pending[i], &t->pending[i + 1], (t->n_pending - i - 1) * sizeof(*t->pending));
	t->n_pending--;
}

static struct proc_event *netlink_pending_find(struct proctrace *t, pid_t pid, size_t *ret_i)
{
	for (size_t i = 0; i < t->n_pending; i++)
		if (t->pending[i].pid == pid) {
			*ret_i = i;
			return &t->pending[i];
		}
	return NULL;
}

static void netlink_pending_add(struct proctrace *t, const struct proc_event *ev)
{
	if (t->n_pending == NETLINK_PENDING_MAX) {
		/*
		 * Full (its threads' exits were lost, or many such processes at once): report the
		 * oldest now, with its leader's status, rather than never.
		 */
		emit(t, &t->pending[0]);
		netlink_pending_remove(t, 0);
	}
	t->pending[t->n_pending++] = *ev;
}

/*
 * The connector reports each thread's exit. A process is dead when its last thread is:
 *  - a leader that exits last (the usual case: one thread, or exit_group() or a fatal signal
 *    ending all of them) is a zombie in /proc with no other thread left, or already reaped;
 *  - a leader that called the exit syscall alone while other threads run is a zombie with
 *    threads; its EXIT waits in t->pending until a thread's exit leaves it without threads,
 *    and takes that thread's status (the group's exit code after exit_group());
 *  - when a thread other than the leader execs, de_thread() kills the old leader (an exit with
 *    the process's PID) and the execing thread takes its place: the process is then alive at
 *    this PID with the same start time, and this is not an exit.
 * Returns true if @ev (the leader's or the thread's exit) is to be emitted; it may then have been
 * replaced by the pending event.
 */
static bool netlink_exit(struct proctrace *t, struct proc_event *ev, uint64_t boot_ns)
{
	struct proc_event *p;
	struct proc_stat st;
	size_t i;

	if (ev->tid == ev->pid) {
		if (!netlink_fill(t, ev, boot_ns, &st))
			return true;
		if (st.state != 'Z' && st.state != 'X')
			return false;
		if (st.num_threads <= 1)
			return true;
		netlink_pending_add(t, ev);
		return false;
	}

	p = netlink_pending_find(t, ev->pid, &i);
	if (!p)
		return false; /* a thread of a process that lives on */
	{
		struct proc_event probe = { .pid = ev->pid };

		if (netlink_fill(t, &probe, boot_ns, &st) && probe.start_ticks == p->start_ticks &&
		    st.num_threads > 1)
			return false; /* more threads to go */
	}
	p->time_ns = ev->time_ns;
	p->tid = ev->tid;
	p->exit_code = ev->exit_code;
	p->exit_signal = ev->exit_signal;
	p->core_dumped = ev->core_dumped;
	*ev = *p;
	netlink_pending_remove(t, i);
	return true;
}

static void netlink_on_event(void *userdata, const struct cn_msg *cn,
			     const struct cn_proc_event *pev)
{
	struct proctrace *t = userdata;
	struct proc_event ev = {};
	uint64_t boot_ns = pev->timestamp_ns + (uint64_t)t->mono_to_boot_ns;
	size_t i;

	ev.time_ns = pev->timestamp_ns + (uint64_t)t->mono_to_real_ns;
	switch (pev->what) {
	case CN_PROC_EVENT_FORK:
		/* A new thread of an existing process is not a process. */
		if (pev->event_data.fork.child_pid != pev->event_data.fork.child_tgid)
			return;
		ev.type = PROC_EVENT_FORK;
		ev.pid = pev->event_data.fork.child_tgid;
		ev.tid = pev->event_data.fork.child_pid;
		ev.ppid = pev->event_data.fork.parent_tgid;
		ev.has_ppid = true;
		netlink_fill(t, &ev, boot_ns, NULL);
		break;
	case CN_PROC_EVENT_EXEC:
		ev.type = PROC_EVENT_EXEC;
		ev.pid = pev->event_data.exec.process_tgid;
		ev.tid = pev->event_data.exec.process_pid;
		/* A thread exec'd after its leader exited: the process lives on. */
		if (netlink_pending_find(t, ev.pid, &i))
			netlink_pending_remove(t, i);
		if (netlink_fill(t, &ev, boot_ns, NULL))
			event_read_exe(t->proc_fd, &ev);
		break;
	case CN_PROC_EVENT_EXIT:
		ev.type = PROC_EVENT_EXIT;
		ev.pid = pev->event_data.exit.process_tgid;
		ev.tid = pev->event_data.exit.process_pid;
		ev.ppid = pev->event_data.exit.parent_tgid;
		ev.has_ppid = true;
		event_set_status(&ev, pev->event_data.exit.exit_code);
		if (!netlink_exit(t, &ev, boot_ns))
			return;
		break;
	default:
		return;
	}
	emit(t, &ev);
}

static void netlink_on_readable(evutil_socket_t fd, short what, void *userdata)
{
	struct proctrace *t = userdata;
	char buf[NETLINK_BUF_SIZE] __attribute__((aligned(8)));
	uint64_t mono = clock_ns(CLOCK_MONOTONIC);

	t->mono_to_real_ns = (int64_t)(clock_ns(CLOCK_REALTIME) - mono);
	t->mono_to_boot_ns = (int64_t)(clock_ns(CLOCK_BOOTTIME) - mono);
	for (int i = 0; i < NETLINK_BATCH; i++) {
		struct sockaddr_nl addr = {};
		socklen_t alen = sizeof(addr);
		ssize_t n;

		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&addr, &alen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* The receive buffer overflowed: one or more events are lost. */
				t->nl_overruns++;
				continue;
			}
			if (errno != EAGAIN)
				log_debug_errno(errno, "Failed to receive process events: %m");
			return;
		}
		/* Only the kernel's messages: another process may send to our port. */
		if (addr.nl_pid != 0)
			continue;
		netlink_parse(buf, (size_t)n, netlink_on_event, t);
	}
}

static int netlink_start(struct proctrace *t)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_(event_freep) struct event *ev = NULL;
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	socklen_t alen = sizeof(addr);
	int size = (int)t->opts.buffer_size;
	uint32_t seq = (uint32_t)getpid();
	int r;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (fd < 0) {
		r = negative_errno();
		reason_add(t, "netlink",
			   r == -EPROTONOSUPPORT ?
				   "the kernel has no connector (CONFIG_CONNECTOR)" :
				   strerror(-r));
		return r;
	}
	/* FORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it the limit applies. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &(socklen_t){ sizeof(size) }) < 0)
		size = -1;
	/* Older kernels let only CAP_NET_ADMIN join the group: EPERM here without it. */
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = negative_errno();
		reason_add(t, "netlink",
			   r == -EPERM ? "not permitted (needs CAP_NET_ADMIN)" : strerror(-r));
		return r;
	}
	if (getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) {
		r = negative_errno();
		reason_add(t, "netlink", strerror(-r));
		return r;
	}
	t->nl_port = addr.nl_pid;

	r = netlink_send_op(t, fd, PROC_CN_MCAST_LISTEN, seq);
	if (r >= 0)
		r = netlink_wait_ack(t, fd);
	if (r < 0) {
		reason_add(t, "netlink",
			   r == -ETIMEDOUT ? "no answer from the process connector (outside the "
					     "initial namespaces, or no CONFIG_PROC_EVENTS)" :
			   r == -EPERM	   ? "not permitted (needs CAP_NET_ADMIN)" :
					     strerror(-r));
		return r;
	}

	t->pending = calloc(NETLINK_PENDING_MAX, sizeof(*t->pending));
	ev = event_new(t->base, fd, EV_READ | EV_PERSIST, netlink_on_readable, t);
	if (!t->pending || !ev || event_add(ev, NULL) < 0) {
		(void)netlink_send_op(t, fd, PROC_CN_MCAST_IGNORE, seq + 1);
		return -ENOMEM;
	}
	/* The kernel reports twice the size asked, the other half is its bookkeeping. */
	log_debug("proctrace: listening to the process connector, receive buffer %d bytes",
		  size / 2);
	t->nl_fd = TAKE_FD(fd);
	t->event = TAKE_PTR(ev);
	t->source = PROCTRACE_SOURCE_NETLINK;
	return 0;
}

/*
 * PROCTRACE_SOURCE_POLL
 */

static int poll_proc_cmp(const void *a, const void *b)
{
	const struct poll_proc *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Reads one process into @p. Returns 0, -ENOENT/-ESRCH if it is gone, or another -errno. */
static int poll_read(struct proctrace *t, pid_t pid, struct poll_proc *p)
{
	char buf[STAT_BUF_SIZE];
	struct proc_stat st;
	struct stat sb;
	int r;

	r = stat_read(t->proc_fd, pid, buf, sizeof(buf), &sb);
	if (r < 0)
		return r;
	if (proc_parse_stat(buf, (size_t)r, &st) < 0)
		return -EBADMSG;
	*p = (struct poll_proc){
		.pid = pid,
		.ppid = st.ppid,
		.uid = sb.st_uid,
		.gid = sb.st_gid,
		.flags = st.flags,
		.start_ticks = st.start_ticks,
		.start_code = st.start_code,
		.end_code = st.end_code,
		/* A zombie leader with live threads is a running process. */
		.zombie = (st.state == 'Z' || st.state == 'X') && st.num_threads <= 1,
		.leader_exited = (st.state == 'Z' || st.state == 'X') && st.num_threads > 1,
	};
	comm_copy(p->comm, st.comm, st.comm_len);
	if (p->zombie)
		p->has_status = stat_exit_status(buf, (size_t)r, &p->status);
	return 0;
}

/* Reads every process into t->cur, sorted by pid. */
static int poll_scan(struct proctrace *t)
{
	struct dirent *de;

	t->n_cur = 0;
	rewinddir(t->proc_dir);
	/*
	 * readdir() tells the end from an error only through errno, so it is cleared before every
	 * call: a process that vanished while being read leaves ENOENT in it.
	 */
	for (;;) {
		char *end;
		long pid;
		int r;

		errno = 0;
		de = readdir(t->proc_dir);
		if (!de) {
			if (errno)
				return negative_errno();
			break;
		}
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		errno = 0;
		pid = strtol(de->d_name, &end, 10);
		if (*end || errno || pid <= 0 || pid > INT32_MAX)
			continue;
		if (t->n_cur == t->size_cur) {
			size_t size = MAX(t->size_cur * 2, (size_t)256);
			struct poll_proc *p = reallocarray(t->cur, size, sizeof(*p));

			if (!p)
				return -ENOMEM;
			t->cur = p;
			t->size_cur = size;
		}
		r = poll_read(t, (pid_t)pid, &t->cur[t->n_cur]);
		if (r == -ENOENT || r == -ESRCH || r == -EBADMSG)
			continue;
		if (r < 0)
			return r;
		t->n_cur++;
	}
	qsort(t->cur, t->n_cur, sizeof(*t->cur), poll_proc_cmp);
	return 0;
}

static void poll_emit(struct proctrace *t, enum proc_event_type type, const struct poll_proc *p,
		      uint64_t now)
{
	struct proc_event ev = {
		.type = type,
		.time_ns = now,
		.pid = p->pid,
		.tid = p->pid,
		.ppid = p->ppid,
		.uid = p->uid,
		.gid = p->gid,
		.start_ticks = p->start_ticks,
		.has_ppid = true,
		.has_ids = true,
		.has_comm = true,
		.has_start_ticks = true,
	};

	memcpy(ev.comm, p->comm, sizeof(ev.comm));
	if (type == PROC_EVENT_EXEC)
		event_read_exe(t->proc_fd, &ev);
	if (type == PROC_EVENT_EXIT && p->zombie && p->has_status && !p->leader_exited)
		event_set_status(&ev, p->status);
	emit(t, &ev);
}

/*
 * An exec between two scans: the first exec after fork clears PF_FORKNOEXEC, and every exec maps
 * a new program (other code addresses; only shown to who may ptrace the process, so the command
 * name is the fallback). Several execs between two scans are one event.
 */
static bool poll_execed(const struct poll_proc *old, const struct poll_proc *new)
{
	/* Kernel threads never exec; workqueue workers show the current work in their name. */
	if (new->flags & PF_KTHREAD)
		return false;
	if ((old->flags & PF_FORKNOEXEC) && !(new->flags &PF_FORKNOEXEC))
		return true;
	if (old->start_code && new->start_code)
		return old->start_code != new->start_code || old->end_code != new->end_code;
	return strcmp(old->comm, new->comm) != 0;
}

/* A process seen for the first time: it forked, maybe exec'd and maybe already died. */
static void poll_appeared(struct proctrace *t, struct poll_proc *p, uint64_t now)
{
	poll_emit(t, PROC_EVENT_FORK, p, now);
	if (!(p->flags & PF_FORKNOEXEC) && !p->zombie)
		poll_emit(t, PROC_EVENT_EXEC, p, now);
	if (p->zombie)
		poll_emit(t, PROC_EVENT_EXIT, p, now);
	p->exit_reported = p->zombie;
}

/* Makes the scan in t->cur the previous one, and the old previous one the buffer of the next. */
static void swap_buffers(struct proctrace *t)
{
	struct poll_proc *p = t->prev;
	size_t size = t->size_prev;

	t->prev = t->cur;
	t->n_prev = t->n_cur;
	t->size_prev = t->size_cur;
	t->cur = p;
	t->size_cur = size;
	t->n_cur = 0;
}

/* Compares t->cur with t->prev, emits the differences, and makes t->cur the previous scan. */
static void poll_diff(struct proctrace *t, uint64_t now)
{
	size_t i = 0, j = 0;

	while (i < t->n_prev || j < t->n_cur) {
		struct poll_proc *o = i < t->n_prev ? &t->prev[i] : NULL;
		struct poll_proc *n = j < t->n_cur ? &t->cur[j] : NULL;

		if (o && (!n || o->pid < n->pid)) {
			/* Gone (reaped), unless its death was seen as a zombie. */
			if (!o->exit_reported)
				poll_emit(t, PROC_EVENT_EXIT, o, now);
			i++;
		} else if (!o || n->pid < o->pid) {
			poll_appeared(t, n, now);
			j++;
		} else if (o->start_ticks != n->start_ticks) {
			/* The PID was reused: the old process died, a new one appeared. */
			if (!o->exit_reported)
				poll_emit(t, PROC_EVENT_EXIT, o, now);
			poll_appeared(t, n, now);
			i++;
			j++;
		} else {
			n->exit_reported = o->exit_reported;
			n->leader_exited |= o->leader_exited;
			if (n->zombie && !n->exit_reported) {
				poll_emit(t, PROC_EVENT_EXIT, n, now);
				n->exit_reported = true;
			} else if (!n->zombie && poll_execed(o, n)) {
				poll_emit(t, PROC_EVENT_EXEC, n, now);
			}
			i++;
			j++;
		}
	}
	swap_buffers(t);
}

void proctrace_drain(struct proctrace *t)
{
	/* Both handlers read without blocking until nothing is left (the netlink socket is
	 * non-blocking, and ring_buffer__consume() never waits). */
	if (t->source == PROCTRACE_SOURCE_BPF)
		bpf_on_readable(-1, EV_READ, t);
	else if (t->source == PROCTRACE_SOURCE_NETLINK)
		netlink_on_readable(event_get_fd(t->event), EV_READ, t);
}

static void poll_on_timer(evutil_socket_t fd, short what, void *userdata)
{
	struct proctrace *t = userdata;
	uint64_t now = clock_ns(CLOCK_REALTIME);
	int r;

	r = poll_scan(t);
	if (r < 0) {
		/* Keep the previous scan; the next tick tries again. */
		log_debug_errno(r, "Failed to scan /proc for process events: %m");
		return;
	}
	poll_diff(t, now);
}

static int poll_start(struct proctrace *t)
{
	_cleanup_(event_freep) struct event *ev = NULL;
	struct timeval tv = {
		.tv_sec = t->opts.poll_interval_ms / 1000,
		.tv_usec = (t->opts.poll_interval_ms % 1000) * 1000,
	};
	int fd, r;

	/* The directory stream has its own descriptor: readdir and openat never share an offset. */
	fd = openat(t->proc_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	t->proc_dir = fdopendir(fd);
	if (!t->proc_dir) {
		r = negative_errno();
		close(fd);
		return r;
	}
	/* The first scan is the baseline: what runs already is not an event. */
	r = poll_scan(t);
	if (r < 0)
		return r;
	for (size_t i = 0; i < t->n_cur; i++)
		t->cur[i].exit_reported = t->cur[i].zombie;
	swap_buffers(t);

	ev = event_new(t->base, -1, EV_PERSIST, poll_on_timer, t);
	if (!ev || event_add(ev, &tv) < 0)
		return -ENOMEM;
	log_debug("proctrace: polling /proc every %" PRIu32 " ms", t->opts.poll_interval_ms);
	t->event = TAKE_PTR(ev);
	t->source = PROCTRACE_SOURCE_POLL;
	return 0;
}

/*
 * The object
 */

int proctrace_new(struct event_base *base, const struct proctrace_options *opts, proc_event_cb_t cb,
		  void *userdata, struct proctrace **ret)
{
	_cleanup_(proctrace_freep) struct proctrace *t = NULL;
	int r;

	if (!base || !opts || !cb || !ret)
		return -EINVAL;
	if (opts->buffer_size < PROCTRACE_BUFFER_SIZE_MIN ||
	    opts->buffer_size > PROCTRACE_BUFFER_SIZE_MAX ||
	    opts->poll_interval_ms < PROCTRACE_POLL_INTERVAL_MIN_MS ||
	    opts->poll_interval_ms > PROCTRACE_POLL_INTERVAL_MAX_MS)
		return -ERANGE;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->base = base;
	t->opts = *opts;
	t->cb = cb;
	t->userdata = userdata;
	t->nl_fd = -EBADF;
	t->source = _PROCTRACE_SOURCE_MAX;
	t->proc_fd = open(opts->proc_root ?: "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->proc_fd < 0)
		return negative_errno();
	libbpf_set_print(libbpf_print);

	if (opts->no_bpf)
		reason_add(t, "bpf", "disabled");
	else if (bpf_start(t) == -ENOMEM)
		return -ENOMEM;
	if (t->source == PROCTRACE_SOURCE_BPF)
		goto done;

	if (opts->no_netlink)
		reason_add(t, "netlink", "disabled");
	else if (netlink_start(t) == -ENOMEM)
		return -ENOMEM;
	if (t->source == PROCTRACE_SOURCE_NETLINK)
		goto done;

	r = poll_start(t);
	if (r < 0)
		return r;
done:
	*ret = TAKE_PTR(t);
	return 0;
}

struct proctrace *proctrace_free(struct proctrace *t)
{
	if (!t)
		return NULL;
	if (t->event)
		event_free(t->event);
	ring_buffer__free(t->rb);
	proctrace_bpf__destroy(t->skel);
	if (t->nl_fd >= 0) {
		/* Lets the kernel stop formatting events when we were the last listener. */
		(void)netlink_send_op(t, t->nl_fd, PROC_CN_MCAST_IGNORE, (uint32_t)getpid() + 1);
		close(t->nl_fd);
	}
	if (t->proc_dir)
		closedir(t->proc_dir);
	if (t->proc_fd >= 0)
		close(t->proc_fd);
	free(t->lost_values);
	free(t->pending);
	free(t->prev);
	free(t->cur);
	free(t);
	return NULL;
}

enum proctrace_source proctrace_source(const struct proctrace *t)
{
	return t->source;
}

const char *proctrace_reason(const struct proctrace *t)
{
	return t->reason;
}

void proctrace_stats(const struct proctrace *t, struct proctrace_stats *ret)
{
	*ret = (struct proctrace_stats){
		.received = t->received,
		.lost = t->source == PROCTRACE_SOURCE_BPF ? bpf_lost(t) : t->nl_overruns,
	};
}
