/*
 * luxml_form.c — the form (canonical "form", free JSON) ⇄ BiaoDan.
 *
 * lu-xml.md: nested objects are flattened with ".", array elements with
 * "[i]"; every leaf is <Xiang Ming="path" LeiXing="string|number|boolean|null">.
 * The round trip restores the exact form: key order (document order), types,
 * and integer vs real numbers — an integer is written as JSON writes it
 * ("2"), a real always with a fraction or an exponent ("0.6", "2.0",
 * "1e+20"), so reading "2" gives an integer and "2.0" a real. What the
 * notation cannot carry is refused when encoding, never silently changed:
 * empty nested objects/arrays (they have no leaf), and keys that are empty
 * or contain '.', '[' or ']' (the path would read back differently).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luxml.h"

#define FORM_MAX_DEPTH 64

void lx_format_real(double v, char *out, size_t size) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, size, "%.*g", prec, v);
    if (strtod(out, NULL) == v) break;
  }
  if (strpbrk(out, ".eE") == NULL) {
    size_t n = strlen(out);
    if (n + 3 <= size) memcpy(out + n, ".0", 3);
  }
}

struct path {
  char *s;
  size_t len, cap;
};

static int path_push(struct path *p, const char *piece, size_t n) {
  if (p->len + n + 1 > p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 128;
    while (cap < p->len + n + 1) cap *= 2;
    char *s = realloc(p->s, cap);
    if (s == NULL) return TB_ENOMEM;
    p->s = s;
    p->cap = cap;
  }
  memcpy(p->s + p->len, piece, n);
  p->len += n;
  p->s[p->len] = '\0';
  return 0;
}

static int add_leaf(xmlNodePtr biaodan, const char *path, const char *type, const char *text,
                    char *err) {
  if (!lx_xml_chars_ok(text, strlen(text)))
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: form.%s: the value contains a character XML 1.0 cannot carry "
                   "(a control character)",
                   path);
  xmlNodePtr x = xmlNewTextChild(biaodan, NULL, BAD_CAST "Xiang", BAD_CAST text);
  if (x == NULL || xmlNewProp(x, BAD_CAST "Ming", BAD_CAST path) == NULL ||
      xmlNewProp(x, BAD_CAST "LeiXing", BAD_CAST type) == NULL)
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory building BiaoDan");
  return 0;
}

static int flatten(const json_t *v, struct path *p, xmlNodePtr biaodan, int depth, char *err) {
  if (depth > FORM_MAX_DEPTH)
    return lx_errf(err, TB_EVALIDATE, "lu-xml: form nested deeper than %d levels", FORM_MAX_DEPTH);
  size_t mark = p->len;
  int rc = 0;
  if (json_is_object(v)) {
    if (json_object_size(v) == 0 && p->len > 0)
      return lx_errf(err, TB_EVALIDATE,
                     "lu-xml: form.%s is an empty object, which BiaoDan cannot express (it "
                     "has no leaf); send null or leave the key out",
                     p->s);
    const char *k;
    json_t *c;
    json_object_foreach((json_t *)v, k, c) {
      size_t kl = strlen(k);
      if (kl == 0 || strpbrk(k, ".[]") != NULL)
        return lx_errf(err, TB_EVALIDATE,
                       "lu-xml: form%s%s: key \"%.60s\" %s, which BiaoDan paths cannot express",
                       p->len ? "." : "", p->len ? p->s : "", k,
                       kl == 0 ? "is empty" : "contains '.', '[' or ']'");
      if (!lx_xml_chars_ok(k, kl))
        return lx_errf(err, TB_EVALIDATE,
                       "lu-xml: form%s%s: a key contains a character XML 1.0 cannot carry",
                       p->len ? "." : "", p->len ? p->s : "");
      if ((p->len && path_push(p, ".", 1) != 0) || path_push(p, k, kl) != 0)
        return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
      if ((rc = flatten(c, p, biaodan, depth + 1, err)) != 0) return rc;
      p->len = mark;
      p->s[mark] = '\0';
    }
    return 0;
  }
  if (json_is_array(v)) {
    if (json_array_size(v) == 0)
      return lx_errf(err, TB_EVALIDATE,
                     "lu-xml: form.%s is an empty array, which BiaoDan cannot express (it has "
                     "no leaf); send null or leave the key out",
                     p->s);
    size_t i;
    json_t *c;
    json_array_foreach(v, i, c) {
      char idx[32];
      int n = snprintf(idx, sizeof idx, "[%zu]", i);
      if (path_push(p, idx, (size_t)n) != 0)
        return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
      if ((rc = flatten(c, p, biaodan, depth + 1, err)) != 0) return rc;
      p->len = mark;
      p->s[mark] = '\0';
    }
    return 0;
  }
  char num[64];
  switch (json_typeof(v)) {
  case JSON_STRING: return add_leaf(biaodan, p->s, "string", json_string_value(v), err);
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return add_leaf(biaodan, p->s, "number", num, err);
  case JSON_REAL:
    lx_format_real(json_real_value(v), num, sizeof num);
    return add_leaf(biaodan, p->s, "number", num, err);
  case JSON_TRUE: return add_leaf(biaodan, p->s, "boolean", "true", err);
  case JSON_FALSE: return add_leaf(biaodan, p->s, "boolean", "false", err);
  case JSON_NULL: return add_leaf(biaodan, p->s, "null", "", err);
  default: return lx_errf(err, TB_EINTERNAL, "lu-xml: form.%s: unknown JSON type", p->s);
  }
}

int lx_form_flatten(const json_t *form, xmlNodePtr biaodan, char *err) {
  if (!json_is_object(form)) return lx_errf(err, TB_EVALIDATE, "lu-xml: form is not an object");
  struct path p = {NULL, 0, 0};
  if (path_push(&p, "", 0) != 0) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  int rc = flatten(form, &p, biaodan, 0, err);
  free(p.s);
  return rc;
}

/* ---- BiaoDan → form -------------------------------------------------------- */

