/*
 * Unit tests for case/validate: the five shared samples are valid, and each
 * SPEC §3 rule rejects a sample mutated to break it, with the exact path and
 * code, in document order, without echoing personal data.
 *
 * Samples are read from $TB_SAMPLES_DIR; without it, from shared/samples
 * beside the repository: $TB_REPO_ROOT/../shared/samples, else found from
 * this file's path (absolute when CMake compiles it; relative to the
 * repository root when compiled by hand from there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "case/validate.h"
#include "tbgw/error.h"

static const char *const samples[] = {
    "01-rebirth-registration-laizhou.json",
    "02-veteran-retirement-wujiang.json",
    "03-company-opening-zhaoyuan.json",
    "04-teacher-certificate-reissue-wujiang.json",
    "05-criminal-record-certificate-laizhou.json",
};

/* 2024-06-01T00:00:00+08:00: a fixed "now" so birth-date tests never drift. */
#define NOW_2024_06_01 ((int64_t)1717171200)

static struct tb_case_violations vs; /* ~30 KB: keep it off the stack */

static json_t *load_sample(const char *name) {
  char path[4096];
  const char *dir = getenv("TB_SAMPLES_DIR"), *root_env = getenv("TB_REPO_ROOT");
  if (dir != NULL && *dir != '\0') {
    snprintf(path, sizeof path, "%s/%s", dir, name);
  } else if (root_env != NULL && *root_env != '\0') {
    snprintf(path, sizeof path, "%s/../shared/samples/%s", root_env, name);
  } else {
    /* <repo>/tests/unit/this.c -> <repo>/../shared/samples */
    const char *file = __FILE__, *cut = strstr(file, "tests/unit/");
    int root = cut != NULL ? (int)(cut - file) : 0;
    snprintf(path, sizeof path, "%.*s../shared/samples/%s", root, file, name);
  }
  json_error_t err;
  json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  if (doc == NULL) fail_msg("cannot load sample %s: %s (set TB_SAMPLES_DIR)", path, err.text);
  return doc;
}

static int validate(const json_t *doc) { return tb_case_validate_at(doc, NULL, NOW_2024_06_01, &vs); }

static void dump(void) {
  for (size_t i = 0; i < vs.count; i++)
    print_message("  %s [%s] %s\n", vs.items[i].path, vs.items[i].code, vs.items[i].message);
}

/* Asserts that the only violation is (path, code). */
static void expect_one(const json_t *doc, const char *path, const char *code) {
  int rc = validate(doc);
  if (rc != TB_EVALIDATE || vs.count != 1 || strcmp(vs.items[0].path, path) != 0 ||
      strcmp(vs.items[0].code, code) != 0) {
    print_message("expected exactly %s [%s], rc %d, got:\n", path, code, rc);
    dump();
    fail();
  }
  assert_int_equal(vs.dropped, 0);
  assert_true(strlen(vs.items[0].message) > 10);
}

/* Asserts that the case is valid. */
static void expect_valid(const json_t *doc) {
  int rc = validate(doc);
  if (rc != 0) {
    print_message("expected valid, rc %d:\n", rc);
    dump();
    fail();
  }
  assert_int_equal(vs.count, 0);
}

/* Sets a string at a dotted path of simple object keys ("applicant.phone"). */
static void set_str(json_t *doc, const char *obj_key, const char *key, const char *value) {
  json_t *o = obj_key != NULL ? json_object_get(doc, obj_key) : doc;
  assert_non_null(o);
  assert_int_equal(json_object_set_new(o, key, json_string(value)), 0);
}

static json_t *material(json_t *doc, size_t i) {
  json_t *m = json_array_get(json_object_get(doc, "materials"), i);
  assert_non_null(m);
  return m;
}

/* ---- the samples --------------------------------------------------------- */

static void all_samples_are_valid(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
    json_t *doc = load_sample(samples[i]);
    expect_valid(doc);
    /* and with the real clock and explicit default limits */
    struct tb_case_limits lim;
    tb_case_limits_default(&lim);
    assert_int_equal(tb_case_validate(doc, &lim, &vs), 0);
    json_decref(doc);
  }
}

