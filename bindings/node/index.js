'use strict';
// Node.js binding of libdgzoo over its C ABI (through koffi, no compiled addon).
// Errors come back as dg_error values, never thread-local state, so calls that koffi runs on
// its worker threads (predictAsync) report errors exactly like synchronous ones.
const path = require('node:path');
const koffi = require('koffi');

function libraryPath() {
  if (process.env.DGZOO_LIB) return process.env.DGZOO_LIB;
  const root = path.resolve(__dirname, '..', '..', 'target');
  const fs = require('node:fs');
  for (const profile of ['release', 'debug']) {
    const p = path.join(root, profile, 'libdgzoo.so');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('libdgzoo.so not found: build it with `cargo build` or set DGZOO_LIB');
}

const lib = koffi.load(libraryPath());
const C = {
  version: lib.func('const char *dg_version(void)'),
  errorCode: lib.func('int dg_error_code(void *error)'),
  errorMessage: lib.func('const char *dg_error_message(void *error)'),
  errorFree: lib.func('void dg_error_free(void *error)'),
  stringFree: lib.func('void dg_string_free(void *s)'),
  connect: lib.func('void *dg_connect(const char *host, const char *zoo_url, const char *token, _Out_ void **out)'),
  zooFree: lib.func('void dg_zoo_free(void *zoo)'),
  listModels: lib.func('void *dg_list_models(void *zoo, const char *filter, _Out_ void **out)'),
  listModelsFull: lib.func('void *dg_list_models_full(void *zoo, const char *filter, _Out_ void **out)'),
  modelInfo: lib.func('void *dg_model_info(void *zoo, const char *name, _Out_ void **out)'),
  systemInfo: lib.func('void *dg_system_info(void *zoo, _Out_ void **out)'),
  loadModel: lib.func('void *dg_load_model(void *zoo, const char *name, const char *props, _Out_ void **out)'),
  modelFree: lib.func('void dg_model_free(void *model)'),
  getProperty: lib.func('void *dg_model_get_property(void *model, const char *name, _Out_ void **out)'),
  setProperty: lib.func('void *dg_model_set_property(void *model, const char *name, const char *value)'),
  timeStats: lib.func('void *dg_model_time_stats(void *model, _Out_ void **out)'),
  resetTimeStats: lib.func('void *dg_model_reset_time_stats(void *model)'),
  predict: lib.func('void *dg_predict(void *model, const uint8_t *data, size_t len, _Out_ void **out)'),
  resultJson: lib.func('const char *dg_result_json(void *result)'),
  resultFree: lib.func('void dg_result_free(void *result)'),
};

// Streams and custom post-processors: the C structs and callback types they use.
const DgInput = koffi.struct('dg_input', {
  kind: 'int32_t', data: 'const uint8_t *', len: 'size_t', width: 'uint32_t', height: 'uint32_t', stride: 'size_t',
});
const TensorView = koffi.struct('dg_tensor_view', {
  name: 'const char *', id: 'int64_t', dtype: 'int', shape: 'const int64_t *', rank: 'size_t',
  data: 'const void *', nbytes: 'size_t', scale: 'double', zero_point: 'int64_t',
});
const FrameInfo = koffi.struct('dg_frame_info', {
  image_width: 'uint32_t', image_height: 'uint32_t', input_width: 'uint32_t', input_height: 'uint32_t', internal: 'const void *',
});
// Pointer parameters stay raw (decoded by hand); frame_info travels as an integer.
const NextFrame = koffi.proto('int32_t dg_next_frame_cb(void *user, void *out_frame, void *out_info)');
const StreamResult = koffi.proto('void dg_stream_result_cb(void *user, uintptr_t info, void *result, void *error)');
const Postprocess = koffi.proto('int32_t dg_postprocess_cb(void *user, void *tensors, size_t count, void *frame, void *out)');
Object.assign(C, {
  resultTensorCount: lib.func('size_t dg_result_tensor_count(void *result)'),
  resultTensor: lib.func('void *dg_result_tensor(void *result, size_t index, _Out_ dg_tensor_view *out)'),
  predictStream: lib.func('void *dg_model_predict_stream(void *model, size_t depth, dg_next_frame_cb *next, void *next_user, dg_stream_result_cb *on_result, void *result_user)'),
  setPostprocessor: lib.func('void *dg_model_set_postprocessor(void *model, dg_postprocess_cb *callback, void *user)'),
  setOutput: lib.func('void *dg_postprocess_set_output(void *out, const char *text)'),
  frameToImage: lib.func('void *dg_frame_to_image(void *frame, double x, double y, _Out_ double *out_x, _Out_ double *out_y)'),
});
const DTYPES = ['DG_FLT', 'DG_DBL', 'DG_UINT8', 'DG_INT8', 'DG_UINT16', 'DG_INT16', 'DG_UINT32', 'DG_INT32', 'DG_UINT64',
  'DG_INT64', 'DG_FLT16'];
// Typed arrays by `dg_dtype` (float16 stays as its bits).
const TYPED = [Float32Array, Float64Array, Uint8Array, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array,
  BigUint64Array, BigInt64Array, Uint16Array];

/** Tensor `i` of a live result, copied into a typed array (the result is freed after). */
function tensorData(result, i) {
  const v = {};
  check(C.resultTensor(result, i, v));
  const nbytes = Number(v.nbytes);
  const bytes = nbytes ? koffi.view(v.data, nbytes).slice(0) : new ArrayBuffer(0);
  return new (TYPED[v.dtype] || Uint8Array)(bytes);
}

/** Replace every `{"__tensor__": i, dtype, shape}` in `v` by `{dtype, shape, data: tensors[i]}`. */
function resolveTensors(v, tensors) {
  if (v === null || typeof v !== 'object') return;
  for (const k of Object.keys(v)) {
    const x = v[k];
    if (x && typeof x === 'object' && Number.isInteger(x.__tensor__) && tensors[x.__tensor__]) {
      v[k] = { dtype: x.dtype, shape: x.shape, data: tensors[x.__tensor__] };
    } else {
      resolveTensors(x, tensors);
    }
  }
}

/** Error codes of `enum dg_code`, by number. */
const CODES = ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'UNSUPPORTED', 'IO', 'NETWORK', 'AUTH', 'PROTOCOL',
  'BAD_MODEL', 'INFERENCE', 'TIMEOUT', 'CANCELLED', 'INTERNAL'];

