/*
 * core/timefmt.h — wall-clock helpers. Times leave the gateway as RFC 3339
 * in Beijing time (+08:00), the zone every party of this system works in.
 */
#ifndef TB_CORE_TIMEFMT_H
#define TB_CORE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#define TB_TIME_RFC3339_MAX 72

/* Milliseconds since the Unix epoch, from CLOCK_REALTIME. */
int64_t tb_time_now_ms(void);

/* "2024-05-06T10:00:00.123+08:00"; out must hold TB_TIME_RFC3339_MAX bytes. */
char *tb_time_format_bj(int64_t unix_ms, char *out);

#endif
