/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The HTTPS front end: TLS listeners, connections, ALPN dispatch to HTTP/2 (k2i/h2.c) or
 * HTTP/1.1 with keep-alive (here). There is no plaintext listener.
 */

#include <openssl/types.h>

struct event_base;
struct k2i_config;
struct k2i_metrics;
struct k2i_server;
struct routes;

/*
 * Binds every address of cfg->listen and starts accepting. @base, @cfg, @ssl_ctx, @routes and
 * @metrics are borrowed and must outlive the server. Returns 0, or -errno of the first address
 * that cannot be parsed (-EINVAL) or bound (logged with the address).
 */
int server_new(struct event_base *base, const struct k2i_config *cfg, SSL_CTX *ssl_ctx,
	       struct routes *routes, struct k2i_metrics *metrics, struct k2i_server **ret);

/* Closes the listeners and every connection. Accepts NULL, returns NULL. */
struct k2i_server *server_free(struct k2i_server *s);
