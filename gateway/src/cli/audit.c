/*
 * tbgw audit verify: checks the hash chain of audit files (audit/audit.h),
 * streaming, so a multi-gigabyte file needs no more memory than a small one.
 * Several files are checked in the order given as one chain: the rotation
 * set oldest first, the live file last.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: tbgw audit verify [--json] [--expect-prev HASH] FILE [FILE...]\n"
    "\n"
    "Checks the audit trail: every record's SM3 hash, that seq increases by one\n"
    "and that each record carries the hash of the one before it. Several FILEs\n"
    "are one chain in the order given: rotated files oldest first, then the\n"
    "live file (e.g. tbgw audit verify audit.log.* audit.log).\n"
    "\n"
    "  --expect-prev HASH  the first record must follow the record with this\n"
    "                      hash (the \"last hash\" printed for the file before).\n"
    "                      Without it the first FILE must start the chain (seq 1)\n"
    "                      or start with an audit.rotated link, which is trusted\n"
    "                      (a note says so).\n"
    "  --json              one JSON document on stdout instead of text.\n"
    "\n"
    "Prints \"ok: N records, last seq S, last hash H\", or names the first bad\n"
    "record: \"FAILED at line L (seq S) of FILE: edited|deleted|inserted|\n"
    "reordered|truncated|not JSON: why\". Compare the last hash with one kept\n"
    "elsewhere to detect records removed from the end.\n"
    "Exit status: 0 chain intact, 1 a record is bad or a file cannot be read,\n"
    "2 usage error.\n";

static int is_hash(const char *s) {
  if (strlen(s) != 64) return 0;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static int verify(int argc, char **argv) {
  int json = 0, nfiles = 0;
  const char *expect_prev = NULL;
  char **files = calloc((size_t)argc + 1, sizeof *files);
  if (files == NULL) return 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) json = 1;
    else if (strcmp(argv[i], "--expect-prev") == 0 && i + 1 < argc) expect_prev = argv[++i];
    else if (strncmp(argv[i], "--expect-prev=", 14) == 0) expect_prev = argv[i] + 14;
    else if (strcmp(argv[i], "--") == 0) {
      while (++i < argc) files[nfiles++] = argv[i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "tbgw audit verify: unknown option '%s'\n\n%s", argv[i], usage);
      free(files);
      return 2;
    } else
      files[nfiles++] = argv[i];
  }
  if (nfiles == 0 || (expect_prev && !is_hash(expect_prev))) {
    fputs(expect_prev && !is_hash(expect_prev)
              ? "tbgw audit verify: --expect-prev wants 64 lowercase hex digits\n\n"
              : "tbgw audit verify: no FILE given\n\n",
          stderr);
    fputs(usage, stderr);
    free(files);
    return 2;
  }
  struct tb_audit_anchor anchor, *expect = NULL;
  if (expect_prev) {
    anchor.seq = -1; /* the hash fixes the seq */
    memcpy(anchor.hash, expect_prev, sizeof anchor.hash);
    expect = &anchor;
  }
  json_t *jfiles = json ? json_array() : NULL;
  uint64_t total = 0;
  int rc = 0;
  struct tb_audit_verify_result res;
  const char *bad_file = NULL, *open_error = NULL;
  for (int i = 0; i < nfiles && rc == 0; i++) {
    FILE *f = fopen(files[i], "rb");
    if (f == NULL) {
      bad_file = files[i];
      open_error = strerror(errno);
      rc = 1;
      break;
    }
    int v = tb_audit_verify_stream(f, expect, &res);
    fclose(f);
    if (v == TB_ENOMEM) {
      bad_file = files[i];
      open_error = "out of memory";
      rc = 1;
      break;
    }
    total += res.records;
    if (res.started_from_link && !json)
      fprintf(stderr,
              "note: %s continues the chain of %s (its first record is a rotation link, "
              "taken on trust): give that file first to check the link\n",
              files[i], res.link_file[0] ? res.link_file : "an earlier file");
    if (jfiles) {
      json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:b}", "file", files[i], "records",
                            (json_int_t)res.records, "last_seq", (json_int_t)res.last.seq,
                            "last_hash", res.last.hash, "started_from_link",
                            res.started_from_link);
      if (o && res.started_from_link) json_object_set_new(o, "link_file", json_string(res.link_file));
      if (o) json_array_append_new(jfiles, o);
    }
    if (v != 0) {
      bad_file = files[i];
      rc = 1;
      break;
    }
    anchor = res.last;
    expect = &anchor;
  }
  if (json) {
    json_t *doc;
    if (rc == 0)
      doc = json_pack("{s:b, s:I, s:I, s:s, s:o}", "ok", 1, "records", (json_int_t)total,
                      "last_seq", (json_int_t)anchor.seq, "last_hash", anchor.hash, "files",
                      jfiles);
    else if (open_error)
      doc = json_pack("{s:b, s:s, s:s, s:o}", "ok", 0, "file", bad_file, "error", open_error,
                      "files", jfiles);
    else
      doc = json_pack("{s:b, s:s, s:I, s:I, s:s, s:s, s:o}", "ok", 0, "file", bad_file, "line",
                      (json_int_t)res.bad_line, "seq", (json_int_t)res.bad_seq, "fault",
                      tb_audit_fault_name(res.fault), "reason", res.reason, "files", jfiles);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(doc);
  } else if (rc == 0) {
    printf("ok: %llu records, last seq %lld, last hash %s\n", (unsigned long long)total,
           (long long)anchor.seq, anchor.hash);
  } else if (open_error) {
    fprintf(stderr, "tbgw audit verify: %s: %s\n", bad_file, open_error);
  } else {
    char seq[32] = "unreadable";
    if (res.bad_seq >= 0) snprintf(seq, sizeof seq, "%lld", (long long)res.bad_seq);
    printf("FAILED at line %llu (seq %s) of %s: %s: %s\n", (unsigned long long)res.bad_line,
           seq, bad_file, tb_audit_fault_name(res.fault), res.reason);
  }
  free(files);
  return rc;
}

int tb_cli_audit(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "verify") == 0) {
    if (tb_cli_wants_help(argc - 1, argv + 1)) {
      fputs(usage, stdout);
      return 0;
    }
    return verify(argc - 1, argv + 1);
  }
  if (tb_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  fputs(usage, stderr);
  return 2;
}
