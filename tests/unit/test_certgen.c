/* SPDX-License-Identifier: MIT */
#include <dirent.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "libcommon/certgen.h"
#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/strutil.h"
#include "libcommon/tls.h"

static const char *const state_files[] = { "ca.pem",   "ca.key",     "node.pem",
					   "node.key", "client.pem", "client.key" };

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new empty directory; the caller removes it with rm_rf() and frees the string. */
static char *tmpdir_new(void)
{
	char tmpl[] = "/tmp/test_certgen.XXXXXX";
	char *d;

	assert_non_null(mkdtemp(tmpl));
	d = strdup(tmpl);
	assert_non_null(d);
	return d;
}

static char *path_of(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static bool exists_in(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_of(dir, name);

	return access(p, F_OK) == 0;
}

static char *read_in(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_of(dir, name);
	char *data = NULL;

	assert_int_equal(read_full_file_at(AT_FDCWD, p, 1 << 20, &data, NULL), 0);
	return data;
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name)
{
	_cleanup_free_ char *data = read_in(from_dir, name);
	_cleanup_free_ char *to = path_of(to_dir, name);

	assert_int_equal(write_file_atomic(to, data, strlen(data), 0600, 1), 0);
}

static void unlink_in(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_of(dir, name);

	assert_int_equal(unlink(p), 0);
}

static size_t count_entries(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static X509 *load_cert(const char *dir, const char *name)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *sk = NULL;
	_cleanup_free_ char *p = path_of(dir, name);

	assert_int_equal(tls_load_certs(p, &sk), 0);
	assert_int_equal(sk_X509_num(sk), 1);
	return sk_X509_shift(sk);
}

static EVP_PKEY *load_key(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_of(dir, name);
	EVP_PKEY *key = NULL;

	assert_int_equal(tls_load_key(p, &key), 0);
	return key;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Verifies @cert against the CA in @ca_dir for @purpose; returns the X509_V_* result. */
static int verify_against(const char *ca_dir, X509 *cert, int purpose)
{
	_cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	_cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
	_cleanup_(X509_freep) X509 *ca = load_cert(ca_dir, "ca.pem");

	assert_non_null(ctx);
	assert_non_null(store);
	assert_int_equal(X509_STORE_add_cert(store, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	if (X509_verify_cert(ctx) == 1)
		return X509_V_OK;
	return X509_STORE_CTX_get_error(ctx);
}

static void assert_cn(X509 *x, const char *expected)
{
	char cn[256];

	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					      sizeof(cn)) > 0);
	assert_string_equal(cn, expected);
}

static int san_count(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int n = gens ? sk_GENERAL_NAME_num(gens) : 0;

	GENERAL_NAMES_free(gens);
	return n;
}

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

/* Asserts notAfter - notBefore == @days and notBefore is about an hour ago. */
static void assert_validity(X509 *x, int days)
{
	ASN1_TIME *now = X509_gmtime_adj(NULL, 0);
	int d, s;

	assert_non_null(now);
	assert_int_equal(ASN1_TIME_diff(&d, &s, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
	assert_int_equal(d, days);
	assert_int_equal(s, 0);
	assert_int_equal(ASN1_TIME_diff(&d, &s, X509_get0_notBefore(x), now), 1);
	assert_int_equal(d, 0);
	assert_in_range(s, 3590, 3700);
	ASN1_TIME_free(now);
}

static void assert_p256(EVP_PKEY *key)
{
	char group[64];

	assert_true(EVP_PKEY_is_a(key, "EC"));
	assert_int_equal(EVP_PKEY_get_group_name(key, group, sizeof(group), NULL), 1);
	assert_string_equal(group, "prime256v1");
}

static int serial_bits(X509 *x)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	int bits;

	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	bits = BN_num_bits(bn);
	BN_free(bn);
	return bits;
}

static void test_ensure_fresh(void **state)
{
	_cleanup_free_ char *top = tmpdir_new();
	_cleanup_free_ char *dir = path_of(top, "state/sub");
	_cleanup_(X509_freep) X509 *ca = NULL;
	_cleanup_(X509_freep) X509 *node = NULL;
	_cleanup_(X509_freep) X509 *client = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *node_key = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *client_key = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
	_cleanup_free_ char *key_pem = NULL;
	bool created = false;

	assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
	assert_true(created);

	assert_int_equal(mode_of(dir), 0700);
	for (size_t i = 0; i < ELEMENTSOF(state_files); i++) {
		_cleanup_free_ char *p = path_of(dir, state_files[i]);

		assert_int_equal(mode_of(p), endswith(p, ".key") ? 0600 : 0644);
	}
	key_pem = read_in(dir, "node.key");
	assert_non_null(strstr(key_pem, "-----BEGIN PRIVATE KEY-----"));
	/* Exactly the six files: no temporary files left behind. */
	assert_int_equal(count_entries(dir), ELEMENTSOF(state_files));

	ca = load_cert(dir, "ca.pem");
	node = load_cert(dir, "node.pem");
	client = load_cert(dir, "client.pem");
	ca_key = load_key(dir, "ca.key");
	node_key = load_key(dir, "node.key");
	client_key = load_key(dir, "client.key");

	/* The CA. */
	assert_cn(ca, "k2i CA testhost");
	assert_int_equal(X509_self_signed(ca, 1), 1);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_true(ext_critical(ca, NID_basic_constraints));
	assert_true(ext_critical(ca, NID_key_usage));
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(ca));
	assert_int_equal(X509_check_private_key(ca, ca_key), 1);
	assert_validity(ca, 3652);
	assert_p256(ca_key);

	/* The node certificate. */
	assert_cn(node, "testhost");
	assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(san_count(node), 4);
	assert_int_equal(X509_check_host(node, "testhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(node, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(node, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(node, "::1", 0), 1);
	assert_int_equal(X509_check_host(node, "otherhost", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(node, "127.0.0.2", 0), 0);
	assert_int_equal(X509_get_extended_key_usage(node), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	assert_int_equal(X509_get_key_usage(node), KU_DIGITAL_SIGNATURE);
	assert_true(ext_critical(node, NID_basic_constraints));
	assert_int_equal(X509_check_ca(node), 0);
	assert_non_null(X509_get0_authority_key_id(node));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(node),
					       X509_get0_subject_key_id(ca)),
			 0);
	assert_int_equal(X509_check_private_key(node, node_key), 1);
	assert_validity(node, 825);
	assert_p256(node_key);

	/* The client certificate: a client only. */
	assert_cn(client, "k2ps@testhost");
	assert_int_equal(san_count(client), 1);
	assert_int_equal(X509_check_host(client, "k2ps@testhost", 0, 0, NULL), 1);
	assert_int_equal(verify_against(dir, client, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(verify_against(dir, client, X509_PURPOSE_SSL_SERVER),
			 X509_V_ERR_INVALID_PURPOSE);
	assert_int_equal(X509_get_extended_key_usage(client), XKU_SSL_CLIENT);
	assert_int_equal(X509_check_private_key(client, client_key), 1);
	assert_int_equal(X509_check_private_key(client, node_key), 0);
	assert_validity(client, 825);

	/* Random serials: distinct, and (with overwhelming probability) longer than 64 bits. */
	assert_true(serial_bits(node) > 64);
	assert_true(serial_bits(client) > 64);
	assert_int_not_equal(
		ASN1_INTEGER_cmp(X509_get0_serialNumber(node), X509_get0_serialNumber(client)), 0);

	rm_rf(top);
}

static void test_ensure_idempotent(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	char *before[ELEMENTSOF(state_files)];
	bool created = true;

	assert_int_equal(certgen_ensure(dir, "testhost", NULL), 0);
	for (size_t i = 0; i < ELEMENTSOF(state_files); i++)
		before[i] = read_in(dir, state_files[i]);

	assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
	assert_false(created);
	for (size_t i = 0; i < ELEMENTSOF(state_files); i++) {
		_cleanup_free_ char *after = read_in(dir, state_files[i]);

		assert_string_equal(before[i], after);
		free(before[i]);
	}
	rm_rf(dir);
}

static void test_ensure_reissue_node(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_free_ char *ca_before = NULL;
	_cleanup_free_ char *ca_after = NULL;
	_cleanup_free_ char *client_before = NULL;
	_cleanup_free_ char *client_after = NULL;
	_cleanup_free_ char *node_before = NULL;
	_cleanup_free_ char *node_after = NULL;
	_cleanup_(X509_freep) X509 *node = NULL;
	bool created = false;

	assert_int_equal(certgen_ensure(dir, "testhost", NULL), 0);
	ca_before = read_in(dir, "ca.pem");
	client_before = read_in(dir, "client.pem");
	node_before = read_in(dir, "node.pem");
	unlink_in(dir, "node.pem");
	unlink_in(dir, "node.key");

	assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
	assert_true(created);
	ca_after = read_in(dir, "ca.pem");
	client_after = read_in(dir, "client.pem");
	node_after = read_in(dir, "node.pem");
	assert_string_equal(ca_before, ca_after);
	assert_string_equal(client_before, client_after);
	assert_string_not_equal(node_before, node_after);

	node = load_cert(dir, "node.pem");
	assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	rm_rf(dir);
}

/* An interrupted run (a key written, its certificate not) is completed with that key. */
static void test_ensure_completes_interrupted(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *node_key = NULL;
	_cleanup_(X509_freep) X509 *ca = NULL;
	_cleanup_(X509_freep) X509 *node = NULL;
	bool created = false;

	assert_int_equal(certgen_ensure(dir, "testhost", NULL), 0);
	ca_key = load_key(dir, "ca.key");
	node_key = load_key(dir, "node.key");
	unlink_in(dir, "ca.pem");
	unlink_in(dir, "node.pem");

	assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
	assert_true(created);
	ca = load_cert(dir, "ca.pem");
	node = load_cert(dir, "node.pem");
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(ca), ca_key), 1);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(node), node_key), 1);
	assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_SERVER), X509_V_OK);

	/* The old client certificate still verifies against the re-created CA certificate. */
	X509_free(node);
	node = load_cert(dir, "client.pem");
	assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	rm_rf(dir);
}

