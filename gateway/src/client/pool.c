/*
 * client/pool.c — per-partner pools: configuration checks, the FIFO of
 * requests waiting for a slot, starting transfers, delivering results
 * exactly once, and closing.
 *
 * Invariants: a request is in exactly one place — the pool's FIFO (queued),
 * its running list (an easy handle added to the multi), or being delivered;
 * it is freed right after its callback returns. A pool runs at most
 * start_limit = min(max_in_flight, max_connections) transfers: with HTTP/1.1
 * each running transfer holds one connection, so this bounds the pool's
 * connections too, and requests beyond it wait here, where no curl timeout
 * runs, instead of inside curl.
 */
#include "client/client_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tbgw/error.h"

#define CONTAINER_OF(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

#define PEM_FILE_MAX (1024 * 1024)

/* ---- configuration checks ----------------------------------------------- */

/* Takes the OpenSSL error queue's most specific entry and clears the queue. */
static const char *ossl_reason(char *buf, size_t size) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) snprintf(buf, size, "no detail from OpenSSL");
  else ERR_error_string_n(e, buf, size);
  ERR_clear_error();
  return buf;
}

/* Opens a PEM file for reading into a memory BIO after checking that it is a
 * regular file and, for a private key, that group/others cannot read it. */
static int open_pem(const char *partner, const char *what, const char *path, int is_private,
                    BIO **out, char *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    return tb_errf(err, e == ENOENT ? TB_ENOTFOUND : TB_EIO,
                   "client: partner %s: %s: cannot open %s: %s", partner, what, path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return tb_errf(err, TB_ECONFIG, "client: partner %s: %s: %s is not a regular file", partner,
                   what, path);
  }
  if (is_private && (st.st_mode & 077) != 0) {
    close(fd);
    return tb_errf(err, TB_ECONFIG,
                   "client: partner %s: %s: private key file %s has mode %04o and is readable by "
                   "group/others; run: chmod 600 %s",
                   partner, what, path, (unsigned)(st.st_mode & 07777), path);
  }
  if (st.st_size > PEM_FILE_MAX) {
    close(fd);
    return tb_errf(err, TB_ELIMIT, "client: partner %s: %s: %s is larger than %d bytes", partner,
                   what, path, PEM_FILE_MAX);
  }
  size_t cap = (size_t)st.st_size;
  char *buf = malloc(cap + 1);
  if (buf == NULL) {
    close(fd);
    return tb_errf(err, TB_ENOMEM, "client: out of memory");
  }
  size_t n = 0;
  while (n < cap) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  BIO *bio = BIO_new(BIO_s_mem());
  if (bio == NULL || BIO_write(bio, buf, (int)n) != (int)n) {
    BIO_free(bio);
    OPENSSL_cleanse(buf, cap);
    free(buf);
    ERR_clear_error();
    return tb_errf(err, TB_ENOMEM, "client: out of memory");
  }
  OPENSSL_cleanse(buf, cap);
  free(buf);
  *out = bio;
  return 0;
}

static int check_ca_file(const char *partner, const char *path, char *err) {
  BIO *bio;
  int rc = open_pem(partner, "ca_file", path, 0, &bio, err);
  if (rc != 0) return rc;
  int certs = 0;
  X509 *x;
  while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    certs++;
    X509_free(x);
  }
  ERR_clear_error(); /* the loop always ends on "no start line" */
  BIO_free(bio);
  if (certs == 0)
    return tb_errf(err, TB_EPARSE, "client: partner %s: ca_file: %s holds no PEM certificate",
                   partner, path);
  return 0;
}

static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1; /* encrypted keys are refused: the gateway has nobody to ask */
}

