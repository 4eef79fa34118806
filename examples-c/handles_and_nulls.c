/* Every function of dgzoo.h with NULL arguments and out-of-range enum values (a clear
   DG_INVALID_ARGUMENT, never a crash), and every handle freed in every order the header
   allows: model after its zoo, result and batch after their model, an async predictor freed
   and cancelled with frames in flight. Run under ASan/UBSan and Valgrind by
   scripts/sanitize.sh. Usage: handles_and_nulls ZOO_DIR IMAGE */
#include "check.h"

#define DETECT "yolov8n_nudenet--320x320_float_tflite_cpu_1"
#define RAW "blazeface_short_range--128x128_float_tflite_cpu_1"

/* Expect an error of `code` (any message), freed here. */
#define EXPECT_CODE(call, code)                                                        \
  do {                                                                                 \
    dg_error *e_ = (call);                                                             \
    CHECK(e_ != NULL, "%s succeeded but should fail", #call);                          \
    CHECK(dg_error_code(e_) == (code), "%s: code %d, message '%s'", #call, (int)dg_error_code(e_), \
          dg_error_message(e_));                                                       \
    CHECK(dg_error_message(e_)[0] != '\0', "%s: empty message", #call);              \
    dg_error_free(e_);                                                                 \
  } while (0)
#define EXPECT_INVALID(call) EXPECT_CODE(call, DG_INVALID_ARGUMENT)

static int async_calls = 0;
static int async_cancelled = 0;
static dg_result *kept = NULL; /* one callback result kept past its predictor and model */

static void on_result(void *user_data, uint64_t frame_id, dg_result *result, dg_error *error) {
  (void)user_data;
  (void)frame_id;
  async_calls++;
  if (error && dg_error_code(error) == DG_CANCELLED) async_cancelled++;
  if (result && !kept) {
    kept = result;
  } else {
    dg_result_free(result);
  }
  dg_error_free(error);
}

/* A stream of two frames with an out-of-range input kind: each gets its own error. */
static int stream_pulled = 0, stream_errors = 0;
static int32_t bad_frames(void *user_data, dg_input *out, void **info) {
  (void)user_data;
  if (stream_pulled == 2) return 0;
  stream_pulled++;
  out->kind = 77;
  out->data = NULL;
  out->len = 0;
  *info = NULL;
  return 1;
}
static void on_stream_result(void *user_data, void *info, dg_result *result, dg_error *error) {
  (void)user_data;
  (void)info;
  if (error && dg_error_code(error) == DG_INVALID_ARGUMENT) stream_errors++;
  dg_result_free(result);
  dg_error_free(error);
}

/* A custom post-processor that reports no results: frames through it fail. */
static int pp_calls = 0;
static int32_t no_results(void *user_data, const dg_tensor_view *tensors, size_t count, const dg_frame_info *frame,
                          dg_postprocess_output *out) {
  (void)user_data;
  (void)tensors;
  (void)count;
  (void)frame;
  (void)out;
  pp_calls++;
  return 0;
}

static void nulls(const char *zoo_dir, const unsigned char *img, size_t len) {
  dg_zoo *zoo = NULL;
  dg_model *m = NULL;
  dg_result *r = NULL;
  dg_batch *b = NULL;
  dg_async *a = NULL;
  char *s = NULL;
  const dg_result *cr = NULL;
  uint8_t *buf = NULL;
  size_t blen = 0;
  uint32_t w = 0, h = 0;
  dg_tensor_view view;

  CHECK(dg_version() && dg_version()[0], "version");
  /* Readers and freers accept NULL. */
  CHECK(dg_error_code(NULL) == DG_OK, "error code of NULL");
  CHECK(strcmp(dg_error_message(NULL), "") == 0, "error message of NULL");
  CHECK(strcmp(dg_model_name(NULL), "") == 0, "model name of NULL");
  CHECK(strcmp(dg_result_json(NULL), "") == 0, "result json of NULL");
  CHECK(dg_result_timing_json(NULL) == NULL, "timing of NULL");
  CHECK(dg_result_tensor_count(NULL) == 0, "tensor count of NULL");
  CHECK(dg_batch_count(NULL) == 0, "batch count of NULL");
  dg_error_free(NULL);
  dg_string_free(NULL);
  dg_model_free(NULL);
  dg_batch_free(NULL);
  dg_result_free(NULL);
  dg_buffer_free(NULL, 0);
  dg_buffer_free(NULL, 123);
  dg_async_free(NULL);
  dg_zoo_free(NULL);

  /* Zoo functions. */
  EXPECT_INVALID(dg_connect(NULL, zoo_dir, NULL, &zoo));
  EXPECT_INVALID(dg_connect("@local", zoo_dir, NULL, NULL));
  EXPECT_INVALID(dg_connect("", zoo_dir, NULL, &zoo));
  EXPECT_INVALID(dg_connect("host:99999", "", NULL, &zoo));
  CHECK(zoo == NULL, "no zoo on error");
  EXPECT_INVALID(dg_list_models(NULL, NULL, &s));
  EXPECT_INVALID(dg_list_models_full(NULL, NULL, &s));
  EXPECT_INVALID(dg_model_info(NULL, RAW, &s));
  EXPECT_INVALID(dg_system_info(NULL, &s));
  EXPECT_INVALID(dg_supported_device_types(NULL, &s));
  EXPECT_INVALID(dg_load_model(NULL, RAW, NULL, &m));
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  EXPECT_INVALID(dg_list_models(zoo, NULL, NULL));
  EXPECT_INVALID(dg_list_models(zoo, "[]", &s));
  EXPECT_INVALID(dg_list_models(zoo, "{\"model_family\": 7}", &s));
  EXPECT_INVALID(dg_list_models_full(zoo, NULL, NULL));
  EXPECT_INVALID(dg_model_info(zoo, NULL, &s));
  EXPECT_INVALID(dg_model_info(zoo, RAW, NULL));
  EXPECT_INVALID(dg_system_info(zoo, NULL));
  EXPECT_INVALID(dg_supported_device_types(zoo, NULL));
  EXPECT_INVALID(dg_load_model(zoo, NULL, NULL, &m));
  EXPECT_INVALID(dg_load_model(zoo, RAW, NULL, NULL));
  EXPECT_INVALID(dg_load_model(zoo, RAW, "{", &m));
  CHECK(s == NULL && m == NULL, "no output on error");

  /* Model functions. */
  OK(dg_load_model(zoo, RAW, NULL, &m));
  EXPECT_INVALID(dg_model_get_property(NULL, "output_top_k", &s));
  EXPECT_INVALID(dg_model_get_property(m, NULL, &s));
  EXPECT_INVALID(dg_model_get_property(m, "output_top_k", NULL));
  EXPECT_INVALID(dg_model_set_property(NULL, "output_top_k", "3"));
  EXPECT_INVALID(dg_model_set_property(m, NULL, "3"));
  EXPECT_INVALID(dg_model_set_property(m, "output_top_k", NULL));
  EXPECT_INVALID(dg_model_set_property(m, "output_top_k", "{"));
  EXPECT_INVALID(dg_model_time_stats(NULL, &s));
  EXPECT_INVALID(dg_model_time_stats(m, NULL));
  EXPECT_INVALID(dg_model_reset_time_stats(NULL));
  EXPECT_INVALID(dg_predict(NULL, img, len, &r));
  EXPECT_INVALID(dg_predict(m, NULL, len, &r));
  EXPECT_INVALID(dg_predict(m, img, len, NULL));
  dg_input in = {DG_INPUT_BYTES, img, len, 0, 0, 0};
  EXPECT_INVALID(dg_predict_inputs(NULL, &in, 1, &r));
  EXPECT_INVALID(dg_predict_inputs(m, NULL, 1, &r));
  EXPECT_INVALID(dg_predict_inputs(m, &in, 1, NULL));
  EXPECT_INVALID(dg_predict_inputs(m, &in, 0, &r));
  dg_input bad_kind = {99, img, len, 0, 0, 0};
  EXPECT_INVALID(dg_predict_inputs(m, &bad_kind, 1, &r));
  bad_kind.kind = -1;
  EXPECT_INVALID(dg_predict_inputs(m, &bad_kind, 1, &r));
  dg_input null_data = {DG_INPUT_RGB, NULL, 12, 2, 2, 0};
  EXPECT_INVALID(dg_predict_inputs(m, &null_data, 1, &r));
  dg_input short_pixels = {DG_INPUT_RGB, img, 5, 64, 64, 0};
  EXPECT_INVALID(dg_predict_inputs(m, &short_pixels, 1, &r));
  dg_input short_stride = {DG_INPUT_BGR, img, len, 64, 2, 3};
  EXPECT_INVALID(dg_predict_inputs(m, &short_stride, 1, &r));
  const uint8_t *datas[2] = {img, NULL};
  size_t lens[2] = {len, len};
  EXPECT_INVALID(dg_predict_batch(NULL, datas, lens, 1, &b));
  EXPECT_INVALID(dg_predict_batch(m, NULL, lens, 1, &b));
  EXPECT_INVALID(dg_predict_batch(m, datas, NULL, 1, &b));
  EXPECT_INVALID(dg_predict_batch(m, datas, lens, 1, NULL));
  CHECK(r == NULL && b == NULL, "no output on error");
  /* A NULL frame inside a batch fails that frame only. */
  OK(dg_predict_batch(m, datas, lens, 2, &b));
  CHECK(dg_batch_count(b) == 2, "batch of 2");
  EXPECT_INVALID(dg_batch_get(NULL, 0, &cr));
  EXPECT_INVALID(dg_batch_get(b, 0, NULL));
  EXPECT_INVALID(dg_batch_get(b, 2, &cr));
  EXPECT_INVALID(dg_batch_get(b, (size_t)-1, &cr));
  EXPECT_INVALID(dg_batch_get(b, 1, &cr));
  OK(dg_batch_get(b, 0, &cr));
  dg_batch_free(b);

  /* Result functions. */
  OK(dg_predict(m, img, len, &r));
  EXPECT_INVALID(dg_result_tensor(NULL, 0, &view));
  EXPECT_INVALID(dg_result_tensor(r, 0, NULL));
  EXPECT_INVALID(dg_result_tensor(r, dg_result_tensor_count(r), &view));
  EXPECT_INVALID(dg_result_overlay(NULL, img, len, DG_IMAGE_JPEG, &buf, &blen));
  EXPECT_INVALID(dg_result_overlay(r, NULL, len, DG_IMAGE_JPEG, &buf, &blen));
  EXPECT_INVALID(dg_result_overlay(r, img, len, DG_IMAGE_JPEG, NULL, &blen));
  EXPECT_INVALID(dg_result_overlay(r, img, len, DG_IMAGE_JPEG, &buf, NULL));
  EXPECT_INVALID(dg_result_overlay(r, img, len, 99, &buf, &blen));
  EXPECT_INVALID(dg_result_overlay(r, img, len, -1, &buf, &blen));
  EXPECT_INVALID(dg_result_overlay(r, img, len, DG_IMAGE_RGB, &buf, &blen));
  EXPECT_INVALID(dg_result_overlay_input(NULL, &in, DG_IMAGE_PNG, &buf, &blen, &w, &h));
  EXPECT_INVALID(dg_result_overlay_input(r, NULL, DG_IMAGE_PNG, &buf, &blen, &w, &h));
  EXPECT_INVALID(dg_result_overlay_input(r, &in, DG_IMAGE_PNG, NULL, &blen, &w, &h));
  EXPECT_INVALID(dg_result_overlay_input(r, &in, DG_IMAGE_PNG, &buf, NULL, &w, &h));
  EXPECT_INVALID(dg_result_overlay_input(r, &in, 4, &buf, &blen, &w, &h));
  EXPECT_INVALID(dg_result_overlay_input(r, &in, -7, &buf, &blen, &w, &h));
  uint8_t px[12] = {0};
  EXPECT_INVALID(dg_result_overlay_draw(NULL, px, sizeof px, 2, 2, 0, DG_IMAGE_RGB));
  EXPECT_INVALID(dg_result_overlay_draw(r, NULL, sizeof px, 2, 2, 0, DG_IMAGE_RGB));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, 0, 2, 2, 0, DG_IMAGE_RGB));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px - 1, 2, 2, 0, DG_IMAGE_RGB));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 0, 2, 0, DG_IMAGE_RGB));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 0, 0, DG_IMAGE_BGR));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 2, 5, DG_IMAGE_BGR));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 2, (size_t)-1, DG_IMAGE_BGR));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 2, 0, DG_IMAGE_JPEG));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 2, 0, 4));
  EXPECT_INVALID(dg_result_overlay_draw(r, px, sizeof px, 2, 2, 0, -1));
  bad_kind.kind = 3;
  EXPECT_INVALID(dg_result_overlay_input(r, &bad_kind, DG_IMAGE_PNG, &buf, &blen, &w, &h));
  CHECK(buf == NULL, "no buffer on error");
  dg_result_free(r);

  /* Async functions. */
  EXPECT_INVALID(dg_async_new(NULL, 2, on_result, NULL, &a));
  EXPECT_INVALID(dg_async_new(m, 2, NULL, NULL, &a));
  EXPECT_INVALID(dg_async_new(m, 2, on_result, NULL, NULL));
  EXPECT_INVALID(dg_async_new(m, 161, on_result, NULL, &a));
  EXPECT_INVALID(dg_async_new(m, (size_t)-1, on_result, NULL, &a));
  CHECK(a == NULL, "no predictor on error");
  EXPECT_INVALID(dg_async_submit(NULL, 0, img, len));
  EXPECT_INVALID(dg_async_submit_inputs(NULL, 0, &in, 1, -1));
  EXPECT_INVALID(dg_async_wait(NULL));
  EXPECT_INVALID(dg_async_cancel(NULL));
  OK(dg_async_new(m, 2, on_result, NULL, &a));
  EXPECT_INVALID(dg_async_submit(a, 0, NULL, len));
  EXPECT_INVALID(dg_async_submit_inputs(a, 0, NULL, 1, -1));
  EXPECT_INVALID(dg_async_submit_inputs(a, 0, &bad_kind, 1, -1));
  OK(dg_async_wait(a));
  dg_async_free(a);

  /* Streamed prediction. */
  EXPECT_INVALID(dg_model_predict_stream(NULL, 2, bad_frames, NULL, on_stream_result, NULL));
  EXPECT_INVALID(dg_model_predict_stream(m, 2, NULL, NULL, on_stream_result, NULL));
  EXPECT_INVALID(dg_model_predict_stream(m, 2, bad_frames, NULL, NULL, NULL));
  EXPECT_INVALID(dg_model_predict_stream(m, (size_t)-1, bad_frames, NULL, on_stream_result, NULL));
  CHECK(stream_pulled == 0, "no frame pulled on an argument error");
  OK(dg_model_predict_stream(m, 2, bad_frames, NULL, on_stream_result, NULL));
  CHECK(stream_pulled == 2 && stream_errors == 2, "bad frames: %d pulled, %d errors", stream_pulled, stream_errors);

  /* Custom post-processor: NULL model, reply slot, frame and out-parameters. */
  EXPECT_INVALID(dg_model_set_postprocessor(NULL, no_results, NULL));
  EXPECT_INVALID(dg_model_set_postprocessor(NULL, NULL, NULL));
  EXPECT_INVALID(dg_postprocess_set_output(NULL, NULL));
  EXPECT_INVALID(dg_postprocess_set_output(NULL, "[]"));
  double fx = 1, fy = 1;
  dg_frame_info not_ours = {1, 1, 1, 1, NULL};
  EXPECT_INVALID(dg_frame_to_image(NULL, 0, 0, &fx, &fy));
  EXPECT_INVALID(dg_frame_to_image(&not_ours, 0, 0, &fx, &fy));
  CHECK(fx == 0 && fy == 0, "out-parameters cleared on error");
  EXPECT_INVALID(dg_frame_to_image(&not_ours, 0, 0, NULL, &fy));
  EXPECT_INVALID(dg_frame_to_image(&not_ours, 0, 0, &fx, NULL));
  OK(dg_model_set_postprocessor(m, NULL, NULL)); /* nothing set: NULL is a no-op */
  OK(dg_model_set_postprocessor(m, no_results, NULL));
  EXPECT_CODE(dg_predict(m, img, len, &r), DG_INFERENCE);
  CHECK(r == NULL && pp_calls == 1, "failed frame: result %p, %d calls", (void *)r, pp_calls);
  OK(dg_model_set_postprocessor(m, NULL, NULL));
  OK(dg_predict(m, img, len, &r));
  dg_result_free(r);
  r = NULL;
  CHECK(pp_calls == 1, "restored built-in post-processor");

  /* Logging: a NULL callback stops the records. */
  dg_error *le = dg_set_log_callback(NULL, NULL);
  CHECK(le == NULL || dg_error_code(le) == DG_UNSUPPORTED, "log callback NULL: %s", dg_error_message(le));
  dg_error_free(le);

  dg_model_free(m);
  dg_zoo_free(zoo);
}

