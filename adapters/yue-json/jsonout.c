/*
 * jsonout.c — the byte buffer and the JSON writer of the yue-json adapter.
 *
 * Why not json_dumps: the partner document fixes which keys are present and
 * null, and `formData` must reach the partner unchanged. jansson prints a
 * real with 17 significant digits (0.6 becomes 0.59999999999999998), which a
 * partner reading decimals would see as a changed form; this writer prints
 * the shortest text that reads back as the same double. Keys keep jansson's
 * insertion order (the order of the input document).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yuejson.h"

void yj_buf_init(struct yj_buf *b, const struct tb_host *host) {
  memset(b, 0, sizeof *b);
  b->host = host;
}

void yj_buf_free(struct yj_buf *b) {
  if (b->data) b->host->free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static int reserve(struct yj_buf *b, size_t extra) {
  if (b->failed) return -1;
  if (extra > SIZE_MAX / 2 - b->len) {
    b->failed = 1;
    return -1;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  char *p = b->host->realloc(b->data, cap);
  if (p == NULL) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void yj_buf_put(struct yj_buf *b, const void *s, size_t n) {
  if (n == 0 || reserve(b, n) != 0) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void yj_buf_puts(struct yj_buf *b, const char *s) { yj_buf_put(b, s, strlen(s)); }

void yj_buf_printf(struct yj_buf *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = 1;
    return;
  }
  if ((size_t)n < sizeof small) {
    yj_buf_put(b, small, (size_t)n);
    return;
  }
  if (reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

char *yj_buf_take(struct yj_buf *b, size_t *len) {
  if (b->failed) {
    yj_buf_free(b);
    if (len) *len = 0;
    return NULL;
  }
  if (b->data == NULL && reserve(b, 0) != 0) return NULL;
  if (b->len == 0) b->data[0] = '\0';
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

/* ---- JSON ------------------------------------------------------------------- */

static void separator(struct yj_buf *b) {
  if (b->len > 0 && b->data[b->len - 1] != '{' && b->data[b->len - 1] != '[') yj_buf_put(b, ",", 1);
}

void yj_json_open(struct yj_buf *b, char bracket) { yj_buf_put(b, &bracket, 1); }
void yj_json_close(struct yj_buf *b, char bracket) { yj_buf_put(b, &bracket, 1); }

void yj_json_key(struct yj_buf *b, const char *key) {
  separator(b);
  yj_json_strn(b, key, strlen(key));
  yj_buf_put(b, ":", 1);
}

void yj_json_elem(struct yj_buf *b) { separator(b); }

void yj_json_strn(struct yj_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  yj_buf_put(b, "\"", 1);
  size_t run = 0; /* bytes copied as they are, flushed in one go */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[6];
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default:
      if (c < 0x20 || c == 0x7f) {
        u[0] = '\\';
        u[1] = 'u';
        u[2] = '0';
        u[3] = '0';
        u[4] = hex[c >> 4];
        u[5] = hex[c & 15];
      }
    }
    if (esc == NULL && c >= 0x20 && c != 0x7f) {
      run++;
      continue;
    }
    yj_buf_put(b, s + i - run, run);
    run = 0;
    if (esc)
      yj_buf_puts(b, esc);
    else
      yj_buf_put(b, u, 6);
  }
  yj_buf_put(b, s + n - run, run);
  yj_buf_put(b, "\"", 1);
}

void yj_json_str(struct yj_buf *b, const char *s) {
  if (s == NULL)
    yj_json_null(b);
  else
    yj_json_strn(b, s, strlen(s));
}

void yj_json_null(struct yj_buf *b) { yj_buf_put(b, "null", 4); }

void yj_json_int(struct yj_buf *b, int64_t v) { yj_buf_printf(b, "%lld", (long long)v); }

static void put_real(struct yj_buf *b, double v) {
  char text[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(text, sizeof text, "%.*g", prec, v);
    if (strtod(text, NULL) == v) break;
  }
  /* A real stays a real ("1.0", not "1") so that the partner sees the form's
   * number as it was written. */
  if (strpbrk(text, ".eE") == NULL) strcat(text, ".0");
  yj_buf_puts(b, text);
}

void yj_json_value(struct yj_buf *b, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *key;
    json_t *val;
    yj_json_open(b, '{');
    /* json_object_foreach wants a non-const object; iteration does not
     * modify it. */
    json_t *obj = (json_t *)(uintptr_t)v;
    json_object_foreach(obj, key, val) {
      yj_json_key(b, key);
      yj_json_value(b, val);
    }
    yj_json_close(b, '}');
    break;
  }
  case JSON_ARRAY: {
    yj_json_open(b, '[');
    for (size_t i = 0; i < json_array_size(v); i++) {
      yj_json_elem(b);
      yj_json_value(b, json_array_get(v, i));
    }
    yj_json_close(b, ']');
    break;
  }
  case JSON_STRING: yj_json_strn(b, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER: yj_json_int(b, (int64_t)json_integer_value(v)); break;
  case JSON_REAL: put_real(b, json_real_value(v)); break;
  case JSON_TRUE: yj_buf_puts(b, "true"); break;
  case JSON_FALSE: yj_buf_puts(b, "false"); break;
  case JSON_NULL: yj_json_null(b); break;
  }
}

int yj_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    size_t n;
    unsigned min;
    if (c == 0) return 0;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      min = 0x80;
      c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      min = 0x800;
      c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      min = 0x10000;
      c &= 0x07;
    } else {
      return 0;
    }
    if (len - i <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return 0;
      c = (c << 6) | (p[i + k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    i += n + 1;
  }
  return 1;
}

void yj_copy_text(char *dst, size_t size, const char *src, size_t len) {
  if (size == 0) return;
  if (src == NULL) len = 0;
  if (len >= size) {
    len = size - 1;
    /* Back up to the start of a character: never leave half of one. */
    while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80) len--;
  }
  if (len) memcpy(dst, src, len);
  dst[len] = '\0';
}
