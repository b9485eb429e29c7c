/* SPDX-License-Identifier: MIT */
#include "libcommon/certgen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"
#include "libcommon/tls.h"

#define CA_DAYS 3652 /* ten years, leap days included */
#define LEAF_DAYS 825
/* Certificates start to be valid an hour ago, so a peer whose clock lags still accepts them. */
#define BACKDATE_SECONDS 3600
/* The X.520 upper bound of a commonName (ub-common-name). */
#define CN_MAX 64

DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)
DEFINE_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)
DEFINE_CLEANUP_FUNC(X509_EXTENSION, X509_EXTENSION_free)

/* What to put into a certificate. */
struct cert_profile {
	const char *common_name;
	GENERAL_NAMES *sans; /* borrowed; NULL for none */
	bool ca;
	bool server_auth;
	bool client_auth;
};

/* Returns 1 if @path exists (as anything, even a dangling symlink), 0 if not, or -errno. */
static int file_exists(const char *path)
{
	struct stat st;

	if (lstat(path, &st) >= 0)
		return 1;
	return errno == ENOENT ? 0 : negative_errno();
}

static int check_common_name(const char *cn)
{
	size_t n = cn ? strlen(cn) : 0;

	return n > 0 && n <= CN_MAX ? 0 : -EINVAL;
}

/*
 * Parses "DNS:x", "IP:x" and "URI:x" strings into *ret (caller frees; NULL for an empty list).
 * Each GENERAL_NAME is built directly rather than through a "DNS:a,IP:b" config string, so a
 * comma inside a caller's value cannot smuggle in another name.
 */
static int sans_parse(const char *const *sans, GENERAL_NAMES **ret)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens = NULL;

	if (!sans || !sans[0]) {
		*ret = NULL;
		return 0;
	}
	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		return -ENOMEM;

	for (const char *const *s = sans; *s; s++) {
		GENERAL_NAME *gen;
		const char *v;
		int type;

		if ((v = startswith(*s, "DNS:")))
			type = GEN_DNS;
		else if ((v = startswith(*s, "IP:")))
			type = GEN_IPADD;
		else if ((v = startswith(*s, "URI:")))
			type = GEN_URI;
		else
			return log_debug_errno(-EINVAL, "Invalid subjectAltName '%s'", *s);
		if (!*v)
			return log_debug_errno(-EINVAL, "Empty subjectAltName '%s'", *s);
		for (const unsigned char *c = (const unsigned char *)v; *c; c++)
			if (*c <= ' ' || *c >= 0x7f)
				return log_debug_errno(-EINVAL, "Invalid subjectAltName '%s'", *s);

		/* Checks IP addresses; DNS names and URIs are taken as they are. */
		gen = a2i_GENERAL_NAME(NULL, NULL, NULL, type, v, 0);
		if (!gen)
			return tls_log_errors(-EINVAL, "Invalid subjectAltName '%s'", *s);
		if (!sk_GENERAL_NAME_push(gens, gen)) {
			GENERAL_NAME_free(gen);
			return -ENOMEM;
		}
	}
	*ret = TAKE_PTR(gens);
	return 0;
}

static int key_new(EVP_PKEY **ret)
{
	EVP_PKEY *key;

	ERR_clear_error();
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key)
		return tls_log_errors(-EIO, "Failed to generate an EC P-256 key");
	*ret = key;
	return 0;
}

/* Writes @key to the new file @path, mode 0600. Returns -EEXIST if @path exists. */
static int key_write(const char *path, EVP_PKEY *key)
{
	_cleanup_(BIO_freep) BIO *bio = NULL;
	char *data;
	long len;
	int r;

	ERR_clear_error();
	/* A secure-memory BIO wipes the PEM text of the key when it is freed. */
	bio = BIO_new(BIO_s_secmem());
	if (!bio)
		return tls_log_errors(-ENOMEM, "Failed to allocate");
	if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		return tls_log_errors(-EIO, "Failed to encode the key for '%s'", path);
	len = BIO_get_mem_data(bio, &data);
	if (len <= 0)
		return tls_log_errors(-EIO, "Failed to encode the key for '%s'", path);

	r = write_file_atomic(path, data, (size_t)len, 0600, 1);
	if (r < 0)
		return log_debug_errno(r, "Failed to write '%s': %m", path);
	return 0;
}

