/*
 * http/tls.c — HTTPS for a listener: the SSL_CTX built from a
 * tb_http_tls_config, and per connection one SSL whose I/O is the internal
 * half of a BIO pair. The external half (tls->net) is ours: ciphertext read
 * from the socket is written into it, what OpenSSL wants to send is taken
 * out of it and written to the socket with tb__http_conn_write_raw (straight
 * from the ring when the socket takes it, copied only otherwise). The rings
 * are fixed-size, so buffered ciphertext is capped by construction
 * (TB_HTTP_TLS_RING_IN/OUT); the plaintext limits of the HTTP layer apply
 * unchanged to what SSL_read yields, because it goes through
 * tb__http_conn_recv like any plain read.
 *
 * Input is fed in slices that fit the ring and fully decrypted before the
 * next slice (SSL_read until WANT_READ empties the ring: a partial record
 * moves into OpenSSL's own buffer). So one socket read yields at most its
 * own size plus one record of plaintext, which the pipeline buffer's cap
 * allows for.
 *
 * The handshake is driven by the same reads. It has no timer of its own: a
 * connection is IDLE until its first request, and the IDLE deadline before
 * the first request is the header timeout counted from accept, so a
 * handshake that stalls (slowloris) is closed by it (conn.c). A failed
 * handshake logs one "http.tls.handshake_failed" line (rate-limited per
 * listener) with OpenSSL's reasons, sends the alert OpenSSL wrote and closes
 * through the lingering close so the peer can read that alert.
 *
 * OpenSSL's error queue is per thread and shared with everything else on
 * the loop thread: it is cleared before every SSL call whose result is
 * examined with SSL_get_error, and drained and cleared after a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "http/http_internal.h"
#include "tbgw/error.h"

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only, so no RSA key exchange
 * and no CBC; what Mozilla's "intermediate" profile keeps minus DHE. Curl,
 * OpenSSL, Node, Java 8+ and .NET all negotiate one of these. */
#define TB_TLS12_CIPHERS                                                                  \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                            \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                            \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TB_TLS_GROUPS "X25519:P-256:P-384"
#define TB_TLS_SESSION_TIMEOUT_S 300u
/* Sessions kept for resumption by ID (TLS 1.2 clients without tickets);
 * each holds the client certificate, so a few KiB. */
#define TB_TLS_SESSION_CACHE 4096
#define TB_TLS_VERIFY_DEPTH 5
#define TB_TLS_FILE_MAX (1024 * 1024)

/* ---- errors ------------------------------------------------------------ */

static void append(char *buf, size_t cap, size_t *n, const char *s) {
  size_t len = strlen(s);
  if (*n + 1 >= cap) return;
  if (len > cap - 1 - *n) len = cap - 1 - *n;
  memcpy(buf + *n, s, len);
  *n += len;
  buf[*n] = '\0';
}

/* Drains OpenSSL's error queue into "reason; reason (data)" and clears it.
 * With ssl, a failed certificate verification also names the X509 error
 * ("unable to get local issuer certificate"). Returns buf. */
