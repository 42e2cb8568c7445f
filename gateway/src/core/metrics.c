/*
 * Metrics registry. Series are kept in a small per-family array searched
 * linearly: label cardinality is bounded by configuration (routes, statuses,
 * partners), and a cap per family keeps a hostile input from growing it.
 */
#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tbgw/error.h"

#define TB_METRIC_MAX_SERIES 512
#define TB_METRIC_LABEL_MAX 64

enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

struct series {
  char v1[TB_METRIC_LABEL_MAX];
  char v2[TB_METRIC_LABEL_MAX];
  double value;     /* counter/gauge value; histogram sum */
  double count;     /* histogram observation count */
  double *buckets;  /* histogram: cumulative counts per bound */
};

struct tb_metric {
  struct tb_metric *next;
  enum metric_kind kind;
  char *name, *help, *label1, *label2;
  double *bounds;
  size_t nbounds;
  struct series *series;
  size_t nseries, capseries;
};

static struct tb_metric *g_first, *g_last;

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static struct tb_metric *family_new(enum metric_kind kind, const char *name, const char *help,
                                    const char *l1, const char *l2) {
  struct tb_metric *m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  m->kind = kind;
  m->name = strdup(name);
  m->help = strdup(help);
  m->label1 = dup_or_null(l1);
  m->label2 = l1 ? dup_or_null(l2) : NULL;
  if (g_last) g_last->next = m;
  else g_first = m;
  g_last = m;
  return m;
}

struct tb_metric *tb_metric_counter(const char *name, const char *help, const char *l1,
                                    const char *l2) {
  return family_new(KIND_COUNTER, name, help, l1, l2);
}

struct tb_metric *tb_metric_gauge(const char *name, const char *help, const char *l1,
                                  const char *l2) {
  return family_new(KIND_GAUGE, name, help, l1, l2);
}

struct tb_metric *tb_metric_histogram(const char *name, const char *help, const char *l1,
                                      const double *bounds, size_t nbounds) {
  struct tb_metric *m = family_new(KIND_HISTOGRAM, name, help, l1, NULL);
  if (m == NULL) return NULL;
  m->bounds = malloc(nbounds * sizeof *bounds);
  if (m->bounds) {
    memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
    m->nbounds = nbounds;
  }
  return m;
}

static struct series *series_get(struct tb_metric *m, const char *v1, const char *v2) {
  if (m == NULL) return NULL;
  if (!m->label1) v1 = "";
  if (!m->label2) v2 = "";
  if (v1 == NULL) v1 = "";
  if (v2 == NULL) v2 = "";
  for (size_t i = 0; i < m->nseries; i++)
    if (strcmp(m->series[i].v1, v1) == 0 && strcmp(m->series[i].v2, v2) == 0)
      return &m->series[i];
  if (m->nseries == TB_METRIC_MAX_SERIES) return NULL;
  if (m->nseries == m->capseries) {
    size_t cap = m->capseries ? m->capseries * 2 : 8;
    struct series *s = realloc(m->series, cap * sizeof *s);
    if (s == NULL) return NULL;
    m->series = s;
    m->capseries = cap;
  }
  struct series *s = &m->series[m->nseries];
  memset(s, 0, sizeof *s);
  snprintf(s->v1, sizeof s->v1, "%s", v1);
  snprintf(s->v2, sizeof s->v2, "%s", v2);
  if (m->kind == KIND_HISTOGRAM) {
    s->buckets = calloc(m->nbounds ? m->nbounds : 1, sizeof *s->buckets);
    if (s->buckets == NULL) return NULL;
  }
  m->nseries++;
  return s;
}

int tb_metric_add(struct tb_metric *m, const char *v1, const char *v2, double delta) {
  struct series *s = series_get(m, v1, v2);
  if (s == NULL) return TB_ELIMIT;
  s->value += delta;
  return 0;
}

int tb_metric_set(struct tb_metric *m, const char *v1, const char *v2, double value) {
  struct series *s = series_get(m, v1, v2);
  if (s == NULL) return TB_ELIMIT;
  s->value = value;
  return 0;
}

