/*
 * audit/writer.c — the append side: continue the chain of an existing file
 * (reading only its tail), buffer records, write each batch with one write()
 * and one fdatasync(), rotate without breaking the chain.
 *
 * Rotation is crash-safe: the new file is written complete (its link record
 * synced) as PATH.tmp first, then PATH → PATH.<seq> and PATH.tmp → PATH.
 * tb_audit_open finishes a rotation that stopped between the two renames
 * (PATH missing, PATH.tmp present) and drops a PATH.tmp that never got
 * renamed (PATH still present: the rotation simply happens again).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit_internal.h"
#include "core/log.h"

#define DEFAULT_MAX_PENDING (4u * 1024 * 1024)

struct tb_audit {
  char *path;
  int fd;
  struct tb_audit_options opts;
  int64_t seq;                   /* last record appended (buffered included) */
  char hash[TB_DIGEST_HEX_LEN];  /* its hash */
  uint64_t file_size;            /* bytes on disk in PATH */
  struct tb__audit_buf pending;  /* formatted records not yet written */
  struct tb_audit_stats stats;
};

static int io_err(char *err, const char *what, const char *path) {
  return tb_errf(err, TB_EIO, "audit: %s %s: %s", what, path, strerror(errno));
}

/* fsync the directory holding path, so renames and creations are durable. */
static int sync_dir(const char *path, char *err) {
  char *copy = strdup(path);
  if (copy == NULL) return tb_errf(err, TB_ENOMEM, "audit: out of memory");
  const char *dir = dirname(copy);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = 0;
  if (dfd < 0 || fsync(dfd) != 0) rc = io_err(err, "fsync directory", dir);
  if (dfd >= 0) close(dfd);
  free(copy);
  return rc;
}

