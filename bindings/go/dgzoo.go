// Package dgzoo is the Go binding of libdgzoo: find, fetch and run AI models the way DeGirum
// PySDK does. It wraps the C API of include/dgzoo.h with cgo.
//
// Build against a built library: point cgo at it, e.g.
//
//	CGO_LDFLAGS="-L/path/to/dgzoo/target/release" LD_LIBRARY_PATH=/path/to/dgzoo/target/release go test
//
// Errors from the library are *Error values carrying the C API's code and PySDK's message.
// They are returned by value from each call (not thread-local state), so goroutines moving
// between OS threads see the right error. Zoo, Model and Result are safe for concurrent use;
// Close frees the native object (finalizers do it too, as a safety net).
package dgzoo

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -ldgzoo
#include <stdlib.h>
#include "dgzoo.h"

extern void goDgAsyncCallback(void *user_data, uint64_t frame_id, dg_result *result, dg_error *error);
extern int goDgStreamNext(void *user_data, dg_input *out_frame, void **out_frame_info);
extern void goDgStreamResult(void *user_data, void *frame_info, dg_result *result, dg_error *error);
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Error is a failed library call: a stable code (the C API's dg_code name, e.g. "NOT_FOUND")
// and the message (PySDK's wording where PySDK has one).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("dgzoo: %s: %s", e.Code, e.Message) }

var codeNames = map[C.dg_code]string{
	C.DG_OK: "OK", C.DG_INVALID_ARGUMENT: "INVALID_ARGUMENT", C.DG_NOT_FOUND: "NOT_FOUND",
	C.DG_UNSUPPORTED: "UNSUPPORTED", C.DG_IO: "IO", C.DG_NETWORK: "NETWORK", C.DG_AUTH: "AUTH",
	C.DG_PROTOCOL: "PROTOCOL", C.DG_BAD_MODEL: "BAD_MODEL", C.DG_INFERENCE: "INFERENCE",
	C.DG_TIMEOUT: "TIMEOUT", C.DG_CANCELLED: "CANCELLED", C.DG_INTERNAL: "INTERNAL",
}

// takeError converts and frees a dg_error (nil for NULL).
func takeError(e *C.dg_error) error {
	if e == nil {
		return nil
	}
	defer C.dg_error_free(e)
	code, ok := codeNames[C.dg_error_code(e)]
	if !ok {
		code = fmt.Sprintf("CODE_%d", int(C.dg_error_code(e)))
	}
	return &Error{Code: code, Message: C.GoString(C.dg_error_message(e))}
}

// takeString copies and frees a library-owned string.
func takeString(s *C.char) string {
	defer C.dg_string_free(s)
	return C.GoString(s)
}

// cstr returns a C copy of s (free with C.free).
func cstr(s string) *C.char { return C.CString(s) }

// Version is the library version, e.g. "0.1.0".
func Version() string { return C.GoString(C.dg_version()) }

// Zoo is a connection to a model zoo and an inference host.
type Zoo struct {
	mu sync.Mutex
	p  *C.dg_zoo
}

// Connect opens a zoo: host is "@local", "@cloud" or an AI server address; zooURL a local
// directory or model JSON, a cloud zoo URL, or "" for an AI server's own zoo.
func Connect(host, zooURL, token string) (*Zoo, error) {
	h, u, t := cstr(host), cstr(zooURL), cstr(token)
	defer C.free(unsafe.Pointer(h))
	defer C.free(unsafe.Pointer(u))
	defer C.free(unsafe.Pointer(t))
	var p *C.dg_zoo
	if err := takeError(C.dg_connect(h, u, t, &p)); err != nil {
		return nil, err
	}
	z := &Zoo{p: p}
	runtime.SetFinalizer(z, (*Zoo).Close)
	return z, nil
}

// Close frees the zoo; models loaded from it stay valid. Safe to call twice.
func (z *Zoo) Close() {
	z.mu.Lock()
	defer z.mu.Unlock()
	C.dg_zoo_free(z.p)
	z.p = nil
}

func (z *Zoo) handle() (*C.dg_zoo, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.p == nil {
		return nil, &Error{Code: "INVALID_ARGUMENT", Message: "the zoo is closed"}
	}
	return z.p, nil
}

// jsonCall runs a call that yields a library-owned JSON string and decodes it into out.
func jsonCall(out any, call func(**C.char) *C.dg_error) error {
	var s *C.char
	if err := takeError(call(&s)); err != nil {
		return err
	}
	return json.Unmarshal([]byte(takeString(s)), out)
}

// filterJSON encodes a filter (nil for none), e.g. map[string]any{"runtime": "ONNX"}.
func filterJSON(filter map[string]any) (*C.char, error) {
	if filter == nil {
		return cstr(""), nil
	}
	b, err := json.Marshal(filter)
	if err != nil {
		return nil, err
	}
	return cstr(string(b)), nil
}

// ListModels returns the names of the models passing the filter (PySDK's keys: model_family,
// runtime, device, device_type, precision, pruned, postprocess_type), sorted.
func (z *Zoo) ListModels(filter map[string]any) ([]string, error) {
	p, err := z.handle()
	if err != nil {
		return nil, err
	}
	f, err := filterJSON(filter)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(f))
	var names []string
	err = jsonCall(&names, func(out **C.char) *C.dg_error { return C.dg_list_models(p, f, out) })
	runtime.KeepAlive(z)
	return names, err
}