/* Writes @cert to the new file @path, mode 0644. Returns -EEXIST if @path exists. */
static int cert_write(const char *path, X509 *cert)
{
	_cleanup_(BIO_freep) BIO *bio = NULL;
	char *data;
	long len;
	int r;

	ERR_clear_error();
	bio = BIO_new(BIO_s_mem());
	if (!bio)
		return tls_log_errors(-ENOMEM, "Failed to allocate");
	if (PEM_write_bio_X509(bio, cert) != 1)
		return tls_log_errors(-EIO, "Failed to encode the certificate for '%s'", path);
	len = BIO_get_mem_data(bio, &data);
	if (len <= 0)
		return tls_log_errors(-EIO, "Failed to encode the certificate for '%s'", path);

	r = write_file_atomic(path, data, (size_t)len, 0644, 1);
	if (r < 0)
		return log_debug_errno(r, "Failed to write '%s': %m", path);
	return 0;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	_cleanup_(X509_EXTENSION_freep) X509_EXTENSION *ext = NULL;

	ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
	if (!ext || X509_add_ext(x, ext, -1) != 1)
		return tls_log_errors(-EIO, "Failed to add extension %s = %s", OBJ_nid2sn(nid),
				      value);
	return 0;
}

/*
 * Makes a certificate for @key as @p says, signed by @issuer_key on behalf of @issuer, or
 * self-signed if @issuer is NULL.
 */
static int cert_make(const struct cert_profile *p, EVP_PKEY *key, X509 *issuer,
		     EVP_PKEY *issuer_key, X509 **ret)
{
	_cleanup_(X509_freep) X509 *x = NULL;
	_cleanup_(BN_freep) BIGNUM *serial = NULL;
	unsigned char rnd[16];
	X509_NAME *name; /* owned by x */
	X509V3_CTX v3;
	const char *eku;
	int r;

	ERR_clear_error();
	x = X509_new();
	if (!x)
		return tls_log_errors(-ENOMEM, "Failed to allocate");

	/* 128 random bits with the top one cleared: a positive INTEGER of at most 16 bytes. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return tls_log_errors(-EIO, "Failed to get random bytes");
	rnd[0] &= 0x7f;
	serial = BN_bin2bn(rnd, sizeof(rnd), NULL);
	if (!serial || !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
		return tls_log_errors(-ENOMEM, "Failed to set the serial number");

	/* notAfter counts from notBefore, so the lifetime is exactly CA_DAYS or LEAF_DAYS. */
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), p->ca ? CA_DAYS : LEAF_DAYS, -BACKDATE_SECONDS,
			      NULL) ||
	    X509_set_pubkey(x, key) != 1)
		return tls_log_errors(-EIO, "Failed to set up the certificate");

	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)p->common_name, -1, -1, 0) != 1)
		return tls_log_errors(-EINVAL, "Invalid common name '%s'", p->common_name);
	if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1)
		return tls_log_errors(-EIO, "Failed to set the issuer name");

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (p->ca) {
		/* pathlen:0: this CA signs end-entity certificates only, never another CA. */
		r = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
		if (r >= 0)
			r = add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
		if (r >= 0)
			r = add_ext(x, &v3, NID_subject_key_identifier, "hash");
	} else {
		if (p->server_auth && p->client_auth)
			eku = "serverAuth,clientAuth";
		else if (p->server_auth)
			eku = "serverAuth";
		else
			eku = "clientAuth";
		r = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE");
		if (r >= 0)
			r = add_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
		if (r >= 0)
			r = add_ext(x, &v3, NID_ext_key_usage, eku);
		if (r >= 0)
			r = add_ext(x, &v3, NID_subject_key_identifier, "hash");
		if (r >= 0)
			r = add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
	}
	if (r < 0)
		return r;
	if (p->sans &&
	    X509_add1_ext_i2d(x, NID_subject_alt_name, p->sans, 0, X509V3_ADD_APPEND) != 1)
		return tls_log_errors(-EIO, "Failed to add the subjectAltName");

	if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
		return tls_log_errors(-EIO, "Failed to sign the certificate for '%s'",
				      p->common_name);

	*ret = TAKE_PTR(x);
	return 0;
}