static int check_client_cert(const char *partner, const char *cert_path, const char *key_path,
                             char *err) {
  char why[256];
  BIO *bio;
  int rc = open_pem(partner, "cert_file", cert_path, 0, &bio, err);
  if (rc != 0) return rc;
  X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (cert == NULL)
    return tb_errf(err, TB_EPARSE, "client: partner %s: cert_file: %s is not a PEM certificate: %s",
                   partner, cert_path, ossl_reason(why, sizeof why));
  rc = open_pem(partner, "key_file", key_path, 1, &bio, err);
  if (rc != 0) {
    X509_free(cert);
    return rc;
  }
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
  BIO_free(bio);
  if (key == NULL) {
    X509_free(cert);
    return tb_errf(err, TB_EPARSE,
                   "client: partner %s: key_file: %s is not an unencrypted PEM private key (%s); "
                   "decrypt it with: openssl pkey -in %s -out NEW, then chmod 600 NEW",
                   partner, key_path, ossl_reason(why, sizeof why), key_path);
  }
  int ok = X509_check_private_key(cert, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (ok != 1)
    return tb_errf(err, TB_ECONFIG,
                   "client: partner %s: key_file %s is not the private key of cert_file %s (%s)",
                   partner, key_path, cert_path, ossl_reason(why, sizeof why));
  return 0;
}

/* https only, with a host, and nothing curl would treat as more than a base
 * (credentials, query, fragment). */
static int check_base_url(const char *partner, const char *url, char *err) {
  for (const char *s = url; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
      return tb_errf(err, TB_ECONFIG,
                     "client: partner %s: base_url \"%s\" contains a space or control character",
                     partner, url);
  CURLU *u = curl_url();
  if (u == NULL) return tb_errf(err, TB_ENOMEM, "client: out of memory");
  int rc = 0;
  char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *frag = NULL;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (uc != CURLUE_OK) {
    rc = tb_errf(err, TB_ECONFIG, "client: partner %s: base_url \"%s\" is not a URL: %s", partner,
                 url, curl_url_strerror(uc));
    goto out;
  }
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u, CURLUPART_HOST, &host, 0);
  curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
  if (scheme == NULL || strcmp(scheme, "https") != 0)
    rc = tb_errf(err, TB_ECONFIG, "client: partner %s: base_url \"%s\" is not an https URL",
                 partner, url);
  else if (host == NULL || host[0] == '\0')
    rc = tb_errf(err, TB_ECONFIG, "client: partner %s: base_url \"%s\" has no host", partner, url);
  else if (user != NULL || query != NULL || frag != NULL)
    rc = tb_errf(err, TB_ECONFIG,
                 "client: partner %s: base_url \"%s\" must not carry user info, a query or a "
                 "fragment",
                 partner, url);
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(user);
  curl_free(query);
  curl_free(frag);
  curl_url_cleanup(u);
  return rc;
}

static long ms_to_long(uint64_t v, uint64_t dflt) {
  if (v == 0) v = dflt;
  return v > (uint64_t)LONG_MAX ? LONG_MAX : (long)v;
}

static size_t or_default(size_t v, size_t dflt) { return v == 0 ? dflt : v; }

static char *copy_str(char **cursor, const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = *cursor;
  memcpy(d, s, n);
  *cursor += n;
  return d;
}

int tb_client_pool_add(struct tb_client *c, const struct tb_client_pool_config *pc,
                       struct tb_client_pool **out, char *err) {
  if (c == NULL || pc == NULL || out == NULL)
    return tb_errf(err, TB_EINVAL, "client: pool_add: client, config and out are required");
  *out = NULL;
  if (c->closing) return tb_errf(err, TB_ECLOSED, "client: closing; no new pool");
  const char *name = pc->name;
  if (name == NULL || name[0] == '\0')
    return tb_errf(err, TB_ECONFIG, "client: a partner pool needs a name");
  if (pc->base_url == NULL || pc->base_url[0] == '\0')
    return tb_errf(err, TB_ECONFIG, "client: partner %s: base_url is required", name);
  if (pc->ca_file == NULL || pc->ca_file[0] == '\0')
    return tb_errf(err, TB_ECONFIG,
                   "client: partner %s: ca_file is required (the CA that issued the partner's "
                   "server certificate)",
                   name);
  int has_cert = pc->cert_file != NULL && pc->cert_file[0] != '\0';
  int has_key = pc->key_file != NULL && pc->key_file[0] != '\0';
  if (has_cert != has_key)
    return tb_errf(err, TB_ECONFIG,
                   "client: partner %s: cert_file and key_file go together (mutual TLS needs "
                   "both)",
                   name);
  int rc = check_base_url(name, pc->base_url, err);
  if (rc == 0) rc = check_ca_file(name, pc->ca_file, err);
  if (rc == 0 && has_cert) rc = check_client_cert(name, pc->cert_file, pc->key_file, err);
  if (rc != 0) return rc;

  size_t strs = strlen(name) + strlen(pc->base_url) + strlen(pc->ca_file) + 3;
  if (has_cert) strs += strlen(pc->cert_file) + strlen(pc->key_file) + 2;
  struct tb_client_pool *p = calloc(1, sizeof *p + strs);
  if (p == NULL) return tb_errf(err, TB_ENOMEM, "client: out of memory");
  char *cur = (char *)(p + 1);
  p->client = c;
  p->name = copy_str(&cur, name);
  p->base_url = copy_str(&cur, pc->base_url);
  size_t bl = strlen(p->base_url);
  while (bl > 0 && p->base_url[bl - 1] == '/') p->base_url[--bl] = '\0';
  p->ca_file = copy_str(&cur, pc->ca_file);
  if (has_cert) {
    p->cert_file = copy_str(&cur, pc->cert_file);
    p->key_file = copy_str(&cur, pc->key_file);
  }
  p->connect_timeout_ms = ms_to_long(pc->connect_timeout_ms, 5000);
  p->timeout_ms = ms_to_long(pc->timeout_ms, 30000);
  long idle_ms = ms_to_long(pc->idle_timeout_ms, 60000);
  p->idle_timeout_s = idle_ms < 1000 ? 1 : idle_ms / 1000; /* CURLOPT_MAXAGE_CONN is in seconds */
  p->max_in_flight = or_default(pc->max_in_flight, 8);
  p->max_connections = or_default(pc->max_connections, p->max_in_flight);
  p->max_queued = or_default(pc->max_queued, 10000);
  p->max_response_bytes = or_default(pc->max_response_bytes, (size_t)32 * 1024 * 1024);
  p->max_header_bytes = or_default(pc->max_header_bytes, 16384);
  p->max_header_count = or_default(pc->max_header_count, 100);
  p->start_limit = p->max_in_flight < p->max_connections ? p->max_in_flight : p->max_connections;
  p->no_tls_session_reuse = pc->no_tls_session_reuse != 0;
  uv_timer_init(c->loop, &p->closer);

  p->next = c->pools;
  if (c->pools) c->pools->prev = p;
  c->pools = p;
  tb__client_update_maxconnects(c);
  *out = p;
  return 0;
}

/* ---- requests ----------------------------------------------------------- */

static void req_free(struct tb__client_req *r) {
  tb__client_req_release_response(r);
  curl_slist_free_all(r->headers);
  free(r);
}

static void count(struct tb_client_pool *p, int failed, long connects, int reused) {
  struct tb__client_counters *n[2] = {&p->n, &p->client->n};
  for (int i = 0; i < 2; i++) {
    if (failed) n[i]->failed++;
    else n[i]->completed++;
    if (connects > 0) n[i]->connections_opened += (uint64_t)connects;
    if (reused) n[i]->reused++;
  }
}

/* Builds the result, runs the callback, frees the request. slot (if any)
 * must already be out of the multi. */
static void deliver(struct tb__client_req *r, int transport_error, const char *text) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  struct tb_client_result res;
  memset(&res, 0, sizeof res);
  long connects = 0, reqsize = 0, status = 0;
  uint64_t now = uv_hrtime();
  if (r->slot != NULL) {
    CURL *e = r->slot->easy;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    res.duration_ns = now - r->started_at;
    res.queued_ns = r->started_at - r->queued_at;
  } else {
    res.queued_ns = now - r->queued_at;
  }
  res.http_status = (int)status;
  res.headers = r->harr;
  res.header_count = r->hcount;
  static const unsigned char empty[1] = {0};
  res.body = r->rbody != NULL ? r->rbody : empty;
  res.body_len = r->rlen;
  res.transport_error = transport_error;
  res.error_text = text != NULL ? text : "";
  res.request_sent = reqsize > 0;
  /* Reused: the request went out on a connection this transfer did not
   * open (a transfer that failed to connect opened none either). */
  res.reused_connection = r->slot != NULL && connects == 0 && res.request_sent;
  count(p, transport_error != 0, connects, res.reused_connection);

  struct tb__client_easy *slot = r->slot;
  r->slot = NULL;
  if (slot != NULL) {
    /* The handle goes back before the callback so that a request the
     * callback posts can take it (sequential traffic then uses one handle). */
    tb__client_easy_put(c, slot);
  }
  r->cb(&res, r->ud);
  req_free(r);
}

