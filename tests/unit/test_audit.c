/* The audit trail (SPEC §9): records chain by SM3; the verifier names the
 * first edited, deleted, inserted, reordered or truncated record; the writer
 * batches, continues a chain on reopen, repairs a cut-short tail and rotates
 * without breaking the chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/audit_internal.h"

static char dir[256], path[300];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/tb-audit-XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(path, sizeof path, "%s/audit.log", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[600];
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(dir);
  return 0;
}

/* n message.sent records with case ids "case-<i>", one flush at the end. */
static void write_n(const char *file, int n, char *last_hash) {
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(file, NULL, &a, err), 0);
  for (int i = 1; i <= n; i++) {
    char cid[32];
    snprintf(cid, sizeof cid, "case-%d", i);
    assert_int_equal(tb_audit_log_message_sent(a, cid, "laizhou", "msg-1", i, err), 0);
  }
  if (last_hash) snprintf(last_hash, TB_DIGEST_HEX_LEN, "%s", tb_audit_last_hash(a));
  assert_int_equal(tb_audit_close(a, err), 0);
}

static int verify_file(const char *file, const struct tb_audit_anchor *expect,
                       struct tb_audit_verify_result *res) {
  FILE *f = fopen(file, "rb");
  assert_non_null(f);
  int rc = tb_audit_verify_stream(f, expect, res);
  fclose(f);
  return rc;
}

/* The file as an array of lines (newlines kept), for tampering. */
struct lines {
  char *l[64];
  int n;
};

static void read_lines(const char *file, struct lines *ls) {
  FILE *f = fopen(file, "rb");
  assert_non_null(f);
  char buf[4096];
  ls->n = 0;
  while (fgets(buf, sizeof buf, f)) {
    assert_true(ls->n < 64);
    ls->l[ls->n++] = strdup(buf);
  }
  fclose(f);
}

static void write_lines(const char *file, struct lines *ls) {
  FILE *f = fopen(file, "wb");
  assert_non_null(f);
  for (int i = 0; i < ls->n; i++) fputs(ls->l[i], f);
  fclose(f);
}

static void free_lines(struct lines *ls) {
  for (int i = 0; i < ls->n; i++) free(ls->l[i]);
  ls->n = 0;
}

static void expect_fault(enum tb_audit_fault fault, uint64_t line, int64_t seq) {
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), TB_EVALIDATE);
  if (res.fault != fault || res.bad_line != line || res.bad_seq != seq)
    fail_msg("expected %s at line %llu seq %lld, got %s at line %llu seq %lld: %s",
             tb_audit_fault_name(fault), (unsigned long long)line, (long long)seq,
             tb_audit_fault_name(res.fault), (unsigned long long)res.bad_line,
             (long long)res.bad_seq, res.reason);
}

/* A record with a correct hash of its own, for the given seq and prev. */
static char *forge(int64_t seq, const char *prev) {
  struct tb__audit_buf b = {0};
  char h[TB_DIGEST_HEX_LEN], err[TB_ERRMSG_MAX];
  struct tb_audit_event ev = {.event = "case.accepted", .case_id = "forged"};
  assert_int_equal(tb__audit_format(&b, seq, prev, &ev, h, err), 0);
  return b.p;
}

static void test_append_then_verify_ok(void **state) {
  (void)state;
  char last[TB_DIGEST_HEX_LEN];
  write_n(path, 10, last);
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), 0);
  assert_int_equal(res.fault, TB_AUDIT_OK);
  assert_int_equal(res.records, 10);
  assert_int_equal(res.last.seq, 10);
  assert_string_equal(res.last.hash, last);
  struct lines ls;
  read_lines(path, &ls);
  assert_int_equal(ls.n, 10);
  assert_memory_equal(ls.l[0], "{\"seq\":1,\"ts\":\"", 15);
  assert_non_null(strstr(ls.l[0], "\"prev\":\"" TB_AUDIT_GENESIS_HASH "\""));
  free_lines(&ls);
}

static void test_personal_data_is_masked(void **state) {
  (void)state;
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_log_case_accepted(a, "api", "c1", "laizhou", "430603199001011231",
                                              "张三丰", err),
                   0);
  assert_int_equal(tb_audit_close(a, err), 0);
  struct lines ls;
  read_lines(path, &ls);
  assert_non_null(strstr(ls.l[0], "\"subject_id\":\"430603********1231\""));
  assert_null(strstr(ls.l[0], "199001011"));
  assert_null(strstr(ls.l[0], "三丰"));
  assert_non_null(strstr(ls.l[0], "\"event\":\"case.accepted\""));
  free_lines(&ls);
}

static void test_edit_one_byte_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  char *p = strstr(ls.l[4], "case-5");
  assert_non_null(p);
  p[5] = '9'; /* case-5 → case-9 */
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_EDITED, 5, 5);
}

