/* Batch and asynchronous prediction: results arrive in submission order and equal the
   synchronous ones. Usage: async_batch ZOO_DIR IMAGE1 IMAGE2 IMAGE3 */
#include "check.h"
#include <pthread.h>

#define N 9
static char *expected[N];
static int delivered = 0;
static int in_order = 1;

static void on_result(void *user_data, uint64_t frame_id, dg_result *result, dg_error *error) {
  int *calls = (int *)user_data;
  (*calls)++;
  if ((int)frame_id != delivered) in_order = 0;
  if (error) {
    fprintf(stderr, "frame %llu failed: %s\n", (unsigned long long)frame_id, dg_error_message(error));
    in_order = 0;
  } else if (strcmp(dg_result_json(result), expected[frame_id]) != 0) {
    fprintf(stderr, "frame %llu differs\n", (unsigned long long)frame_id);
    in_order = 0;
  }
  delivered++;
  dg_result_free(result);
  dg_error_free(error);
}

int main(int argc, char **argv) {
  CHECK(argc == 5, "usage: %s ZOO_DIR IMAGE1 IMAGE2 IMAGE3", argv[0]);
  unsigned char *img[3];
  size_t len[3];
  for (int i = 0; i < 3; i++) len[i] = read_file(argv[2 + i], &img[i]);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  dg_model *model = NULL;
  OK(dg_load_model(zoo, example_model("yolov8n_nudenet--320x320_float_tflite_cpu_1"), NULL, &model));

  const uint8_t *datas[N];
  size_t lens[N];
  for (int i = 0; i < N; i++) {
    datas[i] = img[i % 3];
    lens[i] = len[i % 3];
    dg_result *r = NULL;
    OK(dg_predict(model, datas[i], lens[i], &r));
    expected[i] = strdup(dg_result_json(r));
    dg_result_free(r);
  }

  /* Batch: one bad frame (empty) does not stop the others. */
  lens[4] = 0;
  dg_batch *batch = NULL;
  OK(dg_predict_batch(model, datas, lens, N, &batch));
  CHECK(dg_batch_count(batch) == N, "count");
  for (size_t i = 0; i < N; i++) {
    const dg_result *r = NULL;
    dg_error *e = dg_batch_get(batch, i, &r);
    if (i == 4) {
      CHECK(e && dg_error_code(e) == DG_INVALID_ARGUMENT && r == NULL, "frame 4 is empty");
      dg_error_free(e);
      continue;
    }
    CHECK(e == NULL, "frame %zu: %s", i, dg_error_message(e));
    CHECK(strcmp(dg_result_json(r), expected[i]) == 0, "batch frame %zu", i);
  }
  dg_batch_free(batch);
  lens[4] = len[1];

  /* Async with a queue of 2 frames: submit blocks while it is full. */
  int calls = 0;
  dg_async *a = NULL;
  OK(dg_async_new(model, 2, on_result, &calls, &a));
  for (int i = 0; i < N; i++) OK(dg_async_submit(a, (uint64_t)i, datas[i], lens[i]));
  OK(dg_async_wait(a));
  CHECK(calls == N && in_order, "calls=%d in_order=%d", calls, in_order);
  dg_async_free(a);
  dg_model_free(model); /* the model was kept alive by the predictor until here */

  for (int i = 0; i < N; i++) free(expected[i]);
  for (int i = 0; i < 3; i++) free(img[i]);
  dg_zoo_free(zoo);
  puts("async_batch: OK");
  return 0;
}
