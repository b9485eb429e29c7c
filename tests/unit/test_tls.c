/* SPDX-License-Identifier: MIT */
/*
 * Real TLS handshakes between contexts made by libcommon/tls.c, with material made by
 * libcommon/certgen.c: both ends of a non-blocking socketpair are driven in one thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "libcommon/certgen.h"
#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/tls.h"

/* Material shared by all tests, made once by setup(). */
struct material {
	char *dir; /* certgen_ensure(dir, "testhost") */
	char *other; /* certgen_ensure(other, "otherhost"): another CA */
	char *ca, *node_pem, *node_key, *client_pem, *client_key;
	char *other_ca, *other_client_pem, *other_client_key;
	char *srvonly_pem, *srvonly_key; /* from the first CA, serverAuth only */
	char *cnonly_pem, *cnonly_key; /* from the first CA, clientAuth, no subjectAltName */
};

static struct material m;

static const char *const alpn_both[] = { "h2", "http/1.1", NULL };
static const char *const alpn_h2[] = { "h2", NULL };
static const char *const alpn_http11[] = { "http/1.1", NULL };
static const char *const alpn_http11_h2[] = { "http/1.1", "h2", NULL };
static const char *const alpn_unknown[] = { "spdy/3", "foo", NULL };

static char *path_of(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	char t1[] = "/tmp/test_tls.XXXXXX";
	char t2[] = "/tmp/test_tls.XXXXXX";
	char *sans[] = { (char *)"DNS:srvonly.test", NULL };

	if (!mkdtemp(t1) || !mkdtemp(t2))
		return -1;
	m.dir = strdup(t1);
	m.other = strdup(t2);
	if (!m.dir || !m.other)
		return -1;
	if (certgen_ensure(m.dir, "testhost", NULL) < 0 ||
	    certgen_ensure(m.other, "otherhost", NULL) < 0)
		return -1;

	m.ca = path_of(m.dir, "ca.pem");
	m.node_pem = path_of(m.dir, "node.pem");
	m.node_key = path_of(m.dir, "node.key");
	m.client_pem = path_of(m.dir, "client.pem");
	m.client_key = path_of(m.dir, "client.key");
	m.other_ca = path_of(m.other, "ca.pem");
	m.other_client_pem = path_of(m.other, "client.pem");
	m.other_client_key = path_of(m.other, "client.key");
	m.srvonly_pem = path_of(m.dir, "srvonly.pem");
	m.srvonly_key = path_of(m.dir, "srvonly.key");
	m.cnonly_pem = path_of(m.dir, "cnonly.pem");
	m.cnonly_key = path_of(m.dir, "cnonly.key");
	{
		_cleanup_free_ char *ca_key = path_of(m.dir, "ca.key");

		if (certgen_issue(m.ca, ca_key, "srvonly.test", sans, true, false, m.srvonly_pem,
				  m.srvonly_key) < 0 ||
		    certgen_issue(m.ca, ca_key, "cnonly.test", NULL, false, true, m.cnonly_pem,
				  m.cnonly_key) < 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	nftw(m.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	nftw(m.other, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(m.dir);
	free(m.other);
	free(m.ca);
	free(m.node_pem);
	free(m.node_key);
	free(m.client_pem);
	free(m.client_key);
	free(m.other_ca);
	free(m.other_client_pem);
	free(m.other_client_key);
	free(m.srvonly_pem);
	free(m.srvonly_key);
	free(m.cnonly_pem);
	free(m.cnonly_key);
	return 0;
}

static SSL_CTX *server_ctx(const char *const *alpn, bool require_peer_cert)
{
	const struct tls_config c = {
		.cert_file = m.node_pem,
		.key_file = m.node_key,
		.ca_file = m.ca,
		.alpn = alpn,
		.require_peer_cert = require_peer_cert,
	};
	SSL_CTX *ctx = NULL;

	assert_int_equal(tls_server_ctx_new(&c, &ctx), 0);
	assert_non_null(ctx);
	return ctx;
}

/* A client trusting @ca, presenting @cert/@key if not NULL. */
static SSL_CTX *client_ctx(const char *ca, const char *cert, const char *key,
			   const char *const *alpn)
{
	const struct tls_config c = {
		.cert_file = cert,
		.key_file = key,
		.ca_file = ca,
		.alpn = alpn,
	};
	SSL_CTX *ctx = NULL;

	assert_int_equal(tls_client_ctx_new(&c, &ctx), 0);
	assert_non_null(ctx);
	return ctx;
}

/* One connection: both ends and how their handshakes ended (1 done, -1 failed). */
struct conn {
	SSL *client;
	SSL *server;
	int client_rc;
	int server_rc;
	unsigned long server_err; /* the first OpenSSL error the server failed with */
};

static int step(SSL *ssl, unsigned long *ret_err)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(ssl);
	if (r == 1)
		return 1;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		if (ret_err)
			*ret_err = ERR_peek_error();
		ERR_clear_error();
		return -1;
	}
}

/*
 * Connects a client SSL of @cctx to a server SSL of @sctx over a socketpair and drives both
 * handshakes until each has finished or failed. @peer_name, if set, goes to
 * tls_client_set_peer_name().
 */
static void conn_run(struct conn *c, SSL_CTX *cctx, SSL_CTX *sctx, const char *peer_name,
		     SSL_SESSION *session)
{
	int fds[2];

	*c = (struct conn){};
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds),
			 0);
	c->client = SSL_new(cctx);
	c->server = SSL_new(sctx);
	assert_non_null(c->client);
	assert_non_null(c->server);
	assert_int_equal(SSL_set_fd(c->client, fds[0]), 1);
	assert_int_equal(SSL_set_fd(c->server, fds[1]), 1);
	SSL_set_connect_state(c->client);
	SSL_set_accept_state(c->server);
	if (peer_name)
		assert_int_equal(tls_client_set_peer_name(c->client, peer_name), 0);
	if (session)
		assert_int_equal(SSL_set_session(c->client, session), 1);

	/* A failed side stops; the other then gets an alert or stays stuck, bounded here. */
	for (int i = 0; i < 200 && (c->client_rc == 0 || c->server_rc == 0); i++) {
		if (c->client_rc == 0)
			c->client_rc = step(c->client, NULL);
		if (c->server_rc == 0)
			c->server_rc = step(c->server, &c->server_err);
	}
}