/*
 * Writes a key to @out_key (or uses the one already there) and then a certificate for it,
 * made from @p and signed by @issuer/@issuer_key (NULL: self-signed), to @out_cert. Sets
 * *wrote if it wrote either file. Returns -EEXIST if @out_cert exists.
 *
 * The key file is the commit point of a pair: whoever writes it first wins, and every process
 * then issues its certificate for that key. So however processes interleave, the certificate
 * that ends up in @out_cert matches the key in @out_key.
 */
static int issue(const struct cert_profile *p, X509 *issuer, EVP_PKEY *issuer_key,
		 const char *out_cert, const char *out_key, bool *wrote)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	_cleanup_(X509_freep) X509 *cert = NULL;
	int r;

	r = file_exists(out_cert);
	if (r < 0)
		return r;
	if (r > 0)
		return -EEXIST;

	r = tls_load_key(out_key, &key);
	if (r == -ENOENT) {
		r = key_new(&key);
		if (r < 0)
			return r;
		r = key_write(out_key, key);
		if (r == -EEXIST) {
			/* Another process won the race: use its key. */
			EVP_PKEY_free(TAKE_PTR(key));
			r = tls_load_key(out_key, &key);
		} else if (r >= 0) {
			*wrote = true;
		}
	}
	if (r < 0)
		return r;

	r = cert_make(p, key, issuer, issuer_key, &cert);
	if (r < 0)
		return r;
	r = cert_write(out_cert, cert);
	if (r < 0)
		return r;
	*wrote = true;
	return 0;
}

/*
 * Loads the CA certificate (the first of @cert_file) and its key, and checks that they belong
 * together and that the certificate is a CA. A missing key file is -ENOKEY.
 */
static int ca_load(const char *cert_file, const char *key_file, X509 **ret_cert, EVP_PKEY **ret_key)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *certs = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	_cleanup_(X509_freep) X509 *ca = NULL;
	int r;

	r = tls_load_certs(cert_file, &certs);
	if (r < 0)
		return r;
	r = tls_load_key(key_file, &key);
	if (r == -ENOENT)
		return log_debug_errno(-ENOKEY, "CA key '%s' is missing", key_file);
	if (r < 0)
		return r;

	ca = sk_X509_shift(certs);
	if (X509_check_private_key(ca, key) != 1)
		return tls_log_errors(-EKEYREJECTED, "Key '%s' does not match CA '%s'", key_file,
				      cert_file);
	if (X509_check_ca(ca) == 0)
		return log_debug_errno(-EKEYREJECTED, "'%s' is not a CA certificate", cert_file);

	*ret_cert = TAKE_PTR(ca);
	*ret_key = TAKE_PTR(key);
	return 0;
}

int certgen_ca_new(const char *common_name, const char *out_cert, const char *out_key)
{
	const struct cert_profile p = { .common_name = common_name, .ca = true };
	bool wrote = false;

	if (check_common_name(common_name) < 0 || !out_cert || !out_key)
		return -EINVAL;
	return issue(&p, NULL, NULL, out_cert, out_key, &wrote);
}

int certgen_issue(const char *ca_cert_file, const char *ca_key_file, const char *common_name,
		  char *const *sans, bool server_auth, bool client_auth, const char *out_cert,
		  const char *out_key)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
	_cleanup_(X509_freep) X509 *ca = NULL;
	struct cert_profile p;
	bool wrote = false;
	int r;

	if (check_common_name(common_name) < 0 || (!server_auth && !client_auth) || !ca_cert_file ||
	    !ca_key_file || !out_cert || !out_key)
		return -EINVAL;
	/* char *const * does not convert to const char *const * implicitly in C. */
	r = sans_parse((const char *const *)sans, &gens);
	if (r < 0)
		return r;
	r = ca_load(ca_cert_file, ca_key_file, &ca, &ca_key);
	if (r < 0)
		return r;

	p = (struct cert_profile){
		.common_name = common_name,
		.sans = gens,
		.server_auth = server_auth,
		.client_auth = client_auth,
	};
	return issue(&p, ca, ca_key, out_cert, out_key, &wrote);
}

