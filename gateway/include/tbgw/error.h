/*
 * tbgw/error.h — the one error table of tongban-gateway, shared by the core
 * and by adapters.
 *
 * Fallible functions return int: 0 on success or a negative TB_E* code from
 * this table. Human-readable detail travels beside the code in a caller-owned
 * buffer of TB_ERRMSG_MAX bytes (no allocation on error paths). The table only
 * ever grows at the end: codes are part of the adapter ABI.
 */
#ifndef TBGW_ERROR_H
#define TBGW_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define TB_ERRMSG_MAX 512

/* X(name, value, default message) */
#define TB_ERRNO_MAP(X)                                                       \
  X(NOMEM,    -1,  "out of memory")                                           \
  X(INVAL,    -2,  "invalid argument")                                        \
  X(IO,       -3,  "input/output error")                                      \
  X(PARSE,    -4,  "malformed input")                                         \
  X(LIMIT,    -5,  "a configured limit was exceeded")                         \
  X(NOTFOUND, -6,  "not found")                                               \
  X(CONFLICT, -7,  "conflicts with existing data")                            \
  X(CONFIG,   -8,  "configuration error")                                     \
  X(STORE,    -9,  "storage error")                                           \
  X(CRYPTO,   -10, "cryptographic operation failed")                          \
  X(CLOSED,   -11, "already closed or shutting down")                         \
  X(TIMEOUT,  -12, "timed out")                                               \
  X(BUSY,     -13, "busy, try again later")                                   \
  X(ABI,      -14, "incompatible plugin ABI")                                 \
  X(AUTH,     -15, "authentication failed")                                   \
  X(VALIDATE, -16, "validation failed")                                       \
  X(EXISTS,   -17, "already exists")                                          \
  X(INTERNAL, -18, "internal error (a bug: please report it)")

enum tb_errno {
  TB_OK = 0,
#define TB__ERRNO_ENUM(name, value, msg) TB_E##name = (value),
  TB_ERRNO_MAP(TB__ERRNO_ENUM)
#undef TB__ERRNO_ENUM
};

/* The helpers below are static inline so that adapters, which link nothing
 * of the gateway's, can use them too. */

/* Symbolic name ("TB_ENOMEM") and default message of a code; never NULL. */
static inline const char *tb_err_name(int code) {
  switch (code) {
  case TB_OK: return "TB_OK";
#define TB__ERRNO_NAME(name, value, msg) case TB_E##name: return "TB_E" #name;
    TB_ERRNO_MAP(TB__ERRNO_NAME)
#undef TB__ERRNO_NAME
  default: return "TB_EUNKNOWN";
  }
}

static inline const char *tb_strerror(int code) {
  switch (code) {
  case TB_OK: return "success";
#define TB__ERRNO_MSG(name, value, msg) case TB_E##name: return msg;
    TB_ERRNO_MAP(TB__ERRNO_MSG)
#undef TB__ERRNO_MSG
  default: return "unknown error code";
  }
}

/*
 * Formats a message into err (TB_ERRMSG_MAX bytes, may be NULL) and returns
 * code, so that error paths read `return tb_errf(err, TB_EPARSE, "...", ...)`.
 */
static inline int tb_errf(char *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int tb_errf(char *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TB_ERRMSG_MAX, fmt, ap);
    va_end(ap);
  }
  return code;
}

#endif
