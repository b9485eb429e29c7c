/* SPDX-License-Identifier: MIT */
#include "libcommon/paths.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Returns 0 and "<a><suffix>" in *ret, or -ENOMEM. */
static int dup_path(const char *a, const char *suffix, char **ret)
{
	return asprintf(ret, "%s%s", a, suffix) < 0 ? -ENOMEM : 0;
}

int paths_default_state_dir(char **ret)
{
	const char *e;

	if (geteuid() == 0)
		return dup_path("/var/lib/k2i", "", ret);
	e = secure_getenv("XDG_STATE_HOME");
	if (e && e[0] == '/')
		return dup_path(e, "/k2i", ret);
	e = secure_getenv("HOME");
	if (!e || e[0] != '/') {
		struct passwd *pw = getpwuid(geteuid());

		e = pw ? pw->pw_dir : NULL;
	}
	if (!e || e[0] != '/')
		return -ENOENT;
	return dup_path(e, "/.local/state/k2i", ret);
}

int paths_default_rundir(char **ret)
{
	const char *e;

	if (geteuid() == 0)
		return dup_path("/run/k2i", "", ret);
	e = secure_getenv("XDG_RUNTIME_DIR");
	if (e && e[0] == '/')
		return dup_path(e, "/k2i", ret);
	return asprintf(ret, "/tmp/k2i-%u", (unsigned)geteuid()) < 0 ? -ENOMEM : 0;
}

int path_join(const char *dir, const char *name, char **ret)
{
	size_t n = strlen(dir);

	return asprintf(ret, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0 ? -ENOMEM :
											   0;
}
