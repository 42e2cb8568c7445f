/* tbgw audit verify streams: a file of 200k records (~75 MB) verifies with
 * flat memory. The file is written by a child process so that the parent's
 * peak RSS measures the verifier alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"

#define RECORDS 200000

/* ASan's quarantine keeps freed blocks (here OpenSSL's per-digest context)
 * out of reuse, up to 256 MB, and RSS counts them: measured, 4 MB of
 * quarantine shows as ~10 MB of growth, none shows ~1 MB (the line buffer).
 * This binary only measures memory, so it turns the quarantine off;
 * test_audit keeps full use-after-free checking. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "quarantine_size_mb=0:thread_local_quarantine_size_kb=0";
}

static void generate(const char *path) {
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX], cid[64], detail[160];
  if (tb_audit_open(path, NULL, &a, err) != 0) _exit(1);
  for (int i = 1; i <= RECORDS; i++) {
    snprintf(cid, sizeof cid, "c-%08d-6f1e2d3c4b5a", i);
    snprintf(detail, sizeof detail,
             "{\"attempt\":%d,\"note\":\"padding so that a record is about 250 bytes\"}", i % 7);
    struct tb_audit_event ev = {.event = "message.sent", .actor = "system", .case_id = cid,
                                .partner = "laizhou", .message_id = "m", .detail_json = detail};
    if (tb_audit_append(a, &ev, err) != 0) _exit(1);
    if (i % 5000 == 0 && tb_audit_flush(a, err) != 0) _exit(1);
  }
  _exit(tb_audit_close(a, err) == 0 ? 0 : 1);
}

static long max_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void test_large_file_verifies_in_bounded_memory(void **state) {
  (void)state;
  char dir[] = "/tmp/tb-audit-large-XXXXXX", path[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/audit.log", dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) generate(path);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_size > 40 * 1024 * 1024);

  /* Warm-up on a one-record file: OpenSSL's lazy provider setup and the
   * verifier's one line buffer are paid here, once, not per byte of input. */
  char small[80];
  snprintf(small, sizeof small, "%s/small.log", dir);
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  struct tb_audit_event ev0 = {.event = "key.loaded"};
  assert_int_equal(tb_audit_open(small, NULL, &a, err), 0);
  assert_int_equal(tb_audit_append(a, &ev0, err), 0);
  assert_int_equal(tb_audit_close(a, err), 0);
  struct tb_audit_verify_result res;
  FILE *f = fopen(small, "rb");
  assert_int_equal(tb_audit_verify_stream(f, NULL, &res), 0);
  fclose(f);
  unlink(small);

  long before = max_rss_kb();
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(tb_audit_verify_stream(f, NULL, &res), 0);
  fclose(f);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long growth_kb = max_rss_kb() - before;
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  print_message("verified %lld bytes, %llu records in %.2f s, peak RSS growth %ld KiB\n",
                (long long)st.st_size, (unsigned long long)res.records, secs, growth_kb);
  assert_int_equal(res.records, RECORDS);
  assert_int_equal(res.last.seq, RECORDS);
  /* The file is ~75 MB: reading it whole would blow far past this. */
  assert_true(growth_kb < 8 * 1024);
  assert_true(secs < 20.0);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_large_file_verifies_in_bounded_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