static void test_ensure_ca_without_key(void **state)
{
	_cleanup_free_ char *src = tmpdir_new();
	_cleanup_free_ char *dir = tmpdir_new();
	bool created = true;

	assert_int_equal(certgen_ensure(src, "testhost", NULL), 0);

	/* Only ca.pem: nothing can be issued, and nothing is written. */
	copy_file(src, dir, "ca.pem");
	assert_int_equal(certgen_ensure(dir, "host2", &created), -ENOKEY);
	assert_false(exists_in(dir, "node.pem"));
	assert_false(exists_in(dir, "node.key"));
	assert_false(exists_in(dir, "client.key"));

	/* With the leaves already there, the CA key is not needed. */
	copy_file(src, dir, "node.pem");
	copy_file(src, dir, "node.key");
	copy_file(src, dir, "client.pem");
	copy_file(src, dir, "client.key");
	assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
	assert_false(created);
	assert_false(exists_in(dir, "ca.key"));

	/* One leaf missing: -ENOKEY again. */
	unlink_in(dir, "client.pem");
	unlink_in(dir, "client.key");
	assert_int_equal(certgen_ensure(dir, "testhost", &created), -ENOKEY);
	assert_false(exists_in(dir, "client.key"));

	rm_rf(src);
	rm_rf(dir);
}

