/* SPDX-License-Identifier: MIT */
#include "k2i/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"

static const char *const route_names[_K2I_ROUTE_MAX] = {
	[K2I_ROUTE_NONE] = "none",
	[K2I_ROUTE_INDEX] = "index",
	[K2I_ROUTE_HELLO] = "hello",
	[K2I_ROUTE_PROC] = "proc",
	[K2I_ROUTE_PROC_PID] = "proc_pid",
	[K2I_ROUTE_PROC_CMD] = "proc_cmd",
	[K2I_ROUTE_PROC_SELF] = "proc_self",
	[K2I_ROUTE_HOST] = "host",
	[K2I_ROUTE_CONFIG] = "config",
	[K2I_ROUTE_METRICS] = "metrics",
	[K2I_ROUTE_HEALTHZ] = "healthz",
	[K2I_ROUTE_EVENTS] = "events",
	[K2I_ROUTE_VMS] = "vms",
	[K2I_ROUTE_SANDBOXES] = "sandboxes",
	[K2I_ROUTE_EXITS] = "exits",
};

static const int status_codes[_K2I_STATUS_MAX] = {
	[K2I_STATUS_200] = 200, [K2I_STATUS_400] = 400, [K2I_STATUS_401] = 401,
	[K2I_STATUS_403] = 403, [K2I_STATUS_404] = 404, [K2I_STATUS_405] = 405,
	[K2I_STATUS_413] = 413, [K2I_STATUS_500] = 500, [K2I_STATUS_503] = 503,
	[K2I_STATUS_505] = 505, [K2I_STATUS_OTHER] = 0,
};

static const char *const proto_names[_K2I_PROTO_MAX] = { "http/1.1", "h2" };

/* Upper bounds of the scan-duration histogram, in seconds. */
static const double scan_bounds[K2I_SCAN_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025,
						      0.05,  0.1,    0.25,  0.5,  1.0 };

const char *k2i_route_to_string(enum k2i_route r)
{
	return r >= 0 && r < _K2I_ROUTE_MAX ? route_names[r] : "none";
}

void metrics_count_request(struct k2i_metrics *m, enum k2i_route route, int status,
			   enum k2i_proto proto)
{
	size_t slot = K2I_STATUS_OTHER;

	for (size_t i = 0; i < K2I_STATUS_OTHER; i++)
		if (status_codes[i] == status)
			slot = i;
	if (route < 0 || route >= _K2I_ROUTE_MAX)
		route = K2I_ROUTE_NONE;
	m->requests[route][slot][proto]++;
	if (status == 401 || status == 403)
		m->auth_failures++;
}

void metrics_observe_scan(struct k2i_metrics *m, double seconds)
{
	m->scans_total++;
	m->scan_seconds_sum += seconds;
	for (size_t i = 0; i < K2I_SCAN_BUCKETS; i++)
		if (seconds <= scan_bounds[i]) {
			m->scan_buckets[i]++;
			break;
		}
}

/* Reads utime+stime (seconds), RSS (bytes) and VSZ (bytes) of this process from /proc/self/stat. */
static void self_usage(double *cpu, double *rss, double *vsz)
{
	_cleanup_free_ char *stat = NULL;
	unsigned long utime, stime, vsize;
	long rss_pages;
	const char *p;

	*cpu = *rss = *vsz = 0;
	if (read_full_file_at(AT_FDCWD, "/proc/self/stat", 4096, &stat, NULL) < 0)
		return;
	p = strrchr(stat, ')');
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
			 "%*d %*u %lu %ld",
			 &utime, &stime, &vsize, &rss_pages) != 4)
		return;
	*cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
	*rss = (double)rss_pages * (double)sysconf(_SC_PAGESIZE);
	*vsz = (double)vsize;
}

static unsigned count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