// ModelInfo returns a model's full parameters.
func (z *Zoo) ModelInfo(name string) (map[string]any, error) {
	p, err := z.handle()
	if err != nil {
		return nil, err
	}
	n := cstr(name)
	defer C.free(unsafe.Pointer(n))
	var info map[string]any
	err = jsonCall(&info, func(out **C.char) *C.dg_error { return C.dg_model_info(p, n, out) })
	runtime.KeepAlive(z)
	return info, err
}

// SystemInfo returns the inference host's system info.
func (z *Zoo) SystemInfo() (map[string]any, error) {
	p, err := z.handle()
	if err != nil {
		return nil, err
	}
	var info map[string]any
	err = jsonCall(&info, func(out **C.char) *C.dg_error { return C.dg_system_info(p, out) })
	runtime.KeepAlive(z)
	return info, err
}

// Model is a loaded model.
type Model struct {
	mu   sync.RWMutex
	p    *C.dg_model
	ppMu sync.Mutex
	pp   *postprocessorCell // the Postprocessor the library holds, if any
}

// LoadModel loads a model, applying properties (nil for none) in order, e.g.
// map[string]any{"output_top_k": 3}.
func (z *Zoo) LoadModel(name string, properties map[string]any) (*Model, error) {
	p, err := z.handle()
	if err != nil {
		return nil, err
	}
	n := cstr(name)
	defer C.free(unsafe.Pointer(n))
	props, err := filterJSON(properties)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(props))
	var mp *C.dg_model
	err = takeError(C.dg_load_model(p, n, props, &mp))
	runtime.KeepAlive(z)
	if err != nil {
		return nil, err
	}
	m := &Model{p: mp}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close frees the model. Safe to call twice; waits for calls in progress.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clearPostprocessor()
	C.dg_model_free(m.p)
	m.p = nil
}

// with runs f with the native model, holding it open for the call.
func (m *Model) with(f func(*C.dg_model) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.p == nil {
		return &Error{Code: "INVALID_ARGUMENT", Message: "the model is closed"}
	}
	return f(m.p)
}

// Name is the model's name.
func (m *Model) Name() (name string) {
	_ = m.with(func(p *C.dg_model) error { name = C.GoString(C.dg_model_name(p)); return nil })
	return
}

// Property returns a model property (PySDK name) decoded from JSON.
func (m *Model) Property(name string) (value any, err error) {
	n := cstr(name)
	defer C.free(unsafe.Pointer(n))
	err = m.with(func(p *C.dg_model) error {
		return jsonCall(&value, func(out **C.char) *C.dg_error { return C.dg_model_get_property(p, n, out) })
	})
	return
}