static void limits_defaults(void **state) {
  (void)state;
  struct tb_case_limits lim;
  tb_case_limits_default(&lim);
  assert_int_equal(lim.max_materials_bytes, 20u * 1024 * 1024);
  assert_int_equal(lim.max_materials, 100);
  assert_true(lim.max_string_chars >= 256);
}

static void bad_arguments(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  assert_int_equal(tb_case_validate(NULL, NULL, &vs), TB_EINVAL);
  assert_int_equal(tb_case_validate(doc, NULL, NULL), TB_EINVAL);
  json_decref(doc);
}

/* ---- top level ----------------------------------------------------------- */

static void root_must_be_object(void **state) {
  (void)state;
  json_t *doc = json_array();
  expect_one(doc, "", "type");
  json_decref(doc);
  doc = json_string("tongban.case/v1");
  expect_one(doc, "", "type");
  json_decref(doc);
}

static void every_required_field_is_required(void **state) {
  (void)state;
  static const char *const required[] = {"schema",    "case_id",   "item",     "origin_region",
                                         "target_region", "applicant", "agent", "materials",
                                         "form",      "accepted_at", "delivery"};
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    assert_int_equal(json_object_del(doc, required[i]), 0);
    expect_one(doc, required[i], "required");
    json_decref(doc);
  }
  /* remarks is optional, and null means absent for optional fields */
  json_t *doc = load_sample(samples[0]);
  json_object_del(doc, "remarks");
  expect_valid(doc);
  json_object_set_new(doc, "remarks", json_null());
  expect_valid(doc);
  /* but null is not a value for a required field (agent excepted) */
  json_object_set_new(doc, "case_id", json_null());
  expect_one(doc, "case_id", "required");
  json_decref(doc);
}

static void unknown_fields_are_rejected(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  json_object_set_new(doc, "remark", json_string("typo"));
  expect_one(doc, "remark", "unknown-field");
  json_decref(doc);

  /* inside nested objects too: a misspelt phone is unknown, and phone missing */
  doc = load_sample(samples[0]);
  json_t *app = json_object_get(doc, "applicant");
  json_object_set(app, "phon", json_object_get(app, "phone"));
  json_object_del(app, "phone");
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, 2);
  assert_string_equal(vs.items[0].path, "applicant.phon");
  assert_string_equal(vs.items[0].code, "unknown-field");
  assert_string_equal(vs.items[1].path, "applicant.phone");
  assert_string_equal(vs.items[1].code, "required");
  json_decref(doc);

  doc = load_sample(samples[0]);
  json_object_set_new(json_object_get(doc, "item"), "version", json_integer(2));
  expect_one(doc, "item.version", "unknown-field");
  json_decref(doc);
  doc = load_sample(samples[0]);
  json_object_set_new(json_object_get(doc, "delivery"), "zip", json_string("414000"));
  expect_one(doc, "delivery.zip", "unknown-field");
  json_decref(doc);
  doc = load_sample(samples[0]);
  json_object_set_new(material(doc, 1), "sha256", json_string(""));
  expect_one(doc, "materials[1].sha256", "unknown-field");
  json_decref(doc);

  /* form is free-form */
  doc = load_sample(samples[0]);
  json_object_set_new(json_object_get(doc, "form"), "anything_goes", json_array());
  expect_valid(doc);
  json_decref(doc);
}

