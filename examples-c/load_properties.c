/* Load a model with properties, read and change them, and PySDK's property errors.
   Usage: load_properties ZOO_DIR */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: %s ZOO_DIR", argv[0]);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  const char *name = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";
  dg_model *model = NULL;
  OK(dg_load_model(zoo, name, "{\"output_top_k\": 2, \"input_pad_method\": \"letterbox\"}", &model));
  CHECK(strcmp(dg_model_name(model), name) == 0, "%s", dg_model_name(model));

  char *v = NULL;
  OK(dg_model_get_property(model, "output_top_k", &v));
  CHECK(strcmp(v, "2") == 0, "%s", v);
  dg_string_free(v);
  OK(dg_model_get_property(model, "input_pad_method", &v));
  CHECK(strcmp(v, "\"letterbox\"") == 0, "%s", v);
  dg_string_free(v);
  OK(dg_model_set_property(model, "output_confidence_threshold", "0.25"));
  OK(dg_model_get_property(model, "output_confidence_threshold", &v));
  CHECK(strcmp(v, "0.25") == 0, "%s", v);
  dg_string_free(v);
  OK(dg_model_get_property(model, "supported_device_types", &v));
  CHECK(strcmp(v, "[\"TFLITE/CPU\"]") == 0, "%s", v);
  dg_string_free(v);

  dg_model *bad = NULL;
  EXPECT_ERROR(dg_load_model(zoo, name, "{\"no_such_prop\": 1}", &bad), DG_NOT_FOUND, "Model property 'no_such_prop' does not exist");
  EXPECT_ERROR(dg_load_model(zoo, name, "{\"predict\": 1}", &bad), DG_INVALID_ARGUMENT, "it is not a property");
  EXPECT_ERROR(dg_load_model(zoo, name, "{\"label_dictionary\": {}}", &bad), DG_INVALID_ARGUMENT, "it is read-only");
  EXPECT_ERROR(dg_load_model(zoo, name, "{\"input_resize_method\": \"foo\"}", &bad), DG_INVALID_ARGUMENT,
               "Incorrect resize method 'foo'. Must be one of the following");
  EXPECT_ERROR(dg_model_set_property(model, "frame_queue_depth", "500"), DG_INVALID_ARGUMENT, "Frame queue depth 500 is out of range 1..160");
  EXPECT_ERROR(dg_model_set_property(model, "device_type", "\"FOO/BAR\""), DG_INVALID_ARGUMENT, "None of the device types in the list");
  CHECK(bad == NULL, "no model on error");

  dg_zoo_free(zoo); /* the model outlives its zoo */
  OK(dg_model_get_property(model, "output_top_k", &v));
  dg_string_free(v);
  dg_model_free(model);
  puts("load_properties: OK");
  return 0;
}