// Stat is one key of PySDK's time_stats() table.
type Stat struct {
	Min   float64 `json:"min"`
	Avg   float64 `json:"avg"`
	Max   float64 `json:"max"`
	Count int64   `json:"count"`
}

// TimeStats returns PySDK's time_stats(): min/avg/max/count per timing key
// (PythonPreprocessDuration_ms, the Core* keys, FrameTotalDuration_ms), collected while the
// measure_time property is true.
func (m *Model) TimeStats() (stats map[string]Stat, err error) {
	err = m.with(func(p *C.dg_model) error {
		return jsonCall(&stats, func(out **C.char) *C.dg_error { return C.dg_model_time_stats(p, out) })
	})
	return
}

// ResetTimeStats forgets the statistics collected so far (PySDK's reset_time_stats()).
func (m *Model) ResetTimeStats() error {
	return m.with(func(p *C.dg_model) error { return takeError(C.dg_model_reset_time_stats(p)) })
}

// SetProperty sets a model property (PySDK name and validation).
func (m *Model) SetProperty(name string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return err
	}
	n, v := cstr(name), cstr(string(b))
	defer C.free(unsafe.Pointer(n))
	defer C.free(unsafe.Pointer(v))
	return m.with(func(p *C.dg_model) error { return takeError(C.dg_model_set_property(p, n, v)) })
}

// Result is the outcome of one frame: PySDK's `results` list as JSON, and the tensors it
// refers to as `{"__tensor__": index}`: raw outputs (postprocess types None/Dequantization)
// and instance masks (SegmentationYoloV8: float32 [height, width], name "mask"), where
// PySDK has numpy arrays.
type Result struct {
	// JSON is PySDK's results list, as the library produced it.
	JSON    string
	Tensors []Tensor
}

// Tensor is a raw output tensor, copied out of the library.
type Tensor struct {
	Name      string
	ID        int64
	DType     string // DeGirum's type name: "DG_FLT", "DG_UINT8", ...
	Shape     []int64
	Data      []byte // row-major, native endianness
	Scale     float64
	ZeroPoint int64
}

// Float32s is the tensor's data as float32 values (DG_FLT tensors).
func (t *Tensor) Float32s() []float32 {
	if t.DType != "DG_FLT" || len(t.Data) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
}

var dtypeNames = map[C.dg_dtype]string{
	C.DG_FLT: "DG_FLT", C.DG_DBL: "DG_DBL", C.DG_UINT8: "DG_UINT8", C.DG_INT8: "DG_INT8",
	C.DG_UINT16: "DG_UINT16", C.DG_INT16: "DG_INT16", C.DG_UINT32: "DG_UINT32",
	C.DG_INT32: "DG_INT32", C.DG_UINT64: "DG_UINT64", C.DG_INT64: "DG_INT64", C.DG_FLT16: "DG_FLT16",
}

// copyResult copies a result (JSON and tensors) into Go memory.
func copyResult(r *C.dg_result) *Result {
	out := &Result{JSON: C.GoString(C.dg_result_json(r))}
	for i := C.size_t(0); i < C.dg_result_tensor_count(r); i++ {
		var v C.dg_tensor_view
		if C.dg_result_tensor(r, i, &v) != nil {
			continue // cannot happen for i < count; nothing to free then either
		}
		t := Tensor{Name: C.GoString(v.name), ID: int64(v.id), DType: dtypeNames[v.dtype], Scale: float64(v.scale), ZeroPoint: int64(v.zero_point)}
		for _, d := range unsafe.Slice(v.shape, int(v.rank)) {
			t.Shape = append(t.Shape, int64(d))
		}
		t.Data = C.GoBytes(v.data, C.int(v.nbytes))
		out.Tensors = append(out.Tensors, t)
	}
	return out
}

// Objects decodes the results list.
func (r *Result) Objects() ([]map[string]any, error) {
	var out []map[string]any
	err := json.Unmarshal([]byte(r.JSON), &out)
	return out, err
}

