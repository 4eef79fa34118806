package dgzoo

/*
#include <stdlib.h>
#include "dgzoo.h"

extern int32_t goDgPostprocess(void *user_data, dg_tensor_view *tensors, size_t count, dg_frame_info *frame, dg_postprocess_output *out);
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// FrameInfo is the frame a Postprocessor is called for: the original image's size, the model
// input's size, and ToImage to map model-input points back to the image.
type FrameInfo struct {
	ImageWidth, ImageHeight int
	InputWidth, InputHeight int
	p                       *C.dg_frame_info
}

// ToImage maps a point in model-input pixels to original-image pixels, as the built-in
// post-processors map boxes (undoing resize, letterbox or crop). Valid during the call only.
func (f *FrameInfo) ToImage(x, y float64) (float64, float64, error) {
	var ox, oy C.double
	err := takeError(C.dg_frame_to_image(f.p, C.double(x), C.double(y), &ox, &oy))
	return float64(ox), float64(oy), err
}

// Postprocessor replaces a model's built-in post-processor (PySDK's custom_postprocessor):
// it gets the frame's raw output tensors (their Data borrows the library's memory: valid only
// during the call, copy what must outlive it) and returns the frame's results list, which is
// encoded as JSON (a slice of maps, or a json.RawMessage holding a JSON array). An error (or
// a panic) fails that frame with an INFERENCE error carrying its text. It is called on the
// library's worker threads, for several frames of one model at once: it must be safe for
// concurrent use.
type Postprocessor func(tensors []Tensor, frame *FrameInfo) (any, error)

// postprocessorCell is what the C callback reaches: the handle's value in C memory.
type postprocessorCell struct {
	handle cgo.Handle
	cell   unsafe.Pointer
}

func (c *postprocessorCell) free() {
	c.handle.Delete()
	C.free(c.cell)
}

//export goDgPostprocess
func goDgPostprocess(user unsafe.Pointer, tensors *C.dg_tensor_view, count C.size_t, frame *C.dg_frame_info, out *C.dg_postprocess_output) (rc C.int32_t) {
	pp := cgo.Handle(*(*C.uintptr_t)(user)).Value().(Postprocessor)
	reply := func(text string) {
		t := C.CString(text)
		defer C.free(unsafe.Pointer(t))
		C.dg_error_free(C.dg_postprocess_set_output(out, t))
	}
	defer func() {
		if p := recover(); p != nil {
			reply(fmt.Sprintf("panic: %v", p))
			rc = 1
		}
	}()
	views := make([]Tensor, int(count))
	for i, v := range unsafe.Slice(tensors, int(count)) {
		t := Tensor{Name: C.GoString(v.name), ID: int64(v.id), DType: dtypeNames[v.dtype], Scale: float64(v.scale), ZeroPoint: int64(v.zero_point)}
		for _, d := range unsafe.Slice(v.shape, int(v.rank)) {
			t.Shape = append(t.Shape, int64(d))
		}
		if v.nbytes > 0 {
			t.Data = unsafe.Slice((*byte)(v.data), int(v.nbytes))
		}
		views[i] = t
	}
	fi := &FrameInfo{int(frame.image_width), int(frame.image_height), int(frame.input_width), int(frame.input_height), frame}
	results, err := pp(views, fi)
	if err != nil {
		reply(err.Error())
		return 1
	}
	b, err := json.Marshal(results)
	if err != nil {
		reply("cannot encode the results as JSON: " + err.Error())
		return 1
	}
	reply(string(b))
	return 0
}

// SetPostprocessor replaces the model's built-in post-processor with pp (nil restores it).
// Its results take the built-in ones' place in Predict, PredictBatch, Async and
// PredictStream (output_class_set still filters them). Models on an AI server or the cloud
// are post-processed there: an UNSUPPORTED error. Returns once no frame is inside the
// previous Postprocessor. Close clears it: Async predictors still running then use the
// built-in post-processor.
func (m *Model) SetPostprocessor(pp Postprocessor) error {
	var next *postprocessorCell
	if pp != nil {
		next = &postprocessorCell{handle: cgo.NewHandle(pp), cell: C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))}
		*(*C.uintptr_t)(next.cell) = C.uintptr_t(next.handle)
	}
	// The model's read lock (then ppMu, which orders replacements) keeps it open without
	// blocking its other calls: the Postprocessor itself may call the model's methods.
	err := m.with(func(p *C.dg_model) error {
		m.ppMu.Lock()
		defer m.ppMu.Unlock()
		var err error
		if next != nil {
			err = takeError(C.dg_model_set_postprocessor(p, C.dg_postprocess_callback(C.goDgPostprocess), next.cell))
		} else {
			err = takeError(C.dg_model_set_postprocessor(p, nil, nil))
		}
		if err != nil {
			return err
		}
		// The library no longer calls the previous one: its handle can go.
		if m.pp != nil {
			m.pp.free()
		}
		m.pp = next
		return nil
	})
	if err != nil && next != nil {
		next.free()
	}
	return err
}

// clearPostprocessor drops the model's Postprocessor before the model is freed (with the
// model's write lock held).
func (m *Model) clearPostprocessor() {
	m.ppMu.Lock()
	defer m.ppMu.Unlock()
	if m.pp != nil && m.p != nil {
		C.dg_error_free(C.dg_model_set_postprocessor(m.p, nil, nil))
		m.pp.free()
		m.pp = nil
	}
}
