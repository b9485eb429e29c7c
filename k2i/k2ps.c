/* SPDX-License-Identifier: MIT */
/*
 * k2ps: ps for the whole datacenter. Asks every host's k2i for its process table at once
 * (k2i/fetch.c), merges the answers and prints them like ps aux with a HOST column, as NDJSON,
 * as a per-host summary, as a top-like refreshing view, or as a merged live event feed.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <jansson.h>

#include "k2i/fetch.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/paths.h"
#include "libcommon/strutil.h"
#include "libcommon/tls.h"

#define K2PS_DEFAULT_PORT 9400
#define K2PS_MAX_BODY ((size_t)256 * 1024 * 1024)
#define K2PS_MAX_HOSTS 100000

DEFINE_CLEANUP_FUNC(struct event_base, event_base_free)
DEFINE_CLEANUP_FUNC(struct event, event_free)

/* One host to ask. All strings are owned. */
struct host {
	char *label; /* what output shows: "name", "name:port" or "[v6]:port" */
	char *addr; /* what is connected to (IPv6 without brackets) */
	char *peer_name; /* name the certificate must carry; NULL means addr */
	uint16_t port;
};

/* Command-line state (the arg_* globals STYLE.md allows). */
static struct host *arg_hosts;
static size_t arg_n_hosts;
static uint16_t arg_port = K2PS_DEFAULT_PORT;
static char *arg_state_dir;
static char *arg_ca, *arg_cert, *arg_key;
static char **arg_columns; /* -o, canonical column names */
static char **arg_sort; /* --sort keys as API field names, with '-' for descending */
static char **arg_users, **arg_comms, **arg_pids;
static const char *arg_match, *arg_cgroup, *arg_instance;
static uint32_t arg_limit;
static bool arg_json, arg_summary, arg_no_headers, arg_events, arg_threads, arg_http1;
static bool arg_vms, arg_sandboxes;
static double arg_watch; /* 0: once */
static unsigned arg_fanout = 64;
static double arg_timeout = 5;

/* ---- columns --------------------------------------------------------------------------- */

enum col_kind {
	COL_HOST,
	COL_STR,
	COL_NUM,
	COL_PCT,
	COL_TTY,
	COL_START,
	COL_TIME,
	COL_CMD,
	COL_INSTANCE,
};

struct column {
	const char *name; /* canonical -o name */
	const char *header;
	const char *field; /* the API field shown (and sorted on) */
	enum col_kind kind;
	bool right; /* right-aligned (numbers) */
};

static const struct column columns[] = {
	{ "host", "HOST", NULL, COL_HOST, false },
	{ "user", "USER", "user", COL_STR, false },
	{ "pid", "PID", "pid", COL_NUM, true },
	{ "ppid", "PPID", "ppid", COL_NUM, true },
	{ "uid", "UID", "uid", COL_NUM, true },
	{ "gid", "GID", "gid", COL_NUM, true },
	{ "%cpu", "%CPU", "cpu_percent", COL_PCT, true },
	{ "%mem", "%MEM", "mem_percent", COL_PCT, true },
	{ "vsz", "VSZ", "vsz_kb", COL_NUM, true },
	{ "rss", "RSS", "rss_kb", COL_NUM, true },
	{ "tty", "TTY", "tty", COL_TTY, false },
	{ "stat", "STAT", "state", COL_STR, false },
	{ "start", "START", "start_time", COL_START, false },
	{ "time", "TIME", "cpu_time_ms", COL_TIME, true },
	{ "nice", "NI", "nice", COL_NUM, true },
	{ "threads", "NLWP", "threads", COL_NUM, true },
	{ "cgroup", "CGROUP", "cgroup", COL_STR, false },
	{ "container", "CONTAINER", "container_id", COL_STR, false },
	{ "instance", "INSTANCE", "instance", COL_INSTANCE, false },
	{ "exe", "EXE", "exe", COL_STR, false },
	{ "key", "KEY", "key", COL_STR, false },
	{ "comm", "COMMAND", "comm", COL_STR, false },
	{ "cmd", "COMMAND", "cmdline", COL_CMD, false },
};

/* ps spellings of the same columns. */
static const struct {
	const char *alias, *name;
} column_aliases[] = {
	{ "pcpu", "%cpu" },	  { "cpu", "%cpu" },
	{ "pmem", "%mem" },	  { "mem", "%mem" },
	{ "vsize", "vsz" },	  { "rssize", "rss" },
	{ "tt", "tty" },	  { "state", "stat" },
	{ "s", "stat" },	  { "start_time", "start" },
	{ "stime", "start" },	  { "cputime", "time" },
	{ "ni", "nice" },	  { "nlwp", "threads" },
	{ "thcount", "threads" }, { "ucomm", "comm" },
	{ "args", "cmd" },	  { "command", "cmd" },
	{ "cmdline", "cmd" },	  { "container_id", "container" },
	{ "euser", "user" },	  { "uname", "user" },
};

#define DEFAULT_COLUMNS "host,user,pid,%cpu,%mem,vsz,rss,tty,stat,start,time,cmd"

/* Finds a column by canonical name, ps alias or API field name. */
static const struct column *column_find(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(column_aliases); i++)
		if (strcmp(name, column_aliases[i].alias) == 0)
			name = column_aliases[i].name;
	for (size_t i = 0; i < ELEMENTSOF(columns); i++)
		if (strcmp(name, columns[i].name) == 0)
			return &columns[i];
	for (size_t i = 0; i < ELEMENTSOF(columns); i++)
		if (columns[i].field && strcmp(name, columns[i].field) == 0)
			return &columns[i];
	return NULL;
}

/* ---- usage ----------------------------------------------------------------------------- */

