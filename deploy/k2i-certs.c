/* SPDX-License-Identifier: MIT */
/*
 * k2i-certs: the certificates of a fleet. One CA (kept off the hosts, or in one place), a node
 * certificate per host for both k2i (HTTPS server, tls_cert/tls_key/tls_ca) and middlecon (peer
 * links, where the certificate's first DNS name is the node's identity), and client
 * certificates for k2ps and scrapers. The cryptography is libcommon/certgen.c's, the same code
 * that makes a single host's first-run material, so both paths produce the same profiles.
 *
 *   k2i-certs ca DIR                          DIR/ca.pem, DIR/ca.key
 *   k2i-certs node --ca DIR --out OUT NAME    OUT/node.pem, OUT/node.key, OUT/ca.pem
 *   k2i-certs client --ca DIR --out OUT NAME  OUT/client.pem, OUT/client.key, OUT/ca.pem
 *   k2i-certs show FILE
 *
 * Nothing is ever overwritten: a re-run that would replace a key or a certificate fails, so a
 * slip of the shell cannot replace a CA that a fleet already trusts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "libcommon/certgen.h"
#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/paths.h"
#include "libcommon/tls.h"

#define PROG "k2i-certs"
/* The X.520 upper bound of a commonName; longer names live on in the subjectAltName. */
#define CN_MAX 64
/* A node name as middlecon accepts it (docs/middlecon-protocol.md). */
#define NODE_NAME_MAX 253
/* More SANs than this is a mistake, not a certificate. */
#define SANS_MAX 64
/* A CA file is a few KiB; refuse to copy anything much larger. */
#define CA_FILE_MAX (1024 * 1024)

DEFINE_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)
DEFINE_CLEANUP_FUNC(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free)
DEFINE_CLEANUP_FUNC(ASN1_BIT_STRING, ASN1_BIT_STRING_free)

enum cert_kind {
	KIND_NODE,
	KIND_CLIENT,
};

static void help(void)
{
	printf("Usage: " PROG " COMMAND [OPTIONS] ARGS\n"
	       "Issue the TLS certificates of a k2i/middlecon fleet from one private CA.\n\n"
	       "Commands:\n"
	       "  ca [--name CN] DIR          create a CA: DIR/ca.pem and DIR/ca.key (DIR mode 0700)\n"
	       "  node --ca DIR --out OUTDIR [--san DNS:x|IP:y|URI:z]... NAME\n"
	       "                              a host's certificate: OUTDIR/node.pem, node.key and a\n"
	       "                              copy of ca.pem (CN and first DNS name NAME; serverAuth\n"
	       "                              and clientAuth) for k2i and middlecon\n"
	       "  client --ca DIR --out OUTDIR NAME\n"
	       "                              a client certificate (clientAuth) for k2ps or a\n"
	       "                              scraper: OUTDIR/client.pem, client.key, ca.pem\n"
	       "  show FILE                   print a certificate's subject, names, issuer,\n"
	       "                              validity and usages, one per line\n\n"
	       "Options:\n"
	       "  -h, --help                  show this help\n"
	       "      --version               show the version\n\n"
	       "Keys are EC P-256 (mode 0600), certificates valid for 825 days (the CA for 10\n"
	       "years). Existing files are never overwritten.\n");
}

/* Prints a one-line usage error and the hint; returns the exit status 2. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *format, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputs("\nTry '" PROG " --help' for more information.\n", stderr);
	return 2;
}

/*
 * The usage error for what getopt_long() (with opterr = 0 and a leading ':') returned: ':' for
 * a missing argument, '?' for an unknown option, which is argv[optind - 1].
 */
static int bad_option(const char *cmd, int opt, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (opt == ':')
		return usage_error("%s: option '%s' needs an argument", cmd, arg);
	return usage_error("%s: unknown option '%s'", cmd, arg);
}

/* Prints a one-line failure for @path; returns the exit status 1. */
static int fail(const char *path, const char *what)
{
	fprintf(stderr, PROG ": %s: %s\n", path, what);
	return 1;
}

/*
 * A node name as middlecon accepts it; a client name may also hold '@' (k2i's own first-run
 * client certificate is "k2ps@<host>"). Both are valid DNS SANs for certgen.
 */
static bool name_valid(const char *s, bool allow_at)
{
	size_t n = strlen(s);

	if (n == 0 || n > NODE_NAME_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
		      (allow_at && *p == '@')))
			return false;
	return true;
}

