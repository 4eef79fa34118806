/* Errors at the boundary: NULL arguments, bad JSON, unknown models, bad connect arguments,
   bad frames. Nothing crashes, every error has a code and a message. Usage: error_paths ZOO_DIR */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: %s ZOO_DIR", argv[0]);
  dg_zoo *zoo = NULL;
  char *s = NULL;
  EXPECT_ERROR(dg_connect(NULL, argv[1], NULL, &zoo), DG_INVALID_ARGUMENT, "'host' must not be NULL");
  EXPECT_ERROR(dg_connect("@local", argv[1], NULL, NULL), DG_INVALID_ARGUMENT, "'out_zoo' must not be NULL");
  EXPECT_ERROR(dg_connect("@local", "/no/such/dir", NULL, &zoo), DG_NOT_FOUND,
               "ZooManager: incorrect local model zoo URL '/no/such/dir': path '/no/such/dir' does not exist");
  EXPECT_ERROR(dg_connect("@cloud", argv[1], NULL, &zoo), DG_INVALID_ARGUMENT, "ZooManager: incorrect cloud model zoo URL");
  EXPECT_ERROR(dg_connect("@foo", argv[1], NULL, &zoo), DG_INVALID_ARGUMENT, "Incorrect inference host address '@foo'");
  CHECK(zoo == NULL, "no zoo on error");

  OK(dg_connect("@local", argv[1], NULL, &zoo));
  EXPECT_ERROR(dg_list_models(NULL, NULL, &s), DG_INVALID_ARGUMENT, "'zoo' must not be NULL");
  EXPECT_ERROR(dg_list_models(zoo, "{not json", &s), DG_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_ERROR(dg_list_models(zoo, NULL, NULL), DG_INVALID_ARGUMENT, "must not be NULL");
  EXPECT_ERROR(dg_model_info(zoo, NULL, &s), DG_INVALID_ARGUMENT, "'model_name' must not be NULL");
  dg_model *m = NULL;
  EXPECT_ERROR(dg_load_model(zoo, "nope", NULL, &m), DG_NOT_FOUND, "Model 'nope' is not found");
  EXPECT_ERROR(dg_load_model(zoo, "../../etc/passwd", NULL, &m), DG_NOT_FOUND, "is not found");
  EXPECT_ERROR(dg_load_model(zoo, "blazeface_short_range--128x128_float_tflite_cpu_1", "[1,2]", &m), DG_INVALID_ARGUMENT, "JSON object");

  OK(dg_load_model(zoo, "blazeface_short_range--128x128_float_tflite_cpu_1", NULL, &m));
  dg_result *r = NULL;
  const unsigned char junk[] = {0xFF, 0xD8, 0xFF, 0x00, 0x01, 0x02};
  EXPECT_ERROR(dg_predict(m, junk, sizeof junk, &r), DG_INVALID_ARGUMENT, "JPEG");
  EXPECT_ERROR(dg_predict(m, NULL, 10, &r), DG_INVALID_ARGUMENT, "must not be NULL");
  EXPECT_ERROR(dg_predict(m, junk, 0, &r), DG_INVALID_ARGUMENT, "zero-size");
  EXPECT_ERROR(dg_predict(NULL, junk, sizeof junk, &r), DG_INVALID_ARGUMENT, "'model' must not be NULL");
  CHECK(r == NULL, "no result on error");

  /* NULL is fine everywhere a handle is freed or read. */
  dg_zoo_free(NULL); dg_model_free(NULL); dg_result_free(NULL); dg_batch_free(NULL);
  dg_async_free(NULL); dg_error_free(NULL); dg_string_free(NULL);
  CHECK(dg_error_code(NULL) == DG_OK, "NULL error is OK");
  CHECK(strcmp(dg_error_message(NULL), "") == 0, "empty message");
  CHECK(strcmp(dg_result_json(NULL), "") == 0, "empty json");
  CHECK(dg_result_tensor_count(NULL) == 0, "no tensors");

  dg_model_free(m);
  dg_zoo_free(zoo);
  puts("error_paths: OK");
  return 0;
}
