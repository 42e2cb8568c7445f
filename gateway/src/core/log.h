/*
 * core/log.h — structured logging: one JSON object per line.
 *
 * A line is built with tb_log_begin(), fields are added, tb_log_end() writes
 * it with a single write(2) so lines from different threads never interleave.
 * Every line carries "ts", "level" and a stable "event" name (operators grep
 * and alert on event names; never rename one). Personal data must be masked
 * by the caller with core/mask.h before it is added: the logger cannot know
 * which strings are personal.
 *
 * Thread-safe: each thread builds its line in its own thread-local buffer.
 */
#ifndef TB_CORE_LOG_H
#define TB_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

enum tb_log_level { TB_LOG_DEBUG = 0, TB_LOG_INFO, TB_LOG_WARN, TB_LOG_ERROR };

/* Parses "debug"/"info"/"warn"/"error"; returns -1 if unknown. */
int tb_log_level_parse(const char *name);

/* Where lines go: an open fd (default 2) and the minimum level. Not
 * thread-safe against concurrent logging: call at start-up or reload. */
void tb_log_setup(int fd, enum tb_log_level min_level);
int tb_log_enabled(enum tb_log_level level);

struct tb_log_line; /* thread-local; valid between begin and end */

/* Returns NULL when the level is disabled; every tb_log_* accepts NULL. */
struct tb_log_line *tb_log_begin(enum tb_log_level level, const char *event);
void tb_log_str(struct tb_log_line *l, const char *key, const char *value);
void tb_log_strn(struct tb_log_line *l, const char *key, const char *value, size_t len);
void tb_log_int(struct tb_log_line *l, const char *key, int64_t value);
void tb_log_double(struct tb_log_line *l, const char *key, double value);
void tb_log_end(struct tb_log_line *l);

/* Shorthand for a line with an event and a human message ("msg"). */
void tb_log_msg(enum tb_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
