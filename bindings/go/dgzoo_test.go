package dgzoo

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The shared test zoo beside the repository, with PySDK 1.5.0's golden results.
var zooDir, _ = filepath.Abs(filepath.Join("..", "..", "..", "shared", "zoo"))

const (
	effONNX = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1"
	blaze   = "blazeface_short_range--128x128_float_tflite_cpu_1"
	yoloTF  = "yolov8n_nudenet--320x320_float_tflite_cpu_1"
)

func image(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join(zooDir, "images", name+".jpg"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func golden(t *testing.T, model, img string) []map[string]any {
	b, err := os.ReadFile(filepath.Join(zooDir, "expected", model, img+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct{ Results []map[string]any }
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Results
}

func flatten(v any, out *[]float64) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			flatten(e, out)
		}
	case float64:
		*out = append(*out, x)
	}
}

// assertGolden compares labels and category ids exactly, scores within 1e-4, boxes within
// 0.5 px, and raw tensors (PySDK's `__ndarray__`) value by value within 1e-4 (relative to
// values above 1, as the Rust golden test does).
func assertGolden(t *testing.T, r *Result, want []map[string]any) {
	t.Helper()
	if nd, ok := want[0]["data"].(map[string]any); ok && nd["__ndarray__"] == true {
		if len(r.Tensors) != len(want) {
			t.Fatalf("%d tensors, PySDK has %d", len(r.Tensors), len(want))
		}
		for i, w := range want {
			var vals []float64
			flatten(w["data"].(map[string]any)["data"], &vals)
			got := r.Tensors[i].Float32s()
			if len(got) != len(vals) {
				t.Fatalf("tensor %d: %d values, PySDK %d", i, len(got), len(vals))
			}
			for k := range vals {
				if math.Abs(float64(got[k])-vals[k])/math.Max(math.Abs(vals[k]), 1) > 1e-4 {
					t.Fatalf("tensor %d value %d: %v, PySDK %v", i, k, got[k], vals[k])
				}
			}
		}
		return
	}
	got, err := r.Objects()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, PySDK has %d: %s", len(got), len(want), r.JSON)
	}
	for i, w := range want {
		g := got[i]
		if g["label"] != w["label"] || g["category_id"] != w["category_id"] {
			t.Fatalf("result %d: %v, PySDK: %v", i, g, w)
		}
		if math.Abs(g["score"].(float64)-w["score"].(float64)) > 1e-4 {
			t.Fatalf("result %d score %v, PySDK %v", i, g["score"], w["score"])
		}
		if wb, ok := w["bbox"].([]any); ok {
			gb := g["bbox"].([]any)
			for k := range wb {
				if math.Abs(gb[k].(float64)-wb[k].(float64)) > 0.5 {
					t.Fatalf("result %d bbox %v, PySDK %v", i, gb, wb)
				}
			}
		}
	}
}