static void help(void)
{
	printf("Usage: k2ps [OPTIONS] [aux]\n"
	       "List the processes of many hosts at once from their k2i daemons, like ps aux.\n"
	       "\n"
	       "Hosts (default: localhost):\n"
	       "  -H, --host HOST[:PORT][,...]  hosts to ask (IPv6 as [ADDR]:PORT); repeatable\n"
	       "  -f, --hosts-file FILE         one host per line, '#' starts a comment\n"
	       "  -d, --dns NAME                every A/AAAA record of NAME is a host\n"
	       "      --port N                  port of hosts given without one (default 9400)\n"
	       "\n"
	       "TLS (default: ca.pem, client.pem, client.key of the local k2i state directory):\n"
	       "      --ca FILE --cert FILE --key FILE\n"
	       "      --state-dir DIR           take the three files above from DIR\n"
	       "\n"
	       "Selection (done by each host):\n"
	       "  -u, --user USER[,...]         effective user names or uids\n"
	       "  -C, --comm COMM[,...]         exact command names\n"
	       "  -p, --pid PID[,...]           process IDs\n"
	       "      --match TEXT              substring of the command line\n"
	       "      --cgroup PREFIX           cgroup path prefix\n"
	       "      --instance any|vm|sandbox|KIND/ID  processes of sandboxes and microVMs\n"
	       "      --threads                 one line per thread\n"
	       "      --sort [-]KEY[,...]       sort keys (cpu, mem, rss, vsz, time, start, pid, ...,\n"
	       "                                host), '-' for descending; merged lists are re-sorted\n"
	       "      --limit N                 only the first N processes over all hosts\n"
	       "\n"
	       "Output:\n"
	       "  -o, --format COL[,...]        columns: host user pid ppid uid gid %%cpu %%mem vsz rss\n"
	       "                                tty stat start time nice threads cgroup container\n"
	       "                                exe key instance comm cmd (args)\n"
	       "      --no-headers              no header line\n"
	       "      --json                    NDJSON: one object per process, with \"host\"\n"
	       "      --hosts-summary           one line per host: processes, load, memory\n"
	       "      --vms, --sandboxes        the microVMs / sandboxes of every host (running, and\n"
	       "                                the last that ended, with how they ended)\n"
	       "      --watch[=SEC]             redraw every SEC seconds (default 2) until Ctrl-C\n"
	       "      --events                  merged live feed of the hosts' process events\n"
	       "\n"
	       "Fan-out:\n"
	       "      --fanout N                connections in flight at most (default 64)\n"
	       "      --timeout SEC             per-host deadline for connect, TLS and answer\n"
	       "                                (default 5)\n"
	       "      --log-level LEVEL         diagnostics threshold (default warning)\n"
	       "  -h, --help                    this text\n"
	       "\n"
	       "Exit status: 0 if every host answered, 1 if some did not (the others are still\n"
	       "printed; each failure is one 'k2ps: HOST: REASON' line on stderr), 2 for a usage\n"
	       "error.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("k2ps: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'k2ps --help' for more information.\n", stderr);
	return -EINVAL;
}

/* ---- hosts ----------------------------------------------------------------------------- */

static void hosts_free(void)
{
	for (size_t i = 0; i < arg_n_hosts; i++) {
		free(arg_hosts[i].label);
		free(arg_hosts[i].addr);
		free(arg_hosts[i].peer_name);
	}
	free(arg_hosts);
	arg_hosts = NULL;
	arg_n_hosts = 0;
}

static int hosts_add(const char *addr, uint16_t port, bool port_given, const char *peer_name)
{
	struct host *h, *n;
	bool v6 = strchr(addr, ':') != NULL;

	/* The same host named twice (-H a,a, two -d of one name, a file and -H) is asked once. */
	for (size_t i = 0; i < arg_n_hosts; i++)
		if (arg_hosts[i].port == port && strcmp(arg_hosts[i].addr, addr) == 0 &&
		    !!arg_hosts[i].peer_name == !!peer_name &&
		    (!peer_name || strcmp(arg_hosts[i].peer_name, peer_name) == 0))
			return 0;
	if (arg_n_hosts >= K2PS_MAX_HOSTS)
		return usage_error("too many hosts (at most %d)", K2PS_MAX_HOSTS);
	n = reallocarray(arg_hosts, arg_n_hosts + 1, sizeof(*n));
	if (!n)
		return log_oom();
	arg_hosts = n;
	h = &arg_hosts[arg_n_hosts];
	*h = (struct host){ .port = port };
	h->addr = strdup(addr);
	h->peer_name = peer_name ? strdup(peer_name) : NULL;
	/* The label shows a port the user wrote, or one that is not the default. */
	if (!port_given && port == K2PS_DEFAULT_PORT && !v6)
		h->label = strdup(addr);
	else if (asprintf(&h->label, "%s%s%s:%u", v6 ? "[" : "", addr, v6 ? "]" : "",
			  (unsigned)port) < 0)
		h->label = NULL;
	if (!h->addr || !h->label || (peer_name && !h->peer_name)) {
		free(h->addr);
		free(h->label);
		free(h->peer_name);
		return log_oom();
	}
	arg_n_hosts++;
	return 0;
}

/* "name", "name:port", "[v6]", "[v6]:port", or a bare IPv6 literal. */
static int hosts_add_spec(const char *spec)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *host = copy, *port_s = NULL, *p;
	uint32_t port = arg_port;

	if (!copy)
		return log_oom();
	if (*host == '[') {
		p = strchr(host, ']');
		if (!p)
			return usage_error("bad host '%s': missing ']'", spec);
		*p = '\0';
		host++;
		if (p[1] == ':')
			port_s = p + 2;
		else if (p[1])
			return usage_error("bad host '%s'", spec);
	} else if ((p = strchr(host, ':')) && !strchr(p + 1, ':')) {
		*p = '\0';
		port_s = p + 1;
	}
	if (!*host)
		return usage_error("bad host '%s': empty name", spec);
	if (port_s && safe_atou32_range(port_s, 1, 65535, &port) < 0)
		return usage_error("bad port in '%s'", spec);
	return hosts_add(host, (uint16_t)port, port_s != NULL, NULL);
}

static int hosts_add_list(const char *list)
{
	_cleanup_(strv_freep) char **items = NULL;
	int r;

	if (strv_split(list, ", \t", &items) < 0)
		return log_oom();
	if (strv_length(items) == 0)
		return usage_error("empty host list '%s'", list);
	STRV_FOREACH (i, items) {
		r = hosts_add_spec(*i);
		if (r < 0)
			return r;
	}
	return 0;
}

