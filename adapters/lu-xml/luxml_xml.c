/*
 * luxml_xml.c — the adapter's XML plumbing: a hardened parser for untrusted
 * input (no DTDs, no entities, no network, capped size and depth), schema
 * validation with error texts that never repeat values (they may be personal
 * data), text access and construction helpers, and host-memory copies.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include "luxml.h"

/* schemas/lu-xml.xsd, embedded at build time (adapters/lu-xml/CMakeLists.txt). */
extern const unsigned char lx_schema_xsd[];
extern const size_t lx_schema_xsd_len;

int lx_errf(char *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TB_ERRMSG_MAX, fmt, ap);
    va_end(ap);
  }
  return code;
}

void lx_strlcpy_utf8(char *out, size_t size, const char *s) {
  if (size == 0) return;
  size_t n = s ? strlen(s) : 0;
  if (n >= size) {
    n = size - 1;
    /* back up to the start of a UTF-8 sequence */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  if (n) memcpy(out, s, n);
  out[n] = '\0';
}

/* ---- parsing ------------------------------------------------------------ */

struct parse_state {
  int doctype;
};

static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id,
                       const xmlChar *system_id) {
  (void)name, (void)external_id, (void)system_id;
  xmlParserCtxtPtr ctxt = ctx;
  struct parse_state *st = ctxt->_private;
  st->doctype = 1;
  xmlStopParser(ctxt);
}

static void on_quiet_error(void *user, xmlErrorPtr e) {
  (void)user, (void)e; /* kept in the context's lastError; never printed */
}

static int depth_ok(xmlNodePtr root, unsigned max) {
  unsigned d = 1;
  xmlNodePtr n = root;
  while (n != NULL) {
    if (n->type == XML_ELEMENT_NODE && d > max) return 0;
    if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
      n = n->children;
      d++;
      continue;
    }
    while (n != NULL && n != root && n->next == NULL) {
      n = n->parent;
      d--;
    }
    if (n == NULL || n == root) break;
    n = n->next;
  }
  return 1;
}

static void trim_msg(char *m) {
  size_t n = strlen(m);
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ' || m[n - 1] == '.')) m[--n] = '\0';
}

int lx_parse(const void *xml, size_t len, xmlDocPtr *doc_out, char *why, size_t why_size) {
  *doc_out = NULL;
  if (xml == NULL || len == 0) {
    snprintf(why, why_size, "empty body, not an XML document");
    return TB_EPARSE;
  }
  if (len > LX_MAX_BODY || len > INT_MAX) {
    snprintf(why, why_size, "body of %zu bytes exceeds the 32 MiB limit", len);
    return TB_ELIMIT;
  }
  xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(xml, (int)len);
  if (ctxt == NULL) {
    snprintf(why, why_size, "out of memory creating an XML parser");
    return TB_ENOMEM;
  }
  /* NONET: never fetch. No NOENT (entities are not substituted), no
   * DTDLOAD/DTDATTR/DTDVALID. HUGE only lifts libxml2's 10 MB text-node cap
   * that base64 attachments hit; the amplification it would otherwise allow
   * needs entity declarations, which the DOCTYPE refusal rules out, and the
   * total size is capped above. */
  xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_HUGE | XML_PARSE_NOERROR |
                              XML_PARSE_NOWARNING);
  struct parse_state st = {0};
  ctxt->_private = &st;
  ctxt->sax->internalSubset = on_doctype;
  ctxt->sax->serror = on_quiet_error;
  xmlParseDocument(ctxt);
  xmlDocPtr doc = ctxt->myDoc;
  int rc = 0;
  if (st.doctype) {
    snprintf(why, why_size, "DOCTYPE declarations are not accepted (no DTDs, no entities)");
    rc = TB_EPARSE;
  } else if (!ctxt->wellFormed || doc == NULL) {
    xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
    char msg[160] = "not well-formed";
    if (e != NULL && e->message != NULL) snprintf(msg, sizeof msg, "%s", e->message);
    trim_msg(msg);
    snprintf(why, why_size, "not well-formed XML, line %d column %d: %s", e ? e->line : 0,
             e ? e->int2 : 0, msg);
    rc = TB_EPARSE;
  } else if (doc->intSubset != NULL || doc->extSubset != NULL) {
    snprintf(why, why_size, "DOCTYPE declarations are not accepted (no DTDs, no entities)");
    rc = TB_EPARSE;
  } else if (doc->encoding != NULL && strcasecmp((const char *)doc->encoding, "UTF-8") != 0) {
    snprintf(why, why_size, "the document is not UTF-8 (lu-xml.md: text is UTF-8)");
    rc = TB_EPARSE;
  } else if (xmlDocGetRootElement(doc) == NULL) {
    snprintf(why, why_size, "no root element");
    rc = TB_EPARSE;
  } else if (!depth_ok(xmlDocGetRootElement(doc), LX_MAX_DEPTH)) {
    snprintf(why, why_size, "elements nested deeper than %u levels", LX_MAX_DEPTH);
    rc = TB_ELIMIT;
  }
  ctxt->myDoc = NULL;
  xmlFreeParserCtxt(ctxt);
  if (rc != 0) {
    xmlFreeDoc(doc);
    return rc;
  }
  *doc_out = doc;
  return 0;
}

