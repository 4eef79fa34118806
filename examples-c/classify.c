/* Classify an image with EfficientNet-Lite0 (float TFLite and int8 TFLite). Usage:
   classify ZOO_DIR IMAGE   (IMAGE: cat_224.jpg) */
#include "check.h"

static void classify(dg_zoo *zoo, const char *name, const unsigned char *img, size_t len) {
  dg_model *model = NULL;
  OK(dg_load_model(zoo, name, "{\"output_top_k\": 3}", &model));
  dg_result *r = NULL;
  OK(dg_predict(model, img, len, &r));
  const char *json = dg_result_json(r);
  printf("%s: %s\n", name, json);
  /* PySDK's top class for cat_224.jpg is "Egyptian cat" (285) for every EfficientNet variant. */
  const char *top = "[{\"category_id\":285,\"label\":\"Egyptian cat\",\"score\":";
  CHECK(strncmp(json, top, strlen(top)) == 0, "%s", json);
  CHECK(count_of(json, "\"category_id\"") == 3, "top-3: %s", json);
  CHECK(dg_result_tensor_count(r) == 0, "classification has no raw tensors");
  dg_result_free(r);
  dg_model_free(model);
}

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGE", argv[0]);
  unsigned char *img = NULL;
  size_t len = read_file(argv[2], &img);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  classify(zoo, "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1", img, len);
  classify(zoo, "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1", img, len);
  classify(zoo, "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1", img, len);
  dg_zoo_free(zoo);
  free(img);
  puts("classify: OK");
  return 0;
}