static void wrong_types_are_reported(void **state) {
  (void)state;
  static const struct {
    const char *key;
    json_t *(*make)(void);
    const char *expect_in_message;
  } cases[] = {
      {"case_id", json_true, "a string"},  {"item", json_array, "an object"},
      {"origin_region", json_true, "a string"}, {"applicant", json_array, "an object"},
      {"agent", json_array, "an object or null"}, {"materials", json_object, "an array"},
      {"form", json_array, "an object"},  {"delivery", json_false, "an object"},
      {"remarks", json_array, "a string"}, {"schema", json_object, "a string"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    json_object_set_new(doc, cases[i].key, cases[i].make());
    expect_one(doc, cases[i].key, "type");
    assert_non_null(strstr(vs.items[0].message, cases[i].expect_in_message));
    json_decref(doc);
  }
  json_t *doc = load_sample(samples[0]);
  json_object_set_new(doc, "case_id", json_integer(123));
  expect_one(doc, "case_id", "type");
  json_decref(doc);

  /* size: an integer, not a string or a real */
  doc = load_sample(samples[0]);
  json_object_set_new(material(doc, 0), "size", json_string("30"));
  expect_one(doc, "materials[0].size", "type");
  json_object_set_new(material(doc, 0), "size", json_real(30.0));
  expect_one(doc, "materials[0].size", "type");
  assert_non_null(strstr(vs.items[0].message, "integer"));
  json_decref(doc);

  /* a material that is not an object */
  doc = load_sample(samples[0]);
  json_array_set_new(json_object_get(doc, "materials"), 0, json_string("id.pdf"));
  expect_one(doc, "materials[0]", "type");
  json_decref(doc);
}

static void schema_and_case_id(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  set_str(doc, NULL, "schema", "tongban.case/v2");
  expect_one(doc, "schema", "const");
  set_str(doc, NULL, "schema", "tongban.case/v1 ");
  expect_one(doc, "schema", "const");
  json_decref(doc);

  doc = load_sample(samples[0]);
  set_str(doc, NULL, "case_id", "430603/20240506");
  expect_one(doc, "case_id", "pattern");
  set_str(doc, NULL, "case_id", "");
  expect_one(doc, "case_id", "empty");
  set_str(doc, NULL, "case_id", "a_b-C9");
  expect_valid(doc);
  char id[66];
  memset(id, 'a', 65);
  id[65] = '\0';
  set_str(doc, NULL, "case_id", id);
  expect_one(doc, "case_id", "too-long");
  id[64] = '\0';
  set_str(doc, NULL, "case_id", id);
  expect_valid(doc);
  json_decref(doc);
}

static void item_rules(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  set_str(doc, "item", "code", "1137-0683");
  expect_one(doc, "item.code", "pattern");
  set_str(doc, "item", "code", "");
  expect_one(doc, "item.code", "empty");
  set_str(doc, "item", "code", "11370683MB1528351X4000201004000");
  set_str(doc, "item", "name", "  ");
  expect_one(doc, "item.name", "empty");
  set_str(doc, "item", "name", "\xe3\x80\x80"); /* U+3000 ideographic space */
  expect_one(doc, "item.name", "empty");
  set_str(doc, "item", "name", "再生育\n服务登记");
  expect_one(doc, "item.name", "control-char");
  char name[3 * 201 + 1] = "";
  for (int i = 0; i < 201; i++) strcat(name, "事");
  set_str(doc, "item", "name", name);
  expect_one(doc, "item.name", "too-long");
  name[3 * 200] = '\0'; /* 200 characters, 600 bytes: the cap counts characters */
  set_str(doc, "item", "name", name);
  expect_valid(doc);
  json_object_del(json_object_get(doc, "item"), "name");
  expect_one(doc, "item.name", "required");
  json_decref(doc);
}

static void region_codes(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  set_str(doc, NULL, "target_region", "990000");
  expect_one(doc, "target_region", "division");
  set_str(doc, NULL, "target_region", "37068");
  expect_one(doc, "target_region", "pattern");
  set_str(doc, NULL, "target_region", "370683");
  set_str(doc, NULL, "origin_region", "A30603");
  expect_one(doc, "origin_region", "pattern");
  set_str(doc, NULL, "origin_region", "160000");
  expect_one(doc, "origin_region", "division");
  json_decref(doc);
}

/* ---- applicant and agent ------------------------------------------------- */

static void resident_id_rules(void **state) {
  (void)state;
  static const struct {
    const char *id;
    const char *code;
  } cases[] = {
      {"430603199001011232", "check-character"}, /* last digit off by one */
      {"430603199002301230", "birth-date"},      /* February 30 (check char right) */
      {"43060320240602123X", "birth-date"},      /* tomorrow, for NOW_2024_06_01 */
      {"430603189912311236", "birth-date"},      /* before 1900 */
      {"990603199001011230", "division"},        /* province 99 */
      {"11010519491231002x", "pattern"},         /* lower-case x */
      {"4306031990010112", "pattern"},           /* too short */
      {"43060319900101123A", "pattern"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(doc, "applicant", "id_number", cases[i].id);
    expect_one(doc, "applicant.id_number", cases[i].code);
    json_decref(doc);
  }
  /* born on the day of "now" is fine; an upper-case X too */
  json_t *doc = load_sample(samples[0]);
  set_str(doc, "applicant", "id_number", "430603202406011234");
  expect_valid(doc);
  set_str(doc, "applicant", "id_number", "11010519491231002X");
  expect_valid(doc);
  /* the real clock puts 2099 in the future */
  set_str(doc, "applicant", "id_number", "430603209901011233");
  assert_int_equal(tb_case_validate(doc, NULL, &vs), TB_EVALIDATE);
  assert_int_equal(vs.count, 1);
  assert_string_equal(vs.items[0].code, "birth-date");
  json_decref(doc);
}

static void org_and_uscc_rules(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[2]);
  set_str(doc, "applicant", "id_number", "91430603MA4L0QXR1J");
  expect_one(doc, "applicant.id_number", "check-character");
  static const char forbidden[] = "IOSVZ";
  for (const char *c = forbidden; *c; c++) {
    char uscc[] = "91430603MA4L0QXR1K";
    uscc[9] = *c;
    set_str(doc, "applicant", "id_number", uscc);
    expect_one(doc, "applicant.id_number", "pattern");
  }
  set_str(doc, "applicant", "id_number", "91350100M000100Y43");
  expect_valid(doc);
  /* an org must use 001, a person must not */
  set_str(doc, "applicant", "id_type", "111");
  assert_int_equal(validate(doc), TB_EVALIDATE); /* and the USCC is no resident ID */
  assert_int_equal(vs.count, 2);
  assert_string_equal(vs.items[0].path, "applicant.id_type");
  assert_string_equal(vs.items[0].code, "id-type-kind");
  assert_string_equal(vs.items[1].path, "applicant.id_number");
  assert_string_equal(vs.items[1].code, "pattern");
  set_str(doc, "applicant", "id_type", "001");
  set_str(doc, "agent", "id_type", "001");
  set_str(doc, "agent", "id_number", "91350100M000100Y43");
  expect_one(doc, "agent.id_type", "id-type-kind");
  set_str(doc, "agent", "kind", "company");
  expect_one(doc, "agent.kind", "enum");
  json_decref(doc);
}

static void other_id_types(void **state) {
  (void)state;
  static const struct {
    const char *type, *number, *code; /* code NULL: valid */
  } cases[] = {
      {"414", "E12345678", NULL},  {"414", "e12345678", "pattern"},
      {"414", "E1", "pattern"},    {"516", "H12345678", NULL},
      {"516", "M1234567890", NULL}, {"516", "A12345678", "pattern"},
      {"511", "12345678", NULL},   {"511", "12345678(01)", "pattern"},
      {"112", "430603199001011231", "enum"}, {"", "430603199001011231", "enum"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(doc, "applicant", "id_type", cases[i].type);
    set_str(doc, "applicant", "id_number", cases[i].number);
    if (cases[i].code == NULL)
      expect_valid(doc);
    else
      expect_one(doc, strcmp(cases[i].code, "enum") == 0 ? "applicant.id_type"
                                                         : "applicant.id_number",
                 cases[i].code);
    json_decref(doc);
  }
}

static void phone_rules(void **state) {
  (void)state;
  static const char *const good[] = {"0730-8812345", "07308812345", "13800000000", "010-12345678"};
  static const char *const bad[] = {"1380000000",   "12800000000", "+8613800000000",
                                    "138-0000-0000", "0730-881234", "730-8812345",
                                    "0730 8812345", ""};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(doc, "applicant", "phone", good[i]);
    set_str(doc, "delivery", "phone", good[i]);
    expect_valid(doc);
    json_decref(doc);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(doc, "applicant", "phone", bad[i]);
    expect_one(doc, "applicant.phone", "pattern");
    json_decref(doc);
    doc = load_sample(samples[1]); /* pickup: phone optional, but checked if given */
    set_str(doc, "delivery", "phone", bad[i]);
    expect_one(doc, "delivery.phone", "pattern");
    json_decref(doc);
  }
}

static void party_text_fields(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  set_str(doc, "applicant", "name", "");
  expect_one(doc, "applicant.name", "empty");
  set_str(doc, "applicant", "name", "张三");
  set_str(doc, "applicant", "address", "");
  expect_valid(doc); /* optional free text may be empty */
  json_object_del(json_object_get(doc, "applicant"), "address");
  expect_valid(doc);
  set_str(doc, "applicant", "address", "云溪大道\t1号");
  expect_one(doc, "applicant.address", "control-char");
  json_decref(doc);
}

/* ---- materials ----------------------------------------------------------- */

static void material_digest_and_size(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  /* sm3 of materials[0] put on materials[1]: well-formed but wrong */
  json_object_set(material(doc, 1), "sm3", json_object_get(material(doc, 0), "sm3"));
  expect_one(doc, "materials[1].sm3", "digest-mismatch");
  json_decref(doc);

  doc = load_sample(samples[0]);
  json_object_set_new(material(doc, 0), "size", json_integer(31));
  expect_one(doc, "materials[0].size", "size-mismatch");
  json_object_set_new(material(doc, 0), "size", json_integer(-1));
  expect_one(doc, "materials[0].size", "range");
  json_decref(doc);

  /* content that differs by one byte from what sm3 and size describe */
  doc = load_sample(samples[0]);
  set_str(material(doc, 0), NULL, "content_base64", "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YL");
  expect_one(doc, "materials[0].sm3", "digest-mismatch");
  json_decref(doc);

  /* without content, size and sm3 are taken as declared */
  doc = load_sample(samples[0]);
  json_object_del(material(doc, 0), "content_base64");
  json_object_set_new(material(doc, 0), "size", json_integer(123456));
  expect_valid(doc);
  json_decref(doc);

  /* empty content: SM3 of nothing */
  doc = load_sample(samples[0]);
  set_str(material(doc, 0), NULL, "content_base64", "");
  json_object_set_new(material(doc, 0), "size", json_integer(0));
  set_str(material(doc, 0), NULL, "sm3",
          "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b");
  expect_valid(doc);
  json_decref(doc);
}

static void material_formats(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  json_t *m = material(doc, 0);
  set_str(m, NULL, "media_type", "application/PDF");
  expect_one(doc, "materials[0].media_type", "enum");
  set_str(m, NULL, "media_type", "image/gif");
  expect_one(doc, "materials[0].media_type", "enum");
  set_str(m, NULL, "media_type", "application/pdf");
  set_str(m, NULL, "sm3", "4011110F987776784EC0758891651E39C016ECE66398573BD2D98DA638711689");
  expect_one(doc, "materials[0].sm3", "pattern");
  set_str(m, NULL, "sm3", "4011110f98777678");
  expect_one(doc, "materials[0].sm3", "pattern");
  set_str(m, NULL, "sm3", "4011110f987776784ec0758891651e39c016ece66398573bd2d98da638711689");
  set_str(m, NULL, "name", "");
  expect_one(doc, "materials[0].name", "empty");
  json_decref(doc);
}

static void material_base64_is_strict(void **state) {
  (void)state;
  static const char *const bad[] = {
      "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YK\n",                 /* trailing newline */
      "JVBERi0xLjQKJSBpZCBjYXJk\nIGNvcHkKJSVFT0YK",                 /* line break inside */
      "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0Y",                   /* length not % 4 */
      "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0Z=",                  /* non-zero pad bits */
      "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0-K",                  /* URL-safe alphabet */
      "JVBERi0xLjQKJSBp=CBjYXJkIGNvcHkKJSVFT0YK",                  /* = inside */
      "JVBE====",                                                  "QR==", "Q===",
      "QQ==QUJD",                                                  "QUI=QUJD", /* pad mid-way */
      "JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YK====",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(material(doc, 0), NULL, "content_base64", bad[i]);
    /* only the base64 violation: no size or digest noise on top */
    expect_one(doc, "materials[0].content_base64", "base64");
    json_decref(doc);
  }
  /* the unpadded form of materials[1] is refused, the padded one accepted */
  json_t *doc = load_sample(samples[0]);
  set_str(material(doc, 1), NULL, "content_base64",
          "JVBERi0xLjQKJSBtYXJyaWFnZSBjZXJ0aWZpY2F0ZQolJUVPRgo");
  expect_one(doc, "materials[1].content_base64", "base64");
  json_decref(doc);
}

static void material_limits(void **state) {
  (void)state;
  struct tb_case_limits lim;
  tb_case_limits_default(&lim);
  json_t *doc = load_sample(samples[0]); /* 30 + 38 bytes */
  lim.max_materials_bytes = 67;
  assert_int_equal(tb_case_validate_at(doc, &lim, NOW_2024_06_01, &vs), TB_EVALIDATE);
  assert_int_equal(vs.count, 1);
  assert_string_equal(vs.items[0].path, "materials");
  assert_string_equal(vs.items[0].code, "too-large");
  lim.max_materials_bytes = 68;
  assert_int_equal(tb_case_validate_at(doc, &lim, NOW_2024_06_01, &vs), 0);
  lim.max_materials = 1;
  assert_int_equal(tb_case_validate_at(doc, &lim, NOW_2024_06_01, &vs), TB_EVALIDATE);
  assert_int_equal(vs.count, 1);
  assert_string_equal(vs.items[0].path, "materials");
  assert_string_equal(vs.items[0].code, "too-many");
  json_decref(doc);

  /* declared sizes count even without content; the default is 20 MiB */
  doc = load_sample(samples[0]);
  json_object_del(material(doc, 0), "content_base64");
  json_object_set_new(material(doc, 0), "size", json_integer(20 * 1024 * 1024 - 38));
  expect_valid(doc);
  json_object_set_new(material(doc, 0), "size", json_integer(20 * 1024 * 1024 - 37));
  expect_one(doc, "materials", "too-large");
  json_object_set_new(material(doc, 0), "size", json_integer(INT64_MAX));
  expect_one(doc, "materials", "too-large");
  json_decref(doc);
}

/* ---- accepted_at, delivery, remarks -------------------------------------- */

static void accepted_at_rules(void **state) {
  (void)state;
  static const char *const bad[] = {"2024-05-06T10:00:00", "2024-13-06T10:00:00+08:00",
                                    "2023-02-29T10:00:00+08:00", "2024-05-06 10:00:00+08:00",
                                    "1714960800000", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *doc = load_sample(samples[0]);
    set_str(doc, NULL, "accepted_at", bad[i]);
    expect_one(doc, "accepted_at", "date-time");
    json_decref(doc);
  }
  json_t *doc = load_sample(samples[0]);
  set_str(doc, NULL, "accepted_at", "2024-02-29T02:00:00.123Z");
  expect_valid(doc);
  json_object_set_new(doc, "accepted_at", json_integer(1714960800000LL));
  expect_one(doc, "accepted_at", "type");
  json_decref(doc);
}

static void delivery_rules(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]); /* mail */
  set_str(doc, "delivery", "method", "courier");
  expect_one(doc, "delivery.method", "enum");
  set_str(doc, "delivery", "method", "mail");
  json_object_del(json_object_get(doc, "delivery"), "address");
  expect_one(doc, "delivery.address", "required");
  json_object_set_new(json_object_get(doc, "delivery"), "address", json_null());
  expect_one(doc, "delivery.address", "required");
  set_str(doc, "delivery", "address", " ");
  expect_one(doc, "delivery.address", "empty");
  set_str(doc, "delivery", "method", "pickup");
  expect_valid(doc); /* pickup needs no address */
  json_decref(doc);

  doc = load_sample(samples[1]); /* pickup, method only */
  set_str(doc, "delivery", "method", "mail");
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, 3);
  assert_string_equal(vs.items[0].path, "delivery.recipient");
  assert_string_equal(vs.items[1].path, "delivery.phone");
  assert_string_equal(vs.items[2].path, "delivery.address");
  for (size_t i = 0; i < 3; i++) assert_string_equal(vs.items[i].code, "required");
  json_object_del(json_object_get(doc, "delivery"), "method");
  expect_one(doc, "delivery.method", "required");
  json_decref(doc);
}

