/* SPDX-License-Identifier: MIT */
#include "libcommon/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

/* Certificates and keys are small; a bigger file is a configuration mistake. */
#define TLS_PEM_MAX (1024 * 1024)

/*
 * TLS 1.2 suites: ECDHE (forward secrecy) with AEAD ciphers only. TLS 1.3 suites all have these
 * properties, so OpenSSL's default TLS 1.3 list is kept.
 */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";

/*
 * Server-side sessions (cache entries and tickets) are only resumed by a context with the same
 * id; OpenSSL refuses to resume without one when client certificates are requested.
 */
static const unsigned char tls_session_id_context[] = "libcommon-tls";

DEFINE_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)

int tls_log_errors(int error, const char *format, ...)
{
	_cleanup_free_ char *msg = NULL;
	const char *data = NULL;
	unsigned long e;
	int flags = 0;
	va_list ap;

	if (error > 0)
		error = -error;
	else if (error == 0)
		error = -EIO;

	if (log_get_max_level() < LOG_DEBUG) {
		ERR_clear_error();
		return error;
	}

	va_start(ap, format);
	if (vasprintf(&msg, format, ap) < 0)
		msg = NULL;
	va_end(ap);

	if (ERR_peek_error() == 0)
		log_debug("%s", msg ? msg : "OpenSSL failure");
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		/* OpenSSL's own message, cut at a fixed size, is all we want here. */
		char buf[256];
		bool has_data = (flags & ERR_TXT_STRING) && data && *data;

		ERR_error_string_n(e, buf, sizeof(buf));
		log_debug("%s: %s%s%s", msg ? msg : "OpenSSL failure", buf, has_data ? ": " : "",
			  has_data ? data : "");
	}
	return error;
}

/* A pem_password_cb that refuses: an encrypted key then fails to load instead of prompting. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *userdata)
{
	return -1;
}

int tls_load_certs(const char *path, STACK_OF(X509) **ret)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *certs = NULL;
	_cleanup_(BIO_freep) BIO *bio = NULL;
	_cleanup_free_ char *buf = NULL;
	unsigned long e;
	size_t len;
	int r;

	r = read_full_file_at(AT_FDCWD, path, TLS_PEM_MAX, &buf, &len);
	if (r < 0)
		return log_debug_errno(r, "Failed to read '%s': %m", path);

	ERR_clear_error();
	certs = sk_X509_new_null();
	bio = BIO_new_mem_buf(buf, (int)len);
	if (!certs || !bio)
		return tls_log_errors(-ENOMEM, "Failed to allocate");

	for (;;) {
		_cleanup_(X509_freep) X509 *x = NULL;

		x = PEM_read_bio_X509(bio, NULL, no_passphrase_cb, NULL);
		if (!x)
			break;
		if (!sk_X509_push(certs, x))
			return tls_log_errors(-ENOMEM, "Failed to allocate");
		TAKE_PTR(x);
	}

	/* The loop ends at the first PEM block it cannot read; only "no more blocks" is success. */
	e = ERR_peek_last_error();
	if (sk_X509_num(certs) == 0 || ERR_GET_LIB(e) != ERR_LIB_PEM ||
	    ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
		return tls_log_errors(-EBADMSG, "Failed to read certificates from '%s'", path);
	ERR_clear_error();

	*ret = TAKE_PTR(certs);
	return 0;
}

int tls_load_key(const char *path, EVP_PKEY **ret)
{
	_cleanup_(BIO_freep) BIO *bio = NULL;
	_cleanup_free_ char *buf = NULL;
	EVP_PKEY *key = NULL;
	size_t len;
	int r;

	r = read_full_file_at(AT_FDCWD, path, TLS_PEM_MAX, &buf, &len);
	if (r < 0)
		return log_debug_errno(r, "Failed to read '%s': %m", path);

	ERR_clear_error();
	bio = BIO_new_mem_buf(buf, (int)len);
	if (bio)
		key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	/* Do not leave a copy of the key in freed heap memory. */
	OPENSSL_cleanse(buf, len);
	if (!bio)
		return tls_log_errors(-ENOMEM, "Failed to allocate");
	if (!key)
		return tls_log_errors(-EBADMSG, "Failed to read a private key from '%s'", path);

	*ret = key;
	return 0;
}