static const char *ossl_reason(SSL *ssl, const char *fallback, char *buf, size_t cap) {
  size_t n = 0;
  int verify_failed = 0;
  unsigned long e;
  const char *data = NULL;
  int flags = 0;
  buf[0] = '\0';
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
    char tmp[160];
    const char *r = ERR_reason_error_string(e);
    if (r == NULL) {
      ERR_error_string_n(e, tmp, sizeof tmp);
      r = tmp;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      verify_failed = 1;
    if (strstr(buf, r) != NULL) continue; /* the same reason from two layers */
    if (n > 0) append(buf, cap, &n, "; ");
    append(buf, cap, &n, r);
    if ((flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0') {
      append(buf, cap, &n, " (");
      append(buf, cap, &n, data);
      append(buf, cap, &n, ")");
    }
  }
  ERR_clear_error();
  if (verify_failed && ssl != NULL) {
    long v = SSL_get_verify_result(ssl);
    const char *vs = X509_verify_cert_error_string(v);
    if (v != X509_V_OK && strstr(buf, vs) == NULL) {
      append(buf, cap, &n, ": ");
      append(buf, cap, &n, vs);
    }
  }
  if (n == 0) append(buf, cap, &n, fallback);
  return buf;
}

/* ---- files ------------------------------------------------------------- */

/* Reads a PEM file into a NUL-terminated malloc'd buffer. A private key file
 * must be a regular file not readable by group/others (the gateway's rule
 * for every key). The caller cleanses and frees *buf. */
static int read_file(const char *name, const char *what, const char *path, int is_private,
                     char **buf, size_t *len, char *err) {
  *buf = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    return tb_errf(err, e == ENOENT ? TB_ENOTFOUND : TB_EIO, "%s: TLS %s: cannot open %s: %s",
                   name, what, path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return tb_errf(err, TB_EIO, "%s: TLS %s: cannot stat %s: %s", name, what, path,
                   strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return tb_errf(err, TB_ECONFIG, "%s: TLS %s: %s is not a regular file", name, what, path);
  }
  if (is_private && (st.st_mode & 077) != 0) {
    close(fd);
    return tb_errf(err, TB_ECONFIG,
                   "%s: TLS %s: private key file %s has mode %04o and is readable by "
                   "group/others; run: chmod 600 %s",
                   name, what, path, (unsigned)(st.st_mode & 07777), path);
  }
  if (st.st_size > TB_TLS_FILE_MAX) {
    close(fd);
    return tb_errf(err, TB_ELIMIT, "%s: TLS %s: %s is larger than %d bytes", name, what, path,
                   TB_TLS_FILE_MAX);
  }
  size_t cap = (size_t)st.st_size + 1;
  char *p = malloc(cap);
  if (p == NULL) {
    close(fd);
    return tb_errf(err, TB_ENOMEM, "%s: TLS %s: out of memory reading %s", name, what, path);
  }
  size_t n = 0;
  while (n < cap - 1) {
    ssize_t r = read(fd, p + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      OPENSSL_clear_free(p, cap);
      return tb_errf(err, TB_EIO, "%s: TLS %s: cannot read %s: %s", name, what, path,
                     strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  p[n] = '\0';
  *buf = p;
  *len = n;
  return 0;
}

/* Every certificate of a PEM file, in order; TB_EPARSE if there is none. */
static int load_certs(const char *name, const char *what, const char *path,
                      STACK_OF(X509) **out, char *err) {
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(name, what, path, 0, &buf, &len, err);
  if (rc != 0) return rc;
  STACK_OF(X509) *sk = sk_X509_new_null();
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  if (sk == NULL || b == NULL) {
    BIO_free(b);
    sk_X509_free(sk);
    free(buf);
    ERR_clear_error();
    return tb_errf(err, TB_ENOMEM, "%s: TLS %s: out of memory reading %s", name, what, path);
  }
  X509 *x;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_push(sk, x)) {
      X509_free(x);
      break;
    }
  }
  BIO_free(b);
  free(buf);
  if (sk_X509_num(sk) == 0) {
    char r[200];
    sk_X509_free(sk);
    return tb_errf(err, TB_EPARSE, "%s: TLS %s: %s holds no PEM certificate (%s)", name, what,
                   path, ossl_reason(NULL, "no \"BEGIN CERTIFICATE\" block", r, sizeof r));
  }
  ERR_clear_error(); /* the loop ends on "no start line" */
  *out = sk;
  return 0;
}

static int refuse_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1; /* never prompt: an encrypted key is a configuration error */
}

static int load_key(const char *name, const char *path, EVP_PKEY **out, char *err) {
  char *buf = NULL;
  size_t len = 0;
  *out = NULL;
  int rc = read_file(name, "private key", path, 1, &buf, &len, err);
  if (rc != 0) return rc;
  if (strstr(buf, "ENCRYPTED") != NULL) {
    OPENSSL_clear_free(buf, len + 1);
    return tb_errf(err, TB_EPARSE,
                   "%s: TLS private key: %s is encrypted, which is not supported; decrypt "
                   "it (openssl pkey -in %s -out NEW) and chmod 600 the result",
                   name, path, path);
  }
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, refuse_password, NULL) : NULL;
  BIO_free(b);
  OPENSSL_clear_free(buf, len + 1);
  if (pk == NULL) {
    char r[200];
    return tb_errf(err, TB_EPARSE, "%s: TLS private key: %s holds no PEM private key (%s)", name,
                   path, ossl_reason(NULL, "no key found", r, sizeof r));
  }
  *out = pk;
  return 0;
}

static int name_listed(STACK_OF(X509_NAME) *names, const X509_NAME *n) {
  for (int i = 0; i < sk_X509_NAME_num(names); i++)
    if (X509_NAME_cmp(sk_X509_NAME_value(names, i), n) == 0) return 1;
  return 0;
}

/* Trusts every certificate of the client CA files for verification and
 * names each subject once in the CertificateRequest, so that a client with
 * several certificates (curl, browsers) picks the one for this gateway. */
static int load_client_cas(SSL_CTX *ctx, const struct tb_http_tls_config *cfg, const char *name,
                           char *err) {
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
  if (names == NULL) return tb_errf(err, TB_ENOMEM, "%s: out of memory", name);
  for (size_t i = 0; i < cfg->client_ca_count; i++) {
    char what[48];
    snprintf(what, sizeof what, "client CA file [%zu]", i);
    const char *path = cfg->client_ca_files[i];
    if (path == NULL) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return tb_errf(err, TB_ECONFIG, "%s: TLS %s: no file name", name, what);
    }
    STACK_OF(X509) *certs = NULL;
    int rc = load_certs(name, what, path, &certs, err);
    if (rc != 0) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return rc;
    }
    for (int k = 0; k < sk_X509_num(certs) && rc == 0; k++) {
      X509 *x = sk_X509_value(certs, k);
      if (!X509_STORE_add_cert(store, x)) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          char r[200];
          rc = tb_errf(err, TB_ECONFIG, "%s: TLS %s: cannot trust %s: %s", name, what, path,
                       ossl_reason(NULL, "X509_STORE_add_cert failed", r, sizeof r));
        }
        ERR_clear_error();
      }
      const X509_NAME *subj = X509_get_subject_name(x);
      if (rc == 0 && !name_listed(names, subj)) {
        X509_NAME *dup = X509_NAME_dup(subj);
        if (dup == NULL || !sk_X509_NAME_push(names, dup)) {
          X509_NAME_free(dup);
          rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", name);
        }
      }
    }
    sk_X509_pop_free(certs, X509_free);
    if (rc != 0) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return rc;
    }
  }
  SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
  return 0;
}

