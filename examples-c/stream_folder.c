/* Streamed prediction over a folder (the C form of PySDK's generator input): frames are read
   one at a time by the next_frame callback and their results come back in order with each
   frame's frame_info, with at most the queue depth of frames held by the library. Checks the
   results against dg_predict, the order, the depth bound, a bad frame in the middle and an
   early stop. Usage: stream_folder ZOO_DIR IMAGES_DIR */
#include "check.h"
#include <dirent.h>
#include <stdint.h>

#define DEPTH 2
#define PASSES 3
#define MAX_FILES 64

typedef struct {
  const char *dir;
  char *names[MAX_FILES];
  char *expected[MAX_FILES];
  int n_files;
  int pulled, delivered, errors, max_held, stop_after, bad_frame;
  unsigned char *buf; /* the current frame: valid until next_frame is called again */
} stream_state;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int next_frame(void *user, dg_input *out, void **frame_info) {
  stream_state *s = (stream_state *)user;
  if (s->pulled == s->stop_after) return -1;
  if (s->pulled == s->n_files * PASSES) return 0;
  int i = s->pulled % s->n_files;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", s->dir, s->names[i]);
  free(s->buf);
  size_t len = read_file(path, &s->buf);
  out->kind = DG_INPUT_BYTES;
  out->data = s->buf;
  out->len = s->pulled == s->bad_frame ? 0 : len; /* an empty frame: that frame's error */
  *frame_info = (void *)(intptr_t)s->pulled;
  s->pulled++;
  int held = s->pulled - s->delivered;
  if (held > s->max_held) s->max_held = held;
  return 1;
}

static void on_result(void *user, void *frame_info, dg_result *result, dg_error *error) {
  stream_state *s = (stream_state *)user;
  int k = (int)(intptr_t)frame_info;
  CHECK(k == s->delivered, "frame_info %d delivered as result %d", k, s->delivered);
  if (k == s->bad_frame) {
    CHECK(error && dg_error_code(error) == DG_INVALID_ARGUMENT && !result, "frame %d should fail", k);
    s->errors++;
  } else {
    CHECK(error == NULL, "frame %d: %s", k, dg_error_message(error));
    CHECK(strcmp(dg_result_json(result), s->expected[k % s->n_files]) == 0, "frame %d (%s) differs from dg_predict", k, s->names[k % s->n_files]);
  }
  s->delivered++;
  dg_result_free(result);
  dg_error_free(error);
}

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGES_DIR", argv[0]);
  stream_state s;
  memset(&s, 0, sizeof s);
  s.dir = argv[2];
  DIR *d = opendir(argv[2]);
  CHECK(d != NULL, "cannot open %s", argv[2]);
  for (struct dirent *e; (e = readdir(d)) != NULL && s.n_files < MAX_FILES;)
    if (strstr(e->d_name, ".jpg")) s.names[s.n_files++] = strdup(e->d_name);
  closedir(d);
  CHECK(s.n_files > 0, "no .jpg in %s", argv[2]);
  qsort(s.names, (size_t)s.n_files, sizeof s.names[0], by_name);

  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  dg_model *model = NULL;
  OK(dg_load_model(zoo, example_model("yolov8n_nudenet--320x320_float_tflite_cpu_1"), NULL, &model));
  for (int i = 0; i < s.n_files; i++) {
    char path[4096];
    unsigned char *img;
    snprintf(path, sizeof path, "%s/%s", s.dir, s.names[i]);
    size_t len = read_file(path, &img);
    dg_result *r = NULL;
    OK(dg_predict(model, img, len, &r));
    s.expected[i] = strdup(dg_result_json(r));
    dg_result_free(r);
    free(img);
  }

  /* The whole folder PASSES times, one bad frame in the middle. */
  s.stop_after = -1;
  s.bad_frame = 4;
  OK(dg_model_predict_stream(model, DEPTH, next_frame, &s, on_result, &s));
  CHECK(s.delivered == s.n_files * PASSES && s.errors == 1, "delivered %d of %d, %d errors", s.delivered, s.n_files * PASSES, s.errors);
  CHECK(s.max_held <= DEPTH, "%d frames held at once (depth %d)", s.max_held, DEPTH);
  printf("stream_folder: %d frames from %s, at most %d held\n", s.delivered, s.dir, s.max_held);

  /* Stopped early by next_frame: the frames pulled are still delivered. */
  s.pulled = s.delivered = s.errors = s.max_held = 0;
  s.bad_frame = -1;
  s.stop_after = 3;
  EXPECT_ERROR(dg_model_predict_stream(model, DEPTH, next_frame, &s, on_result, &s), DG_CANCELLED, "stopped by next_frame");
  CHECK(s.delivered == 3, "delivered %d of the 3 pulled", s.delivered);

  /* Argument checks. */
  EXPECT_ERROR(dg_model_predict_stream(model, DEPTH, NULL, &s, on_result, &s), DG_INVALID_ARGUMENT, "next_frame");
  EXPECT_ERROR(dg_model_predict_stream(NULL, DEPTH, next_frame, &s, on_result, &s), DG_INVALID_ARGUMENT, "model");
  EXPECT_ERROR(dg_model_predict_stream(model, 100000, next_frame, &s, on_result, &s), DG_INVALID_ARGUMENT, "depth");

  free(s.buf);
  for (int i = 0; i < s.n_files; i++) {
    free(s.names[i]);
    free(s.expected[i]);
  }
  dg_model_free(model);
  dg_zoo_free(zoo);
  puts("stream_folder: OK");
  return 0;
}