int metrics_render(const struct k2i_metrics *m, struct evbuffer *out)
{
	double cpu, rss, vsz, le_count = 0;
	int r = 0;

#define P(...)                                                           \
	do {                                                             \
		if (r >= 0 && evbuffer_add_printf(out, __VA_ARGS__) < 0) \
			r = -ENOMEM;                                     \
	} while (0)

	P("# HELP k2i_http_requests_total HTTP requests answered, by route, status code and "
	  "protocol.\n# TYPE k2i_http_requests_total counter\n");
	for (int i = 0; i < _K2I_ROUTE_MAX; i++)
		for (int s = 0; s < _K2I_STATUS_MAX; s++)
			for (int p = 0; p < _K2I_PROTO_MAX; p++) {
				if (!m->requests[i][s][p])
					continue;
				if (status_codes[s])
					P("k2i_http_requests_total{route=\"%s\",code=\"%d\",proto="
					  "\"%s\"} %lu\n",
					  route_names[i], status_codes[s], proto_names[p],
					  (unsigned long)m->requests[i][s][p]);
				else
					P("k2i_http_requests_total{route=\"%s\",code=\"other\","
					  "proto=\"%s\"} %lu\n",
					  route_names[i], proto_names[p],
					  (unsigned long)m->requests[i][s][p]);
			}

	P("# HELP k2i_connections_total TLS connections accepted, by negotiated protocol.\n"
	  "# TYPE k2i_connections_total counter\n");
	for (int p = 0; p < _K2I_PROTO_MAX; p++)
		P("k2i_connections_total{proto=\"%s\"} %lu\n", proto_names[p],
		  (unsigned long)m->connections_total[p]);
	P("# HELP k2i_connections_active Connections open now.\n"
	  "# TYPE k2i_connections_active gauge\nk2i_connections_active %lu\n",
	  (unsigned long)m->connections_active);
	P("# HELP k2i_connections_refused_total Connections closed at once because max_connections "
	  "was reached.\n# TYPE k2i_connections_refused_total counter\n"
	  "k2i_connections_refused_total %lu\n",
	  (unsigned long)m->connections_refused);
	P("# HELP k2i_tls_handshake_failures_total TLS handshakes that failed.\n"
	  "# TYPE k2i_tls_handshake_failures_total counter\n"
	  "k2i_tls_handshake_failures_total %lu\n",
	  (unsigned long)m->tls_handshake_failures);
	P("# HELP k2i_auth_failures_total Requests refused with 401 or 403.\n"
	  "# TYPE k2i_auth_failures_total counter\nk2i_auth_failures_total %lu\n",
	  (unsigned long)m->auth_failures);

	P("# HELP k2i_scan_duration_seconds Time to walk /proc for one snapshot.\n"
	  "# TYPE k2i_scan_duration_seconds histogram\n");
	for (size_t i = 0; i < K2I_SCAN_BUCKETS; i++) {
		le_count += (double)m->scan_buckets[i];
		P("k2i_scan_duration_seconds_bucket{le=\"%g\"} %.0f\n", scan_bounds[i], le_count);
	}
	P("k2i_scan_duration_seconds_bucket{le=\"+Inf\"} %lu\n", (unsigned long)m->scans_total);
	P("k2i_scan_duration_seconds_sum %.6f\n", m->scan_seconds_sum);
	P("k2i_scan_duration_seconds_count %lu\n", (unsigned long)m->scans_total);
	P("# HELP k2i_scan_cache_hits_total Requests answered from a snapshot shared with another "
	  "request.\n# TYPE k2i_scan_cache_hits_total counter\nk2i_scan_cache_hits_total %lu\n",
	  (unsigned long)m->scan_cache_hits);
	P("# HELP k2i_live_patches_total Shared snapshots updated from process events instead of "
	  "a new scan.\n# TYPE k2i_live_patches_total counter\nk2i_live_patches_total %lu\n",
	  (unsigned long)m->live_patches);
	P("# HELP k2i_scan_errors_total Scans that failed.\n"
	  "# TYPE k2i_scan_errors_total counter\nk2i_scan_errors_total %lu\n",
	  (unsigned long)m->scan_errors);
	P("# HELP k2i_processes Processes seen by the last full scan.\n"
	  "# TYPE k2i_processes gauge\nk2i_processes %lu\n",
	  (unsigned long)m->processes);

	self_usage(&cpu, &rss, &vsz);
	P("# HELP process_cpu_seconds_total User and system CPU time of k2i.\n"
	  "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
	  cpu);
	P("# HELP process_resident_memory_bytes Resident memory of k2i.\n"
	  "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %.0f\n",
	  rss);
	P("# HELP process_virtual_memory_bytes Virtual memory of k2i.\n"
	  "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %.0f\n",
	  vsz);
	P("# HELP process_open_fds Open file descriptors of k2i.\n"
	  "# TYPE process_open_fds gauge\nprocess_open_fds %u\n",
	  count_open_fds());
	P("# HELP process_start_time_seconds Start time of k2i since the epoch.\n"
	  "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
	  m->start_time);
#undef P
	return r;
}
