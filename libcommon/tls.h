/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * OpenSSL 3.0 context set-up shared by the servers (k2i, middlecon peer links) and the clients
 * (k2ps, middlecon dialling a peer).
 *
 * Both sides speak TLS 1.2 or 1.3 only, with ECDHE key exchange and AEAD ciphers on TLS 1.2, no
 * compression and no renegotiation. Trust is a private CA file (see certgen.h); there is no
 * fallback to the system trust store.
 *
 * Unlike the other libcommon headers, this one includes <openssl/ssl.h>: every caller handles
 * SSL_CTX, SSL and X509 objects anyway, and the cleanup helpers below need OpenSSL's prototypes.
 *
 * OpenSSL failures are logged at debug level with the contents of the error queue (which is
 * always emptied) and returned as -errno: -EBADMSG for unparsable PEM input, -EKEYREJECTED for a
 * key that does not match its certificate, -EIO for other OpenSSL failures, -ENOMEM when an
 * allocation failed.
 */

#include <stdbool.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "libcommon/cleanup.h"

DEFINE_CLEANUP_FUNC(SSL_CTX, SSL_CTX_free)
DEFINE_CLEANUP_FUNC(SSL, SSL_free)
DEFINE_CLEANUP_FUNC(X509, X509_free)
DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
DEFINE_CLEANUP_FUNC(BIO, BIO_free)
DEFINE_CLEANUP_FUNC(X509_STORE, X509_STORE_free)
DEFINE_CLEANUP_FUNC(X509_STORE_CTX, X509_STORE_CTX_free)

/* Frees a stack of certificates and the certificates in it. Accepts NULL. */
static inline void tls_x509_stack_free(STACK_OF(X509) *sk)
{
	sk_X509_pop_free(sk, X509_free);
}
DEFINE_CLEANUP_FUNC(STACK_OF(X509), tls_x509_stack_free)

/*
 * What a context is built from. All pointers are borrowed: tls_*_ctx_new() copies what it needs,
 * so the strings may be freed once the call returns.
 */
struct tls_config {
	/* PEM certificate chain, leaf first. Required for a server, optional for a client. */
	const char *cert_file;
	/* PEM private key (unencrypted) of cert_file; NULL means it is inside cert_file. */
	const char *key_file;
	/* PEM file of the CA certificates trusted to sign the peer's certificate. Required. */
	const char *ca_file;
	/*
	 * Not read by tls_*_ctx_new(): carried here for the caller to pass to tls_peer_check().
	 * NULL or a NULL-terminated list; see tls_peer_check() for the entry syntax.
	 */
	char *const *allowed_sans;
	/*
	 * NULL or a NULL-terminated list of ALPN protocol names (1..255 bytes each) in preference
	 * order, e.g. { "h2", "http/1.1", NULL }. NULL or an empty list disables ALPN.
	 */
	const char *const *alpn;
	/*
	 * Server only. true: the handshake fails unless the client presents a certificate that
	 * verifies against ca_file. false: a client certificate is asked for, but the handshake
	 * succeeds without one or with an untrusted one; the caller MUST then call
	 * tls_peer_check() before trusting the peer, and answer with an error of its own.
	 */
	bool require_peer_cert;
};

/*
 * Creates a server context from @c: loads the certificate chain and key (and checks that they
 * match), uses ca_file as the trust store for client certificates and the list of acceptable CA
 * names sent to clients, and requests a client certificate as c->require_peer_cert says.
 *
 * ALPN: of the protocols the client offers, the first in c->alpn wins. A client that offers
 * ALPN but none of our protocols gets no ALPN answer (so the connection is HTTP/1.1) if
 * "http/1.1" is in c->alpn, and a fatal no_application_protocol alert otherwise. A client that
 * sends no ALPN proceeds without it.
 *
 * Returns 0 and the new context in *ret (caller frees with SSL_CTX_free()), or -EINVAL (no
 * cert_file or ca_file, bad ALPN list), -ENOENT/-EACCES/... (a file could not be read),
 * -EBADMSG, -EKEYREJECTED, -EIO, -ENOMEM.
 */
int tls_server_ctx_new(const struct tls_config *c, SSL_CTX **ret);

/*
 * Creates a client context from @c: the server's certificate must verify against ca_file
 * (SSL_VERIFY_PEER), c->cert_file/c->key_file (if set) are presented as the client certificate,
 * and c->alpn is advertised. c->require_peer_cert is ignored.
 *
 * The context does not check the server's name: call tls_client_set_peer_name() on each SSL,
 * or any certificate the CA signed is accepted.
 *
 * Returns 0 and the new context in *ret (caller frees with SSL_CTX_free()), or the errors of
 * tls_server_ctx_new().
 */