static void unlink_running(struct tb__client_req *r) {
  struct tb_client_pool *p = r->pool;
  if (r->prev) r->prev->next = r->next;
  else p->running = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  p->in_flight--;
}

/* Hands r to curl. On failure r is untouched (still owned by the caller). */
static int start(struct tb__client_req *r, char *err) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  struct tb__client_easy *slot = tb__client_easy_get(c);
  if (slot == NULL) return tb_errf(err, TB_ENOMEM, "client: out of memory (curl easy handle)");
  int rc = tb__client_req_setup(r, slot->easy, err);
  if (rc != 0) {
    tb__client_easy_put(c, slot);
    return rc;
  }
  CURLMcode mc = curl_multi_add_handle(c->multi, slot->easy);
  if (mc != CURLM_OK) {
    tb__client_easy_put(c, slot);
    return tb_errf(err, mc == CURLM_OUT_OF_MEMORY ? TB_ENOMEM : TB_EINTERNAL,
                   "client: partner %s: curl_multi_add_handle: %s", p->name,
                   curl_multi_strerror(mc));
  }
  r->slot = slot;
  r->started_at = uv_hrtime();
  r->prev = NULL;
  r->next = p->running;
  if (p->running) p->running->prev = r;
  p->running = r;
  p->in_flight++;
  p->n.requests++;
  c->n.requests++;
  return 0;
}