static void test_edit_of_prev_or_hash_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  char *p = strstr(ls.l[6], "\"hash\":\"");
  p[8] = p[8] == 'a' ? 'b' : 'a';
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_EDITED, 7, 7);
}

static void test_deleted_record_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  free(ls.l[4]);
  memmove(&ls.l[4], &ls.l[5], sizeof ls.l[0] * 5);
  ls.n--;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_DELETED, 5, 6);
}

static void test_deleted_first_record_is_named(void **state) {
  (void)state;
  write_n(path, 5, NULL);
  struct lines ls;
  read_lines(path, &ls);
  free(ls.l[0]);
  memmove(&ls.l[0], &ls.l[1], sizeof ls.l[0] * 4);
  ls.n--;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_DELETED, 1, 2);
}

static void test_inserted_with_wrong_prev_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  memmove(&ls.l[5], &ls.l[4], sizeof ls.l[0] * 6);
  ls.l[4] = forge(5, "1111111111111111111111111111111111111111111111111111111111111111");
  ls.n++;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_INSERTED, 5, 5);
}

static void test_inserted_with_wrong_seq_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  char prev[65];
  memcpy(prev, strstr(ls.l[3], "\"hash\":\"") + 8, 64); /* chains after line 4 */
  prev[64] = '\0';
  memmove(&ls.l[5], &ls.l[4], sizeof ls.l[0] * 6);
  ls.l[4] = forge(999, prev);
  ls.n++;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_INSERTED, 5, 999);
}

static void test_swapped_records_are_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  char *t = ls.l[4];
  ls.l[4] = ls.l[5];
  ls.l[5] = t;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_REORDERED, 5, 6);
}

static void test_moved_record_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct lines ls;
  read_lines(path, &ls);
  char *t = ls.l[2]; /* seq 3 moved after seq 7 */
  memmove(&ls.l[2], &ls.l[3], sizeof ls.l[0] * 4);
  ls.l[6] = t;
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_REORDERED, 3, 4);
}

static void test_truncated_last_line_is_named(void **state) {
  (void)state;
  write_n(path, 10, NULL);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(truncate(path, st.st_size - 40), 0);
  expect_fault(TB_AUDIT_TRUNCATED, 10, 10);
}

static void test_garbage_line_is_not_json(void **state) {
  (void)state;
  write_n(path, 4, NULL);
  struct lines ls;
  read_lines(path, &ls);
  free(ls.l[2]);
  ls.l[2] = strdup("hello\n");
  write_lines(path, &ls);
  free_lines(&ls);
  expect_fault(TB_AUDIT_MALFORMED, 3, -1);
}

static void test_empty_file_verifies_with_zero_records(void **state) {
  (void)state;
  FILE *f = fopen(path, "wb");
  fclose(f);
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), 0);
  assert_int_equal(res.records, 0);
}

static void test_reopen_continues_the_chain(void **state) {
  (void)state;
  write_n(path, 3, NULL);
  char last[TB_DIGEST_HEX_LEN];
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_last_seq(a), 3);
  assert_int_equal(tb_audit_log_inbound(a, "wujiang", "m9", 0, "signature invalid", err), 0);
  assert_int_equal(tb_audit_log_config_reload(a, "signal", "/etc/tbgw.json", 1, NULL, err), 0);
  snprintf(last, sizeof last, "%s", tb_audit_last_hash(a));
  assert_int_equal(tb_audit_close(a, err), 0);
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), 0);
  assert_int_equal(res.records, 5);
  assert_string_equal(res.last.hash, last);
}

static void test_reopen_cuts_a_partial_tail_and_says_so(void **state) {
  (void)state;
  write_n(path, 3, NULL);
  FILE *f = fopen(path, "ab");
  const char *partial = "{\"seq\":4,\"ts\":\"2024-"; /* a batch write cut short */
  fputs(partial, f);
  fclose(f);
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_last_seq(a), 4); /* the tail_discarded record */
  assert_int_equal(tb_audit_close(a, err), 0);
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), 0);
  assert_int_equal(res.records, 4);
  struct lines ls;
  read_lines(path, &ls);
  assert_non_null(strstr(ls.l[3], "\"event\":\"audit.tail_discarded\""));
  char bytes[32];
  snprintf(bytes, sizeof bytes, "\"bytes\":%zu}", strlen(partial));
  assert_non_null(strstr(ls.l[3], bytes));
  free_lines(&ls);
}

static void test_open_refuses_an_edited_last_record(void **state) {
  (void)state;
  write_n(path, 3, NULL);
  struct lines ls;
  read_lines(path, &ls);
  strstr(ls.l[2], "case-3")[5] = '7';
  write_lines(path, &ls);
  free_lines(&ls);
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), TB_EPARSE);
  assert_non_null(strstr(err, "tbgw audit verify"));
}