static void remarks_rules(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[2]);
  set_str(doc, NULL, "remarks", "第一行\r\n第二行\t完");
  expect_valid(doc); /* multi-line free text */
  set_str(doc, NULL, "remarks", "bell\a");
  expect_one(doc, "remarks", "control-char");
  struct tb_case_limits lim;
  tb_case_limits_default(&lim);
  lim.max_string_chars = 4;
  set_str(doc, NULL, "remarks", "帮代办帮代办");
  assert_int_equal(tb_case_validate_at(doc, &lim, NOW_2024_06_01, &vs), TB_EVALIDATE);
  /* the limit also caps every other free-text field: names of 5+ characters */
  int found = 0;
  for (size_t i = 0; i < vs.count; i++) {
    assert_string_equal(vs.items[i].code, "too-long");
    found += strcmp(vs.items[i].path, "remarks") == 0;
  }
  assert_int_equal(found, 1);
  assert_string_equal(vs.items[vs.count - 1].path, "remarks");
  json_decref(doc);
}

/* ---- reporting ----------------------------------------------------------- */

static void many_violations_in_document_order(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  set_str(doc, NULL, "case_id", "bad id!");
  set_str(doc, "applicant", "id_number", "430603199001011232");
  json_object_set(material(doc, 1), "sm3", json_object_get(material(doc, 0), "sm3"));
  json_object_set_new(material(doc, 0), "size", json_integer(29));
  set_str(doc, NULL, "accepted_at", "2024-05-06T10:00:00");
  json_object_del(json_object_get(doc, "delivery"), "recipient");
  json_object_set_new(doc, "extra", json_true());

  assert_int_equal(validate(doc), TB_EVALIDATE);
  static const char *const want[][2] = {
      {"case_id", "pattern"},
      {"applicant.id_number", "check-character"},
      {"materials[0].size", "size-mismatch"},
      {"materials[1].sm3", "digest-mismatch"},
      {"accepted_at", "date-time"},
      {"delivery.recipient", "required"},
      {"extra", "unknown-field"},
  };
  if (vs.count != sizeof want / sizeof want[0]) dump();
  assert_int_equal(vs.count, sizeof want / sizeof want[0]);
  for (size_t i = 0; i < vs.count; i++) {
    assert_string_equal(vs.items[i].path, want[i][0]);
    assert_string_equal(vs.items[i].code, want[i][1]);
  }
  assert_int_equal(vs.dropped, 0);
  json_decref(doc);
}