/* ALPN protocol names in wire format: each name preceded by its one-byte length. */
struct alpn_wire {
	unsigned int len;
	unsigned char data[];
};

/*
 * Encodes @alpn. Returns 0 and *ret (caller frees; NULL for a NULL or empty list), or -EINVAL
 * (a name is empty or longer than 255 bytes, or the list is longer than the extension allows).
 */
static int alpn_encode(const char *const *alpn, struct alpn_wire **ret)
{
	struct alpn_wire *w;
	size_t total = 0, off = 0;

	if (!alpn || !alpn[0]) {
		*ret = NULL;
		return 0;
	}
	for (const char *const *p = alpn; *p; p++) {
		size_t n = strlen(*p);

		if (n == 0 || n > 255)
			return -EINVAL;
		total += 1 + n;
		if (total > 0xffff)
			return -EINVAL;
	}

	w = malloc(sizeof(*w) + total);
	if (!w)
		return -ENOMEM;
	for (const char *const *p = alpn; *p; p++) {
		size_t n = strlen(*p);

		w->data[off] = (unsigned char)n;
		memcpy(w->data + off + 1, *p, n);
		off += 1 + n;
	}
	w->len = (unsigned int)total;
	*ret = w;
	return 0;
}

/*
 * Finds @name in the wire-format @list (which may come from the peer). Returns a pointer to
 * the name inside @list, or NULL if absent or if @list is malformed.
 */
static const unsigned char *alpn_find(const unsigned char *list, size_t len,
				      const unsigned char *name, size_t name_len)
{
	size_t i = 0;

	while (i < len) {
		size_t n = list[i];

		if (n == 0 || n > len - i - 1)
			return NULL;
		if (n == name_len && memcmp(list + i + 1, name, n) == 0)
			return list + i + 1;
		i += 1 + n;
	}
	return NULL;
}

/* Called by OpenSSL only when the client sent ALPN; @arg is the server's struct alpn_wire. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct alpn_wire *ours = arg;
	static const unsigned char http11[] = "http/1.1";

	for (size_t i = 0; i < ours->len; i += 1 + ours->data[i]) {
		const unsigned char *name = ours->data + i + 1;
		size_t n = ours->data[i];

		if (alpn_find(in, inlen, name, n)) {
			/* OpenSSL copies the selection; ours lives as long as the context anyway. */
			*out = name;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
	}

	/*
	 * No overlap. Choosing a protocol the client did not offer would break RFC 7301 (and
	 * strict clients abort), so answer without ALPN: an HTTP client then speaks HTTP/1.1,
	 * which is right only if we serve it. Otherwise refuse with no_application_protocol.
	 */
	if (alpn_find(ours->data, ours->len, http11, sizeof(http11) - 1))
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/*
 * The server's ALPN list is attached to its SSL_CTX as ex_data so that it is freed with the
 * context. The ex_data index is allocated once per process and never changes afterwards; this
 * is the only static state in the module.
 */
static int alpn_ex_index = -1;
static pthread_once_t alpn_ex_once = PTHREAD_ONCE_INIT;

static void alpn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	free(ptr);
}

static void alpn_ex_init(void)
{
	alpn_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_ex_free);
}

/*
 * With require_peer_cert=false a bad client certificate must not end the handshake: k2i
 * answers such a client with a 401/403 of its own. Returning 1 lets the handshake go on while
 * OpenSSL still stores the verification error, which SSL_get_verify_result() and so
 * tls_peer_check() report (nginx's "ssl_verify_client optional_no_ca" works the same way).
 */
static int verify_record_only_cb(int preverify_ok, X509_STORE_CTX *store)
{
	if (!preverify_ok)
		log_debug("Peer certificate at depth %d failed verification: %s, continuing",
			  X509_STORE_CTX_get_error_depth(store),
			  X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)));
	return 1;
}

