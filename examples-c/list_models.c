/* Connect to a local zoo and list its models with PySDK's filters. Usage: list_models ZOO_DIR */
#include "check.h"

static char *list(dg_zoo *zoo, const char *filter) {
  char *names = NULL;
  OK(dg_list_models(zoo, filter, &names));
  printf("%-60s %s\n", filter ? filter : "(no filter)", names);
  return names;
}

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: %s ZOO_DIR", argv[0]);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));

  char *all = list(zoo, NULL);
  CHECK(count_of(all, "\"") == 12, "six models expected: %s", all);
  char *eff = list(zoo, "{\"model_family\": \"efficientnet\"}");
  CHECK(count_of(eff, "efficientnet") == 3, "%s", eff);
  char *re = list(zoo, "{\"model_family\": {\"regex\": \"^yolo\"}, \"runtime\": \"ONNX\"}");
  CHECK(strcmp(re, "[\"yolov8n_nudenet--320x320_float_onnx_cpu_1\"]") == 0, "%s", re);
  char *quant = list(zoo, "{\"precision\": \"quant\"}");
  CHECK(strcmp(quant, "[\"efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1\"]") == 0, "%s", quant);
  char *none = list(zoo, "{\"runtime\": \"N2X\"}");
  CHECK(strcmp(none, "[]") == 0, "%s", none);

  char *full = NULL;
  OK(dg_list_models_full(zoo, "{\"postprocess_type\": \"None\"}", &full));
  CHECK(strstr(full, "\"blazeface_short_range--128x128_float_tflite_cpu_1\":{") != NULL, "%s", full);

  char *types = NULL;
  OK(dg_supported_device_types(zoo, &types));
  printf("device types: %s\n", types);
  CHECK(strstr(types, "TFLITE/CPU") && strstr(types, "ONNX/CPU"), "%s", types);

  /* A failing call sets its output to NULL: never pass a live string as the output. */
  char *bad = NULL;
  EXPECT_ERROR(dg_list_models(zoo, "{\"precision\": \"half\"}", &bad), DG_INVALID_ARGUMENT,
               "Filter 'precision' has unsupported value 'half'");

  dg_string_free(all); dg_string_free(eff); dg_string_free(re); dg_string_free(quant);
  dg_string_free(none); dg_string_free(full); dg_string_free(types);
  dg_zoo_free(zoo);
  puts("list_models: OK");
  return 0;
}
