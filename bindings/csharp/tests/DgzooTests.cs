// Tests of the C# binding against the shared test zoo and PySDK 1.5.0's golden results.
// A plain runner (no test framework on a bare machine): exits 1 on the first failure.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using System.Web.Script.Serialization;
using Dgzoo;

static class DgzooTests
{
    // The shared zoo: the first argument (scripts/test.sh passes ../shared/zoo).
    static string ZooDir;
    const string Eff = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";
    const string Yolo = "yolov8n_nudenet--320x320_float_tflite_cpu_1";
    const string Blaze = "blazeface_short_range--128x128_float_tflite_cpu_1";

    static void Flatten(object v, List<double> into)
    {
        if (v is object[] a) foreach (var e in a) Flatten(e, into);
        else into.Add(Convert.ToDouble(v));
    }

    // Raw tensors (PySDK's `__ndarray__`) value by value within 1e-4, relative above 1.
    static void AssertTensorsGolden(Result r, object[] want, string what)
    {
        Check(r.Tensors.Length == want.Length, $"{what}: {r.Tensors.Length} tensors, PySDK {want.Length}");
        for (int i = 0; i < want.Length; i++)
        {
            var vals = new List<double>();
            Flatten(((Dictionary<string, object>)((Dictionary<string, object>)want[i])["data"])["data"], vals);
            var got = r.Tensors[i].Floats();
            Check(got.Length == vals.Count, $"{what}: tensor {i} has {got.Length} values, PySDK {vals.Count}");
            for (int k = 0; k < got.Length; k++)
                Check(Math.Abs(got[k] - vals[k]) / Math.Max(Math.Abs(vals[k]), 1) <= 1e-4, $"{what}: tensor {i} value {k}: {got[k]} vs {vals[k]}");
        }
    }
    static readonly JavaScriptSerializer Json = new JavaScriptSerializer { MaxJsonLength = int.MaxValue };

    static void Check(bool ok, string what) { if (!ok) throw new Exception("check failed: " + what); }
    static byte[] Image(string n) => File.ReadAllBytes(Path.Combine(ZooDir, "images", n + ".jpg"));
    static object[] Golden(string model, string img) =>
        (object[])((Dictionary<string, object>)Json.DeserializeObject(File.ReadAllText(Path.Combine(ZooDir, "expected", model, img + ".json"))))["results"];

    // Labels and category ids exactly, scores within 1e-4, boxes within 0.5 px.
    static void AssertGolden(Result r, object[] want, string what)
    {
        var got = (object[])Json.DeserializeObject(r.Json);
        Check(got.Length == want.Length, $"{what}: {got.Length} results, PySDK {want.Length}: {r.Json}");
        for (int i = 0; i < got.Length; i++)
        {
            var g = (Dictionary<string, object>)got[i];
            var w = (Dictionary<string, object>)want[i];
            Check(g["label"].Equals(w["label"]) && Convert.ToInt64(g["category_id"]) == Convert.ToInt64(w["category_id"]), $"{what}[{i}]: {r.Json}");
            Check(Math.Abs(Convert.ToDouble(g["score"]) - Convert.ToDouble(w["score"])) <= 1e-4, $"{what}[{i}] score");
            if (w.ContainsKey("bbox"))
            {
                var gb = ((object[])g["bbox"]).Select(Convert.ToDouble).ToArray();
                var wb = ((object[])w["bbox"]).Select(Convert.ToDouble).ToArray();
                for (int k = 0; k < wb.Length; k++) Check(Math.Abs(gb[k] - wb[k]) <= 0.5, $"{what}[{i}] bbox");
            }
        }
    }

    // Same class and label, score within 1e-5.
    static void SameTop1(string got, string want)
    {
        var g = (Dictionary<string, object>)((object[])Json.DeserializeObject(got)).Single();
        var w = (Dictionary<string, object>)((object[])Json.DeserializeObject(want))[0];
        Check(Convert.ToInt64(g["category_id"]) == Convert.ToInt64(w["category_id"]) && g["label"].Equals(w["label"])
            && Math.Abs(Convert.ToDouble(g["score"]) - Convert.ToDouble(w["score"])) < 1e-5, $"custom {got}, built-in {want}");
    }

    static void Expect(string code, string text, Action f)
    {
        try { f(); }
        catch (DgzooException e)
        {
            Check(e.Code == code && e.Message.Contains(text), $"expected {code} '{text}', got {e.Code} '{e.Message}'");
            return;
        }
        throw new Exception($"expected a {code} error");
    }