static void test_second_writer_is_refused(void **state) {
  (void)state;
  struct tb_audit *a, *b;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_open(path, NULL, &b, err), TB_EBUSY);
  assert_int_equal(tb_audit_close(a, err), 0);
}

static void test_bad_events_are_refused(void **state) {
  (void)state;
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  struct tb_audit_event ev = {.event = "Case Accepted"};
  assert_int_equal(tb_audit_append(a, &ev, err), TB_EINVAL);
  ev.event = "case.accepted";
  ev.case_id = "\xff\xfe";
  assert_int_equal(tb_audit_append(a, &ev, err), TB_EINVAL);
  ev.case_id = "c1";
  ev.detail_json = "{\"a\":\n1}";
  assert_int_equal(tb_audit_append(a, &ev, err), TB_EINVAL);
  ev.detail_json = "[1]";
  assert_int_equal(tb_audit_append(a, &ev, err), TB_EINVAL);
  ev.detail_json = "{\"a\":1,\"b\":\"line\\nbreak\"}";
  ev.actor = "quote \" and \x01 control";
  assert_int_equal(tb_audit_append(a, &ev, err), 0);
  assert_int_equal(tb_audit_last_seq(a), 1);
  assert_int_equal(tb_audit_close(a, err), 0);
  struct tb_audit_verify_result res;
  assert_int_equal(verify_file(path, NULL, &res), 0);
  assert_int_equal(res.records, 1);
}

static void test_flush_is_one_write_and_one_sync_per_batch(void **state) {
  (void)state;
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  struct tb_audit_stats st;
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(tb_audit_log_message_sent(a, "c", "p", "m", i, err), 0);
  tb_audit_get_stats(a, &st);
  assert_int_equal(st.writes, 0);
  assert_int_equal(st.syncs, 0);
  assert_true(st.pending_bytes > 0);
  struct stat fs;
  assert_int_equal(stat(path, &fs), 0);
  assert_int_equal(fs.st_size, 0); /* nothing reaches the file before the flush */
  assert_int_equal(tb_audit_flush(a, err), 0);
  tb_audit_get_stats(a, &st);
  assert_int_equal(st.writes, 1);
  assert_int_equal(st.syncs, 1);
  assert_int_equal(st.pending_bytes, 0);
  assert_int_equal(tb_audit_flush(a, err), 0); /* nothing buffered: no syscalls */
  tb_audit_on_store_commit(1, 1, 0, a);
  tb_audit_get_stats(a, &st);
  assert_int_equal(st.writes, 1);
  assert_int_equal(st.syncs, 1);
  assert_int_equal(tb_audit_close(a, err), 0);
}

static void test_pending_cap_forces_a_flush(void **state) {
  (void)state;
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  struct tb_audit_options o = {.max_pending_bytes = 1000};
  assert_int_equal(tb_audit_open(path, &o, &a, err), 0);
  for (int i = 0; i < 20; i++)
    assert_int_equal(tb_audit_log_message_sent(a, "c", "p", "m", i, err), 0);
  struct tb_audit_stats st;
  tb_audit_get_stats(a, &st);
  assert_true(st.syncs >= 3);
  assert_true(st.pending_bytes < 1000);
  assert_int_equal(tb_audit_close(a, err), 0);
}

static int cmp_str(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Rotated files sorted by name (= rotation order), the live file last. */
static int rotation_set(char files[][600], int max) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char *names[64];
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "audit.log.", 10) == 0 && n < 64) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  assert_true(n + 1 <= max);
  for (int i = 0; i < n; i++) {
    snprintf(files[i], 600, "%s/%s", dir, names[i]);
    free(names[i]);
  }
  snprintf(files[n], 600, "%s", path);
  return n + 1;
}