static void violations_beyond_the_cap_are_counted(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[4]);
  for (int i = 0; i < 100; i++) {
    char key[16];
    snprintf(key, sizeof key, "x%d", i);
    json_object_set_new(doc, key, json_null());
  }
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, TB_CASE_MAX_VIOLATIONS);
  assert_int_equal(vs.dropped, 100 - TB_CASE_MAX_VIOLATIONS);
  assert_string_equal(vs.items[0].path, "x0");
  assert_string_equal(vs.items[TB_CASE_MAX_VIOLATIONS - 1].path, "x63");
  json_decref(doc);
}

static void long_unknown_keys_are_truncated_in_paths(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[4]);
  char key[3 * 100 + 1] = "";
  for (int i = 0; i < 100; i++) strcat(key, "键"); /* 300 bytes, 3 per character */
  json_object_set_new(json_object_get(doc, "applicant"), key, json_true());
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, 1);
  size_t n = strlen(vs.items[0].path);
  assert_true(n < sizeof vs.items[0].path);
  assert_memory_equal(vs.items[0].path, "applicant.", 10);
  assert_int_equal((n - 10) % 3, 0); /* cut at a character boundary */
  json_decref(doc);
}

static void assert_no_echo(const char *const *personal, size_t n) {
  for (size_t i = 0; i < vs.count; i++)
    for (size_t j = 0; j < n; j++)
      if (strstr(vs.items[i].message, personal[j]) != NULL)
        fail_msg("message at %s echoes personal data", vs.items[i].path);
}