/* One step of a path: a key (k, kl) or an index. */
struct seg {
  const char *k;
  size_t kl;
  size_t index;
  int is_index;
};

/* key(.key|[n])*: keys non-empty without '.', '[', ']'; n decimal without
 * leading zeros. Returns the number of segments, or -1. */
static int split_path(const char *s, struct seg *segs, int max) {
  int n = 0;
  const char *p = s;
  int want_key = 1;
  while (*p) {
    if (n == max) return -1;
    struct seg *g = &segs[n];
    memset(g, 0, sizeof *g);
    if (want_key || *p == '.') {
      if (!want_key) p++;
      const char *start = p;
      while (*p && *p != '.' && *p != '[' && *p != ']') p++;
      if (p == start) return -1;
      g->k = start;
      g->kl = (size_t)(p - start);
    } else if (*p == '[') {
      p++;
      if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
      size_t v = 0;
      while (*p >= '0' && *p <= '9') {
        if (v > 100000000u) return -1;
        v = v * 10 + (size_t)(*p++ - '0');
      }
      if (*p++ != ']') return -1;
      g->is_index = 1;
      g->index = v;
    } else {
      return -1;
    }
    want_key = 0;
    n++;
  }
  return n;
}

/* JSON number grammar; *is_int when there is no fraction and no exponent. */
static int number_ok(const char *s, int *is_int) {
  const char *p = s;
  *is_int = 1;
  if (*p == '-') p++;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (*p >= '0' && *p <= '9') p++;
  } else {
    return 0;
  }
  if (*p == '.') {
    *is_int = 0;
    p++;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    *is_int = 0;
    p++;
    if (*p == '+' || *p == '-') p++;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  return *p == '\0';
}

static json_t *leaf_value(const char *type, const char *text, size_t len, const char **problem) {
  if (strcmp(type, "string") == 0) return json_stringn(text, len);
  if (strlen(text) != len) {
    *problem = "contains a NUL character";
    return NULL;
  }
  if (strcmp(type, "null") == 0) {
    if (len != 0) *problem = "is a null item with text (null items are empty)";
    return len == 0 ? json_null() : NULL;
  }
  if (strcmp(type, "boolean") == 0) {
    if (strcmp(text, "true") == 0) return json_true();
    if (strcmp(text, "false") == 0) return json_false();
    *problem = "is a boolean item that is neither true nor false";
    return NULL;
  }
  if (strcmp(type, "number") == 0) {
    int is_int;
    if (!number_ok(text, &is_int)) {
      *problem = "is a number item whose text is not a JSON number";
      return NULL;
    }
    errno = 0;
    if (is_int) {
      long long v = strtoll(text, NULL, 10);
      if (errno == ERANGE) {
        *problem = "is an integer beyond 64 bits";
        return NULL;
      }
      return json_integer((json_int_t)v);
    }
    double d = strtod(text, NULL);
    if (!isfinite(d)) {
      *problem = "is a number beyond the range of a double";
      return NULL;
    }
    return json_real(d);
  }
  *problem = "has an unknown LeiXing";
  return NULL;
}