/* ---- the listener's context ---------------------------------------------- */

static int ctx_setup(SSL_CTX *ctx, const struct tb_http_tls_config *cfg, const char *name,
                     char *err) {
  char r[256];
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
    return tb_errf(err, TB_EINTERNAL, "%s: TLS: cannot set TLS 1.2 as the minimum: %s", name,
                   ossl_reason(NULL, "?", r, sizeof r));
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  /* Partial writes let one SSL_write stop when the out ring is full (we
   * flush and call again); released buffers keep idle connections small. */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx, refuse_password);
  const char *ciphers = cfg->ciphers ? cfg->ciphers : TB_TLS12_CIPHERS;
  if (!SSL_CTX_set_cipher_list(ctx, ciphers))
    return tb_errf(err, TB_ECONFIG, "%s: TLS cipher list \"%s\" selects no cipher (%s)", name,
                   ciphers, ossl_reason(NULL, "?", r, sizeof r));
  if (cfg->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites))
    return tb_errf(err, TB_ECONFIG, "%s: TLS 1.3 ciphersuites \"%s\" are not valid (%s)", name,
                   cfg->ciphersuites, ossl_reason(NULL, "?", r, sizeof r));
  if (!SSL_CTX_set1_groups_list(ctx, TB_TLS_GROUPS)) ERR_clear_error(); /* keep defaults */

  /* Our certificate (first in the file) and its chain (the rest). */
  STACK_OF(X509) *chain = NULL;
  int rc = load_certs(name, "certificate", cfg->certificate_file, &chain, err);
  if (rc != 0) return rc;
  X509 *leaf = sk_X509_shift(chain);
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  /* set0 takes the stack on success */
  if (ok && (ok = SSL_CTX_set0_chain(ctx, chain) == 1)) chain = NULL;
  sk_X509_pop_free(chain, X509_free);
  if (!ok)
    return tb_errf(err, TB_ECONFIG, "%s: TLS certificate %s cannot be used: %s", name,
                   cfg->certificate_file, ossl_reason(NULL, "?", r, sizeof r));
  EVP_PKEY *pk = NULL;
  rc = load_key(name, cfg->private_key_file, &pk, err);
  if (rc != 0) return rc;
  ok = SSL_CTX_use_PrivateKey(ctx, pk);
  EVP_PKEY_free(pk);
  if (!ok || !SSL_CTX_check_private_key(ctx))
    return tb_errf(err, TB_ECONFIG,
                   "%s: TLS private key %s does not belong to the certificate %s (%s)", name,
                   cfg->private_key_file, cfg->certificate_file,
                   ossl_reason(NULL, "?", r, sizeof r));

  if (cfg->verify != TB_HTTP_TLS_VERIFY_NONE) {
    rc = load_client_cas(ctx, cfg, name, err);
    if (rc != 0) return rc;
    int mode = SSL_VERIFY_PEER;
    if (cfg->verify == TB_HTTP_TLS_VERIFY_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, TB_TLS_VERIFY_DEPTH);
  }

  /* Resumption: session IDs in a server-side cache (TLS 1.2) and tickets
   * (TLS 1.2 and 1.3, keys made per context at start). The ID context is
   * required when client certificates are verified; each listener has its
   * own context, cache and ticket keys, so sessions never cross listeners. */
  static const unsigned char sid_ctx[] = "tbgw-http";
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, TB_TLS_SESSION_CACHE);
  SSL_CTX_set_timeout(ctx, cfg->session_timeout_s ? cfg->session_timeout_s
                                                  : TB_TLS_SESSION_TIMEOUT_S);
  ERR_clear_error();
  return 0;
}