static void free_orders(const char *zoo_dir, const unsigned char *img, size_t len) {
  dg_zoo *zoo = NULL;
  dg_model *m = NULL;
  dg_result *r = NULL;
  dg_batch *b = NULL;
  dg_async *a = NULL;
  char *s = NULL;

  /* The model outlives its zoo. */
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  OK(dg_load_model(zoo, RAW, NULL, &m));
  dg_zoo_free(zoo);
  OK(dg_model_get_property(m, "model_info", &s));
  dg_string_free(s);
  OK(dg_predict(m, img, len, &r));

  /* The result, with its borrowed tensor views, outlives its model. */
  dg_model_free(m);
  CHECK(dg_result_tensor_count(r) == 2, "raw tensors");
  dg_tensor_view v;
  OK(dg_result_tensor(r, 1, &v));
  CHECK(v.nbytes > 0 && v.data != NULL && v.rank > 0 && v.name, "tensor view");
  CHECK(strlen(dg_result_json(r)) > 0, "json");
  dg_result_free(r);

  /* A batch outlives its model and zoo; an error outlives everything. */
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  OK(dg_load_model(zoo, DETECT, "{\"measure_time\": true}", &m));
  const uint8_t *datas[2] = {img, img};
  size_t lens[2] = {len, 0};
  OK(dg_predict_batch(m, datas, lens, 2, &b));
  dg_error *late = dg_model_set_property(m, "no_such_property", "1");
  CHECK(late != NULL, "unknown property");
  dg_model_free(m);
  dg_zoo_free(zoo);
  const dg_result *br = NULL;
  OK(dg_batch_get(b, 0, &br));
  char *timing = dg_result_timing_json(br);
  CHECK(timing != NULL, "timing with measure_time");
  dg_string_free(timing);
  uint8_t *png = NULL;
  size_t png_len = 0;
  OK(dg_result_overlay(br, img, len, DG_IMAGE_PNG, &png, &png_len));
  dg_buffer_free(png, png_len);
  dg_batch_free(b);
  CHECK(dg_error_code(late) == DG_NOT_FOUND, "late error code");
  dg_error_free(late);

  /* An async predictor keeps its model alive; freed with frames in flight it delivers every
     frame first; a result taken in the callback outlives predictor, model and zoo. */
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  OK(dg_load_model(zoo, RAW, NULL, &m));
  OK(dg_async_new(m, 3, on_result, NULL, &a));
  dg_model_free(m);
  dg_zoo_free(zoo);
  for (uint64_t i = 0; i < 6; i++) OK(dg_async_submit(a, i, img, len));
  dg_async_free(a);
  CHECK(async_calls == 6, "every frame delivered before free returned: %d", async_calls);
  CHECK(kept != NULL && strlen(dg_result_json(kept)) > 0, "kept result");
  dg_result_free(kept);
  kept = NULL;

  /* An async predictor keeps its model's custom post-processor with the model. */
  async_calls = 0;
  pp_calls = 0;
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  OK(dg_load_model(zoo, RAW, NULL, &m));
  OK(dg_model_set_postprocessor(m, no_results, NULL));
  OK(dg_async_new(m, 2, on_result, NULL, &a));
  dg_model_free(m);
  dg_zoo_free(zoo);
  for (uint64_t i = 0; i < 3; i++) OK(dg_async_submit(a, i, img, len));
  dg_async_free(a);
  CHECK(async_calls == 3 && pp_calls == 3, "%d frames, %d post-processor calls", async_calls, pp_calls);
  dg_result_free(kept);
  kept = NULL;

  /* Cancelled with frames in flight, then freed without a wait. */
  async_calls = 0;
  OK(dg_connect("@local", zoo_dir, NULL, &zoo));
  OK(dg_load_model(zoo, RAW, NULL, &m));
  OK(dg_async_new(m, 4, on_result, NULL, &a));
  for (uint64_t i = 0; i < 4; i++) OK(dg_async_submit(a, i, img, len));
  OK(dg_async_cancel(a));
  dg_zoo_free(zoo);
  dg_model_free(m);
  dg_async_free(a);
  CHECK(async_calls == 4, "every frame delivered, cancelled or not: %d", async_calls);
  dg_result_free(kept);
  kept = NULL;
  printf("cancelled %d of 4 frames in flight\n", async_cancelled);
}

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGE", argv[0]);
  unsigned char *img = NULL;
  size_t len = read_file(argv[2], &img);
  nulls(argv[1], img, len);
  free_orders(argv[1], img, len);
  free(img);
  puts("handles_and_nulls: OK");
  return 0;
}