static void messages_never_echo_personal_data(void **state) {
  (void)state;
  /* a person: every personal field wrong in a way that involves its value */
  static const char *const person[] = {"430603199001011232", "1380000000", "张三丰",
                                       "湖南省岳阳市", "0730-881234", "EE12"};
  json_t *doc = load_sample(samples[0]);
  set_str(doc, "applicant", "id_number", person[0]);
  set_str(doc, "applicant", "phone", person[1]);
  set_str(doc, "applicant", "name", "张三丰\n");
  set_str(doc, "applicant", "address", "湖南省岳阳市\x01");
  set_str(doc, "delivery", "phone", person[4]);
  set_str(doc, "delivery", "recipient", "");
  json_t *agent = json_deep_copy(json_object_get(doc, "applicant"));
  json_object_set_new(agent, "id_type", json_string("414"));
  json_object_set_new(agent, "id_number", json_string(person[5]));
  json_object_set_new(doc, "agent", agent);
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, 10);
  assert_no_echo(person, sizeof person / sizeof person[0]);
  set_str(doc, "applicant", "id_number", "430603199002301230"); /* birth date */
  set_str(json_object_get(doc, "agent"), NULL, "id_number", "990603199001011230");
  set_str(json_object_get(doc, "agent"), NULL, "id_type", "111"); /* division */
  assert_int_equal(validate(doc), TB_EVALIDATE);
  static const char *const ids[] = {"430603199002301230", "990603199001011230", "19900230",
                                    "990603"};
  assert_no_echo(ids, sizeof ids / sizeof ids[0]);
  json_decref(doc);

  /* an organisation */
  static const char *const org[] = {"91430603MA4L0QXR1J", "91430603MA4L0QIR1K"};
  doc = load_sample(samples[2]);
  set_str(doc, "applicant", "id_number", org[0]);
  set_str(doc, "agent", "id_type", "001");
  set_str(doc, "agent", "id_number", org[1]);
  assert_int_equal(validate(doc), TB_EVALIDATE);
  assert_int_equal(vs.count, 3); /* check char; agent id_type-kind, charset */
  assert_no_echo(org, sizeof org / sizeof org[0]);
  json_decref(doc);
}

