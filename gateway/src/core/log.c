/*
 * JSON-lines logger. Lines are assembled in a thread-local fixed buffer and
 * written with one write(2); a line that would overflow the buffer is
 * truncated at a field boundary and marked "truncated":true, never split.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TB_LOG_LINE_MAX 8192

struct tb_log_line {
  char buf[TB_LOG_LINE_MAX];
  size_t len;
  int truncated;
};

static int g_log_fd = 2;
static enum tb_log_level g_log_min = TB_LOG_INFO;
static _Thread_local struct tb_log_line g_line;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int tb_log_level_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

void tb_log_setup(int fd, enum tb_log_level min_level) {
  g_log_fd = fd;
  g_log_min = min_level;
}

int tb_log_enabled(enum tb_log_level level) { return level >= g_log_min; }

static void put_raw(struct tb_log_line *l, const char *s, size_t n) {
  /* Keep 32 bytes for the closing ,"truncated":true} and newline. */
  if (l->truncated || l->len + n + 32 > sizeof l->buf) {
    l->truncated = 1;
    return;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

/* JSON string escaping; invalid UTF-8 bytes are replaced by U+FFFD so a
 * line is always valid JSON whatever a peer sent. */
static void put_escaped(struct tb_log_line *l, const char *s, size_t n) {
  char tmp[TB_LOG_LINE_MAX];
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  tmp[o++] = '"';
  for (size_t i = 0; i < n && o < sizeof tmp - 8; i++) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      tmp[o++] = '\\';
      tmp[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(tmp + o, 7, "\\u%04x", c);
    } else if (c < 0x80) {
      tmp[o++] = (char)c;
    } else {
      size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
      int ok = need > 0 && c < 0xF5 && i + need <= n;
      for (size_t k = 1; ok && k < need; k++)
        if ((p[i + k] & 0xC0) != 0x80) ok = 0;
      if (ok) {
        memcpy(tmp + o, p + i, need);
        o += need;
        i += need - 1;
      } else {
        memcpy(tmp + o, "\xEF\xBF\xBD", 3);
        o += 3;
      }
    }
  }
  tmp[o++] = '"';
  put_raw(l, tmp, o);
}

struct tb_log_line *tb_log_begin(enum tb_log_level level, const char *event) {
  if (level < g_log_min) return NULL;
  struct tb_log_line *l = &g_line;
  l->len = 0;
  l->truncated = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char head[96];
  int n = snprintf(head, sizeof head,
                   "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"event\":",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
  put_raw(l, head, (size_t)n);
  put_escaped(l, event, strlen(event));
  return l;
}

/* A field is written whole or not at all: on overflow the line is cut back
 * to the end of the previous field, so it stays valid JSON. */
static void field_end(struct tb_log_line *l, size_t mark) {
  if (l->truncated) l->len = mark;
}

void tb_log_strn(struct tb_log_line *l, const char *key, const char *value, size_t len) {
  if (l == NULL || l->truncated) return;
  size_t mark = l->len;
  put_raw(l, ",", 1);
  put_escaped(l, key, strlen(key));
  put_raw(l, ":", 1);
  if (value == NULL)
    put_raw(l, "null", 4);
  else
    put_escaped(l, value, len);
  field_end(l, mark);
}

void tb_log_str(struct tb_log_line *l, const char *key, const char *value) {
  tb_log_strn(l, key, value, value ? strlen(value) : 0);
}

void tb_log_int(struct tb_log_line *l, const char *key, int64_t value) {
  if (l == NULL || l->truncated) return;
  size_t mark = l->len;
  char num[32];
  int n = snprintf(num, sizeof num, "%lld", (long long)value);
  put_raw(l, ",", 1);
  put_escaped(l, key, strlen(key));
  put_raw(l, ":", 1);
  put_raw(l, num, (size_t)n);
  field_end(l, mark);
}

void tb_log_double(struct tb_log_line *l, const char *key, double value) {
  if (l == NULL || l->truncated) return;
  size_t mark = l->len;
  char num[48];
  int n = snprintf(num, sizeof num, "%.6g", value);
  put_raw(l, ",", 1);
  put_escaped(l, key, strlen(key));
  put_raw(l, ":", 1);
  put_raw(l, num, (size_t)n);
  field_end(l, mark);
}

void tb_log_end(struct tb_log_line *l) {
  if (l == NULL) return;
  if (l->truncated) {
    static const char tail[] = ",\"truncated\":true}\n";
    memcpy(l->buf + l->len, tail, sizeof tail - 1);
    l->len += sizeof tail - 1;
  } else {
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
  }
  size_t off = 0;
  while (off < l->len) {
    ssize_t w = write(g_log_fd, l->buf + off, l->len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* nowhere left to report a failing log */
    off += (size_t)w;
  }
}

void tb_log_msg(enum tb_log_level level, const char *event, const char *fmt, ...) {
  struct tb_log_line *l = tb_log_begin(level, event);
  if (l == NULL) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tb_log_str(l, "msg", msg);
  tb_log_end(l);
}