int tb__http_tls_ctx_new(const struct tb_http_tls_config *cfg, const char *name,
                         SSL_CTX **out, char *err) {
  *out = NULL;
  if (cfg->certificate_file == NULL || cfg->private_key_file == NULL)
    return tb_errf(err, TB_ECONFIG, "%s: TLS needs a certificate file and a private key file",
                   name);
  if (cfg->verify != TB_HTTP_TLS_VERIFY_NONE && cfg->client_ca_count == 0)
    return tb_errf(err, TB_ECONFIG,
                   "%s: TLS client certificates are %s but no client CA file is configured",
                   name, cfg->verify == TB_HTTP_TLS_VERIFY_REQUIRED ? "required" : "requested");
  if (cfg->verify != TB_HTTP_TLS_VERIFY_NONE && cfg->verify != TB_HTTP_TLS_VERIFY_OPTIONAL &&
      cfg->verify != TB_HTTP_TLS_VERIFY_REQUIRED)
    return tb_errf(err, TB_EINVAL, "%s: TLS verify mode %d is not one of none/optional/required",
                   name, (int)cfg->verify);
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) {
    ERR_clear_error();
    return tb_errf(err, TB_ENOMEM, "%s: TLS: cannot create a context (out of memory?)", name);
  }
  int rc = ctx_setup(ctx, cfg, name, err);
  if (rc != 0) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
  }
  *out = ctx;
  return 0;
}