static int hosts_add_file(const char *path)
{
	_cleanup_fclose_ FILE *f = strcmp(path, "-") == 0 ? NULL : fopen(path, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	FILE *in = strcmp(path, "-") == 0 ? stdin : f;
	int r;

	if (!in)
		return usage_error("cannot open hosts file '%s': %m", path);
	while (getline(&line, &cap, in) >= 0) {
		char *hash = strchr(line, '#');
		const char *s;

		if (hash)
			*hash = '\0';
		s = skip_blanks(strstrip_right(line));
		if (!*s)
			continue;
		r = hosts_add_list(s);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Every A/AAAA record of @name becomes a host whose certificate must name @name (the pods
 * behind a Kubernetes headless Service share the Service's name). This getaddrinfo() runs
 * before any connection is made, so blocking here holds up nothing.
 */
static int hosts_add_dns(const char *name)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int r;

	r = getaddrinfo(name, NULL, &hints, &res);
	if (r != 0) {
		fprintf(stderr, "k2ps: cannot resolve '%s': %s\n", name, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		char buf[INET6_ADDRSTRLEN];
		const void *in =
			a->ai_family == AF_INET6 ?
				(const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr :
				(const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;

		if (!inet_ntop(a->ai_family, in, buf, sizeof(buf)))
			continue;
		r = hosts_add(buf, arg_port, false, name);
		if (r < 0)
			break;
	}
	freeaddrinfo(res);
	return r < 0 ? r : 0;
}

/* ---- options --------------------------------------------------------------------------- */

static int parse_seconds(const char *s, const char *opt, double min, double max, double *ret)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		return usage_error("invalid value '%s' for %s", s, opt);
	*ret = v;
	return 0;
}

/* Adds the comma-separated items of @s to *l. */
static int strv_extend_split(char ***l, const char *s)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(s, ",", &items) < 0)
		return log_oom();
	STRV_FOREACH (i, items)
		if (strv_extend(l, *i) < 0)
			return log_oom();
	return 0;
}

static int parse_columns(const char *s)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(s, ", ", &items) < 0)
		return log_oom();
	if (strv_length(items) == 0)
		return usage_error("empty column list for -o");
	STRV_FOREACH (i, items) {
		const struct column *c = column_find(*i);

		if (!c)
			return usage_error("unknown column '%s' for -o", *i);
		if (strv_extend(&arg_columns, c->name) < 0)
			return log_oom();
	}
	return 0;
}

/* Sort keys: ps or API names, mapped to API fields ("host" stays "host"). */
static int parse_sort(const char *s)
{
	_cleanup_(strv_freep) char **items = NULL;

	if (strv_split(s, ", ", &items) < 0)
		return log_oom();
	if (strv_length(items) == 0)
		return usage_error("empty sort key list");
	STRV_FOREACH (i, items) {
		const char *name = *i;
		bool desc = *name == '-';
		const struct column *c;
		_cleanup_free_ char *key = NULL;

		if (*name == '-' || *name == '+')
			name++;
		c = column_find(name);
		if (!c)
			return usage_error("unknown sort key '%s'", name);
		/* The command line is not sortable; its command name is. */
		if (asprintf(&key, "%s%s", desc ? "-" : "",
			     c->kind == COL_HOST ? "host" :
			     c->kind == COL_CMD	 ? "comm" :
						   c->field) < 0 ||
		    strv_extend(&arg_sort, key) < 0)
			return log_oom();
	}
	return 0;
}

enum {
	ARG_PORT = 0x100,
	ARG_CA,
	ARG_CERT,
	ARG_KEY,
	ARG_STATE_DIR,
	ARG_MATCH,
	ARG_CGROUP,
	ARG_INSTANCE,
	ARG_THREADS,
	ARG_SORT,
	ARG_LIMIT,
	ARG_NO_HEADERS,
	ARG_JSON,
	ARG_SUMMARY,
	ARG_VMS,
	ARG_SANDBOXES,
	ARG_WATCH,
	ARG_EVENTS,
	ARG_FANOUT,
	ARG_TIMEOUT,
	ARG_LOG_LEVEL,
	ARG_HTTP1,
};

static int parse_argv(int argc, char *argv[])
{
	static const struct option options[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "hosts-file", required_argument, NULL, 'f' },
		{ "dns", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, ARG_PORT },
		{ "ca", required_argument, NULL, ARG_CA },
		{ "cert", required_argument, NULL, ARG_CERT },
		{ "key", required_argument, NULL, ARG_KEY },
		{ "state-dir", required_argument, NULL, ARG_STATE_DIR },
		{ "user", required_argument, NULL, 'u' },
		{ "comm", required_argument, NULL, 'C' },
		{ "pid", required_argument, NULL, 'p' },
		{ "match", required_argument, NULL, ARG_MATCH },
		{ "cgroup", required_argument, NULL, ARG_CGROUP },
		{ "instance", required_argument, NULL, ARG_INSTANCE },
		{ "threads", no_argument, NULL, ARG_THREADS },
		{ "sort", required_argument, NULL, ARG_SORT },
		{ "limit", required_argument, NULL, ARG_LIMIT },
		{ "format", required_argument, NULL, 'o' },
		{ "no-headers", no_argument, NULL, ARG_NO_HEADERS },
		{ "json", no_argument, NULL, ARG_JSON },
		{ "hosts-summary", no_argument, NULL, ARG_SUMMARY },
		{ "vms", no_argument, NULL, ARG_VMS },
		{ "sandboxes", no_argument, NULL, ARG_SANDBOXES },
		{ "watch", optional_argument, NULL, ARG_WATCH },
		{ "events", no_argument, NULL, ARG_EVENTS },
		{ "fanout", required_argument, NULL, ARG_FANOUT },
		{ "timeout", required_argument, NULL, ARG_TIMEOUT },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "http1", no_argument, NULL, ARG_HTTP1 }, /* hidden: tests the HTTP/1.1 path */
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	/* Host options are applied after the loop, so --port counts wherever it is given. */
	_cleanup_(strv_freep) char **host_lists = NULL;
	_cleanup_(strv_freep) char **host_files = NULL;
	_cleanup_(strv_freep) char **dns_names = NULL;
	uint32_t u;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "H:f:d:u:C:p:o:h", options, NULL)) >= 0) {
		switch (c) {
		case 'H':
			r = strv_extend(&host_lists, optarg);
			break;
		case 'f':
			r = strv_extend(&host_files, optarg);
			break;
		case 'd':
			r = strv_extend(&dns_names, optarg);
			break;
		case ARG_PORT:
			if (safe_atou32_range(optarg, 1, 65535, &u) < 0)
				return usage_error("invalid port '%s'", optarg);
			arg_port = (uint16_t)u;
			break;
		case ARG_CA:
			arg_ca = optarg;
			break;
		case ARG_CERT:
			arg_cert = optarg;
			break;
		case ARG_KEY:
			arg_key = optarg;
			break;
		case ARG_STATE_DIR:
			arg_state_dir = optarg;
			break;
		case 'u':
			r = strv_extend_split(&arg_users, optarg);
			break;
		case 'C':
			r = strv_extend_split(&arg_comms, optarg);
			break;
		case 'p':
			r = strv_extend_split(&arg_pids, optarg);
			break;
		case ARG_MATCH:
			arg_match = optarg;
			break;
		case ARG_INSTANCE:
			arg_instance = optarg;
			break;
		case ARG_CGROUP:
			arg_cgroup = optarg;
			break;
		case ARG_THREADS:
			arg_threads = true;
			break;
		case ARG_SORT:
			r = parse_sort(optarg);
			break;
		case ARG_LIMIT:
			if (safe_atou32_range(optarg, 1, 1000000, &arg_limit) < 0)
				return usage_error("invalid limit '%s' (1..1000000)", optarg);
			break;
		case 'o':
			r = parse_columns(optarg);
			break;
		case ARG_NO_HEADERS:
			arg_no_headers = true;
			break;
		case ARG_JSON:
			arg_json = true;
			break;
		case ARG_SUMMARY:
			arg_summary = true;
			break;
		case ARG_VMS:
			arg_vms = true;
			break;
		case ARG_SANDBOXES:
			arg_sandboxes = true;
			break;
		case ARG_WATCH:
			arg_watch = 2;
			if (optarg)
				r = parse_seconds(optarg, "--watch", 0.1, 86400, &arg_watch);
			break;
		case ARG_EVENTS:
			arg_events = true;
			break;
		case ARG_FANOUT:
			if (safe_atou32_range(optarg, 1, 10000, &u) < 0)
				return usage_error("invalid fan-out '%s' (1..10000)", optarg);
			arg_fanout = u;
			break;
		case ARG_TIMEOUT:
			r = parse_seconds(optarg, "--timeout", 0.001, 3600, &arg_timeout);
			break;
		case ARG_LOG_LEVEL:
			r = log_level_from_string(optarg);
			if (r < 0)
				return usage_error("invalid log level '%s'", optarg);
			log_set_max_level(r);
			r = 0;
			break;
		case ARG_HTTP1:
			arg_http1 = true;
			break;
		case 'h':
			help();
			return 0;
		default:
			return usage_error("invalid option");
		}
		if (r == -ENOMEM)
			return log_oom();
		if (r < 0)
			return r;
	}
	/* BSD-style ps selectors are accepted for muscle memory: k2ps always lists everything. */
	for (int i = optind; i < argc; i++)
		if (strspn(argv[i], "-auxef") != strlen(argv[i]))
			return usage_error("unexpected argument '%s'", argv[i]);
	if (arg_summary + arg_events + (arg_vms || arg_sandboxes) > 1)
		return usage_error(
			"--hosts-summary, --events and --vms/--sandboxes exclude each other");
	if ((arg_vms || arg_sandboxes) && arg_watch > 0)
		return usage_error("--watch cannot be combined with --vms or --sandboxes");
	if (arg_watch > 0 && (arg_events || arg_json))
		return usage_error("--watch cannot be combined with --events or --json");

	STRV_FOREACH (l, host_lists)
		if ((r = hosts_add_list(*l)) < 0)
			return r;
	STRV_FOREACH (f, host_files)
		if ((r = hosts_add_file(*f)) < 0)
			return r;
	STRV_FOREACH (d, dns_names)
		if ((r = hosts_add_dns(*d)) < 0)
			return r;
	if (arg_n_hosts == 0 && !host_lists && !host_files && !dns_names)
		if ((r = hosts_add("localhost", arg_port, false, NULL)) < 0)
			return r;
	if (arg_n_hosts == 0)
		return usage_error("no hosts to ask");
	if (!arg_columns && parse_columns(DEFAULT_COLUMNS) < 0)
		return log_oom();
	if (arg_watch > 0 && !arg_sort && parse_sort("-cpu") < 0)
		return log_oom();
	return 1;
}

