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
  static _take(result) {
    const json = C.resultJson(result);
    C.resultFree(result);
    return JSON.parse(json);
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
  close() {
    if (this._ptr) {
      modelFinalizer.unregister(this);
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
