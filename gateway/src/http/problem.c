/*
 * http/problem.c — RFC 9457 problem details as compact JSON:
 * {"type":"urn:tbgw:problem:<slug>","title":...,"status":...,"detail":...[,"errors":[...]]}.
 *
 * Details may quote what a peer sent; jansson refuses invalid UTF-8, so such
 * bytes are replaced by '?' rather than losing the whole detail.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/problem.h"
#include "http/server.h"

static json_t *utf8_string(const char *s) {
  if (s == NULL) return NULL;
  json_t *j = json_string(s);
  if (j) return j;
  size_t n = strlen(s);
  char *t = malloc(n + 1);
  if (t == NULL) return NULL;
  for (size_t i = 0; i < n; i++) t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
  t[n] = '\0';
  j = json_string(t);
  free(t);
  return j;
}

char *tb_problem_build(int status, const char *slug, const char *title, const char *detail,
                       const char *errors_json, size_t *len_out) {
  char type[128];
  snprintf(type, sizeof type, "urn:tbgw:problem:%s", slug ? slug : "about-blank");
  json_t *o = json_pack("{s:s, s:o, s:i}", "type", type, "title",
                        utf8_string(title ? title : tb_http_reason(status)), "status", status);
  if (o == NULL) return NULL;
  if (detail) json_object_set_new(o, "detail", utf8_string(detail));
  if (errors_json) {
    json_error_t jerr;
    json_t *e = json_loads(errors_json, 0, &jerr);
    if (e && json_is_array(e)) {
      json_object_set_new(o, "errors", e);
    } else {
      json_decref(e);
      tb_log_msg(TB_LOG_ERROR, "http.problem.errors_invalid",
                 "problem \"%s\": errors_json is not a JSON array (%s at line %d column %d)",
                 slug ? slug : "-", e ? "not an array" : jerr.text, jerr.line, jerr.column);
    }
  }
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (s && len_out) *len_out = strlen(s);
  return s;
}

void tb_http_respond_problem(struct tb_http_exchange *ex, int status, const char *slug,
                             const char *title, const char *detail, const char *extra_headers) {
  size_t len = 0;
  char *body = tb_problem_build(status, slug, title, detail, NULL, &len);
  if (body)
    tb_http_respond_owned(ex, status, TB_PROBLEM_CONTENT_TYPE, body, len, extra_headers);
  else
    tb_http_respond(ex, status, NULL, NULL, 0, extra_headers);
}