/* ---- requests -------------------------------------------------------------------------- */

/* Appends "&key=value" (value percent-encoded) to @f. */
static void query_add(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s%s=", ftell(f) > 0 ? "&" : "", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~,/", *p))
			fputc(*p, f);
		else
			fprintf(f, "%%%02X", *p);
}

static void query_add_list(FILE *f, const char *key, char **l)
{
	_cleanup_free_ char *joined = NULL;

	if (!l)
		return;
	if (strv_join(l, ",", &joined) < 0) {
		/* Reported by the caller through ferror()-like failure: poison the stream. */
		fputs("\x01", f);
		return;
	}
	query_add(f, key, joined);
}

/* Builds the /v1/proc (or /v1/events) target from the options. */
static int build_path(bool events, char **ret)
{
	_cleanup_free_ char *q = NULL;
	size_t qlen = 0;
	_cleanup_fclose_ FILE *f = open_memstream(&q, &qlen);
	_cleanup_(strv_freep) char **fields = NULL;
	_cleanup_(strv_freep) char **sort = NULL;
	char *path = NULL;

	if (!f)
		return -ENOMEM;
	if (events) {
		query_add_list(f, "comm", arg_comms);
	} else {
		query_add_list(f, "user", arg_users);
		query_add_list(f, "comm", arg_comms);
		query_add_list(f, "pid", arg_pids);
		if (arg_match)
			query_add(f, "match", arg_match);
		if (arg_cgroup)
			query_add(f, "cgroup", arg_cgroup);
		if (arg_instance)
			query_add(f, "instance", arg_instance);
		if (arg_threads)
			query_add(f, "threads", "1");
		STRV_FOREACH (k, arg_sort)
			if (!endswith(*k, "host") && strv_extend(&sort, *k) < 0)
				return -ENOMEM;
		query_add_list(f, "sort", sort);
		if (arg_limit) {
			char n[16];

			snprintf(n, sizeof(n), "%u", arg_limit);
			query_add(f, "limit", n);
		}
		/* Only the fields shown and sorted on; --json without -o gets them all. */
		if (!arg_json || arg_columns != NULL) {
			STRV_FOREACH (c, arg_columns) {
				const struct column *col = column_find(*c);

				if (col->field && !strv_contains(fields, col->field) &&
				    strv_extend(&fields, col->field) < 0)
					return -ENOMEM;
				if (col->kind == COL_CMD && !strv_contains(fields, "comm") &&
				    strv_extend(&fields, "comm") < 0)
					return -ENOMEM;
			}
			STRV_FOREACH (k, sort) {
				const char *name = **k == '-' ? *k + 1 : *k;

				if (!strv_contains(fields, name) && strv_extend(&fields, name) < 0)
					return -ENOMEM;
			}
			if (fields)
				query_add_list(f, "fields", fields);
		}
	}
	if (fflush(f) != 0 || ferror(f) || memchr(q, '\x01', qlen))
		return -ENOMEM;
	if (asprintf(&path, "%s%s%s", events ? "/v1/events" : "/v1/proc", qlen ? "?" : "",
		     qlen ? q : "") < 0)
		return -ENOMEM;
	*ret = path;
	return 0;
}

/* ---- merging and sorting --------------------------------------------------------------- */

struct row {
	json_t *proc; /* reference held */
	size_t host; /* index in arg_hosts */
	size_t seq; /* order of arrival, for a stable sort */
};

struct rows {
	struct row *v;
	size_t n;
	struct fetch_request *reqs; /* borrowed: the requests, one per host */
	int error; /* -ENOMEM if parsing failed */
	/* --json with nothing to merge (no --sort, no --limit): each host's processes are printed
	 * here as its answer arrives, so memory is bounded by the answers in flight, not by the
	 * size of the fleet. NULL: keep every row for merging. */
	FILE *stream;
};