static void conn_done(struct conn *c)
{
	/*
	 * OpenSSL marks the session of a connection freed without a close_notify as not
	 * resumable; send one on every connection whose handshake finished.
	 */
	if (c->client_rc == 1)
		SSL_shutdown(c->client);
	if (c->server_rc == 1)
		SSL_shutdown(c->server);
	ERR_clear_error();
	/* SSL_set_fd() leaves the descriptors to us. */
	close(SSL_get_fd(c->client));
	close(SSL_get_fd(c->server));
	SSL_free(c->client);
	SSL_free(c->server);
}

/* Sends a few bytes from @from and reads them at @to; false if either side fails. */
static bool transfer(SSL *from, SSL *to)
{
	char buf[16];

	ERR_clear_error();
	if (SSL_write(from, "ping", 4) != 4) {
		ERR_clear_error();
		return false;
	}
	for (int i = 0; i < 100; i++) {
		int n;

		ERR_clear_error();
		n = SSL_read(to, buf, sizeof(buf));
		if (n == 4)
			return memcmp(buf, "ping", 4) == 0;
		if (SSL_get_error(to, n) != SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			return false;
		}
	}
	return false;
}

/* The ALPN protocol @ssl negotiated, or "" for none. */
static const char *alpn_of(SSL *ssl)
{
	static char buf[256];
	const unsigned char *p;
	unsigned int n;

	SSL_get0_alpn_selected(ssl, &p, &n);
	memcpy(buf, p ? p : (const unsigned char *)"", n);
	buf[n] = '\0';
	return buf;
}