/* Returns 1 if @path exists (as anything), 0 if not, or -errno. */
static int exists(const char *path)
{
	struct stat st;

	if (lstat(path, &st) >= 0)
		return 1;
	return errno == ENOENT ? 0 : negative_errno();
}

/*
 * Fails (exit status 1, message printed) if @path exists, so that an existing key or
 * certificate is never replaced. Returns 0 if it does not.
 */
static int refuse_existing(const char *path, const char *what)
{
	int r = exists(path);

	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", path);
		return 1;
	}
	if (r > 0) {
		fprintf(stderr, PROG ": %s: %s exists, not overwriting\n", path, what);
		return 1;
	}
	return 0;
}

/* Explains a certgen error about @path in one line; returns the exit status 1. */
static int certgen_fail(int r, const char *path, const char *ca_key)
{
	switch (r) {
	case -EEXIST:
		return fail(path, "certificate exists, not overwriting");
	case -ENOKEY:
		return fail(ca_key, "CA key is missing");
	case -EKEYREJECTED:
		return fail(ca_key, "CA key does not match the CA certificate, or that is no CA");
	case -EBADMSG:
		return fail(path, "cannot parse a PEM file of the CA (or an existing key)");
	case -EINVAL:
		return fail(path, "invalid name or subjectAltName");
	default:
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", path);
		return 1;
	}
}

static int cmd_ca(int argc, char **argv)
{
	static const struct option options[] = {
		{ "name", required_argument, NULL, 'n' },
		{},
	};
	_cleanup_free_ char *cert = NULL;
	_cleanup_free_ char *key = NULL;
	const char *name = "k2i CA", *dir;
	int opt, r;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:n:", options, NULL)) >= 0) {
		if (opt == 'n')
			name = optarg;
		else
			return bad_option("ca", opt, argv);
	}
	if (argc - optind != 1)
		return usage_error("ca: expected one directory");
	dir = argv[optind];
	if (strlen(name) == 0 || strlen(name) > CN_MAX)
		return usage_error("ca: --name must be 1..%d bytes", CN_MAX);
	if (path_join(dir, "ca.pem", &cert) < 0 || path_join(dir, "ca.key", &key) < 0)
		return fail(dir, "out of memory");

	/*
	 * certgen would complete a half-written CA by reusing a lone key; a tool run by hand
	 * refuses instead, because a stray ca.key is as likely someone else's as an interrupted run.
	 */
	if (refuse_existing(cert, "certificate") || refuse_existing(key, "key"))
		return 1;
	/* Only a directory made here gets 0700: an existing one (/etc/k2i?) keeps its mode. */
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: cannot create directory: %m\n", dir);
		return 1;
	}
	r = certgen_ca_new(name, cert, key);
	if (r < 0)
		return certgen_fail(r, cert, key);
	printf("Created CA '%s': %s %s\n", name, cert, key);
	return 0;
}

/*
 * Copies the CA certificate to @out unless an identical file is already there (the same
 * directory, or a second certificate issued into it). A different CA is never replaced.
 * Returns 0, or prints why not and returns 1.
 */
static int copy_ca(const char *ca_cert, const char *out)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ char *old = NULL;
	size_t len, old_len;
	int r;

	r = read_full_file_at(AT_FDCWD, ca_cert, CA_FILE_MAX, &data, &len);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", ca_cert);
		return 1;
	}
	r = read_full_file_at(AT_FDCWD, out, CA_FILE_MAX, &old, &old_len);
	if (r >= 0) {
		if (old_len == len && memcmp(old, data, len) == 0)
			return 0;
		return fail(out, "a different CA certificate exists, not overwriting");
	}
	if (r != -ENOENT) {
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", out);
		return 1;
	}
	r = write_file_atomic(out, data, len, 0644, true);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: cannot write: %m\n", out);
		return 1;
	}
	return 0;
}

/* Returns whether @out (which may not exist) would take a copy of @ca_cert without conflict. */
static int check_ca_copy(const char *ca_cert, const char *out)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ char *old = NULL;
	size_t len, old_len;
	int r;

	r = read_full_file_at(AT_FDCWD, out, CA_FILE_MAX, &old, &old_len);
	if (r == -ENOENT)
		return 0;
	if (r >= 0)
		r = read_full_file_at(AT_FDCWD, ca_cert, CA_FILE_MAX, &data, &len);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", r == -ENOENT ? ca_cert : out);
		return 1;
	}
	if (old_len != len || memcmp(old, data, len) != 0)
		return fail(out, "a different CA certificate exists, not overwriting");
	return 0;
}