func connect(t *testing.T) *Zoo {
	z, err := Connect("@local", zooDir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	return z
}

func load(t *testing.T, z *Zoo, name string) *Model {
	m, err := z.LoadModel(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestVersion(t *testing.T) {
	if v := Version(); len(strings.Split(v, ".")) != 3 {
		t.Fatalf("version %q", v)
	}
}

func TestListFilterAndInfo(t *testing.T) {
	z := connect(t)
	all, err := z.ListModels(nil)
	if err != nil || len(all) != 6 {
		t.Fatalf("%v %v", all, err)
	}
	onnx, err := z.ListModels(map[string]any{"model_family": "yolov8n", "runtime": "ONNX"})
	if err != nil || len(onnx) != 1 || onnx[0] != "yolov8n_nudenet--320x320_float_onnx_cpu_1" {
		t.Fatalf("%v %v", onnx, err)
	}
	info, err := z.ModelInfo(blaze)
	if err != nil || info["DEVICE"].([]any)[0].(map[string]any)["RuntimeAgent"] != "TFLITE" {
		t.Fatalf("%v %v", info, err)
	}
	sys, err := z.SystemInfo()
	if err != nil || sys["Devices"].(map[string]any)["ONNX/CPU"] == nil {
		t.Fatalf("%v %v", sys, err)
	}
}

func TestErrorsCarryCodeAndPySDKText(t *testing.T) {
	z := connect(t)
	if _, err := z.LoadModel("nope", nil); code(err) != "NOT_FOUND" || !strings.Contains(err.Error(), "Model 'nope' is not found") {
		t.Fatalf("%v", err)
	}
	if _, err := z.ListModels(map[string]any{"precision": "half"}); code(err) != "INVALID_ARGUMENT" {
		t.Fatalf("%v", err)
	}
	if _, err := Connect("@local", "/no/such/zoo", ""); code(err) != "NOT_FOUND" {
		t.Fatalf("%v", err)
	}
	m := load(t, z, blaze)
	if _, err := m.Predict([]byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3}); code(err) == "" {
		t.Fatalf("a corrupt JPEG must fail: %v", err)
	}
	if err := m.SetProperty("output_confidence_threshold", "high"); code(err) != "INVALID_ARGUMENT" {
		t.Fatalf("%v", err)
	}
	// The model stays usable.
	r, err := m.Predict(image(t, "girls_256"))
	if err != nil {
		t.Fatal(err)
	}
	assertGolden(t, r, golden(t, blaze, "girls_256"))
	m.Close()
	if _, err := m.Predict(image(t, "girls_256")); code(err) != "INVALID_ARGUMENT" {
		t.Fatalf("a closed model must refuse: %v", err)
	}
}

func TestPredictMatchesPySDK(t *testing.T) {
	z := connect(t)
	for _, c := range []struct{ model, img string }{{effONNX, "cat_224"}, {blaze, "girls_256"}, {yoloTF, "car_416"}} {
		m := load(t, z, c.model)
		r, err := m.Predict(image(t, c.img))
		if err != nil {
			t.Fatal(err)
		}
		assertGolden(t, r, golden(t, c.model, c.img))
	}
}

func TestProperties(t *testing.T) {
	z := connect(t)
	m, err := z.LoadModel(effONNX, map[string]any{"output_top_k": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v, err := m.Property("output_top_k"); err != nil || v.(float64) != 3 {
		t.Fatalf("%v %v", v, err)
	}
	r, err := m.Predict(image(t, "cat_224"))
	if err != nil {
		t.Fatal(err)
	}
	if objs, _ := r.Objects(); len(objs) != 3 {
		t.Fatalf("top 3 expected: %s", r.JSON)
	}
	if m.Name() != effONNX {
		t.Fatal(m.Name())
	}
}

func TestTimeStats(t *testing.T) {
	z := connect(t)
	m, err := z.LoadModel(yoloTF, map[string]any{"measure_time": true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := 0; i < 2; i++ {
		if _, err := m.Predict(image(t, "car_416")); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := m.TimeStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"PythonPreprocessDuration_ms", "CoreInferenceDuration_ms", "CoreInputFrameSize_bytes", "CorePostprocessDuration_ms", "CorePreprocessDuration_ms", "FrameTotalDuration_ms"} {
		s, ok := stats[k]
		if !ok || s.Count != 2 || s.Min > s.Avg || s.Avg > s.Max {
			t.Fatalf("%s: %+v in %v", k, s, stats)
		}
	}
	if err := m.ResetTimeStats(); err != nil {
		t.Fatal(err)
	}
	if stats, _ := m.TimeStats(); len(stats) != 0 {
		t.Fatalf("not reset: %v", stats)
	}
}

func TestBatchKeepsOrderAndPerFrameErrors(t *testing.T) {
	z := connect(t)
	m := load(t, z, blaze)
	imgs := []string{"girls_256", "car_416", "", "cat_224", "girls_256"}
	frames := make([][]byte, len(imgs))
	for i, n := range imgs {
		if n == "" {
			frames[i] = []byte("not an image")
		} else {
			frames[i] = image(t, n)
		}
	}
	res, errs, err := m.PredictBatch(frames)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range imgs {
		if n == "" {
			if errs[i] == nil {
				t.Fatalf("frame %d must fail", i)
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("frame %d: %v", i, errs[i])
		}
		assertGolden(t, res[i], golden(t, blaze, n))
	}
}

// Goroutines move between OS threads; errors are values, so each sees its own.
func TestConcurrentGoroutinesAndAsync(t *testing.T) {
	z := connect(t)
	m := load(t, z, blaze)
	img, want := image(t, "girls_256"), golden(t, blaze, "girls_256")
	var wg sync.WaitGroup
	fails := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				if (g+i)%3 == 0 {
					if _, err := m.Predict([]byte("junk")); code(err) == "" {
						fails <- errors.New("junk frame did not fail")
					}
					continue
				}
				r, err := m.Predict(img)
				if err != nil {
					fails <- err
					continue
				}
				if objs, _ := r.Objects(); len(objs) != len(want) {
					fails <- errors.New("wrong result: " + r.JSON)
				}
			}
		}(g)
	}
	wg.Wait()
	close(fails)
	for err := range fails {
		t.Fatal(err)
	}

	a, err := m.NewAsync(4)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []AsyncResult)
	go func() {
		var all []AsyncResult
		for r := range a.Results() {
			all = append(all, r)
		}
		got <- all
	}()
	for i := uint64(0); i < 12; i++ {
		frame := img
		if i == 5 {
			frame = []byte("junk")
		}
		if err := a.Submit(i, frame); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	all := <-got
	if len(all) != 12 {
		t.Fatalf("%d frames delivered", len(all))
	}
	for i, r := range all {
		if r.FrameID != uint64(i) {
			t.Fatalf("frame %d delivered as %d", i, r.FrameID)
		}
		if i == 5 {
			if r.Err == nil {
				t.Fatal("junk frame must fail")
			}
			continue
		}
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		assertGolden(t, r.Result, want)
	}
}

// A folder streamed through PredictStream: results in order with their Info, equal to
// PySDK's goldens, a bad frame's error in its place, and the stream going on after it.
func TestPredictStreamFolder(t *testing.T) {
	z := connect(t)
	m := load(t, z, blaze)
	names := []string{"girls_256", "car_416", "cat_224"}
	const passes = 3
	i := 0
	next := func() ([]byte, any, bool) {
		if i == len(names)*passes {
			return nil, nil, false
		}
		k := i
		i++
		if k == 4 {
			return []byte("junk"), k, true
		}
		return image(t, names[k%len(names)]), k, true
	}
	var got []StreamResult
	if err := m.PredictStream(2, next, func(r StreamResult) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names)*passes {
		t.Fatalf("%d results for %d frames", len(got), len(names)*passes)
	}
	for k, r := range got {
		if r.Info.(int) != k {
			t.Fatalf("result %d carries info %v", k, r.Info)
		}
		if k == 4 {
			if r.Err == nil {
				t.Fatal("the junk frame must fail")
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("frame %d: %v", k, r.Err)
		}
		assertGolden(t, r.Result, golden(t, blaze, names[k%len(names)]))
	}
}