/* Runs a handshake between the two ALPN lists; returns the protocol both ends agree on. */
static void assert_alpn(const char *const *server_alpn, const char *const *client_alpn,
			const char *expected)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(server_alpn, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(m.ca, NULL, NULL, client_alpn);
	struct conn c;

	conn_run(&c, cctx, sctx, "localhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(c.server_rc, 1);
	assert_string_equal(alpn_of(c.server), expected);
	assert_string_equal(alpn_of(c.client), expected);
	conn_done(&c);
}

static void test_alpn(void **state)
{
	assert_alpn(alpn_both, alpn_both, "h2");
	/* The server's preference wins over the client's order. */
	assert_alpn(alpn_both, alpn_http11_h2, "h2");
	assert_alpn(alpn_both, alpn_http11, "http/1.1");
	assert_alpn(alpn_both, alpn_h2, "h2");
	/* No ALPN from the client: proceed without. */
	assert_alpn(alpn_both, NULL, "");
	/* None of ours offered: no ALPN answer, i.e. HTTP/1.1, since we serve it. */
	assert_alpn(alpn_both, alpn_unknown, "");
	/* A server without ALPN ignores the client's list. */
	assert_alpn(NULL, alpn_both, "");
}

/* A server that does not serve http/1.1 refuses a client offering none of its protocols. */
static void test_alpn_no_overlap_refused(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_h2, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(m.ca, NULL, NULL, alpn_http11);
	struct conn c;

	conn_run(&c, cctx, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, -1);
	assert_int_equal(c.client_rc, -1);
	assert_int_equal(ERR_GET_REASON(c.server_err), SSL_R_NO_APPLICATION_PROTOCOL);
	conn_done(&c);
}

/* Handshakes with the given client certificate; returns the server-side peer status. */
static int peer_status(SSL_CTX *sctx, const char *ca, const char *cert, const char *key,
		       char *const *allowed, char **ret_identity)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(ca, cert, key, alpn_both);
	struct conn c;
	int r;

	conn_run(&c, cctx, sctx, "localhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(c.server_rc, 1);
	/* The connection is usable both ways, so the server can answer with a 401/403. */
	assert_true(transfer(c.client, c.server));
	assert_true(transfer(c.server, c.client));
	r = tls_peer_check(c.server, allowed, ret_identity);
	conn_done(&c);
	return r;
}

static void test_peer_ok(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx =
		client_ctx(m.ca, m.client_pem, m.client_key, alpn_both);
	_cleanup_free_ char *id = NULL;
	_cleanup_free_ char *server_id = NULL;
	struct conn c;

	conn_run(&c, cctx, sctx, "testhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(c.server_rc, 1);
	assert_int_equal(SSL_version(c.client), TLS1_3_VERSION);
	assert_true(transfer(c.client, c.server));
	assert_true(transfer(c.server, c.client));
	assert_int_equal(tls_peer_check(c.server, NULL, &id), TLS_PEER_OK);
	assert_string_equal(id, "k2ps@testhost");
	/* The client side works too: the server is named by its first DNS name. */
	assert_int_equal(tls_peer_check(c.client, NULL, &server_id), TLS_PEER_OK);
	assert_string_equal(server_id, "testhost");
	/* ret_identity may be NULL. */
	assert_int_equal(tls_peer_check(c.server, NULL, NULL), TLS_PEER_OK);
	conn_done(&c);
}

static void test_peer_no_cert(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	char *id = (char *)"untouched";

	assert_int_equal(peer_status(sctx, m.ca, NULL, NULL, NULL, &id), TLS_PEER_NO_CERT);
	assert_null(id);
}

static void test_peer_untrusted(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_free_ char *id = NULL;
	_cleanup_free_ char *id2 = NULL;
	char *allowed[] = { (char *)"k2ps@otherhost", NULL };

	/* A client certificate from another CA: the handshake succeeds, the check does not. */
	assert_int_equal(peer_status(sctx, m.ca, m.other_client_pem, m.other_client_key, NULL, &id),
			 TLS_PEER_UNTRUSTED);
	assert_string_equal(id, "k2ps@otherhost");
	/* Being in the allowed list does not make it trusted. */
	assert_int_equal(
		peer_status(sctx, m.ca, m.other_client_pem, m.other_client_key, allowed, NULL),
		TLS_PEER_UNTRUSTED);
	/* Our CA, but the certificate is not for client authentication (EKU serverAuth only). */
	assert_int_equal(peer_status(sctx, m.ca, m.srvonly_pem, m.srvonly_key, NULL, &id2),
			 TLS_PEER_UNTRUSTED);
	assert_string_equal(id2, "srvonly.test");
}

static void test_peer_allowed_sans(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *client =
		client_ctx(m.ca, m.client_pem, m.client_key, NULL);
	/* Node certificates may act as clients: their names include IP addresses. */
	_cleanup_(SSL_CTX_freep) SSL_CTX *node = client_ctx(m.ca, m.node_pem, m.node_key, NULL);
	char *other_only[] = { (char *)"k2ps@otherhost", (char *)"DNS:nothere", NULL };
	char *mine[] = { (char *)"k2ps@otherhost", (char *)"k2ps@testhost", NULL };
	char *mine_upper[] = { (char *)"DNS:K2PS@TESTHOST", NULL };
	char *wrong_type[] = { (char *)"URI:k2ps@testhost", (char *)"IP:127.0.0.1", NULL };
	char *empty[] = { NULL };
	char *ip4[] = { (char *)"IP:127.0.0.1", NULL };
	char *ip6_long[] = { (char *)"0:0:0:0:0:0:0:1", NULL };
	char *ip_other[] = { (char *)"127.0.0.2", (char *)"DNS:127.0.0.1", NULL };
	char *host[] = { (char *)"testhost", NULL };
	char *prefixes[] = { (char *)"k2ps@testhost.evil", (char *)"k2ps@test",
			     (char *)"DNS:k2ps@testhos", (char *)"127.0.0.1x", NULL };
	struct conn c, n;
	char *id = NULL;

	conn_run(&c, client, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, 1);
	assert_int_equal(tls_peer_check(c.server, other_only, &id), TLS_PEER_NAME_DENIED);
	assert_string_equal(id, "k2ps@testhost");
	free(id);
	assert_int_equal(tls_peer_check(c.server, mine, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(c.server, mine_upper, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(c.server, wrong_type, NULL), TLS_PEER_NAME_DENIED);
	assert_int_equal(tls_peer_check(c.server, empty, NULL), TLS_PEER_OK);
	/* Whole names only: neither a prefix nor an extension of the name matches. */
	assert_int_equal(tls_peer_check(c.server, prefixes, NULL), TLS_PEER_NAME_DENIED);
	/* The CN is not consulted when the certificate has subjectAltNames. */
	assert_int_equal(tls_peer_check(c.server, host, NULL), TLS_PEER_NAME_DENIED);
	conn_done(&c);

	conn_run(&n, node, sctx, "localhost", NULL);
	assert_int_equal(n.server_rc, 1);
	assert_int_equal(tls_peer_check(n.server, ip4, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(n.server, ip6_long, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(n.server, ip_other, NULL), TLS_PEER_NAME_DENIED);
	assert_int_equal(tls_peer_check(n.server, host, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(n.server, mine, NULL), TLS_PEER_NAME_DENIED);
	assert_int_equal(tls_peer_check(n.server, prefixes, NULL), TLS_PEER_NAME_DENIED);
	conn_done(&n);
}

/* A certificate without subjectAltName is named, and matched, by its CN. */
static void test_peer_cn_only(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(m.ca, m.cnonly_pem, m.cnonly_key, NULL);
	char *cn[] = { (char *)"cnonly.test", NULL };
	char *cn_dns_upper[] = { (char *)"DNS:CNONLY.test", NULL };
	char *cn_wrong[] = { (char *)"URI:cnonly.test", (char *)"cnonly", (char *)"cnonly.test.x",
			     NULL };
	_cleanup_free_ char *id = NULL;
	struct conn c;

	conn_run(&c, cctx, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, 1);
	assert_int_equal(tls_peer_check(c.server, NULL, &id), TLS_PEER_OK);
	assert_string_equal(id, "cnonly.test");
	assert_int_equal(tls_peer_check(c.server, cn, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(c.server, cn_dns_upper, NULL), TLS_PEER_OK);
	assert_int_equal(tls_peer_check(c.server, cn_wrong, NULL), TLS_PEER_NAME_DENIED);
	conn_done(&c);
}

static void test_require_peer_cert(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, true);
	_cleanup_(SSL_CTX_freep) SSL_CTX *none = client_ctx(m.ca, NULL, NULL, alpn_both);
	_cleanup_(SSL_CTX_freep) SSL_CTX *other =
		client_ctx(m.ca, m.other_client_pem, m.other_client_key, alpn_both);
	_cleanup_(SSL_CTX_freep) SSL_CTX *good =
		client_ctx(m.ca, m.client_pem, m.client_key, alpn_both);
	struct conn c;

	/*
	 * No certificate. In TLS 1.3 the client may consider its handshake done before the
	 * server has seen its (empty) Certificate; it then learns of the refusal on first read.
	 */
	conn_run(&c, none, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, -1);
	assert_int_equal(ERR_GET_REASON(c.server_err), SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
	assert_false(c.client_rc == 1 && transfer(c.server, c.client));
	assert_false(c.client_rc == 1 && transfer(c.client, c.server));
	conn_done(&c);

	/* A certificate from another CA. */
	conn_run(&c, other, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, -1);
	assert_int_equal(ERR_GET_REASON(c.server_err), SSL_R_CERTIFICATE_VERIFY_FAILED);
	assert_false(c.client_rc == 1 && transfer(c.client, c.server));
	conn_done(&c);

	/* The right certificate. */
	conn_run(&c, good, sctx, "localhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(c.server_rc, 1);
	assert_true(transfer(c.client, c.server));
	assert_int_equal(tls_peer_check(c.server, NULL, NULL), TLS_PEER_OK);
	conn_done(&c);
}

/* Handshakes as a client asking for @name; returns the client's verify result or -1. */
static long connect_as(SSL_CTX *sctx, const char *ca, const char *name, char *ret_sni,
		       size_t sni_size)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(ca, NULL, NULL, alpn_both);
	struct conn c;
	long v;

	conn_run(&c, cctx, sctx, name, NULL);
	v = SSL_get_verify_result(c.client);
	if (c.client_rc == 1) {
		const char *sni = SSL_get_servername(c.server, TLSEXT_NAMETYPE_host_name);

		assert_int_equal(v, X509_V_OK);
		assert_int_equal(c.server_rc, 1);
		if (ret_sni)
			snprintf(ret_sni, sni_size, "%s", sni ? sni : "");
	} else {
		assert_int_equal(c.client_rc, -1);
		assert_int_not_equal(v, X509_V_OK);
	}
	conn_done(&c);
	return v;
}

static void test_client_peer_name(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cctx = client_ctx(m.ca, NULL, NULL, NULL);
	_cleanup_(SSL_freep) SSL *ssl = NULL;
	char sni[256];

	assert_int_equal(connect_as(sctx, m.ca, "wrong.example", NULL, 0),
			 X509_V_ERR_HOSTNAME_MISMATCH);
	assert_int_equal(connect_as(sctx, m.ca, "127.0.0.2", NULL, 0),
			 X509_V_ERR_IP_ADDRESS_MISMATCH);
	/* A name only in the CN of some certificate, not a SAN: k2ps@testhost is a client. */
	assert_int_equal(connect_as(sctx, m.ca, "otherhost", NULL, 0),
			 X509_V_ERR_HOSTNAME_MISMATCH);

	assert_int_equal(connect_as(sctx, m.ca, "localhost", sni, sizeof(sni)), X509_V_OK);
	assert_string_equal(sni, "localhost");
	assert_int_equal(connect_as(sctx, m.ca, "TESTHOST", sni, sizeof(sni)), X509_V_OK);
	assert_string_equal(sni, "TESTHOST");
	/* IP literals are verified but never sent as SNI. */
	assert_int_equal(connect_as(sctx, m.ca, "127.0.0.1", sni, sizeof(sni)), X509_V_OK);
	assert_string_equal(sni, "");
	assert_int_equal(connect_as(sctx, m.ca, "::1", sni, sizeof(sni)), X509_V_OK);
	assert_string_equal(sni, "");

	/* A server whose certificate another CA signed is refused whatever the name. */
	assert_int_not_equal(connect_as(sctx, m.other_ca, "localhost", NULL, 0), X509_V_OK);

	ssl = SSL_new(cctx);
	assert_non_null(ssl);
	assert_int_equal(tls_client_set_peer_name(ssl, ""), -EINVAL);
	assert_int_equal(tls_client_set_peer_name(ssl, NULL), -EINVAL);
}

/* A client certificate cannot be used to impersonate a server. */
static void test_client_refuses_client_cert_as_server(void **state)
{
	const struct tls_config sc = {
		.cert_file = m.client_pem,
		.key_file = m.client_key,
		.ca_file = m.ca,
	};
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = NULL;

	assert_int_equal(tls_server_ctx_new(&sc, &sctx), 0);
	assert_int_equal(connect_as(sctx, m.ca, "k2ps@testhost", NULL, 0),
			 X509_V_ERR_INVALID_PURPOSE);
}

static void test_tls_versions(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *lax = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *old = client_ctx(m.ca, NULL, NULL, NULL);
	_cleanup_(SSL_CTX_freep) SSL_CTX *tls12 = client_ctx(m.ca, NULL, NULL, NULL);
	_cleanup_(SSL_CTX_freep) SSL_CTX *cbc = client_ctx(m.ca, NULL, NULL, NULL);
	const SSL_CIPHER *cipher;
	struct conn c;

	/*
	 * A client limited to TLS 1.1 (and allowed the weak settings it needs). The lax server
	 * proves that the client really offers TLS 1.1; ours must refuse it.
	 */
	assert_int_equal(SSL_CTX_set_min_proto_version(old, TLS1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0"), 1);
	assert_int_equal(SSL_CTX_set_min_proto_version(lax, TLS1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(lax, "DEFAULT:@SECLEVEL=0"), 1);

	conn_run(&c, old, lax, "localhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(SSL_version(c.server), TLS1_1_VERSION);
	conn_done(&c);

	conn_run(&c, old, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, -1);
	assert_int_equal(c.client_rc, -1);
	assert_int_equal(ERR_GET_REASON(c.server_err), SSL_R_UNSUPPORTED_PROTOCOL);
	conn_done(&c);

	/* TLS 1.2 works, with ECDHE and an AEAD cipher. */
	assert_int_equal(SSL_CTX_set_max_proto_version(tls12, TLS1_2_VERSION), 1);
	conn_run(&c, tls12, sctx, "localhost", NULL);
	assert_int_equal(c.client_rc, 1);
	assert_int_equal(c.server_rc, 1);
	assert_int_equal(SSL_version(c.server), TLS1_2_VERSION);
	cipher = SSL_get_current_cipher(c.server);
	assert_int_equal(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe);
	assert_true(SSL_CIPHER_is_aead(cipher));
	assert_true(transfer(c.client, c.server));
	conn_done(&c);

	/* A TLS 1.2 client offering only a CBC suite finds nothing in common. */
	assert_int_equal(SSL_CTX_set_max_proto_version(cbc, TLS1_2_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(cbc, "ECDHE-ECDSA-AES128-SHA256"), 1);
	conn_run(&c, cbc, sctx, "localhost", NULL);
	assert_int_equal(c.server_rc, -1);
	assert_int_equal(ERR_GET_REASON(c.server_err), SSL_R_NO_SHARED_CIPHER);
	conn_done(&c);
}

/* A resumed session keeps the peer status of the full handshake, good or bad. */
static void test_resumption_keeps_status(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(alpn_both, false);
	_cleanup_(SSL_CTX_freep) SSL_CTX *good =
		client_ctx(m.ca, m.client_pem, m.client_key, alpn_both);
	_cleanup_(SSL_CTX_freep) SSL_CTX *other =
		client_ctx(m.ca, m.other_client_pem, m.other_client_key, alpn_both);
	SSL_CTX *clients[] = { good, other };
	const int expected[] = { TLS_PEER_OK, TLS_PEER_UNTRUSTED };

	for (size_t i = 0; i < ELEMENTSOF(clients); i++) {
		SSL_SESSION *session;
		struct conn c;

		conn_run(&c, clients[i], sctx, "localhost", NULL);
		assert_int_equal(c.server_rc, 1);
		/* TLS 1.3 tickets arrive after the handshake: read something to get them. */
		assert_true(transfer(c.server, c.client));
		session = SSL_get1_session(c.client);
		assert_non_null(session);
		assert_true(SSL_SESSION_is_resumable(session));
		conn_done(&c);

		conn_run(&c, clients[i], sctx, "localhost", session);
		assert_int_equal(c.client_rc, 1);
		assert_int_equal(c.server_rc, 1);
		assert_true(SSL_session_reused(c.server));
		assert_int_equal(tls_peer_check(c.server, NULL, NULL), expected[i]);
		conn_done(&c);
		SSL_SESSION_free(session);
	}
}

static void test_ctx_errors(void **state)
{
	_cleanup_free_ char *missing = path_of(m.dir, "missing.pem");
	_cleanup_free_ char *garbage = path_of(m.dir, "garbage.pem");
	_cleanup_free_ char *combined = path_of(m.dir, "combined.pem");
	_cleanup_free_ char *encrypted = path_of(m.dir, "encrypted.key");
	_cleanup_free_ char *cert = NULL;
	_cleanup_free_ char *key = NULL;
	_cleanup_free_ char *both = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(BIO_freep) BIO *bio = NULL;
	char long_name[300];
	const char *const bad_alpn_empty[] = { "h2", "", NULL };
	const char *const bad_alpn_long[] = { long_name, NULL };
	struct tls_config c = { .cert_file = m.node_pem, .key_file = m.node_key, .ca_file = m.ca };
	SSL_CTX *ctx = NULL;
	char *data;
	long len;

	/* Debug level runs the whole of tls_log_errors(); the lines land in the test log. */
	log_set_max_level(LOG_DEBUG);

	c.cert_file = NULL;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EINVAL);
	c.cert_file = m.node_pem;
	c.ca_file = NULL;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EINVAL);
	assert_int_equal(tls_client_ctx_new(&c, &ctx), -EINVAL);
	c.ca_file = missing;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -ENOENT);
	c.ca_file = m.ca;
	c.cert_file = missing;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -ENOENT);

	assert_int_equal(write_file_atomic(garbage, "not PEM\n", 8, 0644, 0), 0);
	c.cert_file = garbage;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EBADMSG);
	c.cert_file = m.node_pem;
	c.key_file = garbage;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EBADMSG);
	c.key_file = m.client_key;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EKEYREJECTED);
	assert_int_equal(tls_client_ctx_new(&c, &ctx), -EKEYREJECTED);
	c.key_file = m.node_key;

	memset(long_name, 'x', 256);
	long_name[256] = '\0';
	c.alpn = bad_alpn_empty;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EINVAL);
	assert_int_equal(tls_client_ctx_new(&c, &ctx), -EINVAL);
	c.alpn = bad_alpn_long;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EINVAL);
	c.alpn = NULL;
	assert_null(ctx);

	/* key_file NULL: the key is read from cert_file. */
	assert_int_equal(read_full_file_at(AT_FDCWD, m.node_pem, 1 << 20, &cert, NULL), 0);
	assert_int_equal(read_full_file_at(AT_FDCWD, m.node_key, 1 << 20, &key, NULL), 0);
	assert_true(asprintf(&both, "%s%s", cert, key) > 0);
	assert_int_equal(write_file_atomic(combined, both, strlen(both), 0600, 0), 0);
	c.cert_file = combined;
	c.key_file = NULL;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), 0);
	SSL_CTX_free(ctx);
	ctx = NULL;

	/* An encrypted key is refused rather than prompting for a passphrase. */
	assert_int_equal(tls_load_key(m.node_key, &pkey), 0);
	bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, EVP_aes_256_cbc(),
						  (const unsigned char *)"secret", 6, NULL, NULL),
			 1);
	len = BIO_get_mem_data(bio, &data);
	assert_int_equal(write_file_atomic(encrypted, data, (size_t)len, 0600, 0), 0);
	EVP_PKEY_free(TAKE_PTR(pkey));
	assert_int_equal(tls_load_key(encrypted, &pkey), -EBADMSG);
	assert_null(pkey);
	c.cert_file = m.node_pem;
	c.key_file = encrypted;
	assert_int_equal(tls_server_ctx_new(&c, &ctx), -EBADMSG);
	assert_null(ctx);

	/* Every failure emptied the error queue. */
	assert_int_equal(ERR_peek_error(), 0);
	log_set_max_level(LOG_INFO);
}

