/* Model parameters and system info. Usage: model_info ZOO_DIR */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: %s ZOO_DIR", argv[0]);
  printf("dgzoo %s\n", dg_version());
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], "", &zoo));
  char *info = NULL;
  OK(dg_model_info(zoo, "yolov8n_nudenet--320x320_float_onnx_cpu_1", &info));
  CHECK(strstr(info, "\"OutputPostprocessType\":\"DetectionYoloV8\"") != NULL, "%s", info);
  CHECK(strstr(info, "\"RuntimeAgent\":\"ONNX\"") != NULL, "%s", info);
  CHECK(strstr(info, "\"FrameQueueDepth\":8") != NULL, "runtime defaults are filled in: %s", info);
  dg_string_free(info);

  char *sys = NULL;
  OK(dg_system_info(zoo, &sys));
  printf("system info: %s\n", sys);
  CHECK(strstr(sys, "\"Devices\"") && strstr(sys, "\"TFLITE/CPU\""), "%s", sys);
  dg_string_free(sys);

  EXPECT_ERROR(dg_model_info(zoo, "no_such_model", &info), DG_NOT_FOUND, "Model 'no_such_model' is not found in model zoo");
  CHECK(info == NULL, "out-parameter cleared on error");
  dg_zoo_free(zoo);
  puts("model_info: OK");
  return 0;
}