/* Loads c->cert_file and its key into @ctx. */
static int ctx_use_cert(SSL_CTX *ctx, const struct tls_config *c)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *chain = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	_cleanup_(X509_freep) X509 *leaf = NULL;
	const char *key_file = c->key_file ? c->key_file : c->cert_file;
	int r;

	r = tls_load_certs(c->cert_file, &chain);
	if (r < 0)
		return r;
	r = tls_load_key(key_file, &key);
	if (r < 0)
		return r;

	/* The leaf comes first; the rest of the file is the chain sent along with it. */
	leaf = sk_X509_shift(chain);
	if (X509_check_private_key(leaf, key) != 1)
		return tls_log_errors(-EKEYREJECTED, "Key '%s' does not match certificate '%s'",
				      key_file, c->cert_file);
	if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1)
		return tls_log_errors(-EIO, "Failed to use certificate '%s'", c->cert_file);
	return 0;
}

/* Loads c->ca_file as the trust store of @ctx; a server also sends the CA names to clients. */
static int ctx_use_ca(SSL_CTX *ctx, const struct tls_config *c, bool server)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *cas = NULL;
	X509_STORE *store = SSL_CTX_get_cert_store(ctx); /* owned by ctx */
	int r;

	r = tls_load_certs(c->ca_file, &cas);
	if (r < 0)
		return r;
	for (int i = 0; i < sk_X509_num(cas); i++) {
		X509 *ca = sk_X509_value(cas, i);

		if (X509_STORE_add_cert(store, ca) != 1)
			return tls_log_errors(-EIO, "Failed to add CA from '%s'", c->ca_file);
		if (server && SSL_CTX_add_client_CA(ctx, ca) != 1)
			return tls_log_errors(-EIO, "Failed to add CA name from '%s'", c->ca_file);
	}
	return 0;
}

/* Creates a context with what servers and clients share. */
static int ctx_new(const SSL_METHOD *method, const struct tls_config *c, bool server, SSL_CTX **ret)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
	int r;

	ERR_clear_error();
	ctx = SSL_CTX_new(method);
	if (!ctx)
		return tls_log_errors(-ENOMEM, "Failed to create SSL_CTX");

	/*
	 * TLS 1.2 is the floor: older versions lack AEAD suites. Compression invites CRIME-style
	 * attacks and renegotiation is a DoS lever we do not need.
	 */
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return tls_log_errors(-EIO, "Failed to set the minimum TLS version");
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1)
		return tls_log_errors(-EIO, "Failed to set the TLS 1.2 cipher list");
	if (SSL_CTX_set1_groups_list(ctx, tls_groups) != 1)
		return tls_log_errors(-EIO, "Failed to set the key exchange groups");

	r = ctx_use_ca(ctx, c, server);
	if (r < 0)
		return r;
	if (c->cert_file) {
		r = ctx_use_cert(ctx, c);
		if (r < 0)
			return r;
	}

	*ret = TAKE_PTR(ctx);
	return 0;
}

int tls_server_ctx_new(const struct tls_config *c, SSL_CTX **ret)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
	_cleanup_free_ struct alpn_wire *alpn = NULL;
	int r;

	if (!c->cert_file || !c->ca_file)
		return -EINVAL;
	r = alpn_encode(c->alpn, &alpn);
	if (r < 0)
		return r;

	r = ctx_new(TLS_server_method(), c, true, &ctx);
	if (r < 0)
		return r;

	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_session_id_context(ctx, tls_session_id_context,
					   sizeof(tls_session_id_context) - 1) != 1)
		return tls_log_errors(-EIO, "Failed to set the session id context");

	if (c->require_peer_cert)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_record_only_cb);

	if (alpn) {
		struct alpn_wire *w;

		if (pthread_once(&alpn_ex_once, alpn_ex_init) != 0 || alpn_ex_index < 0)
			return tls_log_errors(-ENOMEM, "Failed to allocate an ex_data index");
		if (SSL_CTX_set_ex_data(ctx, alpn_ex_index, alpn) != 1)
			return tls_log_errors(-ENOMEM, "Failed to attach the ALPN list");
		w = TAKE_PTR(alpn); /* now freed with ctx, by alpn_ex_free() */
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, w);
	}

	*ret = TAKE_PTR(ctx);
	return 0;
}