static int cmd_issue(int argc, char **argv, enum cert_kind kind)
{
	static const struct option options[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "san", required_argument, NULL, 's' },
		{},
	};
	const char *cmd = kind == KIND_NODE ? "node" : "client";
	const char *base = kind == KIND_NODE ? "node" : "client";
	_cleanup_free_ char *ca_cert = NULL;
	_cleanup_free_ char *ca_key = NULL;
	_cleanup_free_ char *out_cert = NULL;
	_cleanup_free_ char *out_key = NULL;
	_cleanup_free_ char *out_ca = NULL;
	_cleanup_free_ char *dns = NULL;
	char *sans[SANS_MAX + 2] = {};
	char cn[CN_MAX + 1];
	const char *ca_dir = NULL, *out_dir = NULL, *name;
	size_t n_sans = 1;
	int opt, r;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:o:s:", options, NULL)) >= 0) {
		switch (opt) {
		case 'c':
			ca_dir = optarg;
			break;
		case 'o':
			out_dir = optarg;
			break;
		case 's':
			if (kind != KIND_NODE)
				return usage_error("client: --san is for node certificates");
			if (n_sans > SANS_MAX)
				return usage_error("%s: at most %d --san", cmd, SANS_MAX);
			if (strncmp(optarg, "DNS:", 4) != 0 && strncmp(optarg, "IP:", 3) != 0 &&
			    strncmp(optarg, "URI:", 4) != 0)
				return usage_error(
					"%s: --san takes DNS:name, IP:address or URI:uri, "
					"not '%s'",
					cmd, optarg);
			sans[n_sans++] = optarg;
			break;
		default:
			return bad_option(cmd, opt, argv);
		}
	}
	if (!ca_dir || !out_dir)
		return usage_error("%s: --ca DIR and --out OUTDIR are required", cmd);
	if (argc - optind != 1)
		return usage_error("%s: expected one NAME", cmd);
	name = argv[optind];
	if (!name_valid(name, kind == KIND_CLIENT))
		return usage_error("%s: invalid name '%s' (1..%d of A-Z a-z 0-9 . - _%s)", cmd,
				   name, NODE_NAME_MAX, kind == KIND_CLIENT ? " @" : "");

	/* The name is the certificate's identity: its first DNS name (middlecon) and its CN. */
	if (asprintf(&dns, "DNS:%s", name) < 0)
		return fail(name, "out of memory");
	sans[0] = dns;
	snprintf(cn, sizeof(cn), "%s", name);

	if (path_join(ca_dir, "ca.pem", &ca_cert) < 0 || path_join(ca_dir, "ca.key", &ca_key) < 0 ||
	    asprintf(&out_cert, "%s/%s.pem", out_dir, base) < 0 ||
	    asprintf(&out_key, "%s/%s.key", out_dir, base) < 0 ||
	    path_join(out_dir, "ca.pem", &out_ca) < 0)
		return fail(name, "out of memory");

	/* Every refusal happens before anything is written. */
	if (refuse_existing(out_cert, "certificate") || refuse_existing(out_key, "key"))
		return 1;
	r = exists(ca_cert);
	if (r <= 0)
		return fail(ca_cert, r == 0 ?
					     "no CA certificate here (k2i-certs ca DIR makes one)" :
					     "cannot read the CA certificate");
	if (check_ca_copy(ca_cert, out_ca))
		return 1;
	r = mkdir_p(out_dir, 0755);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: cannot create directory: %m\n", out_dir);
		return 1;
	}
	r = certgen_issue(ca_cert, ca_key, cn, sans, kind == KIND_NODE, true, out_cert, out_key);
	if (r < 0)
		return certgen_fail(r, out_cert, ca_key);
	if (copy_ca(ca_cert, out_ca))
		return 1;
	printf("Issued %s certificate '%s': %s %s %s\n", cmd, name, out_cert, out_key, out_ca);
	return 0;
}

/* Prints "LABEL: TIME" in RFC 3339 (UTC). */
static void print_time(const char *label, const ASN1_TIME *t)
{
	struct tm tm = {};

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
		printf("%s: ?\n", label);
		return;
	}
	printf("%s: %04d-%02d-%02dT%02d:%02d:%02dZ\n", label, tm.tm_year + 1900, tm.tm_mon + 1,
	       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Prints "LABEL: NAME" in RFC 2253 form (control characters escaped). Returns 0 or -ENOMEM. */
static int print_name(const char *label, const X509_NAME *name)
{
	_cleanup_(BIO_freep) BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long n;

	if (!b)
		return -ENOMEM;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0)
		return -ENOMEM;
	n = BIO_get_mem_data(b, &data);
	printf("%s: %.*s\n", label, (int)n, data);
	return 0;
}