class DgError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'DgError';
    this.code = CODES[code] || String(code);
  }
}

/** Throw (after freeing it) if `err` is a dg_error. */
function check(err) {
  if (!err) return;
  const e = new DgError(C.errorCode(err), C.errorMessage(err));
  C.errorFree(err);
  throw e;
}

/** Take ownership of a library-allocated string. */
function takeString(ptr) {
  const s = koffi.decode(ptr, 'char', -1);
  C.stringFree(ptr);
  return s;
}

function jsonArg(v) {
  return v == null ? null : typeof v === 'string' ? v : JSON.stringify(v);
}

const zooFinalizer = new FinalizationRegistry((p) => C.zooFree(p));
const modelFinalizer = new FinalizationRegistry((p) => C.modelFree(p));

class Model {
  constructor(ptr, name) {
    this._ptr = ptr;
    this.name = name;
    modelFinalizer.register(this, ptr, this);
  }
  _handle() {
    if (!this._ptr) throw new DgError(1, 'the model was closed');
    return this._ptr;
  }
  /** One frame (an encoded image or the model's raw input) → PySDK's `results` list. */
  predict(data) {
    const out = [null];
    check(C.predict(this._handle(), data, data.length, out));
    return Model._take(out[0]);
  }
  /** The same on a libdgzoo-side worker thread; resolves with the results. */
  predictAsync(data) {
    const handle = this._handle();
    return new Promise((resolve, reject) => {
      const out = [null];
      C.predict.async(handle, data, data.length, out, (err, e) => {
        if (err) return reject(err);
        try {
          check(e);
          resolve(Model._take(out[0]));
        } catch (x) {
          reject(x);
        }
      });
    });
  }
  /**
   * A result's list, freeing the result. Tensors it refers to (`{"__tensor__": i}`: raw
   * outputs, instance masks) are copied out in place as `{dtype, shape, data}`, `data` a typed
   * array (PySDK has numpy arrays there).
   */
  static _take(result) {
    try {
      const results = JSON.parse(C.resultJson(result));
      const n = Number(C.resultTensorCount(result));
      if (n > 0) resolveTensors(results, Array.from({ length: n }, (_, i) => tensorData(result, i)));
      return results;
    } finally {
      C.resultFree(result);
    }
  }
  getProperty(name) {
    const out = [null];
    check(C.getProperty(this._handle(), name, out));
    return JSON.parse(takeString(out[0]));
  }
  setProperty(name, value) {
    check(C.setProperty(this._handle(), name, JSON.stringify(value)));
  }
  /** PySDK's `time_stats()`: `{key: {min, avg, max, count}}`, collected while measure_time is on. */
  timeStats() {
    const out = [null];
    check(C.timeStats(this._handle(), out));
    return JSON.parse(takeString(out[0]));
  }
  /** PySDK's `reset_time_stats()`. */
  resetTimeStats() {
    check(C.resetTimeStats(this._handle()));
  }
  /**
   * PySDK's generator input: `next()` returns `{data, info}` (an encoded image and any value)
   * or null at the end; `onResult({info, results})` or `onResult({info, error})` gets every
   * frame in order. Frames run pipelined with at most `depth` (0 = frame_queue_depth) held by
   * the library; the call runs on a worker thread and both callbacks on this thread's event
   * loop. Resolves with the number of frames pulled; an exception in a callback stops the
   * stream (frames pulled are still delivered) and rejects with it.
   */
  predictStream(next, onResult, depth = 0) {
    const handle = this._handle();
    let frame = null; // the current frame's copy in C memory (the library copies it before asking again)
    let seq = 0;
    let failure = null;
    const infos = new Map();
    const dropFrame = () => {
      if (frame) koffi.free(frame);
      frame = null;
    };
    const nextCb = koffi.register((user, out, outInfo) => {
      try {
        dropFrame();
        if (failure) return -1;
        const f = next();
        if (f == null) return 0;
        const data = f.data;
        frame = koffi.alloc('uint8_t', Math.max(data.length, 1));
        if (data.length) new Uint8Array(koffi.view(frame, data.length)).set(data);
        koffi.encode(out, DgInput, { kind: 0, data: frame, len: data.length, width: 0, height: 0, stride: 0 });
        seq += 1;
        infos.set(seq, f.info);
        koffi.encode(outInfo, 'uintptr_t', seq);
        return 1;
      } catch (e) {
        failure = failure || e;
        return -1;
      }
    }, koffi.pointer(NextFrame));
    const resultCb = koffi.register((user, info, result, error) => {
      const id = Number(info);
      const r = { info: infos.get(id) };
      infos.delete(id);
      if (error) {
        r.error = new DgError(C.errorCode(error), C.errorMessage(error));
        C.errorFree(error);
      } else {
        r.results = Model._take(result);
      }
      try {
        onResult(r);
      } catch (e) {
        failure = failure || e;
      }
    }, koffi.pointer(StreamResult));
    return new Promise((resolve, reject) => {
      C.predictStream.async(handle, depth, nextCb, null, resultCb, null, (err, e) => {
        koffi.unregister(nextCb);
        koffi.unregister(resultCb);
        dropFrame();
        if (err) return reject(err);
        if (failure) {
          if (e) C.errorFree(e);
          return reject(failure);
        }
        try {
          check(e);
          resolve(seq);
        } catch (x) {
          reject(x);
        }
      });
    });
  }
  /**
   * PySDK's `custom_postprocessor`: `fn(tensors, frame)` replaces the built-in post-processor
   * (null restores it) and returns the frame's results list (JSON-serialisable). `tensors` are
   * the raw outputs `{name, id, dtype, shape, scale, zeroPoint, data}` where `data` is an
   * ArrayBuffer over the library's memory, valid only during the call; `frame` has
   * `imageWidth`, `imageHeight`, `inputWidth`, `inputHeight` and `toImage(x, y)` → `[x, y]`.
   * An exception fails the frame with an INFERENCE error. It always runs on this thread: from
   * `predict` directly, from `predictAsync` and `predictStream` (library worker threads) through
   * the event loop. Waits for frames inside the post-processor it replaces, so call it while no
   * `predictAsync` or `predictStream` of this model is pending. AI-server and cloud models:
   * UNSUPPORTED.
   */
  setPostprocessor(fn) {
    const handle = this._handle();
    const cb = fn ? koffi.register((user, tensors, count, frame, out) => Model._postprocess(fn, tensors, Number(count), frame, out), koffi.pointer(Postprocess)) : null;
    try {
      check(C.setPostprocessor(handle, cb, null));
    } catch (e) {
      if (cb) koffi.unregister(cb);
      throw e;
    }
    // The library no longer calls the previous one.
    if (this._pp) koffi.unregister(this._pp);
    this._pp = cb;
  }
  static _postprocess(fn, tensorsPtr, count, framePtr, out) {
    const reply = (text) => {
      const e = C.setOutput(out, text);
      if (e) C.errorFree(e);
    };
    try {
      const tensors = [];
      for (let i = 0; i < count; i++) {
        const v = koffi.decode(tensorsPtr, i * TensorView.size, TensorView);
        const nbytes = Number(v.nbytes);
        tensors.push({
          name: v.name,
          id: Number(v.id),
          dtype: DTYPES[v.dtype] || `DG_${v.dtype}`,
          shape: Array.from(koffi.decode(v.shape, 'int64_t', Number(v.rank)), Number),
          scale: v.scale,
          zeroPoint: Number(v.zero_point),
          data: nbytes ? koffi.view(v.data, nbytes) : new ArrayBuffer(0),
        });
      }
      const f = koffi.decode(framePtr, FrameInfo);
      const frame = {
        imageWidth: f.image_width,
        imageHeight: f.image_height,
        inputWidth: f.input_width,
        inputHeight: f.input_height,
        toImage(x, y) {
          const ox = [0];
          const oy = [0];
          check(C.frameToImage(framePtr, x, y, ox, oy));
          return [ox[0], oy[0]];
        },
      };
      reply(JSON.stringify(fn(tensors, frame)));
      return 0;
    } catch (e) {
      reply(String((e && e.message) || e));
      return 1;
    }
  }
  close() {
    if (this._ptr) {
      modelFinalizer.unregister(this);
      if (this._pp) {
        this.setPostprocessor(null);
      }
      C.modelFree(this._ptr);
      this._ptr = null;
    }
  }
}