/* ---- schema ------------------------------------------------------------- */

struct first_error {
  int seen;
  char text[TB_ERRMSG_MAX];
};

/* Keeps the words libxml2 puts around names, masks every other quoted
 * string: schema messages quote the offending value, which may be an ID
 * number or a phone. Drops the namespace, which every name carries. */
static void sanitize_schema_msg(const char *in, char *out, size_t size) {
  static const char ns[] = "{" LX_NS "}";
  size_t o = 0;
  const char *p = in;
  while (*p && o + 4 < size) {
    if (strncmp(p, ns, sizeof ns - 1) == 0) {
      p += sizeof ns - 1;
      continue;
    }
    if (*p == '\'') {
      /* the word before the quote decides whether this is a name */
      size_t back = (size_t)(p - in);
      int keep = 0;
      static const char *const names[] = {"Element ", "attribute ", "facet ", "type "};
      for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t l = strlen(names[i]);
        if (back >= l && strncmp(p - l, names[i], l) == 0) keep = 1;
      }
      const char *q = strchr(p + 1, '\'');
      if (q == NULL) q = p + strlen(p) - 1;
      if (keep) {
        for (const char *c = p; c <= q && o + 4 < size; c++) {
          if (strncmp(c, ns, sizeof ns - 1) == 0) {
            c += sizeof ns - 2;
            continue;
          }
          out[o++] = *c;
        }
      } else if (o + 6 < size) {
        memcpy(out + o, "'\xe2\x80\xa6'", 5); /* '…' */
        o += 5;
      }
      p = q + 1;
      continue;
    }
    out[o++] = *p++;
  }
  out[o] = '\0';
  trim_msg(out);
}

/* "/TongbanMessage/Body/Case/ShenQingRen/XingMing" for an element. */
static void node_path(xmlNodePtr n, char *out, size_t size) {
  const char *names[LX_MAX_DEPTH + 1];
  size_t k = 0;
  for (; n != NULL && n->type == XML_ELEMENT_NODE && k < LX_MAX_DEPTH + 1; n = n->parent)
    names[k++] = (const char *)n->name;
  size_t o = 0;
  out[0] = '\0';
  while (k > 0 && o + 2 < size) {
    int w = snprintf(out + o, size - o, "/%s", names[--k]);
    if (w < 0) break;
    o += (size_t)w;
  }
  if (o >= size) out[size - 1] = '\0';
}

static void on_schema_error(void *user, xmlErrorPtr e) {
  struct first_error *fe = user;
  if (fe->seen || e == NULL) return;
  fe->seen = 1;
  char clean[TB_ERRMSG_MAX - 200];
  sanitize_schema_msg(e->message ? e->message : "schema violation", clean, sizeof clean);
  xmlNodePtr n = e->node;
  if (n != NULL && n->type == XML_ELEMENT_NODE) {
    char where[160];
    node_path(n, where, sizeof where);
    if (e->line > 0)
      snprintf(fe->text, sizeof fe->text, "%s (line %d): %s", where, e->line, clean);
    else
      snprintf(fe->text, sizeof fe->text, "%s: %s", where, clean);
  } else {
    snprintf(fe->text, sizeof fe->text, "line %d: %s", e->line, clean);
  }
}

