// C# binding of libdgzoo over its C ABI (P/Invoke; runs on Mono and .NET). Find, fetch and run
// AI models the way DeGirum PySDK does. Structured data is UTF-8 JSON text, as in the C API:
// parse it with the JSON library of your choice.
//
// Errors are thrown as DgzooException with the C API's code and PySDK's message. The library
// returns errors as values (not thread-local state), so they stay right when the runtime
// moves work between threads. Zoo, Model and Result are safe for concurrent use; Dispose frees
// the native object (finalizers do it too, as a safety net).
using System;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace Dgzoo
{
    /// <summary>A failed library call: the C API's code name (e.g. "NOT_FOUND") and message.</summary>
    public sealed class DgzooException : Exception
    {
        public string Code { get; }
        public DgzooException(string code, string message) : base(message) { Code = code; }
    }

    internal static class Native
    {
        const string Lib = "dgzoo";
        [DllImport(Lib)] internal static extern IntPtr dg_version();
        [DllImport(Lib)] internal static extern int dg_error_code(IntPtr e);
        [DllImport(Lib)] internal static extern IntPtr dg_error_message(IntPtr e);
        [DllImport(Lib)] internal static extern void dg_error_free(IntPtr e);
        [DllImport(Lib)] internal static extern void dg_string_free(IntPtr s);
        [DllImport(Lib)] internal static extern IntPtr dg_connect(byte[] host, byte[] zooUrl, byte[] token, out IntPtr zoo);
        [DllImport(Lib)] internal static extern void dg_zoo_free(IntPtr zoo);
        [DllImport(Lib)] internal static extern IntPtr dg_list_models(IntPtr zoo, byte[] filter, out IntPtr json);
        [DllImport(Lib)] internal static extern IntPtr dg_model_info(IntPtr zoo, byte[] name, out IntPtr json);
        [DllImport(Lib)] internal static extern IntPtr dg_system_info(IntPtr zoo, out IntPtr json);
        [DllImport(Lib)] internal static extern IntPtr dg_load_model(IntPtr zoo, byte[] name, byte[] props, out IntPtr model);
        [DllImport(Lib)] internal static extern void dg_model_free(IntPtr model);
        [DllImport(Lib)] internal static extern IntPtr dg_model_name(IntPtr model);
        [DllImport(Lib)] internal static extern IntPtr dg_model_get_property(IntPtr model, byte[] name, out IntPtr json);
        [DllImport(Lib)] internal static extern IntPtr dg_model_time_stats(IntPtr model, out IntPtr json);
        [DllImport(Lib)] internal static extern IntPtr dg_model_reset_time_stats(IntPtr model);
        [DllImport(Lib)] internal static extern IntPtr dg_model_set_property(IntPtr model, byte[] name, byte[] value);
        [DllImport(Lib)] internal static extern IntPtr dg_predict(IntPtr model, byte[] data, UIntPtr len, out IntPtr result);
        [DllImport(Lib)] internal static extern IntPtr dg_predict_batch(IntPtr model, IntPtr[] datas, UIntPtr[] lens, UIntPtr count, out IntPtr batch);
        [DllImport(Lib)] internal static extern UIntPtr dg_batch_count(IntPtr batch);
        [DllImport(Lib)] internal static extern IntPtr dg_batch_get(IntPtr batch, UIntPtr index, out IntPtr result);
        [DllImport(Lib)] internal static extern void dg_batch_free(IntPtr batch);
        [DllImport(Lib)] internal static extern IntPtr dg_result_json(IntPtr result);
        [DllImport(Lib)] internal static extern void dg_result_free(IntPtr result);
        [DllImport(Lib)] internal static extern UIntPtr dg_result_tensor_count(IntPtr result);
        [DllImport(Lib)] internal static extern IntPtr dg_result_tensor(IntPtr result, UIntPtr index, out TensorView view);

        /// <summary>`dg_tensor_view`, field for field.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct TensorView
        {
            public IntPtr name;
            public long id;
            public int dtype;
            public IntPtr shape;
            public UIntPtr rank;
            public IntPtr data;
            public UIntPtr nbytes;
            public double scale;
            public long zero_point;
        }
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void AsyncCallback(IntPtr userData, ulong frameId, IntPtr result, IntPtr error);
        [DllImport(Lib)] internal static extern IntPtr dg_async_new(IntPtr model, UIntPtr depth, AsyncCallback cb, IntPtr userData, out IntPtr async);
        [DllImport(Lib)] internal static extern IntPtr dg_async_submit(IntPtr async, ulong frameId, byte[] data, UIntPtr len);
        [DllImport(Lib)] internal static extern IntPtr dg_async_cancel(IntPtr async);
        [DllImport(Lib)] internal static extern void dg_async_free(IntPtr async);

        /// <summary>`dg_input`, field for field.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Input
        {
            public int kind;
            public IntPtr data;
            public UIntPtr len;
            public uint width;
            public uint height;
            public UIntPtr stride;
        }
        /// <summary>`dg_frame_info`, field for field.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct FrameInfo
        {
            public uint image_width;
            public uint image_height;
            public uint input_width;
            public uint input_height;
            public IntPtr internal_;
        }
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int NextFrameCallback(IntPtr userData, IntPtr outFrame, IntPtr outFrameInfo);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void StreamResultCallback(IntPtr userData, IntPtr frameInfo, IntPtr result, IntPtr error);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int PostprocessCallback(IntPtr userData, IntPtr tensors, UIntPtr count, IntPtr frame, IntPtr output);
        [DllImport(Lib)] internal static extern IntPtr dg_model_predict_stream(IntPtr model, UIntPtr depth, NextFrameCallback next, IntPtr nextUser, StreamResultCallback onResult, IntPtr resultUser);
        [DllImport(Lib)] internal static extern IntPtr dg_model_set_postprocessor(IntPtr model, PostprocessCallback cb, IntPtr userData);
        [DllImport(Lib)] internal static extern IntPtr dg_postprocess_set_output(IntPtr output, byte[] text);
        [DllImport(Lib)] internal static extern IntPtr dg_frame_to_image(IntPtr frame, double x, double y, out double outX, out double outY);

        static readonly string[] Codes = { "OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNSUPPORTED", "IO", "NETWORK", "AUTH", "PROTOCOL", "BAD_MODEL", "INFERENCE", "TIMEOUT", "CANCELLED", "INTERNAL" };

        /// <summary>UTF-8, NUL-terminated (null stays null: the library takes NULL as "none").</summary>
        internal static byte[] Utf8(string s) => s == null ? null : Encoding.UTF8.GetBytes(s + "\0");

        internal static string FromUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var b = new byte[n];
            Marshal.Copy(p, b, 0, n);
            return Encoding.UTF8.GetString(b);
        }

        /// <summary>The exception for a dg_error (freed here), or null.</summary>
        internal static DgzooException Take(IntPtr e)
        {
            if (e == IntPtr.Zero) return null;
            try
            {
                int c = dg_error_code(e);
                return new DgzooException(c >= 0 && c < Codes.Length ? Codes[c] : "CODE_" + c, FromUtf8(dg_error_message(e)));
            }
            finally { dg_error_free(e); }
        }

        internal static void Check(IntPtr e) { var x = Take(e); if (x != null) throw x; }

        internal static string TakeString(IntPtr s) { try { return FromUtf8(s); } finally { dg_string_free(s); } }
    }

    /// <summary>A connection to a model zoo and an inference host.</summary>
    public sealed class Zoo : IDisposable
    {
        IntPtr p;
        Zoo(IntPtr p) { this.p = p; }

        public static string Version => Native.FromUtf8(Native.dg_version());

        /// <summary>host: "@local", "@cloud" or an AI server address; zooUrl: a local directory or model
        /// JSON, a cloud zoo URL, or "" for an AI server's own zoo.</summary>
        public static Zoo Connect(string host, string zooUrl, string token = "")
        {
            Native.Check(Native.dg_connect(Native.Utf8(host), Native.Utf8(zooUrl), Native.Utf8(token), out var z));
            return new Zoo(z);
        }

        IntPtr Handle => p != IntPtr.Zero ? p : throw new ObjectDisposedException(nameof(Zoo));

        /// <summary>Model names passing a PySDK filter (JSON object, null for none), as a JSON array.</summary>
        public string ListModelsJson(string filterJson = null)
        {
            Native.Check(Native.dg_list_models(Handle, Native.Utf8(filterJson), out var s));
            return Native.TakeString(s);
        }

        public string ModelInfoJson(string name)
        {
            Native.Check(Native.dg_model_info(Handle, Native.Utf8(name), out var s));
            return Native.TakeString(s);
        }

        public string SystemInfoJson()
        {
            Native.Check(Native.dg_system_info(Handle, out var s));
            return Native.TakeString(s);
        }

        /// <summary>Load a model, applying properties (a JSON object, null for none) in order.</summary>
        public Model LoadModel(string name, string propertiesJson = null)
        {
            Native.Check(Native.dg_load_model(Handle, Native.Utf8(name), Native.Utf8(propertiesJson), out var m));
            return new Model(m);
        }

        public void Dispose() { Native.dg_zoo_free(p); p = IntPtr.Zero; GC.SuppressFinalize(this); }
        ~Zoo() { Native.dg_zoo_free(p); }
    }

    /// <summary>A raw output tensor (postprocess types None/Dequantization), copied out of the library.</summary>
    public sealed class Tensor
    {
        static readonly string[] DTypes = { "DG_FLT", "DG_DBL", "DG_UINT8", "DG_INT8", "DG_UINT16", "DG_INT16", "DG_UINT32", "DG_INT32", "DG_UINT64", "DG_INT64", "DG_FLT16" };
        public string Name { get; }
        public long Id { get; }
        public string DType { get; }
        public long[] Shape { get; }
        /// <summary>Row-major bytes, native endianness.</summary>
        public byte[] Data { get; }
        public double Scale { get; }
        public long ZeroPoint { get; }

        internal Tensor(Native.TensorView v)
        {
            Name = Native.FromUtf8(v.name);
            Id = v.id;
            DType = v.dtype >= 0 && v.dtype < DTypes.Length ? DTypes[v.dtype] : "DG_" + v.dtype;
            Shape = new long[(int)v.rank];
            if (Shape.Length > 0) Marshal.Copy(v.shape, Shape, 0, Shape.Length);
            Data = new byte[(int)v.nbytes];
            if (Data.Length > 0) Marshal.Copy(v.data, Data, 0, Data.Length);
            Scale = v.scale;
            ZeroPoint = v.zero_point;
        }

        /// <summary>The values of a DG_FLT tensor.</summary>
        public float[] Floats()
        {
            if (DType != "DG_FLT") throw new InvalidOperationException(DType + " tensor");
            var f = new float[Data.Length / 4];
            Buffer.BlockCopy(Data, 0, f, 0, f.Length * 4);
            return f;
        }
    }

    /// <summary>PySDK's results list of one frame, as JSON, and the tensors it refers to
    /// (`{"__tensor__": index}` in the JSON): raw outputs and instance masks (float32
    /// [height, width], name "mask"), where PySDK has numpy arrays.</summary>
    public sealed class Result
    {
        public string Json { get; }
        public Tensor[] Tensors { get; }

        /// <summary>Copies a result (JSON and tensors) out of the library; the caller still owns `r`.</summary>
        internal Result(IntPtr r)
        {
            Json = Native.FromUtf8(Native.dg_result_json(r));
            var n = (int)Native.dg_result_tensor_count(r);
            Tensors = new Tensor[n];
            for (int i = 0; i < n; i++)
            {
                Native.Check(Native.dg_result_tensor(r, (UIntPtr)i, out var v));
                Tensors[i] = new Tensor(v);
            }
        }

        internal static Result Take(IntPtr r) { try { return new Result(r); } finally { Native.dg_result_free(r); } }
    }

    /// <summary>One frame of a batch or async predictor: a result or an error.</summary>
    public sealed class FrameResult
    {
        public ulong FrameId { get; }
        public Result Result { get; }
        public DgzooException Error { get; }
        internal FrameResult(ulong id, Result r, DgzooException e) { FrameId = id; Result = r; Error = e; }
    }

    /// <summary>A loaded model. Safe to use from several threads at once.</summary>
    public sealed class Model : IDisposable
    {
        IntPtr p;
        internal Model(IntPtr p) { this.p = p; }
        internal IntPtr Handle => p != IntPtr.Zero ? p : throw new ObjectDisposedException(nameof(Model));

        public string Name => Native.FromUtf8(Native.dg_model_name(Handle));

        public string GetPropertyJson(string name)
        {
            Native.Check(Native.dg_model_get_property(Handle, Native.Utf8(name), out var s));
            return Native.TakeString(s);
        }

        /// <summary>PySDK's time_stats() as JSON: {key: {min, avg, max, count}} (measure_time on).</summary>
        public string TimeStatsJson()
        {
            Native.Check(Native.dg_model_time_stats(Handle, out var s));
            return Native.TakeString(s);
        }

        /// <summary>PySDK's reset_time_stats().</summary>
        public void ResetTimeStats() => Native.Check(Native.dg_model_reset_time_stats(Handle));

        public void SetProperty(string name, string valueJson) => Native.Check(Native.dg_model_set_property(Handle, Native.Utf8(name), Native.Utf8(valueJson)));

        /// <summary>Run one frame: an encoded image (JPEG/PNG/BMP) or the model's raw input.</summary>
        public Result Predict(byte[] data)
        {
            Native.Check(Native.dg_predict(Handle, data, (UIntPtr)data.Length, out var r));
            return Result.Take(r);
        }

        /// <summary>Run frames pipelined on the library's threads; each has a result or an error.</summary>
        public FrameResult[] PredictBatch(byte[][] frames)
        {
            var pins = new GCHandle[frames.Length];
            var ptrs = new IntPtr[frames.Length];
            var lens = new UIntPtr[frames.Length];
            try
            {
                for (int i = 0; i < frames.Length; i++)
                {
                    pins[i] = GCHandle.Alloc(frames[i], GCHandleType.Pinned);
                    ptrs[i] = pins[i].AddrOfPinnedObject();
                    lens[i] = (UIntPtr)frames[i].Length;
                }
                Native.Check(Native.dg_predict_batch(Handle, ptrs, lens, (UIntPtr)frames.Length, out var b));
                try
                {
                    var out_ = new FrameResult[frames.Length];
                    for (int i = 0; i < frames.Length; i++)
                    {
                        var e = Native.Take(Native.dg_batch_get(b, (UIntPtr)i, out var r));
                        out_[i] = new FrameResult((ulong)i, e == null ? new Result(r) : null, e);
                    }
                    return out_;
                }
                finally { Native.dg_batch_free(b); }
            }
            finally { foreach (var h in pins) if (h.IsAllocated) h.Free(); }
        }

        /// <summary>An asynchronous predictor with at most `depth` frames in flight (0: the model's frame_queue_depth).</summary>
        public AsyncPredictor NewAsync(int depth = 0) => new AsyncPredictor(this, depth);

        /// <summary>PySDK's generator input: `next` returns each frame (null ends the stream),
        /// `onResult` gets every frame's result or error in order with its Info. Frames run
        /// pipelined, at most `depth` (0: frame_queue_depth) held by the library; both callbacks
        /// run on this thread, one at a time. An exception in a callback stops the stream (frames
        /// pulled are still delivered) and is rethrown. Returns the number of frames pulled.</summary>
        public long PredictStream(Func<StreamFrame> next, Action<StreamResult> onResult, int depth = 0)
        {
            var infos = new System.Collections.Generic.Dictionary<long, object>();
            long seq = 0;
            Exception failure = null;
            var frame = IntPtr.Zero; // the current frame's copy (the library copies it before asking again)
            Native.NextFrameCallback nextCb = (user, outFrame, outInfo) =>
            {
                try
                {
                    if (frame != IntPtr.Zero) { Marshal.FreeHGlobal(frame); frame = IntPtr.Zero; }
                    if (failure != null) return -1;
                    var f = next();
                    if (f == null) return 0;
                    frame = Marshal.AllocHGlobal(Math.Max(f.Data.Length, 1));
                    Marshal.Copy(f.Data, 0, frame, f.Data.Length);
                    Marshal.StructureToPtr(new Native.Input { kind = 0, data = frame, len = (UIntPtr)f.Data.Length }, outFrame, false);
                    seq++;
                    infos[seq] = f.Info;
                    Marshal.WriteIntPtr(outInfo, (IntPtr)seq);
                    return 1;
                }
                catch (Exception e) { failure = failure ?? e; return -1; }
            };
            Native.StreamResultCallback resultCb = (user, info, r, e) =>
            {
                var id = (long)info;
                infos.TryGetValue(id, out var tag);
                infos.Remove(id);
                var err = Native.Take(e);
                var res = r == IntPtr.Zero ? null : Result.Take(r);
                try { onResult(new StreamResult(tag, res, err)); }
                catch (Exception x) { failure = failure ?? x; }
            };
            try
            {
                var error = Native.Take(Native.dg_model_predict_stream(Handle, (UIntPtr)depth, nextCb, IntPtr.Zero, resultCb, IntPtr.Zero));
                if (failure != null) throw failure;
                if (error != null) throw error;
                return seq;
            }
            finally
            {
                if (frame != IntPtr.Zero) Marshal.FreeHGlobal(frame);
                GC.KeepAlive(nextCb);
                GC.KeepAlive(resultCb);
            }
        }

        // Kept referenced while the library may call it.
        Native.PostprocessCallback postprocessor;

        /// <summary>PySDK's custom_postprocessor: `pp` replaces the built-in post-processor (null
        /// restores it) and returns the frame's results list as JSON text. It gets the raw output
        /// tensors (copied) and the frame (sizes, ToImage); an exception fails the frame with an
        /// INFERENCE error. It runs on the library's worker threads for batches, async
        /// predictors and streams, for several frames at once: it must be thread-safe. Returns
        /// once no frame is inside the previous one. AI-server and cloud models: UNSUPPORTED.</summary>
        public void SetPostprocessor(Postprocessor pp)
        {
            Native.PostprocessCallback cb = null;
            if (pp != null)
            {
                cb = (user, tensors, count, frame, output) =>
                {
                    try
                    {
                        var ts = new Tensor[(int)count];
                        int size = Marshal.SizeOf(typeof(Native.TensorView));
                        for (int i = 0; i < ts.Length; i++)
                            ts[i] = new Tensor((Native.TensorView)Marshal.PtrToStructure(tensors + i * size, typeof(Native.TensorView)));
                        var json = pp(ts, new FrameInfo(frame));
                        Native.Check(Native.dg_postprocess_set_output(output, Native.Utf8(json)));
                        return 0;
                    }
                    catch (Exception e)
                    {
                        Native.Take(Native.dg_postprocess_set_output(output, Native.Utf8(e.Message)));
                        return 1;
                    }
                };
            }
            Native.Check(Native.dg_model_set_postprocessor(Handle, cb, IntPtr.Zero));
            // The library no longer calls the previous one.
            postprocessor = cb;
        }

        /// <summary>Free the model; its post-processor is cleared first (async predictors still
        /// running then use the built-in one).</summary>
        void Free()
        {
            if (p == IntPtr.Zero) return;
            if (postprocessor != null) Native.Take(Native.dg_model_set_postprocessor(p, null, IntPtr.Zero));
            Native.dg_model_free(p);
            p = IntPtr.Zero;
            postprocessor = null;
        }

        public void Dispose() { Free(); GC.SuppressFinalize(this); }
        ~Model() { Free(); }
    }

    /// <summary>A custom post-processor: the raw output tensors and the frame in, the results list as JSON out.</summary>
    public delegate string Postprocessor(Tensor[] tensors, FrameInfo frame);

    /// <summary>The frame a Postprocessor is called for. Valid only during the call.</summary>
    public sealed class FrameInfo
    {
        readonly IntPtr p;
        public int ImageWidth { get; }
        public int ImageHeight { get; }
        public int InputWidth { get; }
        public int InputHeight { get; }

        internal FrameInfo(IntPtr p)
        {
            this.p = p;
            var f = (Native.FrameInfo)Marshal.PtrToStructure(p, typeof(Native.FrameInfo));
            ImageWidth = (int)f.image_width;
            ImageHeight = (int)f.image_height;
            InputWidth = (int)f.input_width;
            InputHeight = (int)f.input_height;
        }

        /// <summary>A model-input point in original-image pixels, as the built-in post-processors map boxes.</summary>
        public double[] ToImage(double x, double y)
        {
            Native.Check(Native.dg_frame_to_image(p, x, y, out var ox, out var oy));
            return new[] { ox, oy };
        }
    }

    /// <summary>One frame of a stream: encoded image bytes and any value handed back with its result.</summary>
    public sealed class StreamFrame
    {
        public byte[] Data { get; }
        public object Info { get; }
        public StreamFrame(byte[] data, object info = null) { Data = data; Info = info; }
    }

    /// <summary>One frame's outcome of PredictStream, with its frame's Info.</summary>
    public sealed class StreamResult
    {
        public object Info { get; }
        public Result Result { get; }
        public DgzooException Error { get; }
        internal StreamResult(object info, Result r, DgzooException e) { Info = info; Result = r; Error = e; }
    }

    /// <summary>Submit frames; read them back from Results in submission order (completed by Dispose).</summary>
    public sealed class AsyncPredictor : IDisposable
    {
        IntPtr p;
        // Kept referenced: the library calls it until the predictor is freed.
        readonly Native.AsyncCallback callback;
        public BlockingCollection<FrameResult> Results { get; } = new BlockingCollection<FrameResult>();

        internal AsyncPredictor(Model m, int depth)
        {
            callback = (user, id, r, e) =>
            {
                var err = Native.Take(e);
                Results.Add(new FrameResult(id, r == IntPtr.Zero ? null : Result.Take(r), err));
            };
            Native.Check(Native.dg_async_new(m.Handle, (UIntPtr)depth, callback, IntPtr.Zero, out p));
        }

        /// <summary>Queue a frame (copied); blocks while the queue is full.</summary>
        public void Submit(ulong frameId, byte[] data) => Native.Check(Native.dg_async_submit(p, frameId, data, (UIntPtr)data.Length));

        public void Cancel() => Native.Check(Native.dg_async_cancel(p));

        /// <summary>Wait for outstanding frames, free the predictor and complete Results.</summary>
        public void Dispose()
        {
            if (p == IntPtr.Zero) return;
            Native.dg_async_free(p);
            p = IntPtr.Zero;
            Results.CompleteAdding();
            GC.KeepAlive(callback);
        }
    }
}
