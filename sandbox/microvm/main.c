/* SPDX-License-Identifier: MIT */
/*
 * microvm: a Firecracker-like launcher on /dev/kvm. One process per VM: the main thread runs the
 * libevent loop with the API server (libcommon/ctlsock, the instance's control socket) and the
 * virtio back ends; each vCPU runs on its own thread (vcpu.c).
 *
 *   microvm [--api-sock PATH] [--id ID] [--config-file FILE] [--boot-timer] [--console FILE]
 *           [--boot-entry auto|linux64|pvh] [--stdin] [--rundir DIR] [--log-level LEVEL]
 *
 * Exit status: 0 when the guest resets the machine (i8042 0xFE, Linux's reboot=k) or on
 * SIGTERM/SIGINT; 1 when start-up fails (including a --config-file boot); 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/ctlsock.h"
#include "libcommon/instance.h"
#include "libcommon/log.h"
#include "libcommon/paths.h"
#include "libcommon/supervise.h"
#include "sandbox/microvm/api.h"
#include "sandbox/microvm/boot.h"
#include "sandbox/microvm/vm.h"

#define MICROVM_VERSION "0.1.0"
#define MAX_CONFIG_FILE (1024 * 1024)

static char *arg_api_sock = NULL;
static char *arg_id = NULL;
static char *arg_config_file = NULL;
static char *arg_rundir = NULL;
static char *arg_console = NULL;
static bool arg_boot_timer = false;
static bool arg_stdin = false;
static enum boot_entry_pref arg_entry = BOOT_ENTRY_AUTO;

struct microvm {
	struct event_base *base;
	char id[INSTANCE_ID_MAX + 1];
	struct vm_config cfg;
	struct vm *vm;
	struct event *stdin_event;
	int console_fd;
	uint64_t start_ns;
	int exit_code;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void help(void)
{
	printf("microvm [OPTIONS]\n\n"
	       "Boots a Linux kernel (ELF vmlinux, PVH ELF or bzImage) in a KVM microVM controlled\n"
	       "through a Firecracker-style REST API on a Unix socket.\n\n"
	       "      --api-sock PATH     API socket (default <rundir>/instances/<id>.sock)\n"
	       "      --id ID             instance id ([A-Za-z0-9_-], default: random)\n"
	       "      --config-file FILE  boot at once from a Firecracker-style JSON file\n"
	       "      --boot-timer        log the guest boot time when it writes 123 at 0xc0000000\n"
	       "      --console FILE      write the serial console to FILE (default: stdout)\n"
	       "      --boot-entry E      auto (PVH if the ELF offers it), linux64 or pvh\n"
	       "      --stdin             feed standard input to the guest's serial console\n"
	       "      --rundir DIR        runtime directory for the instance record\n"
	       "      --log-level LEVEL   debug, info, notice, warning, err\n"
	       "  -h, --help              show this help\n"
	       "      --version           show the version\n");
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "microvm: %s '%s'\nTry 'microvm --help' for more information.\n", what,
		arg);
	return -EINVAL;
}

static int set_string(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return log_oom();
	free(*dst);
	*dst = s;
	return 0;
}

/* Returns 1 to run, 0 to exit successfully (--help), -EINVAL for a usage error. */
static int parse_argv(int argc, char *argv[])
{
	enum {
		ARG_API_SOCK = 0x100,
		ARG_ID,
		ARG_CONFIG_FILE,
		ARG_BOOT_TIMER,
		ARG_CONSOLE,
		ARG_BOOT_ENTRY,
		ARG_STDIN,
		ARG_RUNDIR,
		ARG_LOG_LEVEL,
		ARG_VERSION,
	};
	static const struct option options[] = {
		{ "api-sock", required_argument, NULL, ARG_API_SOCK },
		{ "id", required_argument, NULL, ARG_ID },
		{ "config-file", required_argument, NULL, ARG_CONFIG_FILE },
		{ "boot-timer", no_argument, NULL, ARG_BOOT_TIMER },
		{ "console", required_argument, NULL, ARG_CONSOLE },
		{ "boot-entry", required_argument, NULL, ARG_BOOT_ENTRY },
		{ "stdin", no_argument, NULL, ARG_STDIN },
		{ "rundir", required_argument, NULL, ARG_RUNDIR },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{},
	};
	int opt, r;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (opt) {
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("microvm %s\n", MICROVM_VERSION);
			return 0;
		case ARG_API_SOCK:
			if (!optarg[0])
				return usage_error("invalid socket path", optarg);
			r = set_string(&arg_api_sock, optarg);
			break;
		case ARG_ID:
			if (!instance_id_valid(optarg))
				return usage_error("invalid instance id", optarg);
			r = set_string(&arg_id, optarg);
			break;
		case ARG_CONFIG_FILE:
			r = set_string(&arg_config_file, optarg);
			break;
		case ARG_BOOT_TIMER:
			arg_boot_timer = true;
			r = 0;
			break;
		case ARG_CONSOLE:
			r = set_string(&arg_console, optarg);
			break;
		case ARG_BOOT_ENTRY:
			if (boot_entry_pref_from_string(optarg, &arg_entry) < 0)
				return usage_error("invalid boot entry", optarg);
			r = 0;
			break;
		case ARG_STDIN:
			arg_stdin = true;
			r = 0;
			break;
		case ARG_RUNDIR:
			r = set_string(&arg_rundir, optarg);
			break;
		case ARG_LOG_LEVEL:
			r = log_level_from_string(optarg);
			if (r < 0)
				return usage_error("invalid log level", optarg);
			log_set_max_level(r);
			r = 0;
			break;
		default:
			fprintf(stderr, "Try 'microvm --help' for more information.\n");
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (optind < argc)
		return usage_error("unexpected argument", argv[optind]);
	return 1;
}

static void on_vm_change(struct vm *vm, void *userdata)
{
	struct microvm *m = userdata;
	enum vm_state s = vm_get_state(vm);

	/* Like Firecracker, a guest reset ends the process successfully; a fault leaves it up so
	 * that the API can report what happened. */
	if (s == VM_STATE_STOPPED) {
		log_info("%s: guest stopped, exiting", m->id);
		m->exit_code = 0;
		event_base_loopexit(m->base, NULL);
	}
}

static void on_stdin(evutil_socket_t fd, short what, void *userdata)
{
	struct microvm *m = userdata;
	uint8_t buf[64];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0) {
		vm_console_input(m->vm, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	/* End of input (or an error): the guest just stops receiving. */
	event_del(m->stdin_event);
}

static int start_vm(struct microvm *m, char *err, size_t errlen)
{
	struct vm_options opt = {
		.base = m->base,
		.id = m->id,
		.console_fd = m->console_fd,
		.boot_timer = arg_boot_timer,
		.entry = arg_entry,
		.process_start_ns = m->start_ns,
		.on_change = on_vm_change,
		.userdata = m,
	};

	int r = vm_start(&m->cfg, &opt, &m->vm, err, errlen);
	if (r < 0)
		return r;
	/* Input is read only once a UART exists to take it (--stdin: opt-in, because reading a
	 * terminal from a background process would stop it with SIGTTIN). */
	if (arg_stdin) {
		m->stdin_event =
			event_new(m->base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, m);
		if (!m->stdin_event || event_add(m->stdin_event, NULL) < 0)
			log_warn("%s: cannot watch standard input, ignoring", m->id);
	}
	return 0;
}

/* A file the user names must exist and be a readable regular file when it is configured, so the
 * mistake is reported by the request that made it. */
static int check_file(const char *path, const char *what, struct ctl_response *resp)
{
	struct stat st;

	if (!path)
		return 0;
	if (stat(path, &st) < 0 || access(path, R_OK) < 0) {
		ctl_response_error(resp, 400, "Cannot access %s '%s': %s", what, path,
				   strerror(errno));
		return -ENOENT;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ctl_response_error(resp, 400, "%s '%s' is not a regular file", what, path);
		return -EINVAL;
	}
	return 0;
}

static json_t *info_json(struct microvm *m)
{
	enum vm_state s = m->vm ? vm_get_state(m->vm) : VM_STATE_NOT_STARTED;
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", m->id, "state", vm_state_to_string(s),
			      "vmm_version", MICROVM_VERSION, "app_name", "microvm");

	if (o && s == VM_STATE_FAULTED) {
		char why[256];
		vm_fault_reason(m->vm, why, sizeof(why));
		json_object_set_new(o, "fault", json_string(why));
	}
	return o;
}

static json_t *metrics_json(struct microvm *m)
{
	if (m->vm)
		return vm_metrics(m->vm);
	return json_pack("{s:s, s:i, s:i, s:{}, s:{}}", "state",
			 vm_state_to_string(VM_STATE_NOT_STARTED), "vcpu_count",
			 (int)m->cfg.vcpu_count, "vcpu_threads", 0, "exits", "devices");
}

static void handle_request(const struct ctl_request *req, struct ctl_response *resp, void *userdata)
{
	struct microvm *m = userdata;
	struct vmapi_request r;
	char err[512];
	int k;

	k = vmapi_parse(req->method, req->path, req->body, req->body_len, &r, err, sizeof(err));
	if (k < 0) {
		log_debug("%s: bad request %s %s: %s", m->id, req->method, req->path, err);
		ctl_response_error(resp, 400, "%s", err);
		return;
	}
	/* Configuration is frozen once the VM exists (Firecracker's "pre-boot only" routes). */
	if (vmapi_op_is_config(r.op) && m->vm) {
		ctl_response_error(resp, 400,
				   "The requested operation is not supported after "
				   "starting the microVM.");
		goto out;
	}
	switch (r.op) {
	case VMAPI_GET_INFO:
		resp->status = 200;
		resp->body = info_json(m);
		break;
	case VMAPI_GET_MACHINE_CONFIG:
		resp->status = 200;
		resp->body = vmapi_machine_config_json(&m->cfg);
		break;
	case VMAPI_GET_METRICS:
		resp->status = 200;
		resp->body = metrics_json(m);
		break;
	case VMAPI_GET_VM_CONFIG:
		resp->status = 200;
		resp->body = vmapi_config_json(&m->cfg);
		break;
	case VMAPI_PUT_BOOT_SOURCE:
		if (check_file(r.kernel_path, "kernel image", resp) < 0 ||
		    check_file(r.initrd_path, "initrd", resp) < 0)
			break;
		goto apply;
	case VMAPI_PUT_DRIVE:
		if (check_file(r.drive.path, "drive", resp) < 0)
			break;
		goto apply;
	case VMAPI_PUT_MACHINE_CONFIG:
	case VMAPI_PUT_NET:
apply:
		if (vmapi_apply(&m->cfg, &r, err, sizeof(err)) < 0)
			ctl_response_error(resp, 400, "%s", err);
		else
			resp->status = 204;
		break;
	case VMAPI_INSTANCE_START:
		/* A failed start leaves nothing behind (vm_start() unwinds), so the caller may fix
		 * the configuration and try again. */
		if (m->vm) {
			ctl_response_error(resp, 400, "The microVM is already started.");
			break;
		}
		if (start_vm(m, err, sizeof(err)) < 0) {
			log_err("%s: InstanceStart failed: %s", m->id, err);
			ctl_response_error(resp, 400, "Cannot start the microVM: %s", err);
			break;
		}
		resp->status = 204;
		break;
	case VMAPI_SEND_CTRL_ALT_DEL:
		k = m->vm ? vm_send_ctrl_alt_del(m->vm) : -EINVAL;
		if (k == -ENOBUFS)
			ctl_response_error(resp, 400, "The i8042 buffer is full.");
		else if (k < 0)
			ctl_response_error(resp, 400, "The microVM is not running.");
		else
			resp->status = 204;
		break;
	case VMAPI_PAUSE:
	case VMAPI_RESUME:
		if (!m->vm) {
			ctl_response_error(resp, 400, "The microVM is not started.");
			break;
		}
		k = r.op == VMAPI_PAUSE ? vm_pause(m->vm) : vm_resume(m->vm);
		if (k < 0)
			ctl_response_error(resp, 400, "The microVM is %s.",
					   vm_state_to_string(vm_get_state(m->vm)));
		else
			resp->status = 204;
		break;
	default:
		ctl_response_error(resp, 400, "Unsupported request.");
		break;
	}
out:
	vmapi_request_done(&r);
}

/*
 * Calls to vm.<id> through middlecon (libcommon/supervise.h): the same operations as the API,
 * for runtimes anywhere in the datacenter. state and stats answer as GET / and GET /metrics;
 * stop ends the VMM as SIGTERM does (the guest is not asked: SendCtrlAltDel is the API's).
 */
static int on_supervise(const char *method, const void *body, size_t len, char **ret_body,
			char **ret_error, void *userdata)
{
	struct microvm *m = userdata;
	json_auto_t *j = NULL;
	int r;

	if (strcmp(method, "state") == 0) {
		j = info_json(m);
	} else if (strcmp(method, "stats") == 0) {
		j = metrics_json(m);
	} else if (strcmp(method, "pause") == 0 || strcmp(method, "resume") == 0) {
		if (!m->vm) {
			*ret_error = strdup("the microVM is not started");
			return -EINVAL;
		}
		r = method[0] == 'p' ? vm_pause(m->vm) : vm_resume(m->vm);
		if (r < 0) {
			if (asprintf(ret_error, "the microVM is %s",
				     vm_state_to_string(vm_get_state(m->vm))) < 0)
				*ret_error = NULL;
			return -EINVAL;
		}
		j = info_json(m);
	} else if (strcmp(method, "stop") == 0) {
		log_info("%s: stop requested through middlecon", m->id);
		m->exit_code = 0;
		/* After this answer is written: the loop ends on its next pass. */
		event_base_loopexit(m->base, &(struct timeval){ .tv_usec = 10000 });
		j = json_pack("{s:s, s:s}", "id", m->id, "state", "Stopping");
	} else {
		return -EOPNOTSUPP;
	}
	*ret_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	return *ret_body ? 0 : -ENOMEM;
}

static int load_config_file(struct microvm *m, const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	_cleanup_free_ char *buf = NULL;
	char err[512];
	size_t n;

	if (!f)
		return log_err_errno(errno, "Cannot open config file '%s': %m", path);
	buf = malloc(MAX_CONFIG_FILE + 1);
	if (!buf)
		return log_oom();
	n = fread(buf, 1, MAX_CONFIG_FILE + 1, f);
	if (ferror(f))
		return log_err_errno(EIO, "Cannot read config file '%s'", path);
	if (n > MAX_CONFIG_FILE)
		return log_err_errno(EFBIG, "Config file '%s' is larger than 1 MiB", path);
	if (vmapi_config_parse(buf, n, &m->cfg, err, sizeof(err)) < 0)
		return log_err_errno(EINVAL, "Config file '%s': %s", path, err);
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *userdata)
{
	struct microvm *m = userdata;

	log_info("%s: signal %d, shutting down", m->id, (int)sig);
	m->exit_code = 0;
	event_base_loopexit(m->base, NULL);
}

static int run(struct microvm *m)
{
	_cleanup_free_ char *default_sock = NULL;
	_cleanup_free_ char *relay = NULL;
	_cleanup_free_ char *name = NULL;
	struct supervise *sv = NULL;
	struct ctl_server *srv = NULL;
	struct event *sigs[2] = { NULL, NULL };
	struct instance_record rec = { 0 };
	bool recorded = false;
	int r;

	if (arg_id)
		snprintf(m->id, sizeof(m->id), "%s", arg_id);
	else if ((r = instance_id_new(m->id)) < 0)
		return log_err_errno(r, "Cannot generate an instance id: %m");
	if (!arg_rundir && (r = paths_default_rundir(&arg_rundir)) < 0)
		return log_err_errno(r, "Cannot determine the runtime directory: %m");
	if (!arg_api_sock) {
		_cleanup_free_ char *dir = NULL;
		r = instance_paths(arg_rundir, m->id, &dir, NULL, &default_sock);
		if (r < 0)
			return log_err_errno(r, "Cannot build the socket path: %m");
		/* The record's directory holds the socket too; create it before listening. */
		(void)mkdir(arg_rundir, 0755);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return log_err_errno(errno, "Cannot create '%s': %m", dir);
		arg_api_sock = TAKE_PTR(default_sock);
	}
	if (arg_console) {
		m->console_fd = open(arg_console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (m->console_fd < 0)
			return log_err_errno(errno, "Cannot open console file '%s': %m",
					     arg_console);
	}
	if (arg_config_file && (r = load_config_file(m, arg_config_file)) < 0)
		return r;

	/* Listen first, then publish the record: a reader that finds the record can connect. */
	m->base = event_base_new();
	if (!m->base)
		return log_oom();
	r = ctl_server_new(m->base, arg_api_sock, 0600, handle_request, m, &srv);
	if (r < 0) {
		log_err_errno(r, "Cannot listen on '%s': %m", arg_api_sock);
		goto out;
	}
	r = instance_socket_share(arg_api_sock);
	if (r < 0)
		log_warn_errno(r, "Cannot give group %s access to '%s', ignoring: %m",
			       INSTANCE_GROUP, arg_api_sock);
	log_info("%s: API socket '%s' ready after %llu us", m->id, arg_api_sock,
		 (unsigned long long)(now_ns() - m->start_ns) / 1000);

	rec.kind = INSTANCE_VM;
	snprintf(rec.id, sizeof(rec.id), "%s", m->id);
	rec.pid = getpid();
	(void)instance_pid_start(rec.pid, &rec.pid_start);
	rec.api_socket = arg_api_sock;
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	rec.started_at_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
	r = instance_write(arg_rundir, &rec);
	if (r < 0) {
		log_err_errno(r, "Cannot write the instance record of '%s' under '%s': %m", m->id,
			      arg_rundir);
		goto out;
	}
	recorded = true;
	/* Under supervision: vm.<id> on the host's relay, whenever one runs. */
	if (instance_relay_socket(arg_rundir, &relay) < 0 || asprintf(&name, "vm.%s", m->id) < 0 ||
	    supervise_start(m->base, relay, name, on_supervise, m, &sv) < 0) {
		name = NULL;
		r = log_oom();
		goto out;
	}

	sigs[0] = evsignal_new(m->base, SIGTERM, on_signal, m);
	sigs[1] = evsignal_new(m->base, SIGINT, on_signal, m);
	if (!sigs[0] || !sigs[1] || evsignal_add(sigs[0], NULL) < 0 ||
	    evsignal_add(sigs[1], NULL) < 0) {
		r = log_oom();
		goto out;
	}

	if (arg_config_file) {
		char err[512];
		r = start_vm(m, err, sizeof(err));
		if (r < 0) {
			log_err("%s: cannot boot from '%s': %s", m->id, arg_config_file, err);
			goto out;
		}
	}

	m->exit_code = 0;
	if (event_base_dispatch(m->base) < 0) {
		r = log_err_errno(EIO, "Event loop failed");
		goto out;
	}
	r = 0;
out:
	if (m->stdin_event)
		event_free(m->stdin_event);
	/* Unregister first: a caller is told at once that the VM is gone. */
	sv = supervise_free(sv);
	m->vm = vm_free(m->vm);
	srv = ctl_server_free(srv);
	for (unsigned i = 0; i < ELEMENTSOF(sigs); i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (recorded)
		(void)instance_remove(arg_rundir, m->id);
	event_base_free(m->base);
	m->base = NULL;
	return r;
}

int main(int argc, char *argv[])
{
	struct microvm m = { .console_fd = STDOUT_FILENO, .start_ns = now_ns() };
	int r;

	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	/* A reader going away (console pipe) must not kill the VMM. */
	signal(SIGPIPE, SIG_IGN);
	vm_config_init(&m.cfg);
	r = run(&m);
	vm_config_done(&m.cfg);
	if (m.console_fd != STDOUT_FILENO && m.console_fd >= 0)
		close(m.console_fd);
	free(arg_api_sock);
	free(arg_id);
	free(arg_config_file);
	free(arg_rundir);
	free(arg_console);
	return r < 0 ? 1 : m.exit_code;
}