static void rows_done(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		json_decref(r->v[i].proc);
	free(r->v);
	*r = (struct rows){};
}

static int value_cmp(json_t *a, json_t *b)
{
	if (!a || json_is_null(a))
		return b && !json_is_null(b) ? -1 : 0;
	if (!b || json_is_null(b))
		return 1;
	if (json_is_number(a) && json_is_number(b)) {
		double x = json_number_value(a), y = json_number_value(b);

		return x < y ? -1 : x > y;
	}
	if (json_is_string(a) && json_is_string(b)) {
		/* 64-bit values come as decimal strings: compare by length first. */
		const char *x = json_string_value(a), *y = json_string_value(b);
		size_t lx = strlen(x), ly = strlen(y);

		if (lx != ly && strspn(x, "0123456789") == lx && strspn(y, "0123456789") == ly)
			return lx < ly ? -1 : 1;
		return strcmp(x, y);
	}
	return 0;
}

static int row_cmp(const void *pa, const void *pb, void *arg)
{
	const struct row *a = pa, *b = pb;

	STRV_FOREACH (k, arg_sort) {
		bool desc = **k == '-';
		const char *name = desc ? *k + 1 : *k;
		int r;

		if (strcmp(name, "host") == 0)
			r = strcmp(arg_hosts[a->host].label, arg_hosts[b->host].label);
		else
			r = value_cmp(json_object_get(a->proc, name),
				      json_object_get(b->proc, name));
		if (r)
			return desc ? -r : r;
	}
	if (a->host != b->host)
		return a->host < b->host ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/*
 * Parses host @i's envelope into @rows and frees its body, as soon as it has arrived, so that a
 * large fleet never holds every raw body and every parsed table at once. Returns 0, or -ENOMEM;
 * a malformed answer becomes the host's error.
 */
static int rows_add_host(struct rows *rows, struct fetch_request *req, size_t i)
{
	json_auto_t *j = NULL;
	json_t *procs, *p;
	size_t k;

	if (req->error || !req->body)
		return 0;
	j = json_loadb(req->body, req->body_len, 0, NULL);
	free(req->body);
	req->body = NULL;
	procs = json_object_get(j, "processes");
	if (!json_is_array(procs)) {
		req->error = strdup("malformed answer: no process list");
		return req->error ? 0 : -ENOMEM;
	}
	json_array_foreach(procs, k, p)
	{
		struct row *n;

		if (!json_is_object(p))
			continue;
		if (rows->n % 1024 == 0) {
			n = reallocarray(rows->v, rows->n + 1024, sizeof(*n));
			if (!n)
				return -ENOMEM;
			rows->v = n;
		}
		if (json_object_set_new(p, "host", json_string(arg_hosts[i].label)) < 0)
			return -ENOMEM;
		if (rows->stream) {
			_cleanup_free_ char *s =
				json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(15));

			if (!s)
				return -ENOMEM;
			fprintf(rows->stream, "%s\n", s);
			continue;
		}
		rows->v[rows->n] = (struct row){ json_incref(p), i, rows->n };
		rows->n++;
	}
	return 0;
}

/* Sorts the merged rows and cuts them to --limit. */
static void rows_finish(struct rows *rows)
{
	if (arg_sort && rows->n > 1)
		qsort_r(rows->v, rows->n, sizeof(*rows->v), row_cmp, NULL);
	if (arg_limit && rows->n > arg_limit) {
		for (size_t i = arg_limit; i < rows->n; i++)
			json_decref(rows->v[i].proc);
		rows->n = arg_limit;
	}
}

/* ---- formatting ------------------------------------------------------------------------ */

static char *fmt_number(json_t *v)
{
	char *s = NULL;

	if (json_is_integer(v))
		(void)!asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		(void)!asprintf(&s, "%.0f", json_real_value(v));
	else if (json_is_string(v))
		s = strdup(json_string_value(v));
	else
		s = strdup("-");
	return s;
}

/* START: HH:MM for today, MonDD this year, else the year (ps's rule), in local time. */
static char *fmt_start(json_t *v)
{
	const char *s = json_string_value(v);
	struct tm tm = {}, now_tm, st;
	time_t t, now = time(NULL);
	char buf[32];

	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return strdup("-");
	t = timegm(&tm);
	if (!localtime_r(&t, &st) || !localtime_r(&now, &now_tm))
		return strdup("-");
	if (st.tm_year == now_tm.tm_year && st.tm_yday == now_tm.tm_yday)
		strftime(buf, sizeof(buf), "%H:%M", &st);
	else if (st.tm_year == now_tm.tm_year)
		strftime(buf, sizeof(buf), "%b%d", &st);
	else
		strftime(buf, sizeof(buf), "%Y", &st);
	return strdup(buf);
}

static char *fmt_cmd(json_t *proc)
{
	json_t *argv = json_object_get(proc, "cmdline");
	const char *comm = json_string_value(json_object_get(proc, "comm"));
	char *s = NULL;
	size_t len = 0;
	FILE *f;
	json_t *a;
	size_t i;

	if (!json_is_array(argv) || json_array_size(argv) == 0) {
		if (asprintf(&s, "[%s]", comm ?: "?") < 0)
			return NULL;
		return s;
	}
	f = open_memstream(&s, &len);
	if (!f)
		return NULL;
	json_array_foreach(argv, i, a)
	{
		/* Control characters (a newline in an argument) would break the table. */
		for (const char *p = json_string_value(a) ?: ""; *p; p++)
			fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, f);
		if (i + 1 < json_array_size(argv))
			fputc(' ', f);
	}
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static char *fmt_cell(const struct column *c, const struct row *r)
{
	json_t *v = c->field ? json_object_get(r->proc, c->field) : NULL;
	char *s = NULL;

	switch (c->kind) {
	case COL_HOST:
		return strdup(arg_hosts[r->host].label);
	case COL_STR:
		if (json_is_string(v))
			return strdup(json_string_value(v));
		return json_is_null(v) || !v ? strdup("-") : fmt_number(v);
	case COL_NUM:
		return fmt_number(v);
	case COL_INSTANCE:
		/* {"kind": "sandbox", "id": "web-1"} -> sandbox/web-1 */
		if (!json_is_object(v))
			return strdup("-");
		(void)!asprintf(&s, "%s/%s", json_string_value(json_object_get(v, "kind")) ?: "?",
				json_string_value(json_object_get(v, "id")) ?: "?");
		return s;
	case COL_PCT:
		if (!json_is_number(v))
			return strdup("-");
		(void)!asprintf(&s, "%.1f", json_number_value(v));
		return s;
	case COL_TTY:
		return json_is_string(v) ? strdup(json_string_value(v)) : strdup("?");
	case COL_START:
		return fmt_start(v);
	case COL_TIME: {
		long long ms = json_is_number(v) ? (long long)json_number_value(v) : 0;

		(void)!asprintf(&s, "%lld:%02lld", ms / 60000, ms / 1000 % 60);
		return s;
	}
	case COL_CMD:
		return fmt_cmd(r->proc);
	}
	return NULL;
}