int tb_metric_observe(struct tb_metric *m, const char *v1, double value) {
  struct series *s = series_get(m, v1, NULL);
  if (s == NULL) return TB_ELIMIT;
  s->value += value;
  s->count += 1;
  for (size_t i = 0; i < m->nbounds; i++)
    if (value <= m->bounds[i]) s->buckets[i] += 1;
  return 0;
}

double tb_metric_value(const struct tb_metric *m, const char *v1, const char *v2) {
  if (m == NULL) return 0;
  for (size_t i = 0; i < m->nseries; i++) {
    const struct series *s = &m->series[i];
    if ((!m->label1 || strcmp(s->v1, v1 ? v1 : "") == 0) &&
        (!m->label2 || strcmp(s->v2, v2 ? v2 : "") == 0))
      return m->kind == KIND_HISTOGRAM ? s->count : s->value;
  }
  return 0;
}

struct outbuf {
  char *p;
  size_t len, cap;
  int oom;
};

static void outf(struct outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct outbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

/* Label value escaping per the exposition format: \\, \" and \n. */
static void out_label(struct outbuf *b, const char *name, const char *value, int *first) {
  outf(b, "%s%s=\"", *first ? "" : ",", name);
  *first = 0;
  for (const char *c = value; *c; c++) {
    if (*c == '\\') outf(b, "\\\\");
    else if (*c == '"') outf(b, "\\\"");
    else if (*c == '\n') outf(b, "\\n");
    else outf(b, "%c", *c);
  }
  outf(b, "\"");
}

static void out_labels(struct outbuf *b, const struct tb_metric *m, const struct series *s,
                       const char *le) {
  if (!m->label1 && !le) return;
  int first = 1;
  outf(b, "{");
  if (m->label1) out_label(b, m->label1, s->v1, &first);
  if (m->label2) out_label(b, m->label2, s->v2, &first);
  if (le) out_label(b, "le", le, &first);
  outf(b, "}");
}

static void out_number(struct outbuf *b, double v) {
  if (v == (double)(long long)v && v < 1e15 && v > -1e15) outf(b, " %lld\n", (long long)v);
  else outf(b, " %.9g\n", v);
}

char *tb_metrics_render(size_t *len_out) {
  struct outbuf b = {malloc(4096), 0, 4096, 0};
  if (b.p == NULL) return NULL;
  b.p[0] = '\0';
  static const char *const kinds[] = {"counter", "gauge", "histogram"};
  for (const struct tb_metric *m = g_first; m; m = m->next) {
    outf(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, kinds[m->kind]);
    for (size_t i = 0; i < m->nseries; i++) {
      const struct series *s = &m->series[i];
      if (m->kind != KIND_HISTOGRAM) {
        outf(&b, "%s", m->name);
        out_labels(&b, m, s, NULL);
        out_number(&b, s->value);
        continue;
      }
      for (size_t k = 0; k < m->nbounds; k++) {
        char le[32];
        snprintf(le, sizeof le, "%g", m->bounds[k]);
        outf(&b, "%s_bucket", m->name);
        out_labels(&b, m, s, le);
        out_number(&b, s->buckets[k]);
      }
      outf(&b, "%s_bucket", m->name);
      out_labels(&b, m, s, "+Inf");
      out_number(&b, s->count);
      outf(&b, "%s_sum", m->name);
      out_labels(&b, m, s, NULL);
      out_number(&b, s->value);
      outf(&b, "%s_count", m->name);
      out_labels(&b, m, s, NULL);
      out_number(&b, s->count);
    }
  }
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (len_out) *len_out = b.len;
  return b.p;
}

void tb_metrics_reset(void) {
  struct tb_metric *m = g_first;
  while (m) {
    struct tb_metric *next = m->next;
    for (size_t i = 0; i < m->nseries; i++) free(m->series[i].buckets);
    free(m->series);
    free(m->bounds);
    free(m->name);
    free(m->help);
    free(m->label1);
    free(m->label2);
    free(m);
    m = next;
  }
  g_first = g_last = NULL;
}
