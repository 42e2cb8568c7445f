/*
 * tests/fuzz/driver.c — the replay driver: links with one harness instead of
 * libFuzzer and feeds it every file named on the command line or found in a
 * directory named there (not recursive, dotfiles skipped, sorted so runs are
 * reproducible). This is how ctest replays tests/fuzz/corpus/<name>/ and
 * tests/fuzz/regressions/<name>/ in every (sanitizer) build: a crash, a
 * sanitizer report or a failed invariant fails the test with the file named.
 * A directory that does not exist is not an error (no regressions yet).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Harnesses without one-time setup do not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f) || buf == NULL;
  fclose(f);
  if (bad) {
    free(buf);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return -1;
  }
  /* An exact-size copy, so ASan sees reads one past the input. */
  uint8_t *exact = malloc(len ? len : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  (void)LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the number of files run, or -1 on an error. */
static long run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return run_file(path) == 0 ? 1 : -1;
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  char **names = NULL;
  size_t count = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (count == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof *names);
      if (nn == NULL) break;
      names = nn;
    }
    size_t pl = strlen(path) + strlen(e->d_name) + 2;
    names[count] = malloc(pl);
    if (names[count] == NULL) break;
    snprintf(names[count], pl, "%s/%s", path, e->d_name);
    count++;
  }
  closedir(d);
  if (count) qsort(names, count, sizeof *names, cmp_str);
  long ran = 0;
  for (size_t i = 0; i < count; i++) {
    struct stat fs;
    if (ran >= 0 && stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode))
      ran = run_file(names[i]) == 0 ? ran + 1 : -1;
    free(names[i]);
  }
  free(names);
  return ran;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|DIR...\n  replays each input through the harness\n", argv[0]);
    return 2;
  }
  LLVMFuzzerInitialize(&argc, &argv);
  long total = 0;
  for (int i = 1; i < argc; i++) {
    long n = run_path(argv[i]);
    if (n < 0) {
      fprintf(stderr, "replay: %s: cannot be read\n", argv[i]);
      return 1;
    }
    total += n;
  }
  fprintf(stderr, "replay: %ld inputs, no failure\n", total);
  /* A corpus that vanished would make this test pass vacuously. */
  if (total == 0 && getenv("TB_FUZZ_ALLOW_EMPTY") == NULL) {
    fprintf(stderr, "replay: no input found (corpus missing?)\n");
    return 1;
  }
  return 0;
}