static struct tb__client_req *pop_queued(struct tb_client_pool *p) {
  struct tb__client_req *r = p->q_head;
  if (r == NULL) return NULL;
  p->q_head = r->next;
  if (p->q_head) p->q_head->prev = NULL;
  else p->q_tail = NULL;
  r->next = r->prev = NULL;
  p->queued--;
  return r;
}

/* Starts queued requests while the pool has room. Runs from the loop only
 * (after a completion), never from tb_client_post. */
static void pump(struct tb_client_pool *p) {
  while (!p->closing && !p->client->closing && p->in_flight < p->start_limit &&
         p->q_head != NULL) {
    struct tb__client_req *r = pop_queued(p);
    char msg[TB_ERRMSG_MAX];
    if (start(r, msg) != 0) deliver(r, TB_CLIENT_ELOCAL, msg);
  }
}

/*
 * on_prereq (transfer.c) aborted r before any byte of it was sent, because
 * the reused connection it was given had unread bytes or had been closed by
 * the partner; curl has closed that connection. r goes out again, once, on a
 * fresh connection; it stays in the running list meanwhile, and its caller
 * sees only the second attempt. 0 if r is back in the multi.
 */
static int reissue(struct tb__client_req *r, char *text, size_t size) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  int discard = r->discard;
  r->discard = TB__DISCARD_NONE;
  if (discard == TB__DISCARD_UNREAD) {
    p->n.connections_discarded++;
    c->n.connections_discarded++;
  }
  tb__client_log_discard(p, discard, "before_request");
  curl_multi_remove_handle(c->multi, r->slot->easy);
  const char *why = discard == TB__DISCARD_UNREAD ? "held unsolicited data"
                                                  : "had been closed by the partner";
  if (r->reissued) {
    snprintf(text, size, "partner %s: a fresh connection %s before the request", p->name, why);
    return -1;
  }
  if (p->closing || c->closing) {
    snprintf(text, size, "partner %s: %s closed before the answer", p->name,
             c->closing ? "client" : "pool");
    return -1;
  }
  r->reissued = 1;
  tb__client_req_release_response(r); /* nothing was received; start clean anyway */
  r->headers_done = 0;
  r->too_large = TB__TOO_LARGE_NONE;
  r->oom = 0;
  r->errbuf[0] = '\0';
  CURLcode ec = curl_easy_setopt(r->slot->easy, CURLOPT_FRESH_CONNECT, 1L);
  CURLMcode mc = ec == CURLE_OK ? curl_multi_add_handle(c->multi, r->slot->easy) : CURLM_OK;
  if (ec == CURLE_OK && mc == CURLM_OK) return 0;
  snprintf(text, size, "partner %s: could not resend on a fresh connection: %s", p->name,
           ec != CURLE_OK ? curl_easy_strerror(ec) : curl_multi_strerror(mc));
  return -1;
}