static void test_rotation_keeps_the_chain(void **state) {
  (void)state;
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  struct tb_audit_options o = {.rotate_bytes = 2000};
  assert_int_equal(tb_audit_open(path, &o, &a, err), 0);
  for (int i = 1; i <= 60; i++) {
    assert_int_equal(tb_audit_log_message_sent(a, "case", "laizhou", "m", i, err), 0);
    if (i % 5 == 0) assert_int_equal(tb_audit_flush(a, err), 0);
  }
  struct tb_audit_stats st;
  tb_audit_get_stats(a, &st);
  assert_true(st.rotations >= 3);
  int64_t last_seq = tb_audit_last_seq(a);
  assert_int_equal(last_seq, 60 + (int64_t)st.rotations);
  assert_int_equal(tb_audit_close(a, err), 0);

  char files[64][600];
  int n = rotation_set(files, 64);
  assert_int_equal(n, (int)st.rotations + 1);
  /* all files in order: one chain */
  struct tb_audit_anchor anchor;
  struct tb_audit_verify_result res;
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    assert_int_equal(verify_file(files[i], i ? &anchor : NULL, &res), 0);
    assert_int_equal(res.started_from_link, 0);
    total += res.records;
    anchor = res.last;
  }
  assert_int_equal(total, (uint64_t)last_seq);
  assert_int_equal(anchor.seq, last_seq);

  /* a later file alone: taken from its link, which names the file before */
  assert_int_equal(verify_file(files[n - 1], NULL, &res), 0);
  assert_int_equal(res.started_from_link, 1);
  const char *base = strrchr(files[n - 2], '/') + 1;
  assert_string_equal(res.link_file, base);

  /* skipping a file of the set breaks the link */
  struct tb_audit_verify_result r0;
  assert_int_equal(verify_file(files[0], NULL, &r0), 0);
  assert_int_equal(verify_file(files[2], &r0.last, &res), TB_EVALIDATE);
  assert_int_equal(res.bad_line, 1);

  /* reopening after rotation continues in the live file */
  assert_int_equal(tb_audit_open(path, &o, &a, err), 0);
  assert_int_equal(tb_audit_last_seq(a), last_seq);
  assert_int_equal(tb_audit_close(a, err), 0);
}

static void test_interrupted_rotation_is_finished_on_open(void **state) {
  (void)state;
  char last[TB_DIGEST_HEX_LEN], tmp[400], rotated[400];
  write_n(path, 5, last);
  /* Crash between the two renames: PATH gone, PATH.tmp holds the link. */
  snprintf(rotated, sizeof rotated, "%s.%019d", path, 5);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_equal(rename(path, rotated), 0);
  char *link = forge(6, last);
  FILE *f = fopen(tmp, "wb");
  fputs(link, f);
  fclose(f);
  free(link);
  struct tb_audit *a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_last_seq(a), 6);
  assert_int_equal(tb_audit_close(a, err), 0);
  struct stat st;
  assert_int_equal(stat(tmp, &st), -1);
  /* Crash before the renames: a stale PATH.tmp next to PATH is dropped. */
  f = fopen(tmp, "wb");
  fputs("junk", f);
  fclose(f);
  assert_int_equal(tb_audit_open(path, NULL, &a, err), 0);
  assert_int_equal(tb_audit_last_seq(a), 6);
  assert_int_equal(tb_audit_close(a, err), 0);
  assert_int_equal(stat(tmp, &st), -1);
}

static void test_expect_prev_hash_only(void **state) {
  (void)state;
  write_n(path, 4, NULL);
  struct tb_audit_verify_result res;
  struct tb_audit_anchor anchor = {.seq = -1};
  memcpy(anchor.hash, TB_AUDIT_GENESIS_HASH, sizeof anchor.hash);
  assert_int_equal(verify_file(path, &anchor, &res), 0);
  anchor.hash[0] = '1';
  assert_int_equal(verify_file(path, &anchor, &res), TB_EVALIDATE);
  assert_int_equal(res.bad_line, 1);
  assert_int_equal(res.fault, TB_AUDIT_DELETED);
}

static void test_json_check(void **state) {
  (void)state;
  const char *good[] = {"{}", "{\"a\":[1,-2.5e3,true,false,null,\"\\u00e9\\n\"]}",
                        " {\"k\":{\"x\":{}}} ", "{\"中\":\"文\"}"};
  const char *bad[] = {"", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{'a':1}",
                       "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{} {}", "{\"a\":\"\xc0\xaf\"}",
                       "{\"a\":tru}", "[]"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    assert_true(tb__audit_json_valid(good[i], strlen(good[i]), 1));
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (tb__audit_json_valid(bad[i], strlen(bad[i]), 1)) fail_msg("accepted: %s", bad[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_append_then_verify_ok, setup, teardown),
      cmocka_unit_test_setup_teardown(test_personal_data_is_masked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_edit_one_byte_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_edit_of_prev_or_hash_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deleted_record_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deleted_first_record_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inserted_with_wrong_prev_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inserted_with_wrong_seq_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_swapped_records_are_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_moved_record_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncated_last_line_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_line_is_not_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_file_verifies_with_zero_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reopen_continues_the_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reopen_cuts_a_partial_tail_and_says_so, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_open_refuses_an_edited_last_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_writer_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_events_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flush_is_one_write_and_one_sync_per_batch, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pending_cap_forces_a_flush, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_keeps_the_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_interrupted_rotation_is_finished_on_open, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_expect_prev_hash_only, setup, teardown),
      cmocka_unit_test(test_json_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