class Zoo {
  /** `dgzoo.connect(host, zooUrl, token)`: host "@local", "@cloud" or an AI server address. */
  static connect(host, zooUrl = '', token = '') {
    const out = [null];
    check(C.connect(host, zooUrl, token, out));
    return new Zoo(out[0]);
  }
  constructor(ptr) {
    this._ptr = ptr;
    zooFinalizer.register(this, ptr, this);
  }
  _handle() {
    if (!this._ptr) throw new DgError(1, 'the zoo was closed');
    return this._ptr;
  }
  _json(fn, ...args) {
    const out = [null];
    check(fn(this._handle(), ...args, out));
    return JSON.parse(takeString(out[0]));
  }
  /** Sorted model names passing PySDK's filters (model_family, runtime, device, ...). */
  listModels(filters) { return this._json(C.listModels, jsonArg(filters)); }
  /** `{name: parameters}` in zoo order. */
  listModelsFull(filters) { return this._json(C.listModelsFull, jsonArg(filters)); }
  modelInfo(name) { return this._json(C.modelInfo, name); }
  systemInfo() { return this._json(C.systemInfo); }
  loadModel(name, properties) {
    const out = [null];
    check(C.loadModel(this._handle(), name, jsonArg(properties), out));
    return new Model(out[0], name);
  }
  close() {
    if (this._ptr) {
      zooFinalizer.unregister(this);
      C.zooFree(this._ptr);
      this._ptr = null;
    }
  }
}

module.exports = { connect: Zoo.connect, Zoo, Model, DgError, version: () => C.version() };