int tb_http_tls_ca_store_new(const char *pem_file, X509_STORE **out, char *err) {
  *out = NULL;
  STACK_OF(X509) *certs = NULL;
  int rc = load_certs("CA store", "CA file", pem_file, &certs, err);
  if (rc != 0) return rc;
  X509_STORE *st = X509_STORE_new();
  for (int i = 0; st != NULL && i < sk_X509_num(certs); i++) {
    if (!X509_STORE_add_cert(st, sk_X509_value(certs, i)) &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
      X509_STORE_free(st);
      st = NULL;
    }
  }
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  if (st == NULL) return tb_errf(err, TB_ENOMEM, "CA file %s: out of memory", pem_file);
  *out = st;
  return 0;
}

/* ---- one connection ------------------------------------------------------ */

int tb__http_tls_conn_init(struct tb__http_conn *c) {
  struct tb__http_tls *t = calloc(1, sizeof *t);
  if (t == NULL) return -1;
  BIO *inner = NULL;
  t->ssl = SSL_new(c->srv->tls_ctx);
  /* SSL writes into `inner` (ring of RING_OUT bytes, read by us from net);
   * we write into `net` (ring of RING_IN bytes, read by SSL). */
  if (t->ssl == NULL ||
      !BIO_new_bio_pair(&inner, TB_HTTP_TLS_RING_OUT, &t->net, TB_HTTP_TLS_RING_IN)) {
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return -1;
  }
  SSL_set_bio(t->ssl, inner, inner); /* one reference, owned by ssl */
  SSL_set_accept_state(t->ssl);
  c->tls = t;
  return 0;
}

void tb__http_tls_free(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  c->tls = NULL;
  SSL_free(t->ssl);
  BIO_free(t->net);
  free(t->subject);
  free(t);
}

/* Moves everything OpenSSL has written to the socket, in order. */
static int flush(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  for (;;) {
    char *p = NULL;
    int n = BIO_nread0(t->net, &p);
    if (n <= 0) return 0;
    uv_buf_t b = uv_buf_init(p, (unsigned)n);
    int r = tb__http_conn_write_raw(c, &b, 1, NULL); /* copies what the socket leaves */
    char *consumed;
    BIO_nread(t->net, &consumed, n);
    if (r != 0) return r;
  }
}

/* One "http.tls.handshake_failed" line, at most TB_HTTP_TLS_LOG_PER_SEC a
 * second per listener; the next line says how many were left out. */
static void log_handshake_failed(struct tb__http_conn *c, const char *reason) {
  struct tb_http_server *srv = c->srv;
  uint64_t sec = uv_now(srv->loop) / 1000 + 1;
  if (srv->tls_log_sec != sec) {
    srv->tls_log_sec = sec;
    srv->tls_log_n = 0;
  }
  if (srv->tls_log_n >= TB_HTTP_TLS_LOG_PER_SEC) {
    srv->tls_log_suppressed++;
    return;
  }
  srv->tls_log_n++;
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "http.tls.handshake_failed");
  tb_log_str(l, "listener", srv->name);
  tb_log_str(l, "peer", c->peer);
  tb_log_str(l, "reason", reason);
  if (srv->tls_log_suppressed > 0)
    tb_log_int(l, "suppressed", (int64_t)srv->tls_log_suppressed);
  tb_log_end(l);
  srv->tls_log_suppressed = 0;
}

static void handshake_failed(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  char reason[320];
  log_handshake_failed(c, ossl_reason(t->ssl, "handshake failed", reason, sizeof reason));
  t->failed = 1;
  /* OpenSSL wrote an alert (certificate required, unknown CA, protocol
   * version): send it, then close lingering so the peer gets to read it. */
  if (flush(c) != 0 || c->phase == TB__PH_CLOSED) return;
  tb__http_conn_enter(c, TB__PH_DRAIN);
}

static char *name_rfc2253(const X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *s = NULL;
  if (b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s != NULL) {
      memcpy(s, p, (size_t)n);
      s[n] = '\0';
    }
  }
  BIO_free(b);
  ERR_clear_error();
  return s;
}

