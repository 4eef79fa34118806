package dgzoo

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

const effTF = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1"

// top1 is the built-in Classification's top-1 (softmax, then the best class) from the logits.
func top1(t Tensor, labels map[string]any) []map[string]any {
	v := t.Float32s()
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	sum := 0.0
	for _, x := range v {
		sum += math.Exp(float64(x) - float64(v[best]))
	}
	return []map[string]any{{"category_id": best, "label": labels[strconv.Itoa(best)], "score": 1 / sum}}
}

func sameTop1(t *testing.T, got, want *Result) {
	t.Helper()
	g, err := got.Objects()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := want.Objects()
	if len(g) != 1 || g[0]["category_id"] != w[0]["category_id"] || g[0]["label"] != w[0]["label"] ||
		math.Abs(g[0]["score"].(float64)-w[0]["score"].(float64)) > 1e-5 {
		t.Fatalf("custom %s, built-in %s", got.JSON, want.JSON)
	}
}

// A Go Postprocessor on a real model: the tensors are what raw-output mode shows, its top-1
// equals the built-in classification's on Predict, PredictBatch, Async and PredictStream; an
// error or a panic fails the frame with INFERENCE and the model stays usable; nil restores
// the built-in post-processor.
func TestPostprocessorReplacesTheBuiltInOne(t *testing.T) {
	z := connect(t)
	m, err := z.LoadModel(effTF, map[string]any{"output_top_k": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raw, err := z.LoadModel(effTF, map[string]any{"output_postprocess_type": "None"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cat, car := image(t, "cat_224"), image(t, "car_416")
	builtinCat, err := m.Predict(cat)
	if err != nil {
		t.Fatal(err)
	}
	builtinCar, _ := m.Predict(car)
	rawCat, err := raw.Predict(cat)
	if err != nil {
		t.Fatal(err)
	}
	want := rawCat.Tensors[0]
	labelsAny, _ := m.Property("label_dictionary")
	labels := labelsAny.(map[string]any)

	var calls atomic.Int32
	var seen atomic.Value
	err = m.SetPostprocessor(func(ts []Tensor, f *FrameInfo) (any, error) {
		calls.Add(1)
		if len(ts) != 1 || ts[0].Name != want.Name || ts[0].DType != want.DType || len(ts[0].Data) != len(want.Data) || ts[0].ID != want.ID {
			return nil, errors.New("the view differs from raw-output mode's tensor")
		}
		x, y, err := f.ToImage(float64(f.InputWidth)/2, float64(f.InputHeight)/2)
		if err != nil {
			return nil, err
		}
		seen.Store([]float64{float64(f.ImageWidth), float64(f.ImageHeight), float64(f.InputWidth), x, y})
		return top1(ts[0], labels), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Predict(car)
	if err != nil {
		t.Fatal(err)
	}
	sameTop1(t, got, builtinCar)
	if s := seen.Load().([]float64); s[0] != 416 || s[1] != 416 || s[2] != 224 || math.Abs(s[3]-208) > 1 || math.Abs(s[4]-208) > 1 {
		t.Fatalf("frame info %v", s)
	}
	results, errs, err := m.PredictBatch([][]byte{cat, car})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatal(err, errs)
	}
	sameTop1(t, results[0], builtinCat)
	sameTop1(t, results[1], builtinCar)
	a, err := m.NewAsync(2)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Submit(0, cat); a.Close() }()
	for r := range a.Results() {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		sameTop1(t, r.Result, builtinCat)
	}
	frames := [][]byte{car, cat}
	var streamed []*Result
	err = m.PredictStream(2, func() ([]byte, any, bool) {
		if len(frames) == 0 {
			return nil, nil, false
		}
		f := frames[0]
		frames = frames[1:]
		return f, nil, true
	}, func(r StreamResult) {
		if r.Err != nil {
			t.Error(r.Err)
			return
		}
		streamed = append(streamed, r.Result)
	})
	if err != nil || len(streamed) != 2 {
		t.Fatal(err, len(streamed))
	}
	sameTop1(t, streamed[0], builtinCar)
	sameTop1(t, streamed[1], builtinCat)
	if calls.Load() != 6 {
		t.Fatalf("%d calls", calls.Load())
	}

	for _, c := range []struct {
		pp   Postprocessor
		text string
	}{
		{func([]Tensor, *FrameInfo) (any, error) { return nil, errors.New("no luck") }, "no luck"},
		{func([]Tensor, *FrameInfo) (any, error) { panic("boom") }, "panic: boom"},
		{func([]Tensor, *FrameInfo) (any, error) { return map[string]any{"label": "x"}, nil }, "must return a JSON array"},
	} {
		if err := m.SetPostprocessor(c.pp); err != nil {
			t.Fatal(err)
		}
		_, err := m.Predict(cat)
		if code(err) != "INFERENCE" || !strings.Contains(err.Error(), c.text) {
			t.Fatalf("want INFERENCE with %q, got %v", c.text, err)
		}
	}
	if err := m.SetPostprocessor(nil); err != nil {
		t.Fatal(err)
	}
	again, err := m.Predict(cat)
	if err != nil || again.JSON != builtinCat.JSON {
		t.Fatalf("built-in restored: %v %v vs %s", err, again, builtinCat.JSON)
	}
}
