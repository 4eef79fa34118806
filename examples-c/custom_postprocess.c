/* A custom post-processor (PySDK's custom_postprocessor) on EfficientNet-Lite0 float TFLite:
   the callback gets the raw logits as zero-copy views (checked against what raw-output mode's
   dg_result_tensor shows), returns the top-1 class as JSON, and that result must equal the
   built-in classification's on dg_predict, dg_predict_batch, dg_async and
   dg_model_predict_stream. A failing callback gives a DG_INFERENCE error and the model stays
   usable; NULL restores the built-in post-processor.
   Usage: custom_postprocess ZOO_DIR CAT_IMAGE CAR_IMAGE */
#include <math.h>
#include <stdatomic.h>
#include "check.h"

#define MODEL "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1"

/* What raw-output mode shows for the model's one output, and the model's labels. */
typedef struct {
  char name[128];
  dg_dtype dtype;
  size_t rank, nbytes;
  int64_t shape[8];
  int64_t id;
  char *labels; /* label_dictionary JSON */
} expected;

static atomic_int calls;
static atomic_int last_image_w, last_image_h, last_input_w, last_input_h;
static _Atomic double centre_x, centre_y;

/* The label of class `id` in a compact label_dictionary JSON ({"0":"tench",...}). */
static void label_of(const char *labels, size_t id, char *out, size_t cap) {
  char key[32];
  snprintf(key, sizeof key, "\"%zu\":\"", id);
  const char *p = strstr(labels, key);
  out[0] = '\0';
  if (!p) return;
  p += strlen(key);
  size_t n = 0;
  while (p[n] && p[n] != '"' && n + 1 < cap) n++;
  memcpy(out, p, n);
  out[n] = '\0';
}

