/* BlazeFace has no post-processing: read its raw output tensors without copying.
   Usage: raw_tensors ZOO_DIR IMAGE */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGE", argv[0]);
  unsigned char *img = NULL;
  size_t len = read_file(argv[2], &img);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  dg_model *model = NULL;
  OK(dg_load_model(zoo, "blazeface_short_range--128x128_float_tflite_cpu_1", NULL, &model));
  dg_result *r = NULL;
  OK(dg_predict(model, img, len, &r));
  CHECK(dg_result_tensor_count(r) == 2, "two outputs, got %zu", dg_result_tensor_count(r));
  size_t found = 0;
  for (size_t i = 0; i < 2; i++) {
    dg_tensor_view t;
    OK(dg_result_tensor(r, i, &t));
    printf("tensor %zu: %s id=%lld rank=%zu [%lld,%lld,%lld] %zu bytes\n", i, t.name, (long long)t.id, t.rank,
           (long long)t.shape[0], (long long)t.shape[1], (long long)t.shape[2], t.nbytes);
    CHECK(t.dtype == DG_FLT && t.rank == 3 && t.shape[0] == 1 && t.shape[1] == 896, "shape");
    CHECK(t.nbytes == (size_t)(896 * t.shape[2]) * sizeof(float), "size");
    if (t.shape[2] == 16) found |= 1;
    if (t.shape[2] == 1) found |= 2;
    const float *v = (const float *)t.data;
    for (size_t k = 0; k < t.nbytes / sizeof(float); k++) CHECK(v[k] == v[k], "finite values");
  }
  CHECK(found == 3, "regressors [1,896,16] and classificators [1,896,1]");
  dg_tensor_view none;
  EXPECT_ERROR(dg_result_tensor(r, 2, &none), DG_INVALID_ARGUMENT, "out of range");
  CHECK(strstr(dg_result_json(r), "\"__tensor__\"") != NULL, "%s", dg_result_json(r));
  dg_result_free(r);
  dg_model_free(model);
  dg_zoo_free(zoo);
  free(img);
  puts("raw_tensors: OK");
  return 0;
}