static void test_peer_check_before_handshake(void **state)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *sctx = server_ctx(NULL, false);
	_cleanup_(SSL_freep) SSL *ssl = SSL_new(sctx);
	char *id = (char *)"untouched";

	assert_non_null(ssl);
	assert_int_equal(tls_peer_check(ssl, NULL, &id), -EINVAL);
	assert_string_equal(id, "untouched");
}

static void test_status_to_string(void **state)
{
	assert_string_equal(tls_peer_status_to_string(TLS_PEER_OK), "ok");
	assert_string_equal(tls_peer_status_to_string(TLS_PEER_NO_CERT), "no-cert");
	assert_string_equal(tls_peer_status_to_string(TLS_PEER_UNTRUSTED), "untrusted");
	assert_string_equal(tls_peer_status_to_string(TLS_PEER_NAME_DENIED), "name-denied");
	assert_string_equal(tls_peer_status_to_string(_TLS_PEER_MAX), "unknown");
	assert_string_equal(tls_peer_status_to_string((enum tls_peer_status) - 1), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_alpn_no_overlap_refused),
		cmocka_unit_test(test_peer_ok),
		cmocka_unit_test(test_peer_no_cert),
		cmocka_unit_test(test_peer_untrusted),
		cmocka_unit_test(test_peer_allowed_sans),
		cmocka_unit_test(test_peer_cn_only),
		cmocka_unit_test(test_require_peer_cert),
		cmocka_unit_test(test_client_peer_name),
		cmocka_unit_test(test_client_refuses_client_cert_as_server),
		cmocka_unit_test(test_tls_versions),
		cmocka_unit_test(test_resumption_keeps_status),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_peer_check_before_handshake),
		cmocka_unit_test(test_status_to_string),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
