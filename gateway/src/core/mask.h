/*
 * core/mask.h — masking of personal data before it reaches a log line or the
 * audit trail (SPEC §9): ID numbers keep the first 6 and last 4 characters,
 * phone numbers the first 3 and last 4, personal names the family name only.
 * Masked characters become '*', one per character (code point), so lengths
 * stay recognisable without revealing content.
 *
 * All functions write a NUL-terminated result into out (size out_size; the
 * result is truncated, never overflowed) and return out. Thread-safe.
 */
#ifndef TB_CORE_MASK_H
#define TB_CORE_MASK_H

#include <stddef.h>

#define TB_MASK_MAX 256

char *tb_mask_id(const char *id, char *out, size_t out_size);
char *tb_mask_phone(const char *phone, char *out, size_t out_size);
/* Keeps the family name: one character, or two for the common compound
 * surnames (欧阳, 司马, 诸葛, 上官, ...). */
char *tb_mask_name(const char *name, char *out, size_t out_size);

#endif
