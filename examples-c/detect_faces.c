/* Detect faces in girls_256.jpg with the YOLOv8n detector (ONNX and TFLite), boxes in the
   original image's pixels. Usage: detect_faces ZOO_DIR IMAGE */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGE", argv[0]);
  unsigned char *img = NULL;
  size_t len = read_file(argv[2], &img);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  const char *models[] = {"yolov8n_nudenet--320x320_float_onnx_cpu_1", "yolov8n_nudenet--320x320_float_tflite_cpu_1"};
  for (int i = 0; i < 2; i++) {
    dg_model *model = NULL;
    OK(dg_load_model(zoo, models[i], NULL, &model));
    dg_result *r = NULL;
    OK(dg_predict(model, img, len, &r));
    const char *json = dg_result_json(r);
    printf("%s: %s\n", models[i], json);
    CHECK(count_of(json, "\"label\":\"FACE_FEMALE\"") == 2, "two faces: %s", json);
    /* PySDK: the best face box is about (67.16, 72.94, 118.31, 131.98) in the 256x256 image. */
    CHECK(strncmp(json, "[{\"bbox\":[67.1", 14) == 0, "first box: %s", json);
    dg_result_free(r);

    /* Only faces: the client-side class filter. */
    OK(dg_model_set_property(model, "output_class_set", "[\"FACE_FEMALE\"]"));
    OK(dg_predict(model, img, len, &r));
    CHECK(count_of(dg_result_json(r), "\"label\"") == 2, "%s", dg_result_json(r));
    dg_result_free(r);
    dg_model_free(model);
  }
  dg_zoo_free(zoo);
  free(img);
  puts("detect_faces: OK");
  return 0;
}
