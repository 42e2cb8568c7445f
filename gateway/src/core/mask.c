/* Personal-data masking for logs and the audit trail (see mask.h). */
#include "core/mask.h"

#include <string.h>

/* Length in bytes of the UTF-8 sequence starting with lead byte c (1 for
 * stray continuation bytes, so malformed input still advances). */
static size_t utf8_len(unsigned char c) {
  if (c >= 0xF0 && c < 0xF8) return 4;
  if (c >= 0xE0) return c < 0xF0 ? 3 : 1;
  if (c >= 0xC0) return 2;
  return 1;
}

static size_t count_chars(const char *s) {
  size_t n = 0;
  for (size_t i = 0; s[i] != '\0'; n++) {
    size_t l = utf8_len((unsigned char)s[i]);
    for (size_t k = 0; k < l; k++)
      if (s[i + k] == '\0') return n + 1;
    i += l;
  }
  return n;
}

/* Byte offset of the start of character index ci. */
static size_t char_offset(const char *s, size_t ci) {
  size_t i = 0;
  for (size_t n = 0; n < ci && s[i] != '\0'; n++) {
    size_t l = utf8_len((unsigned char)s[i]);
    for (size_t k = 0; k < l && s[i] != '\0'; k++) i++;
  }
  return i;
}

/* Keeps `head` leading and `tail` trailing characters, masks the rest. When
 * the string is too short to hide anything that way, everything is masked:
 * a short value is more identifying, not less. */
static char *mask_keep(const char *s, size_t head, size_t tail, char *out, size_t out_size) {
  if (out_size == 0) return out;
  out[0] = '\0';
  if (s == NULL) return out;
  size_t n = count_chars(s);
  if (n <= head + tail) head = tail = 0;
  size_t o = 0;
  size_t head_end = char_offset(s, head);
  size_t tail_start = char_offset(s, n - tail);
  for (size_t i = 0; i < head_end && o + 1 < out_size; i++) out[o++] = s[i];
  for (size_t c = head; c < n - tail && o + 1 < out_size; c++) out[o++] = '*';
  for (size_t i = tail_start; s[i] != '\0' && o + 1 < out_size; i++) out[o++] = s[i];
  /* Never end on half a UTF-8 sequence after truncation. */
  while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80) o--;
  if (o > 0 && (unsigned char)out[o - 1] >= 0xC0) o--;
  out[o] = '\0';
  return out;
}

char *tb_mask_id(const char *id, char *out, size_t out_size) {
  return mask_keep(id, 6, 4, out, out_size);
}

char *tb_mask_phone(const char *phone, char *out, size_t out_size) {
  return mask_keep(phone, 3, 4, out, out_size);
}

static const char *const compound_surnames[] = {
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "万俟",
};

char *tb_mask_name(const char *name, char *out, size_t out_size) {
  if (name == NULL) return mask_keep(name, 0, 0, out, out_size);
  size_t keep = 1;
  for (size_t i = 0; i < sizeof compound_surnames / sizeof *compound_surnames; i++) {
    size_t l = strlen(compound_surnames[i]);
    if (strncmp(name, compound_surnames[i], l) == 0 && count_chars(name) > 2) {
      keep = 2;
      break;
    }
  }
  /* A one-character name has nothing but the family name to keep: mask it. */
  return mask_keep(name, keep, 0, out, out_size);
}