// takeResult copies a result and frees it.
func takeResult(r *C.dg_result) *Result {
	defer C.dg_result_free(r)
	return copyResult(r)
}

// bytesPtr is a pointer to data's first byte (nil for empty data), for the duration of a call.
func bytesPtr(data []byte) *C.uint8_t {
	if len(data) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&data[0]))
}

// Predict runs one frame: an encoded image (JPEG/PNG/BMP) or the model's raw input.
func (m *Model) Predict(data []byte) (res *Result, err error) {
	err = m.with(func(p *C.dg_model) error {
		var r *C.dg_result
		if err := takeError(C.dg_predict(p, bytesPtr(data), C.size_t(len(data)), &r)); err != nil {
			return err
		}
		res = takeResult(r)
		return nil
	})
	return
}

// PredictBatch runs frames pipelined on the library's threads. Each frame has its own
// result or error, in order.
func (m *Model) PredictBatch(frames [][]byte) (results []*Result, errs []error, err error) {
	n := len(frames)
	// The pointer array lives in C memory: cgo forbids passing Go memory holding Go pointers.
	ptrs := unsafe.Slice((**C.uint8_t)(C.malloc(C.size_t(n+1)*C.size_t(unsafe.Sizeof(uintptr(0))))), n+1)
	lens := unsafe.Slice((*C.size_t)(C.malloc(C.size_t(n+1)*C.size_t(unsafe.Sizeof(C.size_t(0))))), n+1)
	defer C.free(unsafe.Pointer(&ptrs[0]))
	defer C.free(unsafe.Pointer(&lens[0]))
	copies := make([]unsafe.Pointer, n)
	for i, f := range frames {
		copies[i] = C.CBytes(f)
		ptrs[i] = (*C.uint8_t)(copies[i])
		lens[i] = C.size_t(len(f))
	}
	defer func() {
		for _, c := range copies {
			C.free(c)
		}
	}()
	err = m.with(func(p *C.dg_model) error {
		var b *C.dg_batch
		if err := takeError(C.dg_predict_batch(p, &ptrs[0], &lens[0], C.size_t(n), &b)); err != nil {
			return err
		}
		defer C.dg_batch_free(b)
		results, errs = make([]*Result, n), make([]error, n)
		for i := 0; i < n; i++ {
			var r *C.dg_result
			if e := takeError(C.dg_batch_get(b, C.size_t(i), &r)); e != nil {
				errs[i] = e
				continue
			}
			results[i] = copyResult(r)
		}
		return nil
	})
	return
}

// AsyncResult is one frame delivered by an Async predictor.
type AsyncResult struct {
	FrameID uint64
	Result  *Result
	Err     error
}

// Async is an asynchronous predictor: Submit frames, receive them in submission order on
// Results (which is closed by Close).
type Async struct {
	p       *C.dg_async
	handle  cgo.Handle
	cell    unsafe.Pointer
	results chan AsyncResult
	once    sync.Once
}

//export goDgAsyncCallback
func goDgAsyncCallback(user unsafe.Pointer, frameID C.uint64_t, res *C.dg_result, e *C.dg_error) {
	a := cgo.Handle(*(*C.uintptr_t)(user)).Value().(*Async)
	out := AsyncResult{FrameID: uint64(frameID), Err: takeError(e)}
	if res != nil {
		out.Result = takeResult(res)
	}
	a.results <- out
}

// NewAsync creates an asynchronous predictor with at most depth frames in flight (0 = the
// model's frame_queue_depth). Read Results while submitting: delivery blocks when nobody
// reads, and a full queue then blocks Submit (back-pressure).
func (m *Model) NewAsync(depth int) (*Async, error) {
	a := &Async{results: make(chan AsyncResult, 1)}
	a.handle = cgo.NewHandle(a)
	// The handle's value travels in C memory: the library keeps user_data beyond this call.
	a.cell = C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(a.cell) = C.uintptr_t(a.handle)
	err := m.with(func(p *C.dg_model) error {
		return takeError(C.dg_async_new(p, C.size_t(depth), C.dg_async_callback(C.goDgAsyncCallback), a.cell, &a.p))
	})
	if err != nil {
		a.handle.Delete()
		C.free(a.cell)
		return nil, err
	}
	return a, nil
}

