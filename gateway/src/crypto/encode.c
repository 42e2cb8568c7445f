/*
 * Hex, strict base64 and UUID v4. Base64 is written here rather than taken
 * from EVP_Decode*, which skips whitespace and tolerates sloppy padding: a
 * signature or ciphertext field has exactly one accepted spelling.
 */
#include "crypto/crypto.h"

#include <stdint.h>
#include <stdlib.h>

static const char hexdig[] = "0123456789abcdef";
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void tb_crypto_hex(const void *data, size_t len, char *out) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = hexdig[p[i] >> 4];
    out[2 * i + 1] = hexdig[p[i] & 15];
  }
  out[2 * len] = '\0';
}

int tb_crypto_base64_encode(const void *data, size_t len, char **out, size_t *out_len,
                            char *err) {
  *out = NULL;
  *out_len = 0;
  if (len > (SIZE_MAX / 4) * 3 - 3) return tb_errf(err, TB_ELIMIT, "base64: input too large");
  size_t n = (len + 2) / 3 * 4;
  char *s = malloc(n + 1);
  if (s == NULL) return tb_errf(err, TB_ENOMEM, "base64: out of memory");
  const unsigned char *p = data;
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    s[o++] = b64[v >> 18];
    s[o++] = b64[(v >> 12) & 63];
    s[o++] = b64[(v >> 6) & 63];
    s[o++] = b64[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    s[o++] = b64[v >> 18];
    s[o++] = b64[(v >> 12) & 63];
    s[o++] = '=';
    s[o++] = '=';
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    s[o++] = b64[v >> 18];
    s[o++] = b64[(v >> 12) & 63];
    s[o++] = b64[(v >> 6) & 63];
    s[o++] = '=';
  }
  s[o] = '\0';
  *out = s;
  *out_len = o;
  return 0;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int tb_crypto_base64_decode(const char *text, size_t len, unsigned char **out,
                            size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  if (text == NULL && len > 0) return tb_errf(err, TB_EINVAL, "base64: no input");
  if (len % 4 != 0)
    return tb_errf(err, TB_EPARSE, "base64: length %zu is not a multiple of 4", len);
  size_t pad = 0;
  if (len >= 4 && text[len - 1] == '=') pad = text[len - 2] == '=' ? 2 : 1;
  unsigned char *buf = malloc(len / 4 * 3 + 1);
  if (buf == NULL) return tb_errf(err, TB_ENOMEM, "base64: out of memory");
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int v[4];
    int quad_pad = i + 4 == len ? (int)pad : 0;
    for (int j = 0; j < 4; j++) {
      unsigned char c = (unsigned char)text[i + (size_t)j];
      if (j >= 4 - quad_pad) {
        v[j] = 0; /* '=' checked by the pad count above */
        continue;
      }
      v[j] = b64_value(c);
      if (v[j] < 0) {
        free(buf);
        if (c == '=')
          return tb_errf(err, TB_EPARSE, "base64: '=' at offset %zu is not final padding",
                         i + (size_t)j);
        return tb_errf(err, TB_EPARSE, "base64: invalid character 0x%02x at offset %zu", c,
                       i + (size_t)j);
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                 (uint32_t)v[3];
    /* Bits that padding discards must be zero: one spelling per value. */
    if ((quad_pad == 1 && (w & 0xff) != 0) || (quad_pad == 2 && (w & 0xffff) != 0)) {
      free(buf);
      return tb_errf(err, TB_EPARSE, "base64: non-zero bits before the padding at offset %zu",
                     i);
    }
    buf[o++] = (unsigned char)(w >> 16);
    if (quad_pad < 2) buf[o++] = (unsigned char)(w >> 8);
    if (quad_pad < 1) buf[o++] = (unsigned char)w;
  }
  *out = buf;
  *out_len = o;
  return 0;
}

int tb_crypto_uuid4(char out[TB_UUID_STR_LEN], char *err) {
  unsigned char r[16];
  int rc = tb_crypto_random(r, sizeof r, err);
  if (rc != 0) return rc;
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  char hex[33];
  tb_crypto_hex(r, sizeof r, hex);
  size_t o = 0;
  for (size_t i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out[o++] = '-';
    out[o++] = hex[i];
  }
  out[o] = '\0';
  return 0;
}
