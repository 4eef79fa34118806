'use strict';
// The Node binding against the shared test zoo and PySDK's golden results.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const dgzoo = require('..');

const ZOO = path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'zoo');
const img = (n) => fs.readFileSync(path.join(ZOO, 'images', n + '.jpg'));
const golden = (m, n) => JSON.parse(fs.readFileSync(path.join(ZOO, 'expected', m, n + '.json'))).results;

function assertClose(got, want) {
  assert.strictEqual(got.length, want.length);
  got.forEach((g, i) => {
    const w = want[i];
    assert.strictEqual(g.label, w.label);
    assert.strictEqual(g.category_id, w.category_id);
    assert.ok(Math.abs(g.score - w.score) <= 1e-4, `score ${g.score} vs ${w.score}`);
    if (w.bbox) g.bbox.forEach((v, k) => assert.ok(Math.abs(v - w.bbox[k]) <= 0.5, `bbox ${g.bbox} vs ${w.bbox}`));
  });
}

test('version', () => assert.match(dgzoo.version(), /^\d+\.\d+\.\d+/));

test('list, filter and inspect models', () => {
  const zoo = dgzoo.connect('@local', ZOO);
  assert.strictEqual(zoo.listModels().length, 6);
  assert.deepStrictEqual(zoo.listModels({ model_family: 'yolov8n', runtime: 'ONNX' }), ['yolov8n_nudenet--320x320_float_onnx_cpu_1']);
  const info = zoo.modelInfo('blazeface_short_range--128x128_float_tflite_cpu_1');
  assert.strictEqual(info.DEVICE[0].RuntimeAgent, 'TFLITE');
  assert.ok('TFLITE/CPU' in zoo.systemInfo().Devices);
  zoo.close();
});

test('errors carry code and PySDK message', () => {
  const zoo = dgzoo.connect('@local', ZOO);
  assert.throws(() => zoo.loadModel('nope'), (e) => e instanceof dgzoo.DgError && e.code === 'NOT_FOUND' && /Model 'nope' is not found/.test(e.message));
  assert.throws(() => zoo.listModels({ precision: 'half' }), (e) => e.code === 'INVALID_ARGUMENT' && /Filter 'precision' has unsupported value 'half'/.test(e.message));
  assert.throws(() => dgzoo.connect('@local', '/no/such/zoo'), (e) => e.code === 'NOT_FOUND');
  const m = zoo.loadModel('efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1');
  assert.throws(() => m.predict(Buffer.from('not an image')), (e) => e instanceof dgzoo.DgError);
  assert.throws(() => m.setProperty('frame_queue_depth', 500), /Frame queue depth 500 is out of range 1..160/);
  zoo.close();
});

test('time stats with PySDK keys, and reset', () => {
  const zoo = dgzoo.connect('@local', ZOO);
  const model = zoo.loadModel('yolov8n_nudenet--320x320_float_tflite_cpu_1', { measure_time: true });
  model.predict(img('car_416'));
  model.predict(img('car_416'));
  const s = model.timeStats();
  assert.deepStrictEqual(Object.keys(s), ['PythonPreprocessDuration_ms', 'CoreInferenceDuration_ms', 'CoreInputFrameSize_bytes',
    'CorePostprocessDuration_ms', 'CorePreprocessDuration_ms', 'FrameTotalDuration_ms']);
  for (const v of Object.values(s)) assert.ok(v.count === 2 && v.min <= v.avg && v.avg <= v.max, JSON.stringify(v));
  model.resetTimeStats();
  assert.deepStrictEqual(model.timeStats(), {});
  model.close();
  zoo.close();
});

test('predict equals PySDK, sync and on worker threads', async () => {
  const zoo = dgzoo.connect('@local', ZOO);
  const name = 'yolov8n_nudenet--320x320_float_onnx_cpu_1';
  const model = zoo.loadModel(name, { output_confidence_threshold: 0.3 });
  assert.strictEqual(model.getProperty('output_confidence_threshold'), 0.3);
  const names = ['cat_224', 'car_416', 'girls_256'];
  for (const n of names) assertClose(model.predict(img(n)), golden(name, n));
  // Concurrent calls on libdgzoo's side of the boundary; errors too come back as values.
  const all = await Promise.all([...names, ...names].map((n) => model.predictAsync(img(n))));
  all.forEach((r, i) => assertClose(r, golden(name, names[i % 3])));
  await assert.rejects(model.predictAsync(Buffer.from([0xff, 0xd8, 0xff, 0x00])), (e) => e.code === 'INVALID_ARGUMENT');
  model.close();
  zoo.close();
});

test('instance masks come as Float32Arrays, equal to PySDK', { skip: !process.env.DGZOO_FAMILY_ZOO && 'DGZOO_FAMILY_ZOO not set' }, () => {
  const root = process.env.DGZOO_FAMILY_ZOO;
  const zoo = dgzoo.connect('@local', root);
  const seg = 'yolov8_seg_heads--64x64_float_onnx_cpu_1';
  const model = zoo.loadModel(seg, {});
  const want = JSON.parse(fs.readFileSync(path.join(root, 'expected', seg, 'car_416.json'))).results;
  const got = model.predict(img('car_416'));
  assert.strictEqual(got.length, want.length);
  assert.ok(want.filter((w) => w.mask).length >= 2, 'the golden carries masks');
  got.forEach((g, i) => {
    const w = want[i].mask;
    assert.deepStrictEqual([g.mask.x_min, g.mask.y_min, g.mask.data.shape], [w.x_min, w.y_min, w.data.shape]);
    assert.ok(g.mask.data.data instanceof Float32Array, 'a mask is a Float32Array');
    const flat = w.data.data.flat();
    assert.strictEqual(g.mask.data.data.length, flat.length);
    g.mask.data.data.forEach((v, k) => assert.ok(Math.abs(v - flat[k]) <= 1e-5, `mask ${i} pixel ${k}: ${v} vs ${flat[k]}`));
  });
  model.close();
  zoo.close();
});
