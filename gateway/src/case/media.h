/*
 * case/media.h — the media types a case's materials may have, and the file
 * extensions the partner formats use for them (lu-xml <GeShi>, yue-json
 * fileType). One table, both directions; lookups are exact and
 * case-sensitive (the canonical form is lower case, without parameters).
 * Returned strings are static; thread-safe.
 */
#ifndef TB_CASE_MEDIA_H
#define TB_CASE_MEDIA_H

#include <stddef.h>

/* Media type -> extension without dot ("application/pdf" -> "pdf"), or NULL
 * when the media type is not allowed in a case (or media_type is NULL). */
const char *tb_case_media_ext(const char *media_type);

/* Extension without dot -> media type ("jpg" -> "image/jpeg"), or NULL. */
const char *tb_case_media_type_for_ext(const char *ext);

/* Same as tb_case_media_ext for a string that need not be NUL-terminated. */
const char *tb_case_media_extn(const char *media_type, size_t len);

#endif