    static int Main(string[] args)
    {
        try
        {
            ZooDir = Path.GetFullPath(args.Length > 0 ? args[0] : Path.Combine("..", "..", "..", "shared", "zoo"));
            Check(Zoo.Version.Split('.').Length == 3, "version");
            using (var zoo = Zoo.Connect("@local", ZooDir))
            {
                // List, filter, inspect.
                Check(((object[])Json.DeserializeObject(zoo.ListModelsJson())).Length == 6, "six models");
                var onnx = (object[])Json.DeserializeObject(zoo.ListModelsJson("{\"model_family\": \"yolov8n\", \"runtime\": \"ONNX\"}"));
                Check(onnx.Length == 1 && (string)onnx[0] == "yolov8n_nudenet--320x320_float_onnx_cpu_1", "filter");
                Check(zoo.ModelInfoJson(Eff).Contains("\"RuntimeAgent\":\"ONNX\""), "model info");
                Check(zoo.SystemInfoJson().Contains("TFLITE/CPU"), "system info");

                // Errors: code and PySDK's text; the model stays usable.
                Expect("NOT_FOUND", "Model 'nope' is not found", () => zoo.LoadModel("nope"));
                Expect("INVALID_ARGUMENT", "Filter 'precision' has unsupported value 'half'", () => zoo.ListModelsJson("{\"precision\": \"half\"}"));
                Expect("NOT_FOUND", "", () => Zoo.Connect("@local", "/no/such/zoo"));
                using (var m = zoo.LoadModel(Eff, "{\"output_top_k\": 5}"))
                {
                    Expect("INVALID_ARGUMENT", "", () => m.SetProperty("output_top_k", "\"many\""));
                    Check(m.GetPropertyJson("output_top_k") == "5", "property");
                    Check(m.Name == Eff, "name");
                    m.SetProperty("measure_time", "true");
                    m.Predict(Image("cat_224"));
                    var ts = m.TimeStatsJson();
                    Check(ts.Contains("\"FrameTotalDuration_ms\"") && ts.Contains("\"CoreInferenceDuration_ms\"") && ts.Contains("\"count\":1"), "time stats: " + ts);
                    m.ResetTimeStats();
                    Check(m.TimeStatsJson() == "{}", "time stats reset");
                    try { m.Predict(new byte[] { 0xff, 0xd8, 0xff, 0xe0, 1, 2, 3 }); throw new Exception("a corrupt JPEG must fail"); }
                    catch (DgzooException) { }
                    AssertGolden(m.Predict(Image("cat_224")), Golden(Eff, "cat_224"), "EfficientNet ONNX cat");
                }

                // Raw tensors (BlazeFace's postprocess type is None).
                using (var m = zoo.LoadModel(Blaze))
                {
                    var r = m.Predict(Image("girls_256"));
                    Check(r.Json.Contains("__tensor__"), "raw tensor results refer to tensors");
                    AssertTensorsGolden(r, Golden(Blaze, "girls_256"), "BlazeFace girls");
                    Check(r.Tensors[0].Shape.Length == 3 && r.Tensors[0].Shape[1] == 896, "tensor shape");
                }

                // Detection, batch with a bad frame, threads, async in order.
                using (var m = zoo.LoadModel(Yolo))
                {
                    AssertGolden(m.Predict(Image("car_416")), Golden(Yolo, "car_416"), "YOLO car");
                    var imgs = new[] { "car_416", "", "girls_256", "cat_224" };
                    var batch = m.PredictBatch(imgs.Select(n => n == "" ? new byte[] { 1, 2, 3 } : Image(n)).ToArray());
                    for (int i = 0; i < imgs.Length; i++)
                    {
                        if (imgs[i] == "") { Check(batch[i].Error != null, "bad frame fails"); continue; }
                        Check(batch[i].Error == null, "frame " + i);
                        AssertGolden(batch[i].Result, Golden(Yolo, imgs[i]), "batch " + imgs[i]);
                    }
                    var want = Golden(Yolo, "girls_256");
                    Parallel.For(0, 8, i =>
                    {
                        if (i % 3 == 0) Expect("INVALID_ARGUMENT", "cannot decode image", () => m.Predict(new byte[] { 1, 2, 3 }));
                        else AssertGolden(m.Predict(Image("girls_256")), want, "thread " + i);
                    });
                    var a = m.NewAsync(4);
                    var reader = Task.Run(() => a.Results.GetConsumingEnumerable().ToList());
                    for (ulong i = 0; i < 10; i++) a.Submit(i, i == 4 ? new byte[] { 9, 9 } : Image("girls_256"));
                    a.Dispose();
                    var all = reader.Result;
                    Check(all.Count == 10, "async count");
                    for (int i = 0; i < all.Count; i++)
                    {
                        Check(all[i].FrameId == (ulong)i, "async order");
                        if (i == 4) { Check(all[i].Error != null, "async bad frame"); continue; }
                        Check(all[i].Error == null, "async frame " + i);
                        AssertGolden(all[i].Result, want, "async " + i);
                    }
                }

                // A stream (PySDK's generator input): the images three times, in order with their
                // Info, a bad frame's error in its place; an exception in next stops it.
                using (var m = zoo.LoadModel(Blaze))
                {
                    var names = new[] { "girls_256", "car_416", "cat_224" };
                    int k = 0;
                    var got = new List<StreamResult>();
                    long pulled = m.PredictStream(() => k == 9 ? null : new StreamFrame(k == 4 ? new byte[] { 1, 2 } : Image(names[k % 3]), k++), got.Add, 2);
                    Check(pulled == 9 && got.Count == 9, $"stream: {pulled} pulled, {got.Count} results");
                    for (int i = 0; i < got.Count; i++)
                    {
                        Check((int)got[i].Info == i, $"stream order: {got[i].Info} at {i}");
                        if (i == 4) { Check(got[i].Error != null && got[i].Result == null, "stream bad frame"); continue; }
                        Check(got[i].Error == null, "stream frame " + i);
                        AssertTensorsGolden(got[i].Result, Golden(Blaze, names[i % 3]), "stream " + i);
                    }
                    try { m.PredictStream(() => throw new InvalidOperationException("stop here"), r => { }); throw new Exception("the stream must rethrow"); }
                    catch (InvalidOperationException e) { Check(e.Message == "stop here", "rethrown"); }
                    Check(m.Predict(Image("girls_256")).Tensors.Length == 2, "usable after a stopped stream");
                }

                // A custom post-processor: the top-1 from the raw logits equals the built-in
                // classification on every path; an exception is an INFERENCE error; null restores.
                const string EffTF = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";
                using (var m = zoo.LoadModel(EffTF, "{\"output_top_k\": 1}"))
                using (var raw = zoo.LoadModel(EffTF, "{\"output_postprocess_type\": \"None\"}"))
                {
                    byte[] cat = Image("cat_224"), car = Image("car_416");
                    string builtinCat = m.Predict(cat).Json, builtinCar = m.Predict(car).Json;
                    var want = raw.Predict(cat).Tensors[0];
                    var labels = (Dictionary<string, object>)Json.DeserializeObject(m.GetPropertyJson("label_dictionary"));
                    int calls = 0;
                    double[] seen = null;
                    m.SetPostprocessor((ts, f) =>
                    {
                        System.Threading.Interlocked.Increment(ref calls);
                        Check(ts.Length == 1 && ts[0].Name == want.Name && ts[0].DType == want.DType && ts[0].Shape.SequenceEqual(want.Shape) && ts[0].Id == want.Id, "tensor view");
                        var c = f.ToImage(f.InputWidth / 2.0, f.InputHeight / 2.0);
                        seen = new double[] { f.ImageWidth, f.ImageHeight, f.InputWidth, c[0], c[1] };
                        var v = ts[0].Floats();
                        int best = 0;
                        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
                        double sum = v.Sum(x => Math.Exp(x - v[best]));
                        return Json.Serialize(new[] { new Dictionary<string, object> { { "category_id", best }, { "label", labels[best.ToString()] }, { "score", 1 / sum } } });
                    });
                    SameTop1(m.Predict(car).Json, builtinCar);
                    Check(seen[0] == 416 && seen[1] == 416 && seen[2] == 224 && Math.Abs(seen[3] - 208) <= 1 && Math.Abs(seen[4] - 208) <= 1, "frame info " + string.Join(",", seen));
                    var batch = m.PredictBatch(new[] { cat, car });
                    SameTop1(batch[0].Result.Json, builtinCat);
                    SameTop1(batch[1].Result.Json, builtinCar);
                    var a = m.NewAsync(2);
                    a.Submit(0, cat);
                    a.Dispose();
                    SameTop1(a.Results.GetConsumingEnumerable().Single().Result.Json, builtinCat);
                    var frames = new Queue<byte[]>(new[] { car, cat });
                    var streamed = new List<string>();
                    m.PredictStream(() => frames.Count == 0 ? null : new StreamFrame(frames.Dequeue()), r => streamed.Add(r.Result.Json));
                    SameTop1(streamed[0], builtinCar);
                    SameTop1(streamed[1], builtinCat);
                    Check(calls == 6, calls + " post-processor calls");
                    m.SetPostprocessor((ts, f) => throw new InvalidOperationException("no luck"));
                    Expect("INFERENCE", "no luck", () => m.Predict(cat));
                    m.SetPostprocessor((ts, f) => "{\"label\": \"x\"}");
                    Expect("INFERENCE", "JSON array", () => m.Predict(cat));
                    m.SetPostprocessor(null);
                    Check(m.Predict(cat).Json == builtinCat, "built-in restored");
                }
            }
            Console.WriteLine("C# binding: all tests passed");
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("C# binding test FAILED: " + e);
            return 1;
        }
    }
}