#define MAX_SEGS 64

/* Puts one leaf at its path, creating containers on the way. */
static int place(json_t *root, const struct seg *segs, int n, json_t *leaf, const char **problem) {
  json_t *cur = root;
  for (int i = 0; i < n; i++) {
    const struct seg *g = &segs[i];
    int last = i == n - 1;
    json_t *child;
    json_t *want = NULL;
    if (g->is_index) {
      if (!json_is_array(cur)) {
        *problem = "indexes something that is not an array";
        return -1;
      }
      size_t size = json_array_size(cur);
      if (g->index > size) {
        *problem = "skips an array index (indexes are dense from 0, in order)";
        return -1;
      }
      child = g->index < size ? json_array_get(cur, g->index) : NULL;
    } else {
      if (!json_is_object(cur)) {
        *problem = "names a key inside something that is not an object";
        return -1;
      }
      char key[1024];
      if (g->kl >= sizeof key) {
        *problem = "has a key longer than 1023 bytes";
        return -1;
      }
      memcpy(key, g->k, g->kl);
      key[g->kl] = '\0';
      child = json_object_get(cur, key);
      if (last || child == NULL) {
        if (last && child != NULL) {
          *problem = "is given twice";
          return -1;
        }
        want = last ? json_incref(leaf) : segs[i + 1].is_index ? json_array() : json_object();
        if (want == NULL || json_object_set_new(cur, key, want) != 0) {
          *problem = "out of memory";
          return -1;
        }
        cur = want;
        continue;
      }
    }
    if (g->is_index && (last || child == NULL)) {
      if (last && child != NULL) {
        *problem = "is given twice";
        return -1;
      }
      want = last ? json_incref(leaf) : segs[i + 1].is_index ? json_array() : json_object();
      if (want == NULL || json_array_append_new(cur, want) != 0) {
        *problem = "out of memory";
        return -1;
      }
      cur = want;
      continue;
    }
    /* an existing child on the way: it must be the container the path needs */
    if (segs[i + 1].is_index ? !json_is_array(child) : !json_is_object(child)) {
      *problem = "conflicts with an earlier item (a value and a container at one path)";
      return -1;
    }
    cur = child;
  }
  return 0;
}

int lx_form_unflatten(xmlNodePtr biaodan, json_t **form, char *why, size_t why_size) {
  *form = json_object();
  if (*form == NULL) {
    snprintf(why, why_size, "out of memory");
    return TB_ENOMEM;
  }
  int idx = 0;
  for (xmlNodePtr x = biaodan ? biaodan->children : NULL; x != NULL; x = x->next) {
    if (x->type != XML_ELEMENT_NODE) continue;
    xmlChar *ming = xmlGetNoNsProp(x, BAD_CAST "Ming");
    xmlChar *type = xmlGetNoNsProp(x, BAD_CAST "LeiXing");
    struct lx_text t;
    lx_text_get(x, &t);
    const char *problem = NULL;
    struct seg segs[MAX_SEGS];
    int n = ming ? split_path((const char *)ming, segs, MAX_SEGS) : -1;
    json_t *leaf = NULL;
    if (!lx_is(x, "Xiang") || ming == NULL || type == NULL)
      problem = "is not a Xiang with Ming and LeiXing";
    else if (n <= 0 || segs[0].is_index)
      problem = "has a Ming that is not key(.key|[n])* (at most 64 steps)";
    else if ((leaf = leaf_value((const char *)type, t.s, t.len, &problem)) == NULL && !problem)
      problem = "out of memory";
    if (problem == NULL && place(*form, segs, n, leaf, &problem) != 0 && problem == NULL)
      problem = "cannot be placed";
    json_decref(leaf);
    lx_text_free(&t);
    if (problem != NULL) {
      /* the path is the partner's form structure, not personal data */
      snprintf(why, why_size, "BiaoDan item %d (Ming \"%.80s\") %s", idx + 1,
               ming ? (const char *)ming : "", problem);
      xmlFree(ming);
      xmlFree(type);
      json_decref(*form);
      *form = NULL;
      return strcmp(problem, "out of memory") == 0 ? TB_ENOMEM : TB_EVALIDATE;
    }
    xmlFree(ming);
    xmlFree(type);
    idx++;
  }
  return 0;
}