/* Prints @rows as a table (ps aux style) to @out. */
static int print_table(FILE *out, const struct rows *rows)
{
	size_t nc = strv_length(arg_columns);
	_cleanup_free_ const struct column **cols = calloc(nc, sizeof(*cols));
	_cleanup_free_ size_t *width = calloc(nc, sizeof(size_t));
	_cleanup_free_ char **cells = calloc(rows->n * nc + 1, sizeof(char *));
	int r = 0;

	if (!cols || !width || !cells)
		return log_oom();
	for (size_t j = 0; j < nc; j++) {
		cols[j] = column_find(arg_columns[j]);
		width[j] = arg_no_headers ? 0 : strlen(cols[j]->header);
	}
	for (size_t i = 0; i < rows->n; i++)
		for (size_t j = 0; j < nc; j++) {
			char *s = fmt_cell(cols[j], &rows->v[i]);

			if (!s) {
				r = log_oom();
				goto out;
			}
			cells[i * nc + j] = s;
			width[j] = MAX(width[j], strlen(s));
		}
	for (size_t i = arg_no_headers ? 1 : 0; i <= rows->n; i++)
		for (size_t j = 0; j < nc; j++) {
			const char *s = i == 0 ? cols[j]->header : cells[(i - 1) * nc + j];
			bool last = j + 1 == nc;
			int w = (int)MIN(width[j], (size_t)INT32_MAX);

			if (cols[j]->right)
				fprintf(out, "%*s", w, s);
			else if (last)
				fputs(s, out);
			else
				fprintf(out, "%-*s", w, s);
			fputc(last ? '\n' : ' ', out);
		}
out:
	for (size_t i = 0; i < rows->n * nc; i++)
		free(cells[i]);
	return r;
}

static int print_json(FILE *out, const struct rows *rows)
{
	for (size_t i = 0; i < rows->n; i++) {
		_cleanup_free_ char *s =
			json_dumps(rows->v[i].proc, JSON_COMPACT | JSON_REAL_PRECISION(15));

		if (!s)
			return log_oom();
		fprintf(out, "%s\n", s);
	}
	return 0;
}

static void report_failures(FILE *out, struct fetch_request *reqs)
{
	for (size_t i = 0; i < arg_n_hosts; i++)
		if (reqs[i].error)
			fprintf(out, "k2ps: %s: %s\n", arg_hosts[i].label, reqs[i].error);
}

/* ---- modes ----------------------------------------------------------------------------- */

struct k2ps {
	struct event_base *base;
	SSL_CTX *ctx;
	struct fetch_options fo;
	struct fetch_request *reqs; /* one per host */
	bool interrupted;
};

static void sigint_cb(evutil_socket_t fd, short what, void *arg)
{
	struct k2ps *k = arg;

	k->interrupted = true;
	event_base_loopbreak(k->base);
}

static int run_fetch(struct k2ps *k, const char *path)
{
	for (size_t i = 0; i < arg_n_hosts; i++) {
		fetch_request_done(&k->reqs[i]);
		k->reqs[i].host = arg_hosts[i].addr;
		k->reqs[i].peer_name = arg_hosts[i].peer_name;
		k->reqs[i].port = arg_hosts[i].port;
		k->reqs[i].path = path;
	}
	return fetch_run(k->base, k->ctx, &k->fo, k->reqs, arg_n_hosts);
}

static void list_done_cb(struct fetch_request *req)
{
	struct rows *rows = req->userdata;
	int r = rows_add_host(rows, req, (size_t)(req - rows->reqs));

	if (r < 0 && rows->error == 0)
		rows->error = r;
}

/* The process list once (or one --watch frame into @out). Returns failed hosts or -errno. */
static int mode_list(struct k2ps *k, FILE *out, FILE *err_out)
{
	_cleanup_free_ char *path = NULL;
	struct rows rows = {
		.reqs = k->reqs,
		.stream = arg_json && !arg_sort && !arg_limit ? out : NULL,
	};
	int r, failed = 0;

	if (build_path(false, &path) < 0)
		return log_oom();
	for (size_t i = 0; i < arg_n_hosts; i++) {
		k->reqs[i].on_done = list_done_cb;
		k->reqs[i].userdata = &rows;
	}
	r = run_fetch(k, path);
	if (r >= 0 && rows.error < 0)
		r = log_oom();
	if (r >= 0) {
		rows_finish(&rows);
		r = arg_json ? print_json(out, &rows) : print_table(out, &rows);
	}
	rows_done(&rows);
	if (r < 0)
		return r;
	for (size_t i = 0; i < arg_n_hosts; i++)
		failed += k->reqs[i].error != NULL;
	report_failures(err_out, k->reqs);
	return failed;
}

static char *fmt_kb(double kb)
{
	static const char units[] = "KMGTP";
	char *s = NULL;
	size_t u = 0;

	while (kb >= 1024 && u + 1 < sizeof(units) - 1) {
		kb /= 1024;
		u++;
	}
	(void)!asprintf(&s, "%.1f%c", kb, units[u]);
	return s;
}

static int mode_summary(struct k2ps *k)
{
	int failed;

	failed = run_fetch(k, "/v1/host");
	if (failed < 0)
		return failed;
	if (!arg_json && !arg_no_headers)
		printf("%-21s %-16s %6s %4s %6s %6s %6s %5s %8s %10s\n", "HOST", "NAME", "PROCS",
		       "CPUS", "LOAD1", "LOAD5", "LOAD15", "%MEM", "MEM", "UPTIME");
	for (size_t i = 0; i < arg_n_hosts; i++) {
		struct fetch_request *req = &k->reqs[i];
		json_auto_t *j = NULL;
		json_t *load, *mem;
		double total, avail, up;
		_cleanup_free_ char *memstr = NULL;
		char upbuf[32];

		if (req->error)
			continue;
		j = json_loadb(req->body, req->body_len, 0, NULL);
		if (!json_is_object(j)) {
			req->error = strdup("malformed answer");
			failed++;
			continue;
		}
		if (arg_json) {
			_cleanup_free_ char *s = NULL;

			if (json_object_set_new(j, "host", json_string(arg_hosts[i].label)) < 0 ||
			    !(s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15))))
				return log_oom();
			printf("%s\n", s);
			continue;
		}
		load = json_object_get(j, "load");
		mem = json_object_get(j, "memory");
		total = json_number_value(json_object_get(mem, "total_kb"));
		avail = json_number_value(json_object_get(mem, "available_kb"));
		up = json_number_value(json_object_get(j, "uptime_s"));
		memstr = fmt_kb(total);
		snprintf(upbuf, sizeof(upbuf), "%dd%02d:%02d", (int)(up / 86400),
			 (int)(up / 3600) % 24, (int)(up / 60) % 60);
		printf("%-21s %-16s %6" JSON_INTEGER_FORMAT " %4" JSON_INTEGER_FORMAT
		       " %6.2f %6.2f %6.2f %5.1f %8s %10s\n",
		       arg_hosts[i].label, json_string_value(json_object_get(j, "hostname")) ?: "-",
		       json_integer_value(json_object_get(j, "processes")),
		       json_integer_value(json_object_get(j, "cpus")),
		       json_number_value(json_array_get(load, 0)),
		       json_number_value(json_array_get(load, 1)),
		       json_number_value(json_array_get(load, 2)),
		       total > 0 ? (total - avail) * 100 / total : 0.0, memstr ?: "-", upbuf);
	}
	report_failures(stderr, k->reqs);
	return failed;
}

