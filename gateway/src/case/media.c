/* case/media.c — allowed material media types and their file extensions. */
#include "case/media.h"

#include <string.h>

static const struct media {
  const char *type;
  const char *ext;
} media_table[] = {
    {"application/pdf", "pdf"},
    {"image/jpeg", "jpg"},
    {"image/png", "png"},
    {"application/ofd", "ofd"},
    {"application/msword", "doc"},
    {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"},
    {"application/vnd.ms-excel", "xls"},
    {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
    {"application/zip", "zip"},
    {"text/plain", "txt"},
};

const char *tb_case_media_extn(const char *media_type, size_t len) {
  if (media_type == NULL) return NULL;
  for (size_t i = 0; i < sizeof media_table / sizeof media_table[0]; i++)
    if (strlen(media_table[i].type) == len && memcmp(media_table[i].type, media_type, len) == 0)
      return media_table[i].ext;
  return NULL;
}

const char *tb_case_media_ext(const char *media_type) {
  return media_type == NULL ? NULL : tb_case_media_extn(media_type, strlen(media_type));
}

const char *tb_case_media_type_for_ext(const char *ext) {
  if (ext == NULL) return NULL;
  for (size_t i = 0; i < sizeof media_table / sizeof media_table[0]; i++)
    if (strcmp(media_table[i].ext, ext) == 0) return media_table[i].type;
  return NULL;
}
