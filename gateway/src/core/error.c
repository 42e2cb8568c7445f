/* The error table's names and messages, and the caller-buffer formatter. */
#include "tbgw/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *tb_err_name(int code) {
  switch (code) {
  case TB_OK: return "TB_OK";
#define TB__ERRNO_NAME(name, value, msg) case TB_E##name: return "TB_E" #name;
    TB_ERRNO_MAP(TB__ERRNO_NAME)
#undef TB__ERRNO_NAME
  default: return "TB_EUNKNOWN";
  }
}

const char *tb_strerror(int code) {
  switch (code) {
  case TB_OK: return "success";
#define TB__ERRNO_MSG(name, value, msg) case TB_E##name: return msg;
    TB_ERRNO_MAP(TB__ERRNO_MSG)
#undef TB__ERRNO_MSG
  default: return "unknown error code";
  }
}

int tb_errf(char *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TB_ERRMSG_MAX, fmt, ap);
    va_end(ap);
  }
  return code;
}