void tb__client_finish(struct tb__client_req *r, CURLcode code) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  if (r->discard != TB__DISCARD_NONE && code == CURLE_ABORTED_BY_CALLBACK) {
    int closing = p->closing || c->closing;
    if (reissue(r, r->errbuf, sizeof r->errbuf) == 0) return;
    /* Nothing was sent: the caller may simply try again. */
    unlink_running(r);
    deliver(r, closing ? TB_CLIENT_ECANCELLED : TB_CLIENT_ERESET, r->errbuf);
    pump(p);
    return;
  }
  tb__client_after_transfer(r, code);
  int category = tb__client_classify(r, code);
  if (category != 0 && r->errbuf[0] == '\0')
    snprintf(r->errbuf, sizeof r->errbuf, "%s", curl_easy_strerror(code));
  if (category == TB_CLIENT_ETOO_LARGE && r->too_large == TB__TOO_LARGE_HEADERS)
    snprintf(r->errbuf, sizeof r->errbuf,
             "partner %s: response headers exceed the cap of %zu bytes or %zu lines", p->name,
             p->max_header_bytes, p->max_header_count);
  else if (category == TB_CLIENT_ETOO_LARGE)
    snprintf(r->errbuf, sizeof r->errbuf,
             "partner %s: response body exceeds the cap of %zu bytes (max_response_bytes)",
             p->name, p->max_response_bytes);
  curl_multi_remove_handle(c->multi, r->slot->easy);
  unlink_running(r);
  deliver(r, category, category != 0 ? r->errbuf : "");
  pump(p);
}

static int valid_path(const char *path) {
  if (path == NULL || path[0] != '/') return 0;
  for (const char *s = path; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '#') return 0;
  return 1;
}

static int valid_value(const char *v) {
  if (v == NULL || v[0] == '\0') return 0;
  for (const char *s = v; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) return 0;
  return 1;
}

/* Appends each "Name: value" line of lines (already checked) to *list. */
static int append_lines(struct curl_slist **list, const char *lines) {
  const char *s = lines;
  char line[8192];
  while (*s) {
    const char *e = strpbrk(s, "\r\n");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n > 0) {
      if (n >= sizeof line) return -1;
      memcpy(line, s, n);
      line[n] = '\0';
      struct curl_slist *l = curl_slist_append(*list, line);
      if (l == NULL) return -1;
      *list = l;
    }
    if (e == NULL) break;
    s = e + (e[0] == '\r' && e[1] == '\n' ? 2 : 1);
  }
  return 0;
}

static int submit(struct tb_client_pool *p, int kind, const char *path, const char *content_type,
                  const char *extra_headers, const void *body, size_t len, tb_client_done_fn cb,
                  void *ud, char *err) {
  if (p == NULL || cb == NULL) return tb_errf(err, TB_EINVAL, "client: pool and callback are required");
  if (p->closing || p->client->closing)
    return tb_errf(err, TB_ECLOSED, "client: partner %s: pool is closing", p->name);
  if (kind == TB__REQ_POST) {
    if (!valid_path(path))
      return tb_errf(err, TB_EINVAL,
                     "client: partner %s: path must start with '/' and hold no space or control "
                     "character",
                     p->name);
    if (!valid_value(content_type))
      return tb_errf(err, TB_EINVAL, "client: partner %s: content_type is required, one line",
                     p->name);
    if (body == NULL && len > 0)
      return tb_errf(err, TB_EINVAL, "client: partner %s: body is NULL with length %zu", p->name,
                     len);
    if (extra_headers != NULL) {
      int rc = tb__client_check_header_lines(extra_headers, err);
      if (rc != 0) return rc;
    }
  }
  int can_start = p->q_head == NULL && p->in_flight < p->start_limit;
  if (!can_start && p->queued >= p->max_queued)
    return tb_errf(err, TB_EBUSY, "client: partner %s: %zu requests already queued", p->name,
                   p->queued);

  size_t blen = strlen(p->base_url);
  size_t plen = kind == TB__REQ_POST ? strlen(path) : 0;
  if (len > SIZE_MAX - sizeof(struct tb__client_req) - blen - plen - 2)
    return tb_errf(err, TB_ENOMEM, "client: body too large");
  struct tb__client_req *r = calloc(1, sizeof *r + blen + plen + 1 + len + 1);
  if (r == NULL) return tb_errf(err, TB_ENOMEM, "client: out of memory");
  r->pool = p;
  r->kind = kind;
  r->cb = cb;
  r->ud = ud;
  r->url = (char *)(r + 1);
  memcpy(r->url, p->base_url, blen);
  if (plen) memcpy(r->url + blen, path, plen);
  r->url[blen + plen] = '\0';
  r->body = (unsigned char *)r->url + blen + plen + 1;
  if (len) memcpy(r->body, body, len);
  r->body[len] = '\0';
  r->body_len = len;
  if (kind == TB__REQ_POST) {
    char ct[1024];
    int fail = 0;
    if (strlen(content_type) > sizeof ct - 16) fail = 1;
    if (!fail) {
      snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
      struct curl_slist *l = curl_slist_append(NULL, ct);
      if (l == NULL) fail = 1;
      r->headers = l;
    }
    if (!fail && extra_headers != NULL && append_lines(&r->headers, extra_headers) != 0) fail = 1;
    /* No "Expect: 100-continue": partners answer the POST as a whole, and
     * waiting for a 100 costs a round trip (or a second) on every big body. */
    if (!fail) {
      struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
      if (l == NULL) fail = 1;
      else r->headers = l;
    }
    if (fail) {
      req_free(r);
      return tb_errf(err, TB_ENOMEM, "client: partner %s: out of memory (or a header line over "
                     "8 KiB)", p->name);
    }
  }
  r->queued_at = uv_hrtime();
  if (can_start) {
    int rc = start(r, err);
    if (rc != 0) {
      req_free(r);
      return rc;
    }
    return 0;
  }
  r->prev = p->q_tail;
  if (p->q_tail) p->q_tail->next = r;
  else p->q_head = r;
  p->q_tail = r;
  p->queued++;
  return 0;
}