static int write_all(struct tb_audit *a, int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    a->stats.writes++;
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Offset of the last '\n' in [0, end), or -1. Reads backwards in chunks. */
static int64_t find_nl_before(int fd, int64_t end, int64_t limit_back, char *err,
                              const char *path, int *rc) {
  char chunk[65536];
  int64_t pos = end;
  *rc = 0;
  while (pos > 0) {
    if (limit_back >= 0 && end - pos > limit_back) return -2;
    size_t n = pos >= (int64_t)sizeof chunk ? sizeof chunk : (size_t)pos;
    ssize_t r = pread(fd, chunk, n, (off_t)(pos - (int64_t)n));
    if (r != (ssize_t)n) {
      *rc = io_err(err, "read", path);
      return -1;
    }
    for (size_t i = n; i > 0; i--)
      if (chunk[i - 1] == '\n') return pos - (int64_t)n + (int64_t)(i - 1);
    pos -= (int64_t)n;
  }
  return -1;
}

/* Reads the chain head from the end of the open file (see tb_audit_open). */
static int load_tail(struct tb_audit *a, char *err) {
  struct stat st;
  if (fstat(a->fd, &st) != 0) return io_err(err, "stat", a->path);
  int64_t size = (int64_t)st.st_size;
  a->seq = 0;
  memcpy(a->hash, TB_AUDIT_GENESIS_HASH, sizeof a->hash);
  a->file_size = 0;
  if (size == 0) return 0;
  int rc;
  int64_t nl1 = find_nl_before(a->fd, size, -1, err, a->path, &rc);
  if (rc != 0) return rc;
  int64_t keep = nl1 + 1; /* 0 when no complete line at all */
  if (nl1 >= 0) {
    int64_t nl0 = find_nl_before(a->fd, nl1, TB_AUDIT_RECORD_MAX, err, a->path, &rc);
    if (rc != 0) return rc;
    if (nl0 == -2)
      return tb_errf(err, TB_EPARSE,
                     "audit: %s: the last record is longer than %d bytes: run `tbgw audit "
                     "verify %s` and move the file aside",
                     a->path, TB_AUDIT_RECORD_MAX, a->path);
    size_t len = (size_t)(nl1 - (nl0 + 1));
    char *line = malloc(len + 1);
    if (line == NULL) return tb_errf(err, TB_ENOMEM, "audit: out of memory");
    if (pread(a->fd, line, len, (off_t)(nl0 + 1)) != (ssize_t)len) {
      free(line);
      return io_err(err, "read", a->path);
    }
    struct tb__audit_rec r;
    char why[TB_ERRMSG_MAX] = "its hash does not match its content", h[TB_DIGEST_HEX_LEN];
    int ok = tb__audit_rec_parse(line, len, &r, why) == 0 &&
             tb__audit_rec_hash_ok(line, &r, h, why) == 1;
    if (ok) {
      a->seq = r.seq;
      memcpy(a->hash, r.hash, 64);
      a->hash[64] = '\0';
    }
    free(line);
    if (!ok)
      return tb_errf(err, TB_EPARSE,
                     "audit: %s: the last record is not a valid audit record (%s): run `tbgw "
                     "audit verify %s` and move the file aside",
                     a->path, why, a->path);
  }
  if (keep < size) {
    /* A batch write cut short: its records never counted as written. */
    if (ftruncate(a->fd, (off_t)keep) != 0 || fdatasync(a->fd) != 0)
      return io_err(err, "truncate the partial last line of", a->path);
    char detail[96];
    snprintf(detail, sizeof detail, "{\"bytes\":%lld}", (long long)(size - keep));
    struct tb_audit_event ev = {.event = TB_AUDIT_EV_TAIL_DISCARDED, .actor = "system",
                                .outcome = "repaired", .detail_json = detail};
    a->file_size = (uint64_t)keep;
    return tb_audit_append(a, &ev, err);
  }
  a->file_size = (uint64_t)size;
  return 0;
}

static char *tmp_path(const char *path) {
  size_t n = strlen(path) + 5;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s.tmp", path);
  return p;
}

int tb_audit_open(const char *path, const struct tb_audit_options *opts, struct tb_audit **out,
                  char *err) {
  *out = NULL;
  struct tb_audit *a = calloc(1, sizeof *a);
  if (a == NULL || (a->path = strdup(path)) == NULL) {
    free(a);
    return tb_errf(err, TB_ENOMEM, "audit: out of memory");
  }
  a->fd = -1;
  if (opts) a->opts = *opts;
  if (a->opts.max_pending_bytes == 0) a->opts.max_pending_bytes = DEFAULT_MAX_PENDING;
  int rc = 0;
  char *tmp = tmp_path(path);
  if (tmp == NULL) rc = tb_errf(err, TB_ENOMEM, "audit: out of memory");
  struct stat st;
  if (rc == 0 && stat(tmp, &st) == 0) {
    if (stat(path, &st) != 0 && errno == ENOENT) {
      if (rename(tmp, path) != 0) rc = io_err(err, "finish the rotation to", path);
    } else if (unlink(tmp) != 0) {
      rc = io_err(err, "remove the unfinished rotation", tmp);
    }
  }
  free(tmp);
  int created = 0;
  if (rc == 0) {
    created = stat(path, &st) != 0;
    a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (a->fd < 0) rc = io_err(err, "open", path);
  }
  if (rc == 0 && flock(a->fd, LOCK_EX | LOCK_NB) != 0)
    rc = errno == EWOULDBLOCK
             ? tb_errf(err, TB_EBUSY, "audit: %s is being written by another process", path)
             : io_err(err, "lock", path);
  if (rc == 0 && created) rc = sync_dir(path, err);
  if (rc == 0) rc = load_tail(a, err);
  if (rc != 0) {
    tb__audit_buf_free(&a->pending);
    if (a->fd >= 0) close(a->fd);
    free(a->path);
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

int tb_audit_append(struct tb_audit *a, const struct tb_audit_event *ev, char *err) {
  char h[TB_DIGEST_HEX_LEN];
  int rc = tb__audit_format(&a->pending, a->seq + 1, a->hash, ev, h, err);
  if (rc != 0) return rc;
  a->seq++;
  memcpy(a->hash, h, sizeof a->hash);
  a->stats.records++;
  if (a->pending.len >= a->opts.max_pending_bytes) return tb_audit_flush(a, err);
  return 0;
}

/* PATH → PATH.<last seq>, PATH.tmp (holding the link record) → PATH. */
static int rotate(struct tb_audit *a, char *err) {
  size_t n = strlen(a->path) + 32;
  char *rotated = malloc(n), *tmp = tmp_path(a->path);
  struct tb__audit_buf link = {0};
  int rc = 0, fd = -1;
  if (rotated == NULL || tmp == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "audit: out of memory");
    goto out;
  }
  snprintf(rotated, n, "%s.%019lld", a->path, (long long)a->seq);
  struct stat st;
  if (stat(rotated, &st) == 0) {
    rc = tb_errf(err, TB_EEXISTS, "audit: cannot rotate: %s already exists", rotated);
    goto out;
  }
  /* The link names the rotated file by its base name: operators move sets. */
  const char *base = strrchr(rotated, '/');
  base = base ? base + 1 : rotated;
  struct tb__audit_buf detail = {0};
  char num[96];
  snprintf(num, sizeof num, ",\"prev_last_seq\":%lld,\"prev_bytes\":%llu}", (long long)a->seq,
           (unsigned long long)a->file_size);
  rc = tb__audit_buf_adds(&detail, "{\"prev_file\":");
  if (rc == 0) rc = tb__audit_buf_add_jstr(&detail, base);
  if (rc == 0) rc = tb__audit_buf_adds(&detail, num);
  char h[TB_DIGEST_HEX_LEN];
  if (rc == 0) {
    struct tb_audit_event ev = {.event = TB_AUDIT_EV_ROTATED, .actor = "system",
                                .detail_json = detail.p};
    rc = tb__audit_format(&link, a->seq + 1, a->hash, &ev, h, err);
  } else {
    rc = tb_errf(err, TB_EINVAL, "audit: cannot rotate: file name is not valid UTF-8");
  }
  tb__audit_buf_free(&detail);
  if (rc != 0) goto out;
  fd = open(tmp, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    rc = io_err(err, "create", tmp);
    goto out;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0 || write_all(a, fd, link.p, link.len) != 0 ||
      fdatasync(fd) != 0) {
    rc = io_err(err, "write", tmp);
    goto out;
  }
  a->stats.syncs++;
  if (rename(a->path, rotated) != 0) {
    rc = io_err(err, "rename", a->path);
    goto out;
  }
  if (rename(tmp, a->path) != 0) {
    /* Undo, so that PATH keeps the chain head; open would finish it too. */
    rc = io_err(err, "rename", tmp);
    if (rename(rotated, a->path) != 0) (void)0;
    goto out;
  }
  (void)sync_dir(a->path, NULL); /* the rotation happened; a failed dir sync is not undone */
  close(a->fd);
  a->fd = fd;
  fd = -1;
  a->seq++;
  memcpy(a->hash, h, sizeof a->hash);
  a->file_size = link.len;
  a->stats.records++;
  a->stats.rotations++;
out:
  if (fd >= 0) {
    close(fd);
    if (tmp) unlink(tmp);
  }
  tb__audit_buf_free(&link);
  free(rotated);
  free(tmp);
  return rc;
}

int tb_audit_flush(struct tb_audit *a, char *err) {
  if (a->pending.len > 0) {
    if (write_all(a, a->fd, a->pending.p, a->pending.len) != 0 || fdatasync(a->fd) != 0) {
      int rc = io_err(err, "write", a->path);
      /* Cut back whatever got through so the file ends on a record. */
      if (ftruncate(a->fd, (off_t)a->file_size) != 0) (void)0;
      return rc;
    }
    a->stats.syncs++;
    a->file_size += a->pending.len;
    a->pending.len = 0;
  }
  if (a->opts.rotate_bytes > 0 && a->file_size >= a->opts.rotate_bytes) return rotate(a, err);
  return 0;
}

void tb_audit_on_store_commit(int64_t last_seq, size_t batch_ops, uint64_t commit_ns, void *ud) {
  (void)last_seq;
  (void)batch_ops;
  (void)commit_ns;
  char err[TB_ERRMSG_MAX];
  if (tb_audit_flush(ud, err) != 0) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "audit.flush_failed");
    tb_log_str(l, "error", err);
    tb_log_end(l);
  }
}

int tb_audit_close(struct tb_audit *a, char *err) {
  if (a == NULL) return 0;
  int rc = tb_audit_flush(a, err);
  close(a->fd); /* releases the lock */
  tb__audit_buf_free(&a->pending);
  free(a->path);
  free(a);
  return rc;
}

int64_t tb_audit_last_seq(const struct tb_audit *a) { return a->seq; }
const char *tb_audit_last_hash(const struct tb_audit *a) { return a->hash; }

void tb_audit_get_stats(const struct tb_audit *a, struct tb_audit_stats *out) {
  *out = a->stats;
  out->pending_bytes = a->pending.len;
}