static void established(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  t->established = 1;
  X509 *cert = SSL_get0_peer_certificate(t->ssl);
  /* Out of memory leaves subject NULL: the request looks unauthenticated,
   * which fails closed. */
  if (cert != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK)
    t->subject = name_rfc2253(X509_get_subject_name(cert));
  struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, "http.tls.handshake");
  tb_log_str(l, "listener", c->srv->name);
  tb_log_str(l, "peer", c->peer);
  tb_log_str(l, "protocol", SSL_get_version(t->ssl));
  tb_log_str(l, "cipher", SSL_get_cipher_name(t->ssl));
  tb_log_int(l, "resumed", SSL_session_reused(t->ssl));
  if (t->subject) tb_log_str(l, "client", t->subject);
  tb_log_end(l);
}

static void fatal(struct tb__http_conn *c, const char *event, const char *fallback) {
  struct tb__http_tls *t = c->tls;
  char reason[320];
  ossl_reason(t->ssl, fallback, reason, sizeof reason);
  t->failed = 1;
  struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, event);
  tb_log_str(l, "peer", c->peer);
  tb_log_str(l, "error", reason);
  tb_log_end(l);
  flush(c); /* the alert, if any */
  tb__http_conn_close(c);
}

static int wants_input(const struct tb__http_conn *c) {
  return c->phase != TB__PH_DRAIN && c->phase != TB__PH_CLOSED && !c->tls->failed;
}

/* Runs OpenSSL on what is in the ring until it wants more input; hands the
 * plaintext to the HTTP layer. Returns 1 while the connection still wants
 * input. */
static int process(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  while (!t->established) {
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
      established(c);
    } else {
      int e = SSL_get_error(t->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        handshake_failed(c);
        return 0;
      }
    }
    /* Our flight, or session tickets after the client's Finished. */
    if (flush(c) != 0 || c->phase == TB__PH_CLOSED) return 0;
    if (!t->established) {
      if (SSL_want_write(t->ssl)) continue;
      return 1; /* WANT_READ: the ring is empty */
    }
  }
  char *buf = c->srv->tls_plain;
  size_t have = 0;
  int peer_closed = 0;
  for (;;) {
    if (have == TB_HTTP_READ_SLAB) {
      tb__http_conn_recv(c, buf, have);
      have = 0;
      if (!wants_input(c)) return 0;
    }
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, buf + have, TB_HTTP_READ_SLAB - have, &got);
    if (r == 1) {
      have += got;
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_WANT_WRITE) { /* e.g. a KeyUpdate answer filled the ring */
      if (flush(c) != 0 || c->phase == TB__PH_CLOSED) return 0;
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the peer's input ends here */
      ERR_clear_error();
      peer_closed = 1;
      break;
    }
    fatal(c, "http.conn.read_error", "TLS read failed");
    return 0;
  }
  if (have > 0) tb__http_conn_recv(c, buf, have);
  if (c->phase == TB__PH_CLOSED || flush(c) != 0 || c->phase == TB__PH_CLOSED) return 0;
  if (peer_closed) {
    c->eof = 1; /* like a FIN: answer what was read, then close */
    return 0;
  }
  return wants_input(c);
}

void tb__http_tls_read(struct tb__http_conn *c, const char *data, size_t len) {
  struct tb__http_tls *t = c->tls;
  if (c->eof || !wants_input(c)) return; /* after close_notify nothing counts */
  t->bytes_in += len;
  while (len > 0) {
    int w = BIO_write(t->net, data, len > INT_MAX ? INT_MAX : (int)len);
    if (w <= 0) { /* cannot happen: process() empties the ring */
      fatal(c, "http.conn.buffer", "TLS input ring full");
      return;
    }
    data += w;
    len -= (size_t)w;
    if (!process(c)) break;
  }
  tb__http_conn_step(c);
}