int tls_client_ctx_new(const struct tls_config *c, SSL_CTX **ret);

/*
 * Sets the name the client connection @ssl (borrowed) expects in the server's certificate.
 * An IPv4 or IPv6 literal (without brackets) must match an iPAddress subjectAltName and sends
 * no SNI; anything else is sent as SNI and must match a dNSName subjectAltName (wildcards only
 * as a whole left-most label; the subject CN is never used).
 *
 * Returns 0, or -EINVAL (empty or invalid name), -ENOMEM.
 */
int tls_client_set_peer_name(SSL *ssl, const char *host);

/* The result of tls_peer_check(), from best to worst. */
enum tls_peer_status {
	TLS_PEER_OK, /* a trusted certificate, and its name is allowed */
	TLS_PEER_NO_CERT, /* the peer presented no certificate */
	TLS_PEER_UNTRUSTED, /* the certificate did not verify against the CA */
	TLS_PEER_NAME_DENIED, /* trusted, but none of its names is in the allowed list */
	_TLS_PEER_MAX,
};

/*
 * Checks the peer of @ssl (borrowed) once its handshake has finished: whether it presented a
 * certificate, whether that verified against the context's CA, and, if @allowed_sans is
 * non-empty, whether one of the certificate's names is in that NULL-terminated list.
 *
 * The names compared are the subjectAltName dNSName, iPAddress and URI entries, or, only for a
 * certificate with no subjectAltName extension at all, its single subject CN. An entry of
 * @allowed_sans is either "DNS:name", "IP:address", "URI:uri" (which match that kind only) or a
 * bare value (which matches any kind). DNS names compare case-insensitively and literally (a
 * wildcard in the certificate matches only the same wildcard in the list), IP addresses as
 * binary values, URIs exactly.
 *
 * If @ret_identity is non-NULL, *ret_identity is set to a printable name of the peer for logs
 * and ACLs: its first dNSName, else its subject CN, with bytes outside printable ASCII (and
 * '\') written as \xNN; or NULL if there is no certificate or no such name. Caller frees it.
 * It is set whatever the status, so an untrusted peer can be named in a log line; only a
 * TLS_PEER_OK identity may be trusted.
 *
 * Returns an enum tls_peer_status (>= 0), or -EINVAL (handshake not finished), -ENOMEM; on
 * error *ret_identity is untouched.
 */
int tls_peer_check(SSL *ssl, char *const *allowed_sans, char **ret_identity);

/*
 * Sets *ret (caller frees) to the identity of the first certificate in the PEM file @path, as
 * tls_peer_check() names a peer: its first dNSName, else its subject CN; NULL if it has neither.
 * Returns 0, or the errors of tls_load_certs().
 */
int tls_cert_file_identity(const char *path, char **ret);

/* Returns "ok", "no-cert", "untrusted" or "name-denied"; "unknown" for other values. */
const char *tls_peer_status_to_string(enum tls_peer_status status);

/*
 * Reads every certificate of the PEM file @path (at most 1 MiB). Returns 0 and a new stack
 * (at least one certificate; caller frees with tls_x509_stack_free()) in *ret, or the -errno of
 * reading the file, -EFBIG, -EBADMSG (no certificate, or a malformed one), -ENOMEM.
 */
int tls_load_certs(const char *path, STACK_OF(X509) **ret);

/*
 * Reads the first private key of the PEM file @path (at most 1 MiB). The file's contents are
 * wiped from memory after parsing. Encrypted keys are refused: a daemon has no terminal to ask
 * for a passphrase. Returns 0 and a new key in *ret (caller frees with EVP_PKEY_free()), or the
 * -errno of reading the file, -EFBIG, -EBADMSG (no key, a malformed or an encrypted one).
 */
int tls_load_key(const char *path, EVP_PKEY **ret);

/*
 * Logs the message (printf @format) and then each entry of this thread's OpenSSL error queue
 * at debug level, empties the queue, and returns @error, which should be a negative errno
 * (-EIO, -EPROTO, ...; a positive value is negated and 0 becomes -EIO). Meant for the edge of a
 * module that calls OpenSSL: "return tls_log_errors(-EIO, \"Failed to sign '%s'\", cn);".
 */
int tls_log_errors(int error, const char *format, ...) __attribute__((format(printf, 2, 3)));
