/*
 * http/problem.h — RFC 9457 problem details (application/problem+json).
 *
 * Every error answer of both listeners goes through here so that integrators
 * see one shape: {type, title, status, detail[, errors]}. The type is
 * "urn:tbgw:problem:<slug>" with a stable slug (documented in
 * docs/openapi.yaml); title is fixed per slug, detail is specific.
 */
#ifndef TB_HTTP_PROBLEM_H
#define TB_HTTP_PROBLEM_H

#include <stddef.h>

struct tb_http_exchange;

#define TB_PROBLEM_CONTENT_TYPE "application/problem+json"

/* Builds the JSON text; returns a malloc'd NUL-terminated string (caller
 * frees) or NULL on OOM. errors_json is NULL or a JSON array text that is
 * inserted verbatim as "errors". */
char *tb_problem_build(int status, const char *slug, const char *title, const char *detail,
                       const char *errors_json, size_t *len_out);

/* Builds and sends a problem answer. extra_headers as in tb_http_respond. */
void tb_http_respond_problem(struct tb_http_exchange *ex, int status, const char *slug,
                             const char *title, const char *detail, const char *extra_headers);

#endif
