/* SPDX-License-Identifier: MIT */
/*
 * sandbox: runs a program in fresh namespaces under a seccomp filter whose sensitive calls are
 * performed by this process, the supervisor (docs/sandbox.md).
 *
 *   sandbox run [OPTIONS] -- PROGRAM [ARGS...]
 *   sandbox --check-policy FILE
 *
 * Exit status: the program's (128+N if it was killed by signal N); 125 if the sandbox could
 * not be set up; 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/instance.h"
#include "libcommon/log.h"
#include "libcommon/paths.h"
#include "libcommon/strutil.h"
#include "sandbox/syscall/cgroup.h"
#include "sandbox/syscall/launch.h"
#include "sandbox/syscall/policy.h"
#include "sandbox/syscall/supervisor.h"

#define EXIT_SETUP 125

static const char *arg_policy = NULL;
static const char *arg_id = NULL;
static const char *arg_rundir = NULL;
static const char *arg_audit_log = NULL;
static const char *arg_chdir = NULL;
static bool arg_clearenv = false;
static bool arg_usage_error = false;

enum {
	ARG_RO_BIND = 0x100,
	ARG_BIND,
	ARG_TMPFS,
	ARG_HIDE,
	ARG_NET,
	ARG_ROOTFS,
	ARG_ID,
	ARG_POLICY,
	ARG_CHDIR,
	ARG_SETENV,
	ARG_UNSETENV,
	ARG_CLEARENV,
	ARG_MEMORY,
	ARG_PIDS,
	ARG_CPU,
	ARG_AUDIT_LOG,
	ARG_RUNDIR,
	ARG_LOG_LEVEL,
	ARG_ALLOW_CONNECT,
	ARG_ALLOW_BIND,
	ARG_EXEC,
	ARG_NOEXEC,
	ARG_CHECK_POLICY,
	ARG_VERSION,
};

static const struct option run_options[] = {
	{ "ro-bind", required_argument, NULL, ARG_RO_BIND },
	{ "bind", required_argument, NULL, ARG_BIND },
	{ "tmpfs", required_argument, NULL, ARG_TMPFS },
	{ "hide", required_argument, NULL, ARG_HIDE },
	{ "exec", required_argument, NULL, ARG_EXEC },
	{ "noexec", required_argument, NULL, ARG_NOEXEC },
	{ "net", required_argument, NULL, ARG_NET },
	{ "rootfs", required_argument, NULL, ARG_ROOTFS },
	{ "id", required_argument, NULL, ARG_ID },
	{ "policy", required_argument, NULL, ARG_POLICY },
	{ "chdir", required_argument, NULL, ARG_CHDIR },
	{ "setenv", required_argument, NULL, ARG_SETENV },
	{ "unsetenv", required_argument, NULL, ARG_UNSETENV },
	{ "clearenv", no_argument, NULL, ARG_CLEARENV },
	{ "memory", required_argument, NULL, ARG_MEMORY },
	{ "pids", required_argument, NULL, ARG_PIDS },
	{ "cpu", required_argument, NULL, ARG_CPU },
	{ "allow-connect", required_argument, NULL, ARG_ALLOW_CONNECT },
	{ "allow-bind", required_argument, NULL, ARG_ALLOW_BIND },
	{ "audit-log", required_argument, NULL, ARG_AUDIT_LOG },
	{ "rundir", required_argument, NULL, ARG_RUNDIR },
	{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
	{ "help", no_argument, NULL, 'h' },
	{},
};

static void help(void)
{
	printf("Usage: sandbox run [OPTIONS] -- PROGRAM [ARGS...]\n"
	       "       sandbox --check-policy FILE\n"
	       "\n"
	       "Runs PROGRAM in new user, PID, mount, UTS, IPC, cgroup (and network) namespaces\n"
	       "under a seccomp filter; opens, path changes, connect and bind are performed by the\n"
	       "supervisor under the policy (docs/sandbox.md).\n"
	       "\n"
	       "  --ro-bind SRC DST      bind the host's SRC read-only at DST\n"
	       "  --bind SRC DST         bind the host's SRC read-write at DST\n"
	       "  --tmpfs DST            an empty tmpfs at DST\n"
	       "  --hide PATH            make PATH invisible\n"
	       "  --exec PATH, --noexec PATH  allow or forbid running binaries under PATH\n"
	       "  --net none|host        private loopback only (default), or the host's network\n"
	       "  --allow-connect 'ADDR PORT'  allow connecting to ADDR[/PREFIX]|* PORT[-PORT]|*\n"
	       "  --allow-bind 'ADDR PORT'     allow binding to it\n"
	       "  --rootfs DIR           use DIR as the root instead of the host's system dirs\n"
	       "  --policy FILE          apply a policy file (before these flags)\n"
	       "  --chdir DIR            working directory inside (default /)\n"
	       "  --setenv VAR VALUE, --unsetenv VAR, --clearenv\n"
	       "  --memory SIZE, --pids N, --cpu CPUS|PCT%%   cgroup v2 limits\n"
	       "  --id ID                instance id (default: random)\n"
	       "  --rundir DIR           instance records and control sockets\n"
	       "  --audit-log FILE       append refusals as JSON lines\n"
	       "  --log-level LEVEL      debug, info, notice, warning, err\n"
	       "  --check-policy FILE    parse FILE, print the effective policy, exit\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sandbox: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'sandbox --help' for more information.\n");
	arg_usage_error = true;
	return -EINVAL;
}

/* Flags that take two arguments read the second from argv[optind], as bubblewrap does. */
static int second_arg(int argc, char **argv, const char *opt, const char **ret)
{
	if (optind >= argc)
		return usage_error("option '--%s' needs two arguments", opt);
	*ret = argv[optind++];
	return 0;
}