int lx_schema_load(xmlSchemaPtr *out, char *err) {
  *out = NULL;
  struct first_error fe = {0, ""};
  xmlSchemaParserCtxtPtr pc =
      xmlSchemaNewMemParserCtxt((const char *)lx_schema_xsd, (int)lx_schema_xsd_len);
  if (pc == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: cannot create a schema parser");
  xmlSchemaSetParserStructuredErrors(pc, on_schema_error, &fe);
  xmlSchemaPtr s = xmlSchemaParse(pc);
  xmlSchemaFreeParserCtxt(pc);
  if (s == NULL)
    return lx_errf(err, TB_EINTERNAL, "lu-xml: the embedded lu-xml.xsd does not compile: %s",
                   fe.seen ? fe.text : "unknown error");
  *out = s;
  return 0;
}

int lx_validate(const struct luxml *lx, xmlDocPtr doc, char *why, size_t why_size) {
  xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(lx->schema);
  if (vc == NULL) {
    snprintf(why, why_size, "out of memory creating a schema validator");
    return TB_ENOMEM;
  }
  struct first_error fe = {0, ""};
  xmlSchemaSetValidStructuredErrors(vc, on_schema_error, &fe);
  int r = xmlSchemaValidateDoc(vc, doc);
  xmlSchemaFreeValidCtxt(vc);
  if (r == 0) return 0;
  if (r < 0) {
    snprintf(why, why_size, "schema validation failed internally (%d)", r);
    return TB_ENOMEM;
  }
  snprintf(why, why_size, "%s", fe.seen ? fe.text : "does not match lu-xml.xsd");
  return TB_EVALIDATE;
}

/* ---- tree access -------------------------------------------------------- */

int lx_is(xmlNodePtr n, const char *name) {
  return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL &&
         xmlStrEqual(n->ns->href, BAD_CAST LX_NS) && xmlStrEqual(n->name, BAD_CAST name);
}

xmlNodePtr lx_next(xmlNodePtr n, const char *name) {
  for (n = n ? n->next : NULL; n != NULL; n = n->next)
    if (n->type == XML_ELEMENT_NODE && (name == NULL || lx_is(n, name))) return n;
  return NULL;
}

xmlNodePtr lx_child(xmlNodePtr parent, const char *name) {
  if (parent == NULL) return NULL;
  for (xmlNodePtr n = parent->children; n != NULL; n = n->next)
    if (lx_is(n, name)) return n;
  return NULL;
}

void lx_text_get(xmlNodePtr node, struct lx_text *t) {
  t->owned = NULL;
  t->s = "";
  t->len = 0;
  if (node == NULL || node->children == NULL) return;
  xmlNodePtr c = node->children;
  if (c->next == NULL && (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE)) {
    t->s = c->content ? (const char *)c->content : "";
    t->len = strlen(t->s);
    return;
  }
  t->owned = xmlNodeGetContent(node);
  if (t->owned != NULL) {
    t->s = (const char *)t->owned;
    t->len = strlen(t->s);
  }
}

void lx_text_free(struct lx_text *t) {
  if (t->owned) xmlFree(t->owned);
  t->owned = NULL;
}

int lx_copy_text(xmlNodePtr parent, const char *name, char *out, size_t size) {
  struct lx_text t;
  lx_text_get(lx_child(parent, name), &t);
  int ok = t.len < size;
  if (ok) {
    memcpy(out, t.s, t.len);
    out[t.len] = '\0';
  } else if (size) {
    out[0] = '\0';
  }
  lx_text_free(&t);
  return ok;
}

/* ---- construction ------------------------------------------------------- */

int lx_xml_chars_ok(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      cp = c & 0x1Fu;
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      cp = c & 0x0Fu;
      n = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      cp = c & 0x07u;
      n = 4;
    } else {
      return 0;
    }
    if (i + n > len) return 0;
    for (size_t k = 1; k < n; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x20 && cp != 0x9 && cp != 0xA && cp != 0xD) return 0;
    if (cp == 0xFFFE || cp == 0xFFFF) return 0;
    i += n;
  }
  return 1;
}

int lx_add(xmlNodePtr parent, const char *name, const char *text, const char *what, char *err) {
  if (!lx_xml_chars_ok(text, strlen(text)))
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: %s contains a character XML 1.0 cannot carry (a control character "
                   "or invalid UTF-8)",
                   what);
  if (xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text) == NULL)
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory building <%s>", name);
  return 0;
}

int lx_serialize(xmlDocPtr doc, xmlChar **out, int *len, char *err) {
  *out = NULL;
  *len = 0;
  xmlDocDumpFormatMemoryEnc(doc, out, len, "UTF-8", 0);
  if (*out == NULL || *len <= 0) return lx_errf(err, TB_ENOMEM, "lu-xml: cannot serialize XML");
  return 0;
}

int lx_sign(const struct luxml *lx, const void *xml, size_t len, struct tb_bytes *out,
            char *err) {
  const struct tb_host *h = lx->host;
  out->data = NULL;
  out->len = 0;
  char e[TB_ERRMSG_MAX] = "";
  int rc = h->xmldsig_sign(h->ctx, lx->sign_key, xml, len, out, e);
  if (rc != 0)
    return lx_errf(err, rc < 0 ? rc : TB_ECRYPTO, "lu-xml: signing with keys.sign \"%s\": %s",
                   lx->sign_key, e);
  return 0;
}

/* ---- host memory -------------------------------------------------------- */

char *lx_hstrndup(const struct tb_host *h, const char *s, size_t len) {
  char *p = h->alloc(len + 1);
  if (p == NULL) return NULL;
  if (len) memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

char *lx_hstrdup(const struct tb_host *h, const char *s) {
  return lx_hstrndup(h, s, strlen(s));
}

int lx_json_to_bytes(const struct tb_host *h, const json_t *v, struct tb_bytes *out, char *err) {
  const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
  size_t n = json_dumpb(v, NULL, 0, flags);
  if (n == 0) return lx_errf(err, TB_ENOMEM, "lu-xml: cannot serialize the canonical JSON");
  out->data = h->alloc(n + 1);
  if (out->data == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  if (json_dumpb(v, (char *)out->data, n, flags) != n) {
    h->free(out->data);
    out->data = NULL;
    return lx_errf(err, TB_EINTERNAL, "lu-xml: canonical JSON changed size while serializing");
  }
  out->data[n] = '\0';
  out->len = n;
  return 0;
}

int lx_region_is_local(const struct luxml *lx, const char *region) {
  if (lx->host->node_region != NULL && strcmp(region, lx->host->node_region) == 0) return 1;
  for (size_t i = 0; i < lx->n_local_regions; i++)
    if (strcmp(region, lx->local_regions[i]) == 0) return 1;
  return 0;
}