/* One instance's line: how it ended, or what its launcher says of it. */
static void print_instance(const char *host, const json_t *o)
{
	const json_t *info = json_object_get(o, "info");
	const char *state = json_string_value(json_object_get(o, "state")) ?: "-";
	char detail[64] = "-";

	if (json_is_integer(json_object_get(o, "exit_code")))
		snprintf(detail, sizeof(detail), "exit %" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(o, "exit_code")));
	else if (json_is_integer(json_object_get(o, "signal")))
		snprintf(detail, sizeof(detail), "signal %" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(o, "signal")));
	else if (json_is_string(json_object_get(o, "error")))
		snprintf(detail, sizeof(detail), "%s",
			 json_string_value(json_object_get(o, "error")));
	else if (json_is_integer(json_object_get(info, "vcpu_count")))
		snprintf(detail, sizeof(detail), "%" JSON_INTEGER_FORMAT " vCPU",
			 json_integer_value(json_object_get(info, "vcpu_count")));
	printf("%-21s %-8s %-20s %-12s %8" JSON_INTEGER_FORMAT " %-24s %s\n", host,
	       json_string_value(json_object_get(o, "kind")) ?: "-",
	       json_string_value(json_object_get(o, "id")) ?: "-", state,
	       json_integer_value(json_object_get(o, "pid")),
	       json_string_value(json_object_get(o, "started_at")) ?: "-", detail);
}

/* --vms / --sandboxes: every host's instances of the kinds asked for. */
static int mode_instances(struct k2ps *k)
{
	static const struct {
		const char *path, *key;
	} kinds[] = { { "/v1/vms", "vms" }, { "/v1/sandboxes", "sandboxes" } };
	int failed = 0;

	if (!arg_json && !arg_no_headers)
		printf("%-21s %-8s %-20s %-12s %8s %-24s %s\n", "HOST", "KIND", "ID", "STATE",
		       "PID", "STARTED", "DETAIL");
	for (size_t kind = 0; kind < ELEMENTSOF(kinds); kind++) {
		int f;

		if ((kind == 0 && !arg_vms) || (kind == 1 && !arg_sandboxes))
			continue;
		f = run_fetch(k, kinds[kind].path);
		if (f < 0)
			return f;
		for (size_t i = 0; i < arg_n_hosts; i++) {
			struct fetch_request *req = &k->reqs[i];
			json_auto_t *j = NULL;
			json_t *list, *o;
			size_t n;

			if (req->error)
				continue;
			j = json_loadb(req->body, req->body_len, 0, NULL);
			list = json_object_get(j, kinds[kind].key);
			if (!json_is_array(list)) {
				req->error = strdup("malformed answer");
				f++;
				continue;
			}
			json_array_foreach(list, n, o)
			{
				_cleanup_free_ char *line = NULL;

				if (!arg_json) {
					print_instance(arg_hosts[i].label, o);
					continue;
				}
				if (json_object_set_new(o, "host",
							json_string(arg_hosts[i].label)) < 0 ||
				    !(line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15))))
					return log_oom();
				printf("%s\n", line);
			}
		}
		report_failures(stderr, k->reqs);
		failed = MAX(failed, f);
	}
	return failed;
}

static int terminal_rows(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row < 5)
		return 0;
	return ws.ws_row;
}

/* Redraws the merged table every arg_watch seconds until SIGINT. */
static int mode_watch(struct k2ps *k)
{
	uint32_t user_limit = arg_limit;

	while (!k->interrupted) {
		_cleanup_free_ char *frame = NULL;
		size_t len = 0;
		_cleanup_fclose_ FILE *f = open_memstream(&frame, &len);
		struct timeval tv = {
			.tv_sec = (time_t)arg_watch,
			.tv_usec = (suseconds_t)((arg_watch - (time_t)arg_watch) * 1e6),
		};
		time_t now = time(NULL);
		char stamp[32];
		int rows = terminal_rows(), r;

		if (!f)
			return log_oom();
		/* Fill the screen, no more: the title, the header, and room for failed hosts. */
		arg_limit = user_limit ?: (rows > 0 ? (uint32_t)rows - 3 : 0);
		strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
		fprintf(f, "\033[H\033[2Jk2ps - %zu hosts - %s\n", arg_n_hosts, stamp);
		r = mode_list(k, f, f);
		if (r < 0 && r != -EINTR)
			return r;
		if (k->interrupted)
			break;
		if (fflush(f) != 0)
			return log_oom();
		fwrite(frame, 1, len, stdout);
		fflush(stdout);
		event_base_loopexit(k->base, &tv);
		event_base_dispatch(k->base);
	}
	return 0;
}

/* Per-host line assembly for --events. */
struct event_stream {
	const char *label; /* borrowed from arg_hosts */
	char *buf;
	size_t len, cap;
};