/*
 * Prints "san: TYPE:VALUE" for each subjectAltName entry. show reads any file it is given, so
 * bytes outside printable ASCII are printed as '?', never as terminal control sequences.
 */
static void print_sans(X509 *x)
{
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens =
		X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *s;
		char ip[64];

		switch (g->type) {
		case GEN_DNS:
		case GEN_URI:
			s = g->d.ia5;
			printf("san: %s:", g->type == GEN_DNS ? "DNS" : "URI");
			for (int k = 0; k < ASN1_STRING_length(s); k++) {
				unsigned char c = ASN1_STRING_get0_data(s)[k];

				putchar(c >= 0x20 && c < 0x7f ? c : '?');
			}
			putchar('\n');
			break;
		case GEN_IPADD: {
			int n = ASN1_STRING_length(g->d.ip);

			if ((n == 4 || n == 16) &&
			    inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.ip),
				      ip, sizeof(ip)))
				printf("san: IP:%s\n", ip);
			else
				printf("san: IP:?\n");
			break;
		}
		default:
			printf("san: (other)\n");
		}
	}
}

/* Prints whether @x is a CA, then its key usages and extended key usages, one per line. */
static void print_usages(X509 *x)
{
	static const struct {
		int bit;
		const char *name;
	} key_usages[] = {
		{ 0, "digitalSignature" }, { 1, "nonRepudiation" }, { 2, "keyEncipherment" },
		{ 3, "dataEncipherment" }, { 4, "keyAgreement" },   { 5, "keyCertSign" },
		{ 6, "cRLSign" },
	};
	_cleanup_(ASN1_BIT_STRING_freep) ASN1_BIT_STRING *ku =
		X509_get_ext_d2i(x, NID_key_usage, NULL, NULL);
	_cleanup_(EXTENDED_KEY_USAGE_freep) EXTENDED_KEY_USAGE *eku =
		X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);

	printf("ca: %s\n", X509_check_ca(x) ? "yes" : "no");
	for (size_t i = 0; ku && i < ELEMENTSOF(key_usages); i++)
		if (ASN1_BIT_STRING_get_bit(ku, key_usages[i].bit))
			printf("key_usage: %s\n", key_usages[i].name);
	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++) {
		int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));

		/* serverAuth and clientAuth by their short names, as openssl and the docs say. */
		printf("extended_key_usage: %s\n", nid != NID_undef ? OBJ_nid2sn(nid) : "(other)");
	}
}

static int cmd_show(int argc, char **argv)
{
	_cleanup_(tls_x509_stack_freep) STACK_OF(X509) *certs = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	X509 *x;
	int r;

	if (argc != 2 || argv[1][0] == '-')
		return usage_error("show: expected one certificate FILE");
	r = tls_load_certs(argv[1], &certs);
	if (r == -EBADMSG)
		return fail(argv[1], "not a PEM certificate");
	if (r < 0) {
		errno = -r;
		fprintf(stderr, PROG ": %s: %m\n", argv[1]);
		return 1;
	}
	x = sk_X509_value(certs, 0);
	if (print_name("subject", X509_get_subject_name(x)) < 0)
		return fail(argv[1], "out of memory");
	print_sans(x);
	if (print_name("issuer", X509_get_issuer_name(x)) < 0)
		return fail(argv[1], "out of memory");
	print_time("not_before", X509_get0_notBefore(x));
	print_time("not_after", X509_get0_notAfter(x));
	print_usages(x);
	if (X509_digest(x, EVP_sha256(), md, &md_len) == 1) {
		printf("sha256: ");
		for (unsigned int i = 0; i < md_len; i++)
			printf("%02x%s", md[i], i + 1 < md_len ? ":" : "\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	/* Library diagnostics (certgen logs at debug level only) stay quiet unless asked for. */
	log_set_max_level(LOG_WARNING);
	if (argc < 2)
		return usage_error("missing command (ca, node, client or show)");
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		help();
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf(PROG " 0.1.0\n");
		return 0;
	}
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			help();
			return 0;
		}
	/* Sub-commands see their own argv, argv[0] being the command's name. */
	if (strcmp(cmd, "ca") == 0)
		return cmd_ca(argc - 1, argv + 1);
	if (strcmp(cmd, "node") == 0)
		return cmd_issue(argc - 1, argv + 1, KIND_NODE);
	if (strcmp(cmd, "client") == 0)
		return cmd_issue(argc - 1, argv + 1, KIND_CLIENT);
	if (strcmp(cmd, "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", cmd);
}