static int32_t top1(void *user_data, const dg_tensor_view *tensors, size_t count, const dg_frame_info *frame,
                    dg_postprocess_output *out) {
  const expected *want = (const expected *)user_data;
  atomic_fetch_add(&calls, 1);
  if (count != 1) {
    dg_error_free(dg_postprocess_set_output(out, "expected one tensor"));
    return 1;
  }
  const dg_tensor_view *t = &tensors[0];
  /* The view is what dg_result_tensor gives in raw-output mode. */
  int same = strcmp(t->name, want->name) == 0 && t->dtype == want->dtype && t->rank == want->rank &&
             t->nbytes == want->nbytes && t->id == want->id && t->scale == 1.0 && t->zero_point == 0;
  for (size_t i = 0; same && i < t->rank; i++) same = t->shape[i] == want->shape[i];
  if (!same) {
    fprintf(stderr, "view: %s dtype %d rank %zu nbytes %zu id %lld\n", t->name, (int)t->dtype, t->rank, t->nbytes,
            (long long)t->id);
    dg_error *e = dg_postprocess_set_output(out, "the tensor view differs from dg_result_tensor's");
    dg_error_free(e);
    return 1;
  }
  const float *v = (const float *)t->data;
  size_t n = t->nbytes / sizeof(float), best = 0;
  for (size_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += exp((double)v[i] - (double)v[best]);
  char label[128], json[512];
  label_of(want->labels, best, label, sizeof label);
  snprintf(json, sizeof json, "[{\"category_id\":%zu,\"label\":\"%s\",\"score\":%.17g}]", best, label, 1.0 / sum);
  atomic_store(&last_image_w, (int)frame->image_width);
  atomic_store(&last_image_h, (int)frame->image_height);
  atomic_store(&last_input_w, (int)frame->input_width);
  atomic_store(&last_input_h, (int)frame->input_height);
  double cx = 0, cy = 0;
  dg_error *e = dg_frame_to_image(frame, frame->input_width / 2.0, frame->input_height / 2.0, &cx, &cy);
  if (e) {
    dg_error_free(e);
    return 1;
  }
  centre_x = cx;
  centre_y = cy;
  /* The library copies the reply; NULL text is refused. */
  e = dg_postprocess_set_output(out, NULL);
  if (!e || dg_error_code(e) != DG_INVALID_ARGUMENT) return 1;
  dg_error_free(e);
  e = dg_frame_to_image(frame, 0, 0, NULL, &cy);
  if (!e || dg_error_code(e) != DG_INVALID_ARGUMENT) return 1;
  dg_error_free(e);
  e = dg_postprocess_set_output(out, json);
  if (e) {
    dg_error_free(e);
    return 1;
  }
  return 0;
}

static int32_t fails(void *user_data, const dg_tensor_view *tensors, size_t count, const dg_frame_info *frame,
                     dg_postprocess_output *out) {
  (void)user_data, (void)tensors, (void)count, (void)frame;
  dg_error_free(dg_postprocess_set_output(out, "no luck today"));
  return 7;
}

static int32_t bad_json(void *user_data, const dg_tensor_view *tensors, size_t count, const dg_frame_info *frame,
                        dg_postprocess_output *out) {
  (void)tensors, (void)count, (void)frame;
  dg_error_free(dg_postprocess_set_output(out, (const char *)user_data));
  return 0;
}

/* A number after `key` in `json` (NAN when absent). */
static double number_after(const char *json, const char *key) {
  const char *p = strstr(json, key);
  return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* The custom top-1 equals the built-in top-1: class, label, score within 1e-5. */
static void same_top1(const char *got, const char *want) {
  CHECK(number_after(got, "\"category_id\":") == number_after(want, "\"category_id\":"), "%s vs %s", got, want);
  const char *gl = strstr(got, "\"label\":"), *wl = strstr(want, "\"label\":");
  CHECK(gl && wl && strncmp(gl, wl, (size_t)(strchr(wl + 9, '"') - wl)) == 0, "label: %s vs %s", got, want);
  double gs = number_after(got, "\"score\":"), ws = number_after(want, "\"score\":");
  CHECK(fabs(gs - ws) < 1e-5, "score %.9g vs built-in %.9g", gs, ws);
  CHECK(count_of(got, "category_id") == 1, "one result: %s", got);
}

static char *predicted(dg_model *m, const unsigned char *img, size_t len) {
  dg_result *r = NULL;
  OK(dg_predict(m, img, len, &r));
  char *s = strdup(dg_result_json(r));
  dg_result_free(r);
  return s;
}

static char *async_json = NULL;
static void on_async(void *user_data, uint64_t id, dg_result *result, dg_error *error) {
  (void)user_data, (void)id;
  if (error) fprintf(stderr, "async: %s\n", dg_error_message(error));
  if (result) async_json = strdup(dg_result_json(result));
  dg_result_free(result);
  dg_error_free(error);
}

typedef struct {
  const unsigned char *img[2];
  size_t len[2];
  int next;
  char *json[2];
} stream_state;
static int32_t next_frame(void *user_data, dg_input *out, void **info) {
  stream_state *s = (stream_state *)user_data;
  if (s->next == 2) return 0;
  out->kind = DG_INPUT_BYTES;
  out->data = s->img[s->next];
  out->len = s->len[s->next];
  *info = (void *)(intptr_t)s->next;
  s->next++;
  return 1;
}
static void on_stream(void *user_data, void *info, dg_result *result, dg_error *error) {
  stream_state *s = (stream_state *)user_data;
  if (error) fprintf(stderr, "stream: %s\n", dg_error_message(error));
  if (result) s->json[(intptr_t)info] = strdup(dg_result_json(result));
  dg_result_free(result);
  dg_error_free(error);
}

int main(int argc, char **argv) {
  CHECK(argc == 4, "usage: %s ZOO_DIR CAT_IMAGE CAR_IMAGE", argv[0]);
  unsigned char *cat = NULL, *car = NULL;
  size_t cat_len = read_file(argv[2], &cat), car_len = read_file(argv[3], &car);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  dg_model *m = NULL, *raw = NULL;
  OK(dg_load_model(zoo, MODEL, "{\"output_top_k\": 1}", &m));
  OK(dg_load_model(zoo, MODEL, "{\"output_postprocess_type\": \"None\"}", &raw));

  /* What the callback must see: the raw-output tensor's view. */
  expected want;
  memset(&want, 0, sizeof want);
  dg_result *r = NULL;
  OK(dg_predict(raw, cat, cat_len, &r));
  dg_tensor_view t;
  OK(dg_result_tensor(r, 0, &t));
  CHECK(t.rank <= 8 && strlen(t.name) < sizeof want.name, "tensor %s rank %zu", t.name, t.rank);
  snprintf(want.name, sizeof want.name, "%s", t.name);
  want.dtype = t.dtype, want.rank = t.rank, want.nbytes = t.nbytes, want.id = t.id;
  memcpy(want.shape, t.shape, t.rank * sizeof(int64_t));
  dg_result_free(r);
  OK(dg_model_get_property(m, "label_dictionary", &want.labels));

  char *builtin_cat = predicted(m, cat, cat_len), *builtin_car = predicted(m, car, car_len);
  printf("built-in: %s\n", builtin_cat);

  /* NULL arguments. */
  EXPECT_ERROR(dg_model_set_postprocessor(NULL, top1, &want), DG_INVALID_ARGUMENT, "'model'");
  EXPECT_ERROR(dg_postprocess_set_output(NULL, "[]"), DG_INVALID_ARGUMENT, "'out'");
  EXPECT_ERROR(dg_frame_to_image(NULL, 1, 1, &(double){0}, &(double){0}), DG_INVALID_ARGUMENT, "'frame'");

  OK(dg_model_set_postprocessor(m, top1, &want));
  char *custom = predicted(m, cat, cat_len);
  printf("custom:   %s\n", custom);
  same_top1(custom, builtin_cat);
  CHECK(last_image_w == 224 && last_image_h == 224 && last_input_w == 224 && last_input_h == 224, "frame info");
  free(custom);
  custom = predicted(m, car, car_len);
  same_top1(custom, builtin_car);
  free(custom);
  CHECK(last_image_w == 416 && last_image_h == 416 && last_input_w == 224 && last_input_h == 224, "frame info %dx%d",
        last_image_w, last_image_h);
  /* crop-last keeps the centre: the model input's centre is the image's. */
  CHECK(fabs(centre_x - 208) <= 1 && fabs(centre_y - 208) <= 1, "centre (%g, %g)", centre_x, centre_y);

  /* The same results through the batch, async and stream paths (worker threads). */
  const unsigned char *datas[3] = {cat, car, cat};
  size_t lens[3] = {cat_len, car_len, cat_len};
  dg_batch *b = NULL;
  OK(dg_predict_batch(m, datas, lens, 3, &b));
  for (size_t i = 0; i < 3; i++) {
    const dg_result *br = NULL;
    OK(dg_batch_get(b, i, &br));
    same_top1(dg_result_json(br), i == 1 ? builtin_car : builtin_cat);
  }
  /* The custom result goes through the overlay like a built-in one (a classification band). */
  const dg_result *first = NULL;
  OK(dg_batch_get(b, 0, &first));
  uint8_t *png = NULL;
  size_t png_len = 0;
  OK(dg_result_overlay(first, cat, cat_len, DG_IMAGE_PNG, &png, &png_len));
  CHECK(png_len > 8 && memcmp(png, "\x89PNG", 4) == 0, "overlay PNG");
  dg_buffer_free(png, png_len);
  dg_batch_free(b);

  dg_async *a = NULL;
  OK(dg_async_new(m, 2, on_async, NULL, &a));
  OK(dg_async_submit(a, 1, car, car_len));
  OK(dg_async_wait(a));
  dg_async_free(a);
  CHECK(async_json != NULL, "async result");
  same_top1(async_json, builtin_car);
  free(async_json);

  stream_state s = {{cat, car}, {cat_len, car_len}, 0, {NULL, NULL}};
  OK(dg_model_predict_stream(m, 2, next_frame, &s, on_stream, &s));
  CHECK(s.json[0] && s.json[1], "stream results");
  same_top1(s.json[0], builtin_cat);
  same_top1(s.json[1], builtin_car);
  free(s.json[0]);
  free(s.json[1]);
  CHECK(calls == 8, "%d calls", calls);

  /* A failing callback: a DG_INFERENCE error with its message, on every path; the model lives. */
  OK(dg_model_set_postprocessor(m, fails, NULL));
  dg_result *none = NULL;
  EXPECT_ERROR(dg_predict(m, cat, cat_len, &none), DG_INFERENCE, "custom post-processor failed (7): no luck today");
  CHECK(none == NULL, "no result on error");
  OK(dg_predict_batch(m, datas, lens, 2, &b));
  const dg_result *br = NULL;
  EXPECT_ERROR(dg_batch_get(b, 1, &br), DG_INFERENCE, "no luck today");
  dg_batch_free(b);
  OK(dg_model_set_postprocessor(m, bad_json, "[{\"label\": "));
  EXPECT_ERROR(dg_predict(m, cat, cat_len, &none), DG_INFERENCE, "invalid JSON");
  OK(dg_model_set_postprocessor(m, bad_json, "{\"label\": \"x\"}"));
  EXPECT_ERROR(dg_predict(m, cat, cat_len, &none), DG_INFERENCE, "must return a JSON array");
  OK(dg_model_set_postprocessor(m, top1, &want));
  custom = predicted(m, cat, cat_len);
  same_top1(custom, builtin_cat);
  free(custom);

  /* NULL restores the built-in post-processor: the very same JSON as before. */
  OK(dg_model_set_postprocessor(m, NULL, NULL));
  char *again = predicted(m, cat, cat_len);
  CHECK(strcmp(again, builtin_cat) == 0, "%s vs %s", again, builtin_cat);
  free(again);

  free(builtin_cat);
  free(builtin_car);
  dg_string_free(want.labels);
  dg_model_free(raw);
  dg_model_free(m);
  dg_zoo_free(zoo);
  free(cat);
  free(car);
  puts("custom_postprocess: OK");
  return 0;
}