/* Copying ca.pem and ca.key to another host makes it issue from the same CA. */
static void test_ensure_shared_ca(void **state)
{
	_cleanup_free_ char *dir1 = tmpdir_new();
	_cleanup_free_ char *dir2 = tmpdir_new();
	_cleanup_free_ char *ca1 = NULL;
	_cleanup_free_ char *ca2 = NULL;
	_cleanup_(X509_freep) X509 *node = NULL;
	bool created = false;

	assert_int_equal(certgen_ensure(dir1, "testhost", NULL), 0);
	copy_file(dir1, dir2, "ca.pem");
	copy_file(dir1, dir2, "ca.key");

	assert_int_equal(certgen_ensure(dir2, "host2", &created), 0);
	assert_true(created);
	ca1 = read_in(dir1, "ca.pem");
	ca2 = read_in(dir2, "ca.pem");
	assert_string_equal(ca1, ca2);

	node = load_cert(dir2, "node.pem");
	assert_int_equal(verify_against(dir1, node, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	assert_int_equal(X509_check_host(node, "host2", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(node, "testhost", 0, 0, NULL), 0);
	rm_rf(dir1);
	rm_rf(dir2);
}

static void test_ensure_inconsistent(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_free_ char *other = tmpdir_new();
	_cleanup_free_ char *bad = tmpdir_new();
	_cleanup_free_ char *p = NULL;

	assert_int_equal(certgen_ensure(dir, "testhost", NULL), 0);
	assert_int_equal(certgen_ensure(other, "otherhost", NULL), 0);

	/* A certificate without its key. */
	unlink_in(dir, "node.key");
	assert_int_equal(certgen_ensure(dir, "testhost", NULL), -ENOKEY);
	assert_false(exists_in(dir, "node.key"));

	/* A key that belongs to another certificate. */
	p = path_of(dir, "node.key");
	{
		_cleanup_free_ char *k = read_in(dir, "client.key");

		assert_int_equal(write_file_atomic(p, k, strlen(k), 0600, 1), 0);
	}
	assert_int_equal(certgen_ensure(dir, "testhost", NULL), -EKEYREJECTED);

	/* A node certificate from another CA. */
	unlink_in(dir, "node.key");
	unlink_in(dir, "node.pem");
	copy_file(other, dir, "node.pem");
	copy_file(other, dir, "node.key");
	assert_int_equal(certgen_ensure(dir, "testhost", NULL), -EKEYREJECTED);

	/* Certificates with no CA at all. */
	unlink_in(dir, "ca.pem");
	unlink_in(dir, "ca.key");
	assert_int_equal(certgen_ensure(dir, "testhost", NULL), -ENOKEY);
	assert_false(exists_in(dir, "ca.pem"));
	assert_false(exists_in(dir, "ca.key"));

	/* A CA file that is not PEM. */
	free(p);
	p = path_of(bad, "ca.pem");
	assert_int_equal(write_file_atomic(p, "garbage\n", 8, 0644, 1), 0);
	free(p);
	p = path_of(bad, "ca.key");
	assert_int_equal(write_file_atomic(p, "garbage\n", 8, 0600, 1), 0);
	assert_int_equal(certgen_ensure(bad, "testhost", NULL), -EBADMSG);

	rm_rf(dir);
	rm_rf(other);
	rm_rf(bad);
}

static void test_ensure_bad_args(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_(X509_freep) X509 *node = NULL;
	_cleanup_(X509_freep) X509 *client = NULL;
	char host[300];
	char cn[320];

	assert_int_equal(certgen_ensure(dir, "", NULL), -EINVAL);
	assert_int_equal(certgen_ensure(dir, "bad host", NULL), -EINVAL);
	assert_int_equal(certgen_ensure(dir, "a/b", NULL), -EINVAL);
	assert_int_equal(certgen_ensure(dir, "a,DNS:evil", NULL), -EINVAL);
	assert_int_equal(certgen_ensure(dir, NULL, NULL), -EINVAL);
	memset(host, 'a', 254);
	host[254] = '\0';
	assert_int_equal(certgen_ensure(dir, host, NULL), -EINVAL);
	assert_false(exists_in(dir, "ca.pem"));

	/* A 63-byte host name: the client CN is cut at 64 bytes, its SAN is whole. */
	memset(host, 'h', 63);
	host[63] = '\0';
	assert_int_equal(certgen_ensure(dir, host, NULL), 0);
	node = load_cert(dir, "node.pem");
	client = load_cert(dir, "client.pem");
	assert_cn(node, host);
	snprintf(cn, sizeof(cn), "k2ps@%.59s", host);
	assert_cn(client, cn);
	snprintf(cn, sizeof(cn), "k2ps@%s", host);
	assert_int_equal(X509_check_host(client, cn, 0, 0, NULL), 1);
	rm_rf(dir);
}

/* Processes racing to create the same state directory end up with one consistent set. */
static void test_ensure_race(void **state)
{
	for (int round = 0; round < 5; round++) {
		_cleanup_free_ char *top = tmpdir_new();
		_cleanup_free_ char *dir = path_of(top, "state");
		_cleanup_(X509_freep) X509 *node = NULL;
		_cleanup_(X509_freep) X509 *client = NULL;
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *node_key = NULL;
		pid_t pids[8];
		bool created = true;

		for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0)
				_exit(certgen_ensure(dir, "testhost", NULL) == 0 ? 0 : 1);
		}
		for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
			int status;

			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
		}

		assert_int_equal(certgen_ensure(dir, "testhost", &created), 0);
		assert_false(created);
		node = load_cert(dir, "node.pem");
		client = load_cert(dir, "client.pem");
		node_key = load_key(dir, "node.key");
		assert_int_equal(X509_check_private_key(node, node_key), 1);
		assert_int_equal(verify_against(dir, node, X509_PURPOSE_SSL_SERVER), X509_V_OK);
		assert_int_equal(verify_against(dir, client, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
		rm_rf(top);
	}
}

static void test_issue(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_free_ char *ca_pem = path_of(dir, "ca.pem");
	_cleanup_free_ char *ca_key = path_of(dir, "ca.key");
	_cleanup_free_ char *node_pem = path_of(dir, "node.pem");
	_cleanup_free_ char *node_key = path_of(dir, "node.key");
	_cleanup_free_ char *out_pem = path_of(dir, "other.pem");
	_cleanup_free_ char *out_key = path_of(dir, "other.key");
	_cleanup_free_ char *out2_pem = path_of(dir, "out2.pem");
	_cleanup_free_ char *out2_key = path_of(dir, "out2.key");
	_cleanup_(X509_freep) X509 *x = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *client_key = NULL;
	char *sans[] = { (char *)"DNS:other.example", (char *)"IP:10.1.2.3",
			 (char *)"URI:spiffe://k2i/other", NULL };
	char *one_san[] = { (char *)"DNS:a,IP:1.2.3.4", NULL };
	char *bad_type[] = { (char *)"FOO:x", NULL };
	char *bad_ip[] = { (char *)"IP:not-an-ip", NULL };
	char *empty[] = { (char *)"DNS:", NULL };
	char *space[] = { (char *)"DNS:a b", NULL };
	char long_cn[66];

	assert_int_equal(certgen_ensure(dir, "testhost", NULL), 0);

	assert_int_equal(
		certgen_issue(ca_pem, ca_key, "other.example", sans, true, false, out_pem, out_key),
		0);
	assert_int_equal(mode_of(out_key), 0600);
	assert_int_equal(mode_of(out_pem), 0644);
	x = load_cert(dir, "other.pem");
	assert_cn(x, "other.example");
	assert_int_equal(san_count(x), 3);
	assert_int_equal(X509_check_host(x, "other.example", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
	assert_int_equal(verify_against(dir, x, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	assert_int_equal(verify_against(dir, x, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_INVALID_PURPOSE);

	/* Never overwrites. */
	assert_int_equal(
		certgen_issue(ca_pem, ca_key, "other.example", sans, true, false, out_pem, out_key),
		-EEXIST);

	/* A comma is part of the name, not a separator that adds another one. */
	assert_int_equal(
		certgen_issue(ca_pem, ca_key, "x", one_san, true, true, out2_pem, out2_key), 0);
	X509_free(x);
	x = load_cert(dir, "out2.pem");
	assert_int_equal(san_count(x), 1);
	assert_int_equal(X509_check_ip_asc(x, "1.2.3.4", 0), 0);
	unlink(out2_pem);
	unlink(out2_key);

	/* Bad arguments are refused before anything is written. */
	assert_int_equal(
		certgen_issue(ca_pem, ca_key, "x", bad_type, true, true, out2_pem, out2_key),
		-EINVAL);
	assert_int_equal(certgen_issue(ca_pem, ca_key, "x", bad_ip, true, true, out2_pem, out2_key),
			 -EINVAL);
	assert_int_equal(certgen_issue(ca_pem, ca_key, "x", empty, true, true, out2_pem, out2_key),
			 -EINVAL);
	assert_int_equal(certgen_issue(ca_pem, ca_key, "x", space, true, true, out2_pem, out2_key),
			 -EINVAL);
	assert_int_equal(certgen_issue(ca_pem, ca_key, "x", NULL, false, false, out2_pem, out2_key),
			 -EINVAL);
	assert_int_equal(certgen_issue(ca_pem, ca_key, "", NULL, true, true, out2_pem, out2_key),
			 -EINVAL);
	memset(long_cn, 'c', 65);
	long_cn[65] = '\0';
	assert_int_equal(
		certgen_issue(ca_pem, ca_key, long_cn, NULL, true, true, out2_pem, out2_key),
		-EINVAL);
	/* A CA key that does not exist, does not match, or a CA certificate that is not a CA. */
	assert_int_equal(certgen_issue(ca_pem, out2_key, "x", NULL, true, true, out2_pem, out2_key),
			 -ENOKEY);
	assert_int_equal(certgen_issue(ca_pem, node_key, "x", NULL, true, true, out2_pem, out2_key),
			 -EKEYREJECTED);
	assert_int_equal(
		certgen_issue(node_pem, node_key, "x", NULL, true, true, out2_pem, out2_key),
		-EKEYREJECTED);
	assert_false(exists_in(dir, "out2.pem"));
	assert_false(exists_in(dir, "out2.key"));

	/* An existing key is used, not replaced. */
	{
		_cleanup_free_ char *k = read_in(dir, "client.key");

		assert_int_equal(write_file_atomic(out2_key, k, strlen(k), 0600, 1), 0);
	}
	assert_int_equal(
		certgen_issue(ca_pem, ca_key, "reuse", NULL, false, true, out2_pem, out2_key), 0);
	X509_free(x);
	x = load_cert(dir, "out2.pem");
	client_key = load_key(dir, "client.key");
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), client_key), 1);
	assert_int_equal(san_count(x), 0);
	assert_int_equal(verify_against(dir, x, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

	rm_rf(dir);
}

static void test_ca_new(void **state)
{
	_cleanup_free_ char *dir = tmpdir_new();
	_cleanup_free_ char *cert = path_of(dir, "root.pem");
	_cleanup_free_ char *key = path_of(dir, "root.key");
	_cleanup_(X509_freep) X509 *ca = NULL;

	assert_int_equal(certgen_ca_new("", cert, key), -EINVAL);
	assert_false(exists_in(dir, "root.key"));
	assert_int_equal(certgen_ca_new("Test Root", cert, key), 0);
	assert_int_equal(certgen_ca_new("Test Root", cert, key), -EEXIST);
	ca = load_cert(dir, "root.pem");
	assert_cn(ca, "Test Root");
	assert_int_equal(X509_self_signed(ca, 1), 1);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_int_equal(mode_of(key), 0600);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ensure_fresh),
		cmocka_unit_test(test_ensure_idempotent),
		cmocka_unit_test(test_ensure_reissue_node),
		cmocka_unit_test(test_ensure_completes_interrupted),
		cmocka_unit_test(test_ensure_ca_without_key),
		cmocka_unit_test(test_ensure_shared_ca),
		cmocka_unit_test(test_ensure_inconsistent),
		cmocka_unit_test(test_ensure_bad_args),
		cmocka_unit_test(test_ensure_race),
		cmocka_unit_test(test_issue),
		cmocka_unit_test(test_ca_new),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
