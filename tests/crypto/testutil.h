/*
 * tests/crypto/testutil.h — helpers shared by tests/unit/test_crypto*.c:
 * a private temp directory, files, and running the independent tools
 * (openssl, xmlsec1, node + sm-crypto) whose verdicts the tests compare with
 * ours. Header-only so each test stays one executable (CMake globs test_*.c).
 * Keys are generated into the temp dir at test start; none are committed.
 */
#ifndef TB_TESTS_CRYPTO_TESTUTIL_H
#define TB_TESTS_CRYPTO_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tu_dir[256];
static char tu_paths[16][512];
static int tu_next;

/* A path inside the temp dir; valid for the next 15 calls (rotating). */
static inline const char *tu_path(const char *fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  char *p = tu_paths[tu_next++ % 16];
  snprintf(p, 512, "%s/%s", tu_dir, name);
  return p;
}

/* Runs a shell command (output appended to the temp dir's tools.log);
 * returns its exit status, or -1 if it did not exit normally. */
static inline int tu_run(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char full[4608];
  snprintf(full, sizeof full, "(%s) >>'%s/tools.log' 2>&1", cmd, tu_dir);
  int st = system(full);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

/* Runs a command and captures the first line of its stdout. */
static inline int tu_run_capture(char *out, size_t cap, const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char full[4608];
  snprintf(full, sizeof full, "(%s) 2>>'%s/tools.log'", cmd, tu_dir);
  FILE *f = popen(full, "r");
  if (f == NULL) return -1;
  out[0] = '\0';
  if (fgets(out, (int)cap, f) != NULL) out[strcspn(out, "\r\n")] = '\0';
  char sink[256];
  while (fgets(sink, sizeof sink, f) != NULL) {
  }
  int st = pclose(f);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static inline int tu_setup_dir(const char *tag) {
  const char *tmp = getenv("TMPDIR");
  snprintf(tu_dir, sizeof tu_dir, "%s/tbgw-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
  if (mkdtemp(tu_dir) == NULL) return -1;
  return 0;
}

static inline void tu_cleanup_dir(void) {
  if (tu_dir[0] == '\0' || getenv("TB_TEST_KEEP") != NULL) {
    if (tu_dir[0]) fprintf(stderr, "test files kept in %s\n", tu_dir);
    return;
  }
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_dir);
}

static inline int tu_write(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t n = fwrite(data, 1, len, f);
  return fclose(f) == 0 && n == len ? 0 : -1;
}

/* Whole file, NUL-terminated (not counted in *len); NULL if unreadable. */
static inline unsigned char *tu_read(const char *path, size_t *len) {
  if (len) *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 4096, n = 0;
  unsigned char *buf = malloc(cap);
  size_t r;
  while (buf != NULL && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) {
      unsigned char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf == NULL) return NULL;
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static inline size_t tu_unhex(const char *hex, unsigned char *out, size_t cap) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n && i < cap; i++) {
    unsigned v = 0;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (unsigned char)v;
  }
  return n < cap ? n : cap;
}

/* The independent GM/T implementation (tests/crypto/gm_tool.js). Returns 1
 * if usable. If it is not installed the interop tests are skipped, unless
 * TB_REQUIRE_INTEROP is set (CI sets it), where missing means failure. */
static char tu_gm_tool[512];
static inline int tu_have_gm_tool(void) {
  const char *root = getenv("TB_REPO_ROOT");
  if (root == NULL) root = ".";
  snprintf(tu_gm_tool, sizeof tu_gm_tool, "%s/tests/crypto/gm_tool.js", root);
  char mod[600];
  snprintf(mod, sizeof mod, "%s/tests/crypto/node_modules/sm-crypto/package.json", root);
  return access(tu_gm_tool, R_OK) == 0 && access(mod, R_OK) == 0 &&
         tu_run("node --version") == 0;
}

#endif