int tls_client_ctx_new(const struct tls_config *c, SSL_CTX **ret)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
	_cleanup_free_ struct alpn_wire *alpn = NULL;
	int r;

	if (!c->ca_file)
		return -EINVAL;
	r = alpn_encode(c->alpn, &alpn);
	if (r < 0)
		return r;

	r = ctx_new(TLS_client_method(), c, false, &ctx);
	if (r < 0)
		return r;

	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* Unlike nearly everything else in OpenSSL, this one returns 0 on success. */
	if (alpn && SSL_CTX_set_alpn_protos(ctx, alpn->data, alpn->len) != 0)
		return tls_log_errors(-ENOMEM, "Failed to set the ALPN list");

	*ret = TAKE_PTR(ctx);
	return 0;
}

int tls_client_set_peer_name(SSL *ssl, const char *host)
{
	unsigned char addr[16];

	if (!host || !*host)
		return -EINVAL;
	ERR_clear_error();

	if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
		/* RFC 6066 forbids IP literals in SNI; the address is only checked. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			return tls_log_errors(-EINVAL, "Failed to set peer address '%s'", host);
		return 0;
	}

	if (SSL_set_tlsext_host_name(ssl, host) != 1)
		return tls_log_errors(-EINVAL, "Failed to set SNI '%s'", host);
	/*
	 * The subject CN is never consulted: a name belongs in subjectAltName (RFC 6125), and a
	 * CN fallback would let a certificate issued for an identity, such as a client's, pass
	 * as a host name.
	 */
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
				       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (SSL_set1_host(ssl, host) != 1)
		return tls_log_errors(-EINVAL, "Failed to set peer name '%s'", host);
	return 0;
}

/*
 * Copies @len bytes of @s into a new string, writing bytes outside printable ASCII, and the
 * backslash itself, as \xNN so that the result is unambiguous and safe to log.
 */
static int printable_dup(const unsigned char *s, size_t len, char **ret)
{
	char *out, *p;

	if (len > TLS_PEM_MAX)
		return -EINVAL;
	out = malloc(len * 4 + 1);
	if (!out)
		return -ENOMEM;
	p = out;
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
			*p++ = (char)s[i];
		else
			p += snprintf(p, 5, "\\x%02x", s[i]);
	}
	*p = '\0';
	*ret = out;
	return 0;
}

/*
 * Returns the UTF-8 text of the single subject CN of @cert in *ret (caller frees), or NULL if
 * there is none, more than one (ambiguous), or it holds a NUL byte or cannot be converted.
 */
static int cert_cn(X509 *cert, char **ret)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	unsigned char *utf8 = NULL;
	char *s;
	int i, n;

	*ret = NULL;
	i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return 0;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	if (n < 0) {
		ERR_clear_error();
		return 0;
	}
	if (memchr(utf8, '\0', (size_t)n)) {
		OPENSSL_free(utf8);
		return 0;
	}
	s = strndup((const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* Whether the @allowed_sans entry @entry names the subjectAltName entry (@type, @value). */
static bool san_entry_matches(const char *entry, int type, const ASN1_STRING *value)
{
	const unsigned char *d = ASN1_STRING_get0_data(value);
	size_t n = (size_t)ASN1_STRING_length(value);
	unsigned char addr[16];
	const char *v;
	int want = -1;

	if ((v = startswith(entry, "DNS:")))
		want = GEN_DNS;
	else if ((v = startswith(entry, "IP:")))
		want = GEN_IPADD;
	else if ((v = startswith(entry, "URI:")))
		want = GEN_URI;
	else
		v = entry;
	if (want >= 0 && want != type)
		return false;

	/* Lengths are compared first, so a NUL inside @value can never produce a match. */
	switch (type) {
	case GEN_DNS:
		return strlen(v) == n && strncasecmp(v, (const char *)d, n) == 0;
	case GEN_URI:
		return strlen(v) == n && memcmp(v, d, n) == 0;
	case GEN_IPADD:
		if (n == 4)
			return inet_pton(AF_INET, v, addr) == 1 && memcmp(addr, d, 4) == 0;
		if (n == 16)
			return inet_pton(AF_INET6, v, addr) == 1 && memcmp(addr, d, 16) == 0;
		return false;
	default:
		return false;
	}
}

/* Whether a name of @cert is in @allowed. Returns 1 (yes), 0 (no) or -ENOMEM. */
static int cert_name_allowed(X509 *cert, char *const *allowed)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *sans = NULL;
	_cleanup_free_ char *cn = NULL;
	int crit = -1, r;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (sans) {
		for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
			const GENERAL_NAME *gen = sk_GENERAL_NAME_value(sans, i);
			const ASN1_STRING *value;
			int type;

			value = GENERAL_NAME_get0_value(gen, &type);
			if (type != GEN_DNS && type != GEN_IPADD && type != GEN_URI)
				continue;
			STRV_FOREACH (a, allowed)
				if (san_entry_matches(*a, type, value))
					return 1;
		}
		return 0;
	}
	/* -1: no extension. -2 (repeated) or a decoding error: fail closed. */
	if (crit != -1) {
		ERR_clear_error();
		return 0;
	}

	r = cert_cn(cert, &cn);
	if (r < 0)
		return r;
	if (!cn)
		return 0;
	STRV_FOREACH (a, allowed) {
		const char *v = startswith(*a, "DNS:");

		if (strcasecmp(v ? v : *a, cn) == 0)
			return 1;
	}
	return 0;
}