int tb_client_post(struct tb_client_pool *p, const char *path, const char *content_type,
                   const char *extra_headers, const void *body, size_t len,
                   tb_client_done_fn cb, void *ud, char *err) {
  return submit(p, TB__REQ_POST, path, content_type, extra_headers, body, len, cb, ud, err);
}

int tb_client_probe(struct tb_client_pool *p, tb_client_done_fn cb, void *ud, char *err) {
  return submit(p, TB__REQ_PROBE, NULL, NULL, NULL, NULL, 0, cb, ud, err);
}

/* ---- stats and close ---------------------------------------------------- */

void tb_client_pool_stats(const struct tb_client_pool *p, struct tb_client_stats *out) {
  memset(out, 0, sizeof *out);
  out->requests = p->n.requests;
  out->completed = p->n.completed;
  out->failed = p->n.failed;
  out->connections_opened = p->n.connections_opened;
  out->reused = p->n.reused;
  out->connections_discarded = p->n.connections_discarded;
  out->in_flight = p->in_flight;
  out->queued = p->queued;
}

static void on_pool_closer_closed(uv_handle_t *h) {
  struct tb_client_pool *p = CONTAINER_OF(h, struct tb_client_pool, closer);
  struct tb_client *c = p->client;
  char text[256];
  snprintf(text, sizeof text, "partner %s: %s closed before the answer", p->name,
           c->closing ? "client" : "pool");
  /* Abort transfers: curl closes their connections (their state is
   * unknown). Callbacks may post: the pool is closing, so they get
   * TB_ECLOSED and nothing is added behind us. */
  while (p->running != NULL) {
    struct tb__client_req *r = p->running;
    curl_multi_remove_handle(c->multi, r->slot->easy);
    unlink_running(r);
    deliver(r, TB_CLIENT_ECANCELLED, text);
  }
  struct tb__client_req *r;
  while ((r = pop_queued(p)) != NULL) deliver(r, TB_CLIENT_ECANCELLED, text);

  if (p->prev) p->prev->next = p->next;
  else c->pools = p->next;
  if (p->next) p->next->prev = p->prev;
  void (*cb)(void *) = p->on_closed;
  void *ud = p->on_closed_ud;
  free(p);
  if (cb != NULL) cb(ud);
  tb__client_pool_gone(c);
}

void tb_client_pool_close(struct tb_client_pool *p, void (*on_closed)(void *ud), void *ud) {
  assert(p != NULL && !p->closing);
  p->closing = 1;
  p->on_closed = on_closed;
  p->on_closed_ud = ud;
  tb__client_update_maxconnects(p->client);
  uv_close((uv_handle_t *)&p->closer, on_pool_closer_closed);
}