void tb__http_tls_eof(struct tb__http_conn *c) {
  struct tb__http_tls *t = c->tls;
  /* A bare TCP connect and close (port probes, load balancer checks) is not
   * a failed handshake; one that started and was cut short is. */
  if (t->established || t->failed || t->bytes_in == 0) return;
  t->failed = 1;
  log_handshake_failed(c, "the peer closed the connection during the handshake");
}

/* Writes plaintext through SSL; the ring is flushed whenever it fills. */
static int tls_write(struct tb__http_conn *c, const char *p, size_t n) {
  struct tb__http_tls *t = c->tls;
  while (n > 0) {
    size_t w = 0;
    ERR_clear_error();
    int r = SSL_write_ex(t->ssl, p, n, &w);
    if (r == 1) {
      p += w;
      n -= w;
      continue;
    }
    if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_WRITE) {
      int f = flush(c);
      if (f != 0) return f;
      if (c->phase == TB__PH_CLOSED) return UV_ECANCELED;
      continue;
    }
    fatal(c, "http.conn.write_error", "TLS write failed");
    return UV_EPROTO;
  }
  return 0;
}

int tb__http_tls_send(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                      char *owned) {
  struct tb__http_tls *t = c->tls;
  if (c->phase == TB__PH_CLOSED || !t->established || t->failed || t->shutdown_sent) {
    free(owned);
    return UV_ECANCELED;
  }
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) total += bufs[i].len;
  int r = 0;
  if (nbufs > 1 && total <= TB_HTTP_TLS_RECORD) {
    /* A small answer goes out as one record, not header + body records. */
    char rec[TB_HTTP_TLS_RECORD];
    size_t off = 0;
    for (unsigned i = 0; i < nbufs; i++) {
      memcpy(rec + off, bufs[i].base, bufs[i].len);
      off += bufs[i].len;
    }
    r = tls_write(c, rec, total);
  } else {
    for (unsigned i = 0; i < nbufs && r == 0; i++) r = tls_write(c, bufs[i].base, bufs[i].len);
  }
  free(owned); /* encrypted: the plaintext is no longer needed */
  if (r == 0 && c->phase != TB__PH_CLOSED) r = flush(c);
  return r;
}

void tb__http_tls_close_notify(struct tb__http_conn *c, int queue) {
  struct tb__http_tls *t = c->tls;
  if (t == NULL || !t->established || t->failed || t->shutdown_sent) return;
  t->shutdown_sent = 1;
  ERR_clear_error();
  (void)SSL_shutdown(t->ssl); /* writes close_notify; we do not wait for the peer's */
  ERR_clear_error();
  if (queue) {
    flush(c);
    return;
  }
  /* The handle is about to close: only what the socket takes now, and only
   * if nothing is queued before it. */
  char *p = NULL;
  int n = BIO_nread0(t->net, &p);
  if (n > 0 && c->writes == 0) {
    uv_buf_t b = uv_buf_init(p, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  }
}

/* ---- requests ------------------------------------------------------------ */

int tb_http_request_peer_issued_by(const struct tb_http_request *req, X509_STORE *trusted) {
  if (req == NULL || trusted == NULL || req->peer_subject == NULL) return 0;
  /* Requests are only ever made by the server, inside their connection. */
  const struct tb__http_conn *c = TB__CONTAINER_OF(req, struct tb__http_conn, req);
  if (c->tls == NULL || c->tls->subject == NULL) return 0;
  SSL *ssl = c->tls->ssl;
  X509 *leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == NULL) return 0;
  /* Server side: the chain the client sent, without its leaf (NULL after
   * resumption). */
  STACK_OF(X509) *untrusted = SSL_get_peer_cert_chain(ssl);
  X509_STORE_CTX *vc = X509_STORE_CTX_new();
  int ok = vc != NULL && X509_STORE_CTX_init(vc, trusted, leaf, untrusted) == 1 &&
           X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_CLIENT) == 1 &&
           X509_verify_cert(vc) == 1;
  X509_STORE_CTX_free(vc);
  ERR_clear_error();
  return ok;
}