static void validation_is_repeatable_and_resets_output(void **state) {
  (void)state;
  json_t *doc = load_sample(samples[0]);
  json_object_set_new(doc, "extra", json_true());
  assert_int_equal(validate(doc), TB_EVALIDATE);
  json_object_del(doc, "extra");
  vs.dropped = 7;
  assert_int_equal(validate(doc), 0);
  assert_int_equal(vs.count, 0);
  assert_int_equal(vs.dropped, 0);
  json_decref(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(all_samples_are_valid),
      cmocka_unit_test(limits_defaults),
      cmocka_unit_test(bad_arguments),
      cmocka_unit_test(root_must_be_object),
      cmocka_unit_test(every_required_field_is_required),
      cmocka_unit_test(unknown_fields_are_rejected),
      cmocka_unit_test(wrong_types_are_reported),
      cmocka_unit_test(schema_and_case_id),
      cmocka_unit_test(item_rules),
      cmocka_unit_test(region_codes),
      cmocka_unit_test(resident_id_rules),
      cmocka_unit_test(org_and_uscc_rules),
      cmocka_unit_test(other_id_types),
      cmocka_unit_test(phone_rules),
      cmocka_unit_test(party_text_fields),
      cmocka_unit_test(material_digest_and_size),
      cmocka_unit_test(material_formats),
      cmocka_unit_test(material_base64_is_strict),
      cmocka_unit_test(material_limits),
      cmocka_unit_test(accepted_at_rules),
      cmocka_unit_test(delivery_rules),
      cmocka_unit_test(remarks_rules),
      cmocka_unit_test(many_violations_in_document_order),
      cmocka_unit_test(violations_beyond_the_cap_are_counted),
      cmocka_unit_test(long_unknown_keys_are_truncated_in_paths),
      cmocka_unit_test(messages_never_echo_personal_data),
      cmocka_unit_test(validation_is_repeatable_and_resets_output),
  };
  return cmocka_run_group_tests_name("case_validate", tests, NULL, NULL);
}