// Results delivers every submitted frame, in submission order.
func (a *Async) Results() <-chan AsyncResult { return a.results }

// Submit queues a frame (copied), blocking while the queue is full.
func (a *Async) Submit(frameID uint64, data []byte) error {
	return takeError(C.dg_async_submit(a.p, C.uint64_t(frameID), bytesPtr(data), C.size_t(len(data))))
}

// Cancel drops the frames not yet done; each is delivered with a CANCELLED error.
func (a *Async) Cancel() error { return takeError(C.dg_async_cancel(a.p)) }

// Close waits for outstanding frames (keep reading Results until then), frees the predictor
// and closes Results.
func (a *Async) Close() {
	a.once.Do(func() {
		C.dg_async_free(a.p)
		a.handle.Delete()
		C.free(a.cell)
		close(a.results)
	})
}

// StreamResult is one frame's outcome of PredictStream, with the Info its frame carried.
type StreamResult struct {
	Info   any
	Result *Result
	Err    error
}

// stream is the state of one PredictStream call, reached from the C callbacks by a handle.
type stream struct {
	next     func() (data []byte, info any, ok bool)
	onResult func(StreamResult)
	frame    unsafe.Pointer // C copy of the current frame (the library reads it after next returns)
	infos    map[uintptr]any
	seq      uintptr
}

//export goDgStreamNext
func goDgStreamNext(user unsafe.Pointer, out *C.dg_input, info *unsafe.Pointer) C.int {
	s := cgo.Handle(*(*C.uintptr_t)(user)).Value().(*stream)
	if s.frame != nil {
		C.free(s.frame)
		s.frame = nil
	}
	data, tag, ok := s.next()
	if !ok {
		return 0
	}
	if len(data) > 0 {
		s.frame = C.CBytes(data)
	}
	out.kind = C.DG_INPUT_BYTES
	out.data = (*C.uint8_t)(s.frame)
	out.len = C.size_t(len(data))
	// frame_info is a sequence number: Go values cannot be kept by C.
	s.seq++
	s.infos[s.seq] = tag
	*(*C.uintptr_t)(unsafe.Pointer(info)) = C.uintptr_t(s.seq)
	return 1
}

//export goDgStreamResult
func goDgStreamResult(user unsafe.Pointer, info unsafe.Pointer, res *C.dg_result, e *C.dg_error) {
	s := cgo.Handle(*(*C.uintptr_t)(user)).Value().(*stream)
	id := uintptr(info)
	out := StreamResult{Info: s.infos[id], Err: takeError(e)}
	delete(s.infos, id)
	if res != nil {
		out.Result = takeResult(res)
	}
	s.onResult(out)
}

// PredictStream runs a stream of frames pipelined (PySDK's predict_batch over a generator):
// next is called for each frame (encoded image bytes and any Info value) until it returns
// ok == false; onResult gets every frame's result in order with its Info. Both run on the
// calling goroutine's thread, one at a time; at most depth frames (0 = the model's
// frame_queue_depth) are held by the library at once. A bad frame gets its error in onResult
// and the stream goes on. The callbacks must not Close the model.
func (m *Model) PredictStream(depth int, next func() (data []byte, info any, ok bool), onResult func(StreamResult)) error {
	s := &stream{next: next, onResult: onResult, infos: map[uintptr]any{}}
	h := cgo.NewHandle(s)
	defer h.Delete()
	cell := C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	defer C.free(cell)
	*(*C.uintptr_t)(cell) = C.uintptr_t(h)
	defer func() {
		if s.frame != nil {
			C.free(s.frame)
		}
	}()
	return m.with(func(p *C.dg_model) error {
		return takeError(C.dg_model_predict_stream(p, C.size_t(depth), C.dg_next_frame_callback(C.goDgStreamNext), cell,
			C.dg_stream_result_callback(C.goDgStreamResult), cell))
	})
}