static void event_print_line(const char *label, const char *line, size_t len)
{
	json_auto_t *j = json_loadb(line, len, 0, NULL);
	_cleanup_free_ char *s = NULL;

	if (!json_is_object(j)) {
		printf("%s %.*s\n", label, (int)MIN(len, (size_t)INT32_MAX), line);
	} else if (arg_json) {
		if (json_object_set_new(j, "host", json_string(label)) < 0 ||
		    !(s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15))))
			return;
		printf("%s\n", s);
	} else {
		const char *type = json_string_value(json_object_get(j, "type"));
		json_t *code = json_object_get(j, "exit_code"), *sig = json_object_get(j, "signal");
		json_t *argv = json_object_get(j, "cmdline");
		_cleanup_free_ char *cmd = NULL;

		cmd = json_is_array(argv)  ? fmt_cmd(j) :
		      json_is_string(argv) ? strdup(json_string_value(argv)) :
					     strdup("");
		printf("%-21s %-5s %7" JSON_INTEGER_FORMAT " %-16s", label, type ?: "?",
		       json_integer_value(json_object_get(j, "pid")),
		       json_string_value(json_object_get(j, "comm")) ?: "?");
		if (json_is_integer(code))
			printf(" exit=%" JSON_INTEGER_FORMAT, json_integer_value(code));
		if (json_is_integer(sig))
			printf(" signal=%" JSON_INTEGER_FORMAT, json_integer_value(sig));
		if (cmd && *cmd && type && strcmp(type, "exec") == 0)
			printf(" %s", cmd);
		putchar('\n');
	}
	fflush(stdout);
}

static int event_data_cb(struct fetch_request *req, const char *data, size_t len)
{
	struct event_stream *s = req->userdata;
	char *nl;

	if (s->len + len > s->cap) {
		size_t cap = MAX(s->cap * 2, s->len + len);
		char *n = realloc(s->buf, cap);

		if (!n)
			return -ENOMEM;
		s->buf = n;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	while ((nl = memchr(s->buf, '\n', s->len))) {
		size_t n = (size_t)(nl - s->buf);

		if (n > 0)
			event_print_line(s->label, s->buf, n);
		memmove(s->buf, nl + 1, s->len - n - 1);
		s->len -= n + 1;
	}
	return 0;
}

static void event_done_cb(struct fetch_request *req)
{
	struct event_stream *s = req->userdata;

	if (req->error && strcmp(req->error, "interrupted") != 0)
		fprintf(stderr, "k2ps: %s: %s\n", s->label, req->error);
	else if (!req->error)
		fprintf(stderr, "k2ps: %s: event stream ended\n", s->label);
}

static int mode_events(struct k2ps *k)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ struct event_stream *streams = calloc(arg_n_hosts, sizeof(*streams));
	int failed = 0;

	if (!streams || build_path(true, &path) < 0)
		return log_oom();
	/* Every stream stays open: a fan-out below the host count would starve the rest. */
	k->fo.fanout = (unsigned)MIN(arg_n_hosts, (size_t)UINT32_MAX);
	for (size_t i = 0; i < arg_n_hosts; i++) {
		streams[i].label = arg_hosts[i].label;
		k->reqs[i] = (struct fetch_request){
			.host = arg_hosts[i].addr,
			.peer_name = arg_hosts[i].peer_name,
			.port = arg_hosts[i].port,
			.path = path,
			.on_data = event_data_cb,
			.on_done = event_done_cb,
			.userdata = &streams[i],
		};
	}
	(void)fetch_run(k->base, k->ctx, &k->fo, k->reqs, arg_n_hosts);
	for (size_t i = 0; i < arg_n_hosts; i++) {
		if (k->reqs[i].error && strcmp(k->reqs[i].error, "interrupted") != 0)
			failed++;
		free(streams[i].buf);
	}
	return failed;
}

/* ---- main ------------------------------------------------------------------------------ */

static int tls_setup(SSL_CTX **ret)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ char *ca = NULL;
	_cleanup_free_ char *cert = NULL;
	_cleanup_free_ char *key = NULL;
	struct tls_config c = {};
	int r;

	if (arg_state_dir)
		dir = strdup(arg_state_dir);
	else if ((r = paths_default_state_dir(&dir)) < 0 && (!arg_ca || !arg_cert)) {
		fprintf(stderr, "k2ps: no state directory known (%s); use --ca, --cert, --key\n",
			strerror(-r));
		return r;
	}
	if (dir && ((!arg_ca && path_join(dir, "ca.pem", &ca) < 0) ||
		    (!arg_cert && path_join(dir, "client.pem", &cert) < 0) ||
		    (!arg_key && path_join(dir, "client.key", &key) < 0)))
		return log_oom();
	c.ca_file = arg_ca ?: ca;
	c.cert_file = arg_cert ?: cert;
	c.key_file = arg_key ?: (arg_cert ? NULL : key);
	/* A default client certificate that does not exist is simply not presented. */
	if (!arg_cert && c.cert_file && access(c.cert_file, R_OK) < 0)
		c.cert_file = c.key_file = NULL;
	r = tls_client_ctx_new(&c, ret);
	if (r < 0)
		fprintf(stderr,
			"k2ps: cannot load the TLS material (CA '%s', certificate '%s'): %s\n",
			c.ca_file ?: "-", c.cert_file ?: "-", strerror(-r));
	return r;
}

int main(int argc, char *argv[])
{
	_cleanup_(event_base_freep) struct event_base *base = NULL;
	_cleanup_(event_freep) struct event *sigint = NULL;
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
	_cleanup_free_ struct fetch_request *reqs = NULL;
	struct k2ps k = {};
	int r;

	log_set_max_level(LOG_WARNING);
	r = parse_argv(argc, argv);
	if (r <= 0) {
		hosts_free();
		return r < 0 ? (r == -EINVAL ? 2 : 1) : 0;
	}
	signal(SIGPIPE, SIG_IGN);
	reqs = calloc(arg_n_hosts, sizeof(*reqs));
	base = event_base_new();
	if (!reqs || !base) {
		log_oom();
		r = -ENOMEM;
		goto out;
	}
	r = tls_setup(&ctx);
	if (r < 0)
		goto out;
	k = (struct k2ps){
		.base = base,
		.ctx = ctx,
		.reqs = reqs,
		.fo = {
			.fanout = arg_fanout,
			.timeout_ms = (unsigned)(arg_timeout * 1000 + 0.5) ?: 1,
			.max_body = K2PS_MAX_BODY,
			.http1_only = arg_http1,
		},
	};
	sigint = evsignal_new(base, SIGINT, sigint_cb, &k);
	if (!sigint || evsignal_add(sigint, NULL) < 0) {
		r = log_oom();
		goto out;
	}
	if (arg_events)
		r = mode_events(&k);
	else if (arg_summary)
		r = mode_summary(&k);
	else if (arg_vms || arg_sandboxes)
		r = mode_instances(&k);
	else if (arg_watch > 0)
		r = mode_watch(&k);
	else
		r = mode_list(&k, stdout, stderr);
out:
	for (size_t i = 0; reqs && i < arg_n_hosts; i++)
		fetch_request_done(&reqs[i]);
	hosts_free();
	strv_free(arg_columns);
	strv_free(arg_sort);
	strv_free(arg_users);
	strv_free(arg_comms);
	strv_free(arg_pids);
	if (fflush(stdout) != 0 && r == 0)
		r = 1;
	return r == 0 ? 0 : 1;
}
