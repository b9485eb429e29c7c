/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Default locations (ARCHITECTURE.md "Runtime paths"). As root: state in /var/lib/k2i, runtime
 * files in /run/k2i, configuration in /etc/k2i. Otherwise: $XDG_STATE_HOME/k2i (default
 * ~/.local/state/k2i) and $XDG_RUNTIME_DIR/k2i (default /tmp/k2i-<uid>). The environment is read
 * with secure_getenv(), and only for these paths.
 */

#define PATHS_CONFIG_DIR "/etc/k2i"

/* Returns 0 and a malloc'ed path in *ret, or -ENOMEM / -ENOENT (no home directory known). */
int paths_default_state_dir(char **ret);
int paths_default_rundir(char **ret);

/* Returns 0 and "<dir>/<name>" in *ret, or -ENOMEM. */
int path_join(const char *dir, const char *name, char **ret);
