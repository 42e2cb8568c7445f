/*
 * luxml.h — internals shared by the files of the lu-xml adapter (Shandong-style
 * tongban XML, shared/partners/lu-xml.md). Not installed, not part of the ABI:
 * the adapter's only interface is tbgw/adapter.h.
 *
 * Files: luxml.c (entry, settings, init/fini/routes/release), luxml_xml.c
 * (hardened parsing, schema validation, text helpers), luxml_encode.c
 * (canonical → TongbanMessage), luxml_form.c (BiaoDan ⇄ form), luxml_decode.c
 * (TongbanMessage → canonical), luxml_ack.c (classify and answer).
 *
 * Threads: after init, struct luxml is read-only; every call builds its own
 * libxml2 documents and validation contexts, so encode/classify/decode/answer
 * may run on several threads at once.
 */
#ifndef TB_ADAPTER_LUXML_H
#define TB_ADAPTER_LUXML_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "tbgw/adapter.h"
#include "tbgw/error.h"

#define LX_NS "urn:sd:tongban:1.0"
#define LX_DSIG_NS "http://www.w3.org/2000/09/xmldsig#"
#define LX_CONTENT_TYPE "application/xml; charset=UTF-8"
#define LX_RECEIVE_PATH "/tongban/v1/receive"
#define LX_NOTIFY_PATH "/tongban/v1/notify"
#define LX_MAX_BODY (32u * 1024u * 1024u) /* lu-xml.md "Timeouts": bodies ≤ 32 MiB */
#define LX_MAX_DEPTH 64u                  /* the deepest document is 6 levels */
#define LX_MAX_LOCAL_REGIONS 32

/* Refusals that are not acknowledgements: refuse_code values that make
 * answer() reply with a bare HTTP status (see docs/adapter-lu-xml.md). */
#define LX_HTTP_400 "HTTP 400"
#define LX_HTTP_404 "HTTP 404"
#define LX_HTTP_405 "HTTP 405"
#define LX_HTTP_413 "HTTP 413"
#define LX_HTTP_415 "HTTP 415"

struct luxml {
  const struct tb_host *host;
  char sign_key[128];   /* keys.sign: RSA + certificate, our XML-DSig key */
  char peer_ca[128];    /* keys.peer_ca: the partner's CA */
  int64_t window_ms;    /* replay_window_s × 1000 */
  char local_regions[LX_MAX_LOCAL_REGIONS][7];
  size_t n_local_regions; /* besides host->node_region */
  xmlSchemaPtr schema;  /* schemas/lu-xml.xsd, compiled once at init */
  struct tb_inbound_route route;
};

/* ---- luxml_xml.c ---- */

/* snprintf into err (TB_ERRMSG_MAX) and return code. */
int lx_errf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Parses untrusted XML: NONET, no entity substitution, no DTD loading, any
 * DOCTYPE stops the parser at once; ≤ LX_MAX_BODY bytes, ≤ LX_MAX_DEPTH levels,
 * UTF-8 only. 0 and *doc (xmlFreeDoc), or TB_EPARSE / TB_ELIMIT with why. */
int lx_parse(const void *xml, size_t len, xmlDocPtr *doc, char *why, size_t why_size);

/* Validates doc against the compiled schema. 0, TB_EVALIDATE (why: the first
 * problem, element and line, values masked), TB_ENOMEM. */
int lx_validate(const struct luxml *lx, xmlDocPtr doc, char *why, size_t why_size);

/* Compiles the embedded schema. */
int lx_schema_load(xmlSchemaPtr *out, char *err);

/* The first element child of parent named name in the lu-xml namespace. */
xmlNodePtr lx_child(xmlNodePtr parent, const char *name);
/* 1 if node is the element {urn:sd:tongban:1.0}name. */
int lx_is(xmlNodePtr node, const char *name);
/* Next element sibling named name (NULL: any element). */
xmlNodePtr lx_next(xmlNodePtr node, const char *name);

/* The text of an element (text and CDATA children; comments skipped). */
struct lx_text {
  const char *s; /* never NULL once filled */
  size_t len;
  xmlChar *owned;
};
void lx_text_get(xmlNodePtr node, struct lx_text *t);
void lx_text_free(struct lx_text *t);
/* Copies the text of parent/name into out (size), "" when absent or too long;
 * returns 1 if copied whole. */
int lx_copy_text(xmlNodePtr parent, const char *name, char *out, size_t size);

/* 1 if s[0..len) is UTF-8 that XML 1.0 can carry (Char production). */
int lx_xml_chars_ok(const char *s, size_t len);

/* Adds <name>text</name> (escaped) to parent. TB_EVALIDATE if XML cannot
 * carry the text (what names the canonical field), TB_ENOMEM. */
int lx_add(xmlNodePtr parent, const char *name, const char *text, const char *what, char *err);

/* Serializes doc (UTF-8, no reformatting). */
int lx_serialize(xmlDocPtr doc, xmlChar **out, int *len, char *err);

/* Signs xml with keys.sign through the host; *out host-allocated. */
int lx_sign(const struct luxml *lx, const void *xml, size_t len, struct tb_bytes *out, char *err);

/* Copies s (len bytes) into host memory, NUL-terminated. */
char *lx_hstrndup(const struct tb_host *h, const char *s, size_t len);
char *lx_hstrdup(const struct tb_host *h, const char *s);

/* JSON text of v in host memory. */
int lx_json_to_bytes(const struct tb_host *h, const json_t *v, struct tb_bytes *out, char *err);

/* Copies at most size-1 bytes, never cutting a UTF-8 sequence. */
void lx_strlcpy_utf8(char *out, size_t size, const char *s);

/* 1 if region is one of ours: host->node_region or one of settings local_regions. */
int lx_region_is_local(const struct luxml *lx, const char *region);

/* ---- luxml_form.c ---- */

/* Appends one <Xiang> per leaf of form (an object) to biaodan. TB_EVALIDATE
 * for what cannot round-trip (empty nested object/array, key with '.', '[',
 * ']' or empty, text XML cannot carry), err naming the form path. */
int lx_form_flatten(const json_t *form, xmlNodePtr biaodan, char *err);
/* Rebuilds the form from <BiaoDan>. TB_EVALIDATE (why) for a bad path, a
 * value that does not fit its LeiXing, a path given twice, or a gap. */
int lx_form_unflatten(xmlNodePtr biaodan, json_t **form, char *why, size_t why_size);
/* Shortest text that reads back as the same double, always with '.' or 'e'. */
void lx_format_real(double v, char *out, size_t size);

/* ---- luxml_encode.c / luxml_decode.c / luxml_ack.c ---- */

int lx_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out, char *err);
int lx_decode(void *state, const struct tb_inbound_request *req, struct tb_inbound_message *out,
              char *err);
int lx_classify(void *state, const struct tb_outbound *msg, const struct tb_wire_response *resp,
                struct tb_classification *out, char *err);
int lx_answer(void *state, const struct tb_inbound_request *req,
              const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
              const char *receipt_no, struct tb_wire_answer *out, char *err);

/* Canonical status ⇄ ZhuangTai. NULL if unknown. */
const char *lx_status_code(const char *canonical);
const char *lx_status_name(const char *code);
/* Message type ⇄ MessageType text. */
const char *lx_type_name(enum tb_msg_type t);
int lx_type_from_name(const char *s, enum tb_msg_type *t);

#endif
