/* SPDX-License-Identifier: MIT */
#include "middlecon/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/paths.h"

#define ITEM(k, t, m, lo, hi, h) CONF_ITEM(k, t, struct middlecon_config, m, lo, hi, false, h)

/*
 * The limits are clamped so that one connection can never make the relay hold more than
 * max_frame + output_buffer bytes for it: 64 MiB frames and a 1 GiB queue at the very most.
 */
static const struct conf_item items[] = {
	ITEM("state_dir", CONF_STRING, state_dir, 0, 0, "directory of persistent state"),
	ITEM("rundir", CONF_STRING, rundir, 0, 0, "directory of sockets and instance records"),
	ITEM("socket", CONF_STRING, socket, 0, 0, "local socket (default <rundir>/middlecon.sock)"),
	ITEM("max_frame_kb", CONF_U32, max_frame_kb, 1, 64 * 1024,
	     "largest frame accepted or sent, KiB"),
	ITEM("max_inflight", CONF_U32, max_inflight, 1, 1024 * 1024,
	     "requests one connection may have in flight"),
	ITEM("output_buffer_kb", CONF_U32, output_buffer_kb, 64, 1024 * 1024,
	     "per-connection output queue limit, KiB"),
	ITEM("default_deadline_ms", CONF_U32, default_deadline_ms, 1, 3600 * 1000,
	     "deadline of a request that sets none, ms"),
	ITEM("max_connections", CONF_U32, max_connections, 1, 65536, "connections at once"),
	ITEM("log_level", CONF_LOG_LEVEL, log_level, 0, 0, "err, warning, notice, info or debug"),
};

const struct conf_item *const middlecon_config_items = items;
const size_t middlecon_config_n_items = ELEMENTSOF(items);

int middlecon_config_init(struct middlecon_config *c)
{
	int r;

	*c = (struct middlecon_config){
		.max_frame_kb = 1024,
		.max_inflight = 1024,
		.output_buffer_kb = 4096,
		.default_deadline_ms = 30000,
		.max_connections = 4096,
		.log_level = LOG_INFO,
	};
	r = paths_default_state_dir(&c->state_dir);
	if (r < 0)
		return r;
	return paths_default_rundir(&c->rundir);
}

void middlecon_config_done(struct middlecon_config *c)
{
	conf_done(middlecon_config_items, middlecon_config_n_items, c);
}

int middlecon_config_validate(struct middlecon_config *c, char **ret_error)
{
	if (!c->socket) {
		if (!c->rundir || !*c->rundir) {
			*ret_error = strdup("either rundir or socket must be set");
			return -EINVAL;
		}
		if (path_join(c->rundir, "middlecon.sock", &c->socket) < 0)
			return -ENOMEM;
	}
	if (!*c->socket) {
		*ret_error = strdup("socket must not be empty");
		return -EINVAL;
	}
	return 0;
}
