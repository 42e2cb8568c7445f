/*
 * tests/fuzz/fuzz.h — what every harness in tests/fuzz shares: the libFuzzer
 * entry points (declared here so -Wmissing-prototypes stays on) and a few
 * helpers for harnesses that need the development PKI or quiet logs.
 *
 * A harness is one fuzz_<name>.c defining LLVMFuzzerTestOneInput (and, if it
 * needs one-time setup, LLVMFuzzerInitialize). It is linked either with
 * driver.c (replays files: ctest fuzz.replay.<name>) or with libFuzzer
 * (-DTB_FUZZ=ON, clang). Harnesses must be deterministic for a given input,
 * free everything they allocate, and abort() on a broken invariant so that
 * both modes report it.
 */
#ifndef TB_TESTS_FUZZ_H
#define TB_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: print it and abort (libFuzzer saves the input). */
#define TB_FUZZ_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

/* Sends the gateway's log to /dev/null at DEBUG, so the logging and masking
 * code runs on hostile input too without flooding the fuzzer's output
 * (TB_FUZZ_LOG=1 keeps it on stderr). */
void tb_fuzz_quiet_logs(void);

#endif
