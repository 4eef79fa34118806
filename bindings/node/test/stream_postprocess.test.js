'use strict';
// predictStream and setPostprocessor against the shared test zoo: goldens, order, errors.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const dgzoo = require('..');

const ZOO = path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'zoo');
const img = (n) => fs.readFileSync(path.join(ZOO, 'images', n + '.jpg'));
const golden = (m, n) => JSON.parse(fs.readFileSync(path.join(ZOO, 'expected', m, n + '.json'))).results;
const BLAZE = 'blazeface_short_range--128x128_float_tflite_cpu_1';
const EFF = 'efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1';

test('predictStream: a folder three times, in order with its info, a bad frame in its place', async () => {
  const zoo = dgzoo.connect('@local', ZOO);
  const model = zoo.loadModel(BLAZE);
  const names = ['girls_256', 'car_416', 'cat_224'];
  let i = 0;
  const got = [];
  const pulled = await model.predictStream(() => {
    if (i === names.length * 3) return null;
    const k = i++;
    return { data: k === 4 ? Buffer.from('junk') : img(names[k % 3]), info: k };
  }, (r) => got.push(r), 2);
  assert.strictEqual(pulled, 9);
  assert.deepStrictEqual(got.map((r) => r.info), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  got.forEach((r, k) => {
    if (k === 4) return assert.ok(r.error instanceof dgzoo.DgError && !r.results, 'the junk frame fails');
    assert.ifError(r.error);
    // Raw tensors: the JSON refers to them; same count and shapes as PySDK's.
    const want = golden(BLAZE, names[k % 3]);
    assert.deepStrictEqual(r.results.map((t) => t.shape), want.map((t) => t.shape));
  });
  // An exception in next stops the stream and rejects with it; the model stays usable.
  await assert.rejects(model.predictStream(() => { throw new Error('stop here'); }, () => {}), /stop here/);
  assert.strictEqual(model.predict(img('girls_256')).length, 2);
  model.close();
  zoo.close();
});

function top1(t, labels) {
  const v = new Float32Array(t.data);
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  let sum = 0;
  for (const x of v) sum += Math.exp(x - v[best]);
  return [{ category_id: best, label: labels[String(best)], score: 1 / sum }];
}

function sameTop1(got, want) {
  assert.strictEqual(got.length, 1);
  assert.strictEqual(got[0].category_id, want[0].category_id);
  assert.strictEqual(got[0].label, want[0].label);
  assert.ok(Math.abs(got[0].score - want[0].score) < 1e-5, `${got[0].score} vs ${want[0].score}`);
}

test('setPostprocessor: a JS post-processor replaces the built-in one on predict, predictAsync and predictStream', async () => {
  const zoo = dgzoo.connect('@local', ZOO);
  const model = zoo.loadModel(EFF, { output_top_k: 1 });
  const raw = zoo.loadModel(EFF, { output_postprocess_type: 'None' });
  const cat = img('cat_224');
  const car = img('car_416');
  const builtinCat = model.predict(cat);
  const builtinCar = model.predict(car);
  const want = raw.predict(cat)[0];
  const labels = model.getProperty('label_dictionary');
  let calls = 0;
  let seen = null;
  model.setPostprocessor((tensors, frame) => {
    calls++;
    assert.strictEqual(tensors.length, 1);
    assert.strictEqual(tensors[0].name, want.name);
    assert.deepStrictEqual(tensors[0].shape, want.shape);
    assert.strictEqual(tensors[0].dtype, want.type);
    seen = [frame.imageWidth, frame.imageHeight, frame.inputWidth, ...frame.toImage(frame.inputWidth / 2, frame.inputHeight / 2)];
    return top1(tensors[0], labels);
  });
  sameTop1(model.predict(car), builtinCar);
  assert.deepStrictEqual(seen.slice(0, 3), [416, 416, 224]);
  assert.ok(Math.abs(seen[3] - 208) <= 1 && Math.abs(seen[4] - 208) <= 1, `centre ${seen}`);
  sameTop1(await model.predictAsync(cat), builtinCat);
  const frames = [car, cat];
  const streamed = [];
  await model.predictStream(() => (frames.length ? { data: frames.shift() } : null), (r) => streamed.push(r.results));
  sameTop1(streamed[0], builtinCar);
  sameTop1(streamed[1], builtinCat);
  assert.strictEqual(calls, 4);
  // A throwing post-processor: an INFERENCE error with its message; the model stays usable.
  model.setPostprocessor(() => { throw new Error('no luck'); });
  assert.throws(() => model.predict(cat), (e) => e.code === 'INFERENCE' && /no luck/.test(e.message));
  model.setPostprocessor(() => ({ label: 'not a list' }));
  assert.throws(() => model.predict(cat), (e) => e.code === 'INFERENCE' && /JSON array/.test(e.message));
  model.setPostprocessor(null);
  assert.deepStrictEqual(model.predict(cat), builtinCat);
  model.setPostprocessor((t) => top1(t[0], labels));
  model.close(); // clears the post-processor first
  raw.close();
  zoo.close();
});