static int add_directive(char ***lines, const char *kind, const char *a, const char *b)
{
	_cleanup_free_ char *s = NULL;
	if (strchr(a, ' ') || strchr(a, '\t') || (b && (strchr(b, ' ') || strchr(b, '\t'))))
		return usage_error("paths with blanks are not supported: '%s'", a);
	if (asprintf(&s, "%s %s%s%s", kind, a, b ? " " : "", b ? b : "") < 0)
		return log_oom();
	return strv_extend(lines, s);
}

static int parse_run(int argc, char **argv, char ***directives, char ***env)
{
	int c, r;
	optind = 1;
	argv[0] = (char *)"sandbox run"; /* getopt's messages name it */
	while ((c = getopt_long(argc, argv, "+h", run_options, NULL)) >= 0) {
		const char *b = NULL;
		switch (c) {
		case 'h':
			help();
			exit(EXIT_SUCCESS);
		case ARG_RO_BIND:
		case ARG_BIND:
			if ((r = second_arg(argc, argv, c == ARG_BIND ? "bind" : "ro-bind", &b)) <
			    0)
				return r;
			r = add_directive(directives, c == ARG_BIND ? "bind" : "ro-bind", optarg,
					  b);
			break;
		case ARG_TMPFS:
			r = add_directive(directives, "tmpfs", optarg, NULL);
			break;
		case ARG_HIDE:
			r = add_directive(directives, "hide", optarg, NULL);
			break;
		case ARG_EXEC:
			r = add_directive(directives, "exec", optarg, NULL);
			break;
		case ARG_NOEXEC:
			r = add_directive(directives, "noexec", optarg, NULL);
			break;
		case ARG_NET:
			r = add_directive(directives, "net", optarg, NULL);
			break;
		case ARG_ROOTFS:
			r = add_directive(directives, "rootfs", optarg, NULL);
			break;
		case ARG_MEMORY:
			r = add_directive(directives, "memory", optarg, NULL);
			break;
		case ARG_PIDS:
			r = add_directive(directives, "pids", optarg, NULL);
			break;
		case ARG_CPU:
			r = add_directive(directives, "cpu", optarg, NULL);
			break;
		case ARG_ALLOW_CONNECT:
		case ARG_ALLOW_BIND: {
			_cleanup_free_ char *s = NULL;
			if (asprintf(&s, "%s %s",
				     c == ARG_ALLOW_BIND ? "allow-bind" : "allow-connect",
				     optarg) < 0)
				return log_oom();
			r = strv_extend(directives, s);
			break;
		}
		case ARG_ID:
			if (!instance_id_valid(optarg))
				return usage_error("invalid id '%s' ([A-Za-z0-9_-], 1..64)",
						   optarg);
			arg_id = optarg;
			r = 0;
			break;
		case ARG_POLICY:
			arg_policy = optarg;
			r = 0;
			break;
		case ARG_CHDIR:
			arg_chdir = optarg;
			r = 0;
			break;
		case ARG_SETENV: {
			_cleanup_free_ char *s = NULL;
			if ((r = second_arg(argc, argv, "setenv", &b)) < 0)
				return r;
			if (optarg[0] == '\0' || strchr(optarg, '='))
				return usage_error("invalid variable name '%s'", optarg);
			if (asprintf(&s, "%s=%s", optarg, b) < 0)
				return log_oom();
			r = strv_extend(env, s);
			break;
		}
		case ARG_UNSETENV: {
			_cleanup_free_ char *s = NULL;
			/* "NAME" without '=' in the list means: remove it. */
			if (optarg[0] == '\0' || strchr(optarg, '='))
				return usage_error("invalid variable name '%s'", optarg);
			r = strv_extend(env, optarg);
			break;
		}
		case ARG_CLEARENV:
			arg_clearenv = true;
			r = 0;
			break;
		case ARG_AUDIT_LOG:
			arg_audit_log = optarg;
			r = 0;
			break;
		case ARG_RUNDIR:
			arg_rundir = optarg;
			r = 0;
			break;
		case ARG_LOG_LEVEL:
			r = log_level_from_string(optarg);
			if (r < 0)
				return usage_error("invalid log level '%s'", optarg);
			log_set_max_level(r);
			r = 0;
			break;
		default:
			arg_usage_error = true;
			fprintf(stderr, "Try 'sandbox --help' for more information.\n");
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (optind >= argc)
		return usage_error("%s", "no program given (sandbox run [OPTIONS] -- PROGRAM ...)");
	return optind;
}

/* The program's environment: ours (unless --clearenv) with the --setenv/--unsetenv edits. */
static int build_env(char **edits, char ***ret)
{
	_cleanup_(strv_freep) char **env = NULL;
	int r;
	if (!arg_clearenv) {
		if ((r = strv_copy(environ, &env)) < 0)
			return r;
	} else if (!(env = calloc(1, sizeof(char *))))
		return -ENOMEM;
	for (char **e = edits; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		size_t klen = eq ? (size_t)(eq - *e) : strlen(*e);
		size_t j = 0;
		for (size_t i = 0; env[i]; i++) {
			if (strncmp(env[i], *e, klen) == 0 && env[i][klen] == '=')
				free(env[i]);
			else
				env[j++] = env[i];
		}
		env[j] = NULL;
		if (eq && (r = strv_extend(&env, *e)) < 0)
			return r;
	}
	*ret = TAKE_PTR(env);
	return 0;
}

static int check_policy(const char *file)
{
	struct policy p;
	_cleanup_free_ char *err = NULL;
	int r = policy_init(&p);
	if (r < 0)
		return log_err_errno(r, "Failed to set up the default policy: %m");
	r = policy_parse_file(&p, file, &err);
	if (r < 0) {
		if (err)
			log_err("%s", err);
		else
			log_err_errno(r, "Failed to read '%s': %m", file);
		policy_done(&p);
		return r;
	}
	policy_dump(&p, stdout);
	policy_done(&p);
	return 0;
}

/* As root the supervisor must not open what the program could not: it gives up the
 * capabilities that bypass file permissions before it serves any request. */
static int drop_dac_capabilities(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return negative_errno();
	static const int caps[] = { CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID };
	for (size_t i = 0; i < ELEMENTSOF(caps); i++) {
		d[caps[i] / 32].effective &= ~(1U << (caps[i] % 32));
		d[caps[i] / 32].permitted &= ~(1U << (caps[i] % 32));
	}
	return syscall(SYS_capset, &h, d) < 0 ? negative_errno() : 0;
}

static void kill_and_reap(struct launch *l)
{
	siginfo_t si;
	if (l->pidfd < 0)
		return;
	pidfd_send_signal(l->pidfd, SIGKILL, NULL, 0);
	waitid((idtype_t)P_PIDFD, (id_t)l->pidfd, &si, WEXITED);
}

static int run(int argc, char **argv)
{
	_cleanup_(strv_freep) char **directives = NULL;
	_cleanup_(strv_freep) char **env_edits = NULL;
	_cleanup_(strv_freep) char **env = NULL;
	_cleanup_free_ char *rundir = NULL;
	_cleanup_free_ char *relay = NULL;
	_cleanup_free_ char *sock = NULL;
	_cleanup_free_ char *instdir = NULL;
	_cleanup_free_ char *err = NULL;
	_cleanup_free_ void *filter = NULL;
	size_t filter_len = 0;
	struct policy p = {};
	struct launch l = { .pidfd = -EBADF, .sock = -EBADF };
	struct sbx_cgroup cg = {};
	struct supervisor *sv = NULL;
	char id[INSTANCE_ID_MAX + 1];
	bool record_written = false;
	int status = EXIT_SETUP, r;

	int first = parse_run(argc, argv, &directives, &env_edits);
	if (first < 0)
		return arg_usage_error ? 2 : EXIT_SETUP;

	if ((r = policy_init(&p)) < 0) {
		log_err_errno(r, "Failed to set up the default policy: %m");
		goto out;
	}
	if (arg_policy && (r = policy_parse_file(&p, arg_policy, &err)) < 0) {
		if (err)
			log_err("%s", err);
		else
			log_err_errno(r, "Failed to read the policy '%s': %m", arg_policy);
		goto out;
	}
	for (char **d = directives; d && *d; d++) {
		const char *why = NULL;
		if ((r = policy_add_line(&p, *d, &why)) < 0) {
			fprintf(stderr, "sandbox: invalid option '%s': %s\n", *d,
				why ? why : strerror(-r));
			status = 2;
			goto out;
		}
	}
	if ((r = build_env(env_edits, &env)) < 0) {
		log_oom();
		goto out;
	}
	if ((r = policy_build_filter(&p, &filter, &filter_len)) < 0) {
		log_err_errno(r, "Failed to build the seccomp filter: %m");
		goto out;
	}

	if (arg_id)
		snprintf(id, sizeof(id), "%s", arg_id);
	else if ((r = instance_id_new(id)) < 0) {
		log_err_errno(r, "Failed to create an instance id: %m");
		goto out;
	}
	if (arg_rundir)
		rundir = strdup(arg_rundir);
	else if (paths_default_rundir(&rundir) < 0)
		rundir = NULL;
	if (!rundir) {
		log_err("No runtime directory (use --rundir).");
		goto out;
	}
	if ((r = instance_relay_socket(rundir, &relay)) < 0 ||
	    (r = instance_paths(rundir, id, &instdir, NULL, &sock)) < 0) {
		log_err_errno(r, "Invalid instance paths: %m");
		goto out;
	}
	if ((r = mkdir_p(instdir, 0755)) < 0) {
		log_err_errno(r, "Failed to create '%s': %m", instdir);
		goto out;
	}
	if ((r = sbx_cgroup_create(&cg, &p, id)) < 0)
		goto out;

	int audit_fd = -1;
	if (arg_audit_log) {
		audit_fd = open(arg_audit_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (audit_fd < 0) {
			log_err_errno(errno, "Failed to open the audit log '%s': %m",
				      arg_audit_log);
			goto out;
		}
	}

	struct launch_params lp = {
		.policy = &p,
		.argv = argv + first,
		.envp = env,
		.chdir = arg_chdir,
		.filter = filter,
		.filter_len = filter_len,
	};
	if ((r = launch_spawn(&lp, &l)) < 0) {
		if (audit_fd >= 0)
			close(audit_fd);
		if (r == -EPERM || r == -ENOSPC)
			log_err_errno(r, "Failed to create the namespaces (are unprivileged user "
					 "namespaces allowed?): %m");
		else
			log_err_errno(r, "Failed to create the namespaces: %m");
		goto out;
	}
	if ((r = sbx_cgroup_attach(&cg, l.pid)) < 0) {
		if (audit_fd >= 0)
			close(audit_fd);
		log_err_errno(r, "Failed to join the cgroup: %m");
		goto out;
	}
	int notify_fd;
	bool killable;
	if ((r = launch_configure(&l, &notify_fd, &killable)) < 0) {
		if (audit_fd >= 0)
			close(audit_fd);
		goto out;
	}
	if (!killable)
		log_debug("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV not available.");

	struct supervisor_params sp = {
		.policy = &p,
		.notify_fd = notify_fd,
		.init_pid = l.pid,
		.init_pidfd = l.pidfd,
		.id = id,
		.api_socket = sock,
		.relay_socket = relay,
		.audit_fd = audit_fd,
	};
	if ((r = supervisor_new(&sp, &sv)) < 0)
		goto out;
	uint64_t start = 0;
	(void)instance_pid_start(getpid(), &start);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct instance_record rec = {
		.kind = INSTANCE_SANDBOX,
		.pid = getpid(),
		.pid_start = start,
		.api_socket = sock,
		.started_at_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec,
	};
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	if ((r = instance_write(rundir, &rec)) < 0) {
		log_err_errno(r, "Failed to write the instance record: %m");
		goto out;
	}
	record_written = true;
	if (geteuid() == 0 && (r = drop_dac_capabilities()) < 0) {
		log_err_errno(r, "Failed to drop the file capabilities: %m");
		goto out;
	}
	if ((r = launch_start(&l)) < 0) {
		log_err_errno(r, "Failed to start the program: %m");
		goto out;
	}
	r = supervisor_run(sv);
	if (r < 0) {
		log_err_errno(r, "The supervisor failed: %m");
		goto out;
	}
	status = r;
out:
	if (status == EXIT_SETUP || r < 0)
		kill_and_reap(&l);
	sv = supervisor_free(sv);
	if (record_written)
		(void)instance_remove(rundir, id);
	launch_done(&l);
	sbx_cgroup_done(&cg);
	policy_done(&p);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "check-policy", required_argument, NULL, ARG_CHECK_POLICY },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{},
	};
	int c;

	/* A broken pipe to the terminal must not kill the supervisor. */
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return run(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			help();
			return EXIT_SUCCESS;
		case ARG_VERSION:
			puts("sandbox 0.1");
			return EXIT_SUCCESS;
		case ARG_LOG_LEVEL: {
			int l = log_level_from_string(optarg);
			if (l < 0) {
				usage_error("invalid log level '%s'", optarg);
				return 2;
			}
			log_set_max_level(l);
			break;
		}
		case ARG_CHECK_POLICY:
			return check_policy(optarg) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
		default:
			fprintf(stderr, "Try 'sandbox --help' for more information.\n");
			return 2;
		}
	}
	if (optind < argc)
		usage_error("unknown command '%s'", argv[optind]);
	else
		usage_error("%s", "no command given (sandbox run ... or --check-policy FILE)");
	return 2;
}
