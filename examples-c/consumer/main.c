#include <dgzoo.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dg_zoo *zoo = NULL;
  dg_error *e = dg_connect("@local", argv[1], NULL, &zoo);
  if (e) {
    fprintf(stderr, "connect: %s\n", dg_error_message(e));
    dg_error_free(e);
    return 1;
  }
  char *names = NULL;
  e = dg_list_models(zoo, "{\"model_family\": \"blazeface\"}", &names);
  int ok = e == NULL && strcmp(names, "[\"blazeface_short_range--128x128_float_tflite_cpu_1\"]") == 0;
  printf("consumer (dgzoo %s): %s\n", dg_version(), ok ? names : "FAILED");
  dg_string_free(names);
  dg_error_free(e);
  dg_zoo_free(zoo);
  return ok ? 0 : 1;
}