/* The files of a state directory, in the order they are written. */
enum {
	STATE_CA_KEY,
	STATE_CA_CERT,
	STATE_NODE_KEY,
	STATE_NODE_CERT,
	STATE_CLIENT_KEY,
	STATE_CLIENT_CERT,
	_STATE_MAX,
};

static const char *const state_file_names[_STATE_MAX] = {
	[STATE_CA_KEY] = "ca.key",	   [STATE_CA_CERT] = "ca.pem",
	[STATE_NODE_KEY] = "node.key",	   [STATE_NODE_CERT] = "node.pem",
	[STATE_CLIENT_KEY] = "client.key", [STATE_CLIENT_CERT] = "client.pem",
};

struct state_files {
	char *path[_STATE_MAX];
	bool exists[_STATE_MAX];
};

static void state_files_done(struct state_files *f)
{
	for (int i = 0; i < _STATE_MAX; i++)
		free(f->path[i]);
}

/* Checks that the certificate @cert_file matches @key_file and was issued by @ca. */
static int check_leaf(X509 *ca, const char *cert_file, const char *key_file)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *certs = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	X509 *leaf; /* owned by certs */
	int r;

	r = tls_load_certs(cert_file, &certs);
	if (r < 0)
		return r;
	r = tls_load_key(key_file, &key);
	if (r < 0)
		return r;
	leaf = sk_X509_value(certs, 0);

	if (X509_check_private_key(leaf, key) != 1)
		return tls_log_errors(-EKEYREJECTED, "Key '%s' does not match certificate '%s'",
				      key_file, cert_file);
	if (X509_check_issued(ca, leaf) != X509_V_OK ||
	    X509_verify(leaf, X509_get0_pubkey(ca)) != 1)
		return tls_log_errors(-EKEYREJECTED, "Certificate '%s' was not issued by the CA",
				      cert_file);
	return 0;
}

/* Checks that the files of @f form one consistent set. */
static int check_set(const struct state_files *f)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *cas = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
	X509 *ca; /* owned by cas */
	int r;

	r = tls_load_certs(f->path[STATE_CA_CERT], &cas);
	if (r < 0)
		return r;
	ca = sk_X509_value(cas, 0);

	r = tls_load_key(f->path[STATE_CA_KEY], &ca_key);
	if (r >= 0 && X509_check_private_key(ca, ca_key) != 1)
		return tls_log_errors(-EKEYREJECTED, "Key '%s' does not match CA '%s'",
				      f->path[STATE_CA_KEY], f->path[STATE_CA_CERT]);
	if (r < 0 && r != -ENOENT)
		return r;

	r = check_leaf(ca, f->path[STATE_NODE_CERT], f->path[STATE_NODE_KEY]);
	if (r < 0)
		return r;
	return check_leaf(ca, f->path[STATE_CLIENT_CERT], f->path[STATE_CLIENT_KEY]);
}

/* Letters, digits, '.', '-' and '_': it goes into a dNSName and the CNs. */
static bool hostname_valid(const char *s)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789.-_";
	size_t n = s ? strlen(s) : 0;

	return n > 0 && n <= 253 && strspn(s, allowed) == n;
}

