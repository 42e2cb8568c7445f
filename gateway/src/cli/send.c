/*
 * tbgw send: submits canonical case files to a running gateway's local API,
 * the way hall software would. For demos, tests and operators' smoke checks.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "tbgw/error.h"

#define TB_SEND_MAX_FILE (64u << 20)

struct growbuf {
  char *p;
  size_t len;
};

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  struct growbuf *b = ud;
  size_t add = size * n;
  if (b->len + add > (1u << 20)) return 0; /* an answer over 1 MiB is not ours */
  char *p = realloc(b->p, b->len + add + 1);
  if (p == NULL) return 0;
  memcpy(p + b->len, data, add);
  b->p = p;
  b->len += add;
  b->p[b->len] = '\0';
  return add;
}

static char *read_file(const char *path, size_t *len, char *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    tb_errf(err, TB_EIO, "cannot open %s", path);
    return NULL;
  }
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > TB_SEND_MAX_FILE) {
        tb_errf(err, TB_ELIMIT, "%s is larger than %u bytes", path, TB_SEND_MAX_FILE);
        break;
      }
      char *p = realloc(buf, cap);
      if (p == NULL) break;
      buf = p;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) {
      if (ferror(f)) tb_errf(err, TB_EIO, "cannot read %s", path);
      else {
        fclose(f);
        *len = n;
        return buf;
      }
      break;
    }
  }
  fclose(f);
  free(buf);
  return NULL;
}

int tb_cli_send(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    puts("usage: tbgw send [-c FILE] [--url URL] [--token TOKEN] CASE.json...\n\n"
         "Posts each canonical case file to a running gateway (POST /v1/cases) and\n"
         "prints the HTTP status and the answer for each. The URL and token come\n"
         "from --url/--token, else from the environment (TBGW_URL, TBGW_TOKEN), else\n"
         "from the configuration FILE (its local_api.listen and first token).\n"
         "Exit status 0 if every case was accepted (2xx), 1 otherwise.");
    return 0;
  }
  const char *url = getenv("TBGW_URL"), *token = getenv("TBGW_TOKEN");
  const char *cfg_path = tb_cli_config_arg(argc, argv);
  int first_file = 0;
  char **files = calloc((size_t)argc, sizeof *files);
  if (files == NULL) return 1;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) i++;
    else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) url = argv[++i];
    else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) token = argv[++i];
    else if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i], "--config=", 9) != 0) {
      fprintf(stderr, "tbgw send: unknown option %s (see --help)\n", argv[i]);
      free(files);
      return 2;
    } else if (strncmp(argv[i], "--config=", 9) != 0) files[first_file++] = argv[i];
  }
  if (first_file == 0) {
    fputs("tbgw send: no case file given (see --help)\n", stderr);
    free(files);
    return 2;
  }
  struct tb_config cfg;
  int have_cfg = 0;
  char url_buf[300];
  if (cfg_path && (url == NULL || token == NULL)) {
    char *problems = NULL;
    if (tb_config_load(cfg_path, &cfg, &problems) != 0) {
      fprintf(stderr, "tbgw send: %s is not valid:\n%s", cfg_path, problems ? problems : "");
      free(problems);
      free(files);
      return 1;
    }
    have_cfg = 1;
    if (url == NULL) {
      int v6 = strchr(cfg.local_api_host, ':') != NULL;
      snprintf(url_buf, sizeof url_buf, "http://%s%s%s:%d/v1/cases", v6 ? "[" : "",
               cfg.local_api_host, v6 ? "]" : "", cfg.local_api_port);
      url = url_buf;
    }
    if (token == NULL && cfg.token_count > 0) token = cfg.tokens[0].token;
  }
  if (url == NULL) url = "http://127.0.0.1:8080/v1/cases";
  int failures = 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *curl = curl_easy_init();
  char auth[600];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, auth);
  hdrs = curl_slist_append(hdrs, "Expect:");
  for (int i = 0; curl && hdrs && i < first_file; i++) {
    char err[TB_ERRMSG_MAX] = "";
    size_t len = 0;
    char *body = read_file(files[i], &len, err);
    if (body == NULL) {
      fprintf(stderr, "%s: %s\n", files[i], err[0] ? err : "out of memory");
      failures++;
      continue;
    }
    struct growbuf answer = {NULL, 0};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
      fprintf(stderr, "%s: cannot reach %s: %s\n", files[i], url,
              curl_err[0] ? curl_err : curl_easy_strerror(cc));
      failures++;
    } else {
      printf("%s: %ld %s\n", files[i], status, answer.p ? answer.p : "");
      if (status < 200 || status > 299) failures++;
    }
    free(answer.p);
    free(body);
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(curl);
  curl_global_cleanup();
  if (have_cfg) tb_config_free(&cfg);
  free(files);
  return failures ? 1 : 0;
}
