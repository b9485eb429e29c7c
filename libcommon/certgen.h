/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * First-run TLS material: a private CA, and node and client certificates signed by it, so that
 * HTTPS and mutual TLS work with no set-up.
 *
 * All keys are EC P-256, written unencrypted in PKCS#8 PEM with mode 0600; certificates are PEM
 * with mode 0644. Every file is written atomically and exclusively: an existing file is never
 * overwritten, so processes racing to create the same files agree on one set.
 *
 * Errors besides the usual -errno of file system calls: -EINVAL (bad argument), -EEXIST (an
 * output file exists), -ENOKEY (a key needed to issue or to pair with a certificate is
 * missing), -EKEYREJECTED (a key does not match its certificate, or a certificate was not
 * issued by the CA), -EBADMSG (a PEM file cannot be parsed), -EIO (another OpenSSL failure),
 * -ENOMEM.
 */

#include <stdbool.h>

/*
 * Makes sure that @state_dir (created with mode 0700 if missing, parents included) holds a
 * consistent set of ca.pem ca.key node.pem node.key client.pem client.key for @hostname (a
 * host name of letters, digits, '.', '-' and '_', at most 253 bytes):
 *
 * - nothing there: creates a CA ("k2i CA <hostname>", 10 years), then a node certificate
 *   (CN and DNS <hostname>, DNS localhost, IP 127.0.0.1 and ::1; serverAuth and clientAuth)
 *   and a client certificate (CN and DNS "k2ps@<hostname>"; clientAuth), both for 825 days;
 * - ca.pem and ca.key there: issues the missing node and client certificates from that CA
 *   (copying ca.pem and ca.key to several hosts makes them share one CA);
 * - a certificate needs issuing but ca.key is missing: -ENOKEY, nothing written;
 * - a certificate without its key, or node/client certificates without any CA: -ENOKEY;
 * - a key without its certificate (an interrupted earlier run): a certificate is issued for
 *   that key.
 * Subject CNs longer than the X.509 limit of 64 bytes are cut short; the subjectAltName
 * always holds the whole name.
 *
 * Finally checks that every certificate matches its key and that node.pem and client.pem were
 * issued by ca.pem (-EKEYREJECTED otherwise). Expiry is not checked.
 *
 * *ret_created (may be NULL) is set to whether this call wrote any file. Returns 0 or -errno.
 */
int certgen_ensure(const char *state_dir, const char *hostname, bool *ret_created);

/*
 * Creates a self-signed CA: basicConstraints critical CA:TRUE, pathlen:0; keyUsage critical
 * keyCertSign, cRLSign; a subjectKeyIdentifier; valid from one hour ago for 10 years; subject
 * CN @common_name (1..64 bytes of UTF-8).
 *
 * The key is written to @out_key first, then the certificate to @out_cert. If @out_key already
 * exists its key is used instead of a new one, so an interrupted run can be completed.
 *
 * Returns 0, or -EEXIST (@out_cert exists), -EINVAL, the errors of reading an existing
 * @out_key, or of writing either file.
 */
int certgen_ca_new(const char *common_name, const char *out_cert, const char *out_key);

/*
 * Issues a certificate signed by the CA in @ca_cert_file (its first certificate) and
 * @ca_key_file: subject CN @common_name (1..64 bytes of UTF-8), subjectAltName from @sans
 * (NULL or a NULL-terminated list of "DNS:name", "IP:address" or "URI:uri" strings, printable
 * ASCII, no spaces); basicConstraints critical CA:FALSE; keyUsage critical digitalSignature;
 * extendedKeyUsage serverAuth if @server_auth, clientAuth if @client_auth (at least one of
 * them); subject and authority key identifiers; valid from one hour ago for 825 days.
 *
 * As in certgen_ca_new(), an existing @out_key is reused, and @out_cert is never overwritten.
 * All arguments are checked before anything is written.
 *
 * Returns 0, or -EEXIST (@out_cert exists), -EINVAL (bad name, SAN, or no usage), -ENOKEY (no
 * CA key file), -EKEYREJECTED (the CA key does not match, or the CA certificate is not a CA),
 * -EBADMSG, the errors of reading and writing the files.
 */
int certgen_issue(const char *ca_cert_file, const char *ca_key_file, const char *common_name,
		  char *const *sans, bool server_auth, bool client_auth, const char *out_cert,
		  const char *out_key);