/* Issues node.pem and client.pem, those that @f says are missing, from the CA in @f. */
static int issue_leaves(const struct state_files *f, const char *hostname, bool *created)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *node_sans = NULL;
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *client_sans = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
	_cleanup_(X509_freep) X509 *ca = NULL;
	_cleanup_free_ char *node_dns = NULL;
	_cleanup_free_ char *client_dns = NULL;
	const char *node_names[] = { NULL, "DNS:localhost", "IP:127.0.0.1", "IP:::1", NULL };
	const char *client_names[] = { NULL, NULL };
	/* The CN is cut to its limit; the subjectAltName carries the whole name. */
	char client_cn[CN_MAX + 1];
	char node_cn[CN_MAX + 1];
	int r;

	snprintf(node_cn, sizeof(node_cn), "%s", hostname);
	snprintf(client_cn, sizeof(client_cn), "k2ps@%s", hostname);
	if (asprintf(&node_dns, "DNS:%s", hostname) < 0) {
		node_dns = NULL;
		return -ENOMEM;
	}
	if (asprintf(&client_dns, "DNS:k2ps@%s", hostname) < 0) {
		client_dns = NULL;
		return -ENOMEM;
	}
	node_names[0] = node_dns;
	client_names[0] = client_dns;

	r = sans_parse(node_names, &node_sans);
	if (r < 0)
		return r;
	r = sans_parse(client_names, &client_sans);
	if (r < 0)
		return r;

	r = ca_load(f->path[STATE_CA_CERT], f->path[STATE_CA_KEY], &ca, &ca_key);
	if (r < 0)
		return r;

	if (!f->exists[STATE_NODE_CERT]) {
		const struct cert_profile p = {
			.common_name = node_cn,
			.sans = node_sans,
			.server_auth = true,
			/* Nodes also dial each other, as clients. */
			.client_auth = true,
		};

		r = issue(&p, ca, ca_key, f->path[STATE_NODE_CERT], f->path[STATE_NODE_KEY],
			  created);
		/* -EEXIST: another process issued it; check_set() checks what it wrote. */
		if (r < 0 && r != -EEXIST)
			return r;
	}
	if (!f->exists[STATE_CLIENT_CERT]) {
		const struct cert_profile p = {
			.common_name = client_cn,
			.sans = client_sans,
			.client_auth = true,
		};

		r = issue(&p, ca, ca_key, f->path[STATE_CLIENT_CERT], f->path[STATE_CLIENT_KEY],
			  created);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	return 0;
}

int certgen_ensure(const char *state_dir, const char *hostname, bool *ret_created)
{
	_cleanup_(state_files_done) struct state_files f = {};
	const bool *ex = f.exists;
	bool created = false;
	bool need_leaves;
	int r;

	if (!state_dir || !hostname_valid(hostname))
		return -EINVAL;

	r = mkdir_p(state_dir, 0700);
	if (r < 0)
		return log_debug_errno(r, "Failed to create '%s': %m", state_dir);

	for (int i = 0; i < _STATE_MAX; i++)
		if (asprintf(&f.path[i], "%s/%s", state_dir, state_file_names[i]) < 0) {
			f.path[i] = NULL;
			return -ENOMEM;
		}

	/*
	 * Look in the reverse of the order in which files are written: when a file is seen, the
	 * files written before it are looked at afterwards and so are seen too. A process
	 * creating the set at the same time thus cannot make this snapshot look inconsistent.
	 */
	for (int i = _STATE_MAX - 1; i >= 0; i--) {
		r = file_exists(f.path[i]);
		if (r < 0)
			return log_debug_errno(r, "Failed to look at '%s': %m", f.path[i]);
		f.exists[i] = r > 0;
	}

	/* Refuse every case that cannot be completed before writing anything. */
	if (ex[STATE_NODE_CERT] && !ex[STATE_NODE_KEY])
		return log_debug_errno(-ENOKEY, "'%s' exists without its key",
				       f.path[STATE_NODE_CERT]);
	if (ex[STATE_CLIENT_CERT] && !ex[STATE_CLIENT_KEY])
		return log_debug_errno(-ENOKEY, "'%s' exists without its key",
				       f.path[STATE_CLIENT_CERT]);
	if (!ex[STATE_CA_CERT] && !ex[STATE_CA_KEY] &&
	    (ex[STATE_NODE_CERT] || ex[STATE_CLIENT_CERT]))
		return log_debug_errno(-ENOKEY, "Certificates exist in '%s' but not their CA",
				       state_dir);
	need_leaves = !ex[STATE_NODE_CERT] || !ex[STATE_CLIENT_CERT];
	if (need_leaves && ex[STATE_CA_CERT] && !ex[STATE_CA_KEY])
		return log_debug_errno(-ENOKEY, "Cannot issue certificates without '%s'",
				       f.path[STATE_CA_KEY]);

	if (!ex[STATE_CA_CERT]) {
		char cn[CN_MAX + 1];
		const struct cert_profile p = { .common_name = cn, .ca = true };

		snprintf(cn, sizeof(cn), "k2i CA %s", hostname);
		r = issue(&p, NULL, NULL, f.path[STATE_CA_CERT], f.path[STATE_CA_KEY], &created);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	if (need_leaves) {
		r = issue_leaves(&f, hostname, &created);
		if (r < 0)
			return r;
	}

	r = check_set(&f);
	if (r < 0)
		return r;
	if (ret_created)
		*ret_created = created;
	return 0;
}
