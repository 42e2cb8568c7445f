/*
 * tests/fuzz/common.c — helpers shared by the harnesses (see fuzz.h).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"
#include "fuzz.h"

void tb_fuzz_quiet_logs(void) {
  if (getenv("TB_FUZZ_LOG") != NULL) {
    tb_log_setup(2, TB_LOG_DEBUG);
    return;
  }
  int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) tb_log_setup(fd, TB_LOG_DEBUG);
}