/* Sets *ret to the printable first dNSName of @cert, else its CN, else NULL. */
static int cert_identity(X509 *cert, char **ret)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *sans = NULL;
	_cleanup_free_ char *cn = NULL;
	int r;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gen = sk_GENERAL_NAME_value(sans, i);
		const ASN1_STRING *value;
		int type;

		value = GENERAL_NAME_get0_value(gen, &type);
		if (type == GEN_DNS)
			return printable_dup(ASN1_STRING_get0_data(value),
					     (size_t)ASN1_STRING_length(value), ret);
	}
	ERR_clear_error();

	r = cert_cn(cert, &cn);
	if (r < 0)
		return r;
	if (!cn) {
		*ret = NULL;
		return 0;
	}
	return printable_dup((const unsigned char *)cn, strlen(cn), ret);
}

int tls_cert_file_identity(const char *path, char **ret)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *certs = NULL;
	int r;

	r = tls_load_certs(path, &certs);
	if (r < 0)
		return r;
	return cert_identity(sk_X509_value(certs, 0), ret);
}

int tls_peer_check(SSL *ssl, char *const *allowed_sans, char **ret_identity)
{
	_cleanup_free_ char *identity = NULL;
	enum tls_peer_status status;
	X509 *cert; /* borrowed from ssl */
	int r;

	if (!SSL_is_init_finished(ssl))
		return -EINVAL;

	cert = SSL_get0_peer_certificate(ssl);
	if (!cert) {
		if (ret_identity)
			*ret_identity = NULL;
		return TLS_PEER_NO_CERT;
	}
	if (ret_identity) {
		r = cert_identity(cert, &identity);
		if (r < 0)
			return r;
	}

	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		status = TLS_PEER_UNTRUSTED;
	} else if (allowed_sans && allowed_sans[0]) {
		r = cert_name_allowed(cert, allowed_sans);
		if (r < 0)
			return r;
		status = r ? TLS_PEER_OK : TLS_PEER_NAME_DENIED;
	} else {
		status = TLS_PEER_OK;
	}

	if (ret_identity)
		*ret_identity = TAKE_PTR(identity);
	return status;
}

const char *tls_peer_status_to_string(enum tls_peer_status status)
{
	static const char *const names[_TLS_PEER_MAX] = {
		[TLS_PEER_OK] = "ok",
		[TLS_PEER_NO_CERT] = "no-cert",
		[TLS_PEER_UNTRUSTED] = "untrusted",
		[TLS_PEER_NAME_DENIED] = "name-denied",
	};

	if ((unsigned)status >= _TLS_PEER_MAX)
		return "unknown";
	return names[status];
}
