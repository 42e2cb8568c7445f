/*
 * core/metrics.h — Prometheus metrics registry and text exposition.
 *
 * Families are registered once at start-up; series (label values) appear on
 * first use. Updates and rendering happen on the loop thread only — storage
 * thread results reach the loop before they are counted — so no atomics.
 * Names follow Prometheus conventions (snake_case, unit suffix, _total for
 * counters). Label values are escaped on output.
 */
#ifndef TB_CORE_METRICS_H
#define TB_CORE_METRICS_H

#include <stddef.h>

struct tb_metric; /* one family */

/* Counter family with up to two labels (NULL for unused). */
struct tb_metric *tb_metric_counter(const char *name, const char *help, const char *label1,
                                    const char *label2);
/* Gauge family (set, not summed). */
struct tb_metric *tb_metric_gauge(const char *name, const char *help, const char *label1,
                                  const char *label2);
/* Histogram family; bounds ascending, copied; +Inf added implicitly. */
struct tb_metric *tb_metric_histogram(const char *name, const char *help, const char *label1,
                                      const double *bounds, size_t nbounds);

/* Label values: as many as the family has labels (others ignored). Returns
 * TB_ENOMEM/TB_ELIMIT if the series cannot be created (the update is lost). */
int tb_metric_add(struct tb_metric *m, const char *v1, const char *v2, double delta);
int tb_metric_set(struct tb_metric *m, const char *v1, const char *v2, double value);
int tb_metric_observe(struct tb_metric *m, const char *v1, double value);

/* Renders every family; returns a malloc'd NUL-terminated text (caller
 * frees) or NULL on OOM. */
char *tb_metrics_render(size_t *len_out);

/* Value of one series (tests); 0 if it does not exist. For histograms: the
 * observation count. */
double tb_metric_value(const struct tb_metric *m, const char *v1, const char *v2);

/* Frees every family (end of process, tests). */
void tb_metrics_reset(void);

#endif
