/* Draw detection results straight onto the caller's own pixels with dg_result_overlay_draw
   (no copy of the frame), and check they come out as dg_result_overlay_input's copy: packed
   RGB and padded BGR rows, the padding untouched; classification results are refused with
   DG_UNSUPPORTED and the pixels left as they were. Usage: overlay_in_place ZOO_DIR IMAGE_DIR */
#include "check.h"

#define W 256
#define H 256

static unsigned char *read_image(const char *dir, const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unsigned char *img = NULL;
  *len = read_file(path, &img);
  return img;
}

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: %s ZOO_DIR IMAGE_DIR", argv[0]);
  size_t len = 0, cat_len = 0;
  unsigned char *img = read_image(argv[2], "girls_256.jpg", &len);
  unsigned char *cat = read_image(argv[2], "cat_224.jpg", &cat_len);
  dg_zoo *zoo = NULL;
  OK(dg_connect("@local", argv[1], NULL, &zoo));
  dg_model *model = NULL;
  OK(dg_load_model(zoo, "yolov8n_nudenet--320x320_float_onnx_cpu_1", "{\"overlay_show_probabilities\": true}", &model));
  dg_result *r = NULL;
  OK(dg_predict(model, img, len, &r));
  CHECK(count_of(dg_result_json(r), "\"bbox\"") >= 2, "faces: %s", dg_result_json(r));

  /* A frame of our own (a gradient) the size of the image the boxes are in. */
  static unsigned char frame[W * H * 3];
  for (size_t i = 0; i < sizeof frame; i++) frame[i] = (unsigned char)((i / 3 % W) + (i / 3 / W) * 2 + i % 3 * 50);

  /* The copying path: packed RGB pixels of the overlay, a new buffer. */
  dg_input in = {DG_INPUT_RGB, frame, sizeof frame, W, H, 0};
  uint8_t *copy = NULL;
  size_t copy_len = 0;
  uint32_t ow = 0, oh = 0;
  OK(dg_result_overlay_input(r, &in, DG_IMAGE_RGB, &copy, &copy_len, &ow, &oh));
  CHECK(ow == W && oh == H && copy_len == sizeof frame, "%ux%u, %zu bytes", ow, oh, copy_len);
  size_t changed = 0;
  for (size_t i = 0; i < copy_len; i++) changed += copy[i] != frame[i];
  CHECK(changed > 1000, "only %zu bytes drawn", changed);

  /* In place on packed RGB (stride 0 = 3 * width): the same pixels. */
  static unsigned char rgb[W * H * 3];
  memcpy(rgb, frame, sizeof rgb);
  OK(dg_result_overlay_draw(r, rgb, sizeof rgb, W, H, 0, DG_IMAGE_RGB));
  CHECK(memcmp(rgb, copy, sizeof rgb) == 0, "in-place RGB differs from the copy");

  /* In place on BGR rows padded to a stride of 3 * W + 16: the same pixels, swapped; the
     padding untouched. */
  const size_t stride = W * 3 + 16;
  unsigned char *bgr = malloc(stride * H);
  CHECK(bgr != NULL, "out of memory");
  memset(bgr, 0xAB, stride * H);
  for (size_t y = 0; y < H; y++)
    for (size_t x = 0; x < W; x++)
      for (size_t c = 0; c < 3; c++) bgr[y * stride + x * 3 + c] = frame[(y * W + x) * 3 + 2 - c];
  OK(dg_result_overlay_draw(r, bgr, stride * H, W, H, stride, DG_IMAGE_BGR));
  for (size_t y = 0; y < H; y++) {
    for (size_t x = 0; x < W; x++)
      for (size_t c = 0; c < 3; c++)
        CHECK(bgr[y * stride + x * 3 + c] == copy[(y * W + x) * 3 + 2 - c], "BGR pixel (%zu, %zu)", x, y);
    for (size_t p = W * 3; p < stride; p++) CHECK(bgr[y * stride + p] == 0xAB, "padding of row %zu", y);
  }

  /* Too short a buffer, a bad format: errors, the pixels unchanged. */
  memcpy(rgb, frame, sizeof rgb);
  EXPECT_ERROR(dg_result_overlay_draw(r, rgb, sizeof rgb - 1, W, H, 0, DG_IMAGE_RGB), DG_INVALID_ARGUMENT, "need at least");
  EXPECT_ERROR(dg_result_overlay_draw(r, rgb, sizeof rgb, W, H, 0, DG_IMAGE_PNG), DG_INVALID_ARGUMENT, "format");
  CHECK(memcmp(rgb, frame, sizeof rgb) == 0, "pixels changed by a failed call");
  dg_buffer_free(copy, copy_len);
  free(bgr);
  dg_result_free(r);
  dg_model_free(model);

  /* Classification: its lines go in a band under the image, which cannot be drawn in place. */
  OK(dg_load_model(zoo, "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1", "{\"output_top_k\": 2}", &model));
  OK(dg_predict(model, cat, cat_len, &r));
  EXPECT_ERROR(dg_result_overlay_draw(r, rgb, sizeof rgb, W, H, 0, DG_IMAGE_RGB), DG_UNSUPPORTED, "band");
  CHECK(memcmp(rgb, frame, sizeof rgb) == 0, "pixels changed by a refused call");
  dg_result_free(r);
  dg_model_free(model);

  dg_zoo_free(zoo);
  free(img);
  free(cat);
  puts("overlay_in_place: OK");
  return 0;
}
