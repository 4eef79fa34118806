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
