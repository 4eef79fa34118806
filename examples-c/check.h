/* Tiny assertion helpers shared by the examples: a failed check prints why and exits 1. */
#ifndef DGZOO_EXAMPLES_CHECK_H
#define DGZOO_EXAMPLES_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dgzoo.h"

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

/* Stop on a non-NULL error, printing its code and message. */
#define OK(call)                                                            \
  do {                                                                      \
    dg_error *e_ = (call);                                                  \
    if (e_) {                                                               \
      fprintf(stderr, "%s:%d: %s failed: [%d] %s\n", __FILE__, __LINE__, #call, \
              (int)dg_error_code(e_), dg_error_message(e_));                \
      dg_error_free(e_);                                                    \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

/* Expect an error with `code` whose message contains `text`; frees it. */
#define EXPECT_ERROR(call, code, text)                                      \
  do {                                                                      \
    dg_error *e_ = (call);                                                  \
    CHECK(e_ != NULL, "%s succeeded but should fail", #call);               \
    CHECK(dg_error_code(e_) == (code), "code %d, message '%s'", (int)dg_error_code(e_), dg_error_message(e_)); \
    CHECK(strstr(dg_error_message(e_), (text)) != NULL, "message '%s' lacks '%s'", dg_error_message(e_), (text)); \
    dg_error_free(e_);                                                      \
  } while (0)

/* The model an example runs: DGZOO_EXAMPLE_MODEL when set (scripts/sanitize.sh runs the
   inference-heavy examples on a small model under Valgrind), else `deflt`. */
static inline const char *example_model(const char *deflt) {
  const char *m = getenv("DGZOO_EXAMPLE_MODEL");
  return m && *m ? m : deflt;
}

/* Read a whole file; the caller frees *out. */
static inline size_t read_file(const char *path, unsigned char **out) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = (unsigned char *)malloc((size_t)n);
  CHECK(*out && fread(*out, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
  fclose(f);
  return (size_t)n;
}

/* Number of non-overlapping occurrences of `needle` in `hay`. */
static inline int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + strlen(needle), needle)) n++;
  return n;
}
#endif
