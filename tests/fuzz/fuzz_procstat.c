/* SPDX-License-Identifier: MIT */
/*
 * Feeds arbitrary bytes to the /proc parsers of k2i/procinfo.c as the content of
 * /proc/<pid>/stat, /proc/<pid>/status and /proc/<pid>/cgroup, and checks that every pointer
 * they hand back lies inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k2i/procinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_inside(const char *p, size_t n, const char *buf, size_t size)
{
	if (p < buf || n > size || p - buf > (ptrdiff_t)(size - n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proc_status status;
	struct proc_stat st;
	const char *p, *id;
	char *buf;
	size_t n;

	if (size > 1024 * 1024)
		return 0;
	/* An exact-size copy, without a NUL, so ASan sees any read past the end. */
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);

	if (proc_parse_stat(buf, size, &st) == 0)
		check_inside(st.comm, st.comm_len, buf, size);
	(void)proc_parse_status(buf, size, &status);
	if (proc_parse_cgroup(buf, size, &p, &n) == 0) {
		check_inside(p, n, buf, size);
		if (proc_container_id(p, n, &id) == 0)
			check_inside(id, 64, p, n);
	}
	if (proc_container_id(buf, size, &id) == 0)
		check_inside(id, 64, buf, size);

	free(buf);
	return 0;
}
