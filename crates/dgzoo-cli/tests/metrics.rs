//! Observability and management of the servers, as processes (`dgzoo server start`, `dgzoo
//! hub`) on 127.0.0.1 with the shared zoo's models: `/metrics` scraped before and after real
//! frames (our asio client, the real PySDK client, WebSocket, a cloud model fetched from the
//! hub, hub cloud inference) moves by the right amounts, parses strictly as Prometheus text
//! and keeps its label values bounded; `--log-format json` writes one JSON object per line
//! with one id per stream; the admin token guards the CLI's management commands and the
//! hub's administrative routes.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use aiserver_common::{image, peer, peer_ld_path, DgzooServer, MODELS, SHARED_ZOO};
use cloud_common::{hub_root, ChildGuard, EFF_F, ORG, TOKEN, ZOONAME};
use dgzoo::inference::Input;
use dgzoo::zoo::{ConnectOptions, Zoo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format (version 0.0.4).

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// Samples by (name, sorted labels), and each family's declared type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<(String, Labels), f64>,
    types: BTreeMap<String, String>,
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':') && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        v => v.parse::<f64>().map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

/// Labels `{a="x",b="y"}` (the text after the name); returns them and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let Some(mut rest) = s.strip_prefix('{') else { return Ok((labels, s)) };
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("newline in a label value".into()),
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated value of label {name}"))?;
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} repeated"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to (`x_bucket`/`x_sum`/`x_count` → `x` for histograms and summaries).
fn family<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram" || t == "summary") {
                return base;
            }
        }
    }
    name
}

fn parse_exposition(text: &str) -> Result<Scrape, String> {
    let mut out = Scrape::default();
    let mut seen_samples: BTreeSet<String> = BTreeSet::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if let Some(r) = c.strip_prefix("TYPE ") {
                let (name, t) = r.split_once(' ').ok_or_else(|| at("TYPE without a type".into()))?;
                if !is_metric_name(name) {
                    return Err(at(format!("bad metric name {name:?}")));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                    return Err(at(format!("unknown type {t:?}")));
                }
                if seen_samples.contains(name) {
                    return Err(at(format!("TYPE of {name} after its samples")));
                }
                if out.types.insert(name.to_string(), t.to_string()).is_some() {
                    return Err(at(format!("second TYPE of {name}")));
                }
            } else if let Some(r) = c.strip_prefix("HELP ") {
                let name = r.split(' ').next().unwrap_or_default();
                if !is_metric_name(name) || !helps.insert(name.to_string()) {
                    return Err(at(format!("bad or repeated HELP for {name:?}")));
                }
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (mut labels, rest) = parse_labels(&line[name_end..]).map_err(at)?;
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|e| at(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing text".into()));
        }
        let fam = family(name, &out.types).to_string();
        seen_samples.insert(fam.clone());
        match out.types.get(&fam).map(String::as_str) {
            Some("counter") if value.is_nan() || value < 0.0 => return Err(at("negative counter".into())),
            Some("histogram") if name.ends_with("_bucket") && !labels.iter().any(|(k, _)| k == "le") => return Err(at("bucket without le".into())),
            _ => {}
        }
        labels.sort();
        if out.samples.insert((name.to_string(), labels), value).is_some() {
            return Err(at("duplicate sample".into()));
        }
    }
    // Histograms: cumulative buckets, +Inf bucket = count.
    for (fam, _) in out.types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &out.samples {
            if *name == format!("{fam}_bucket") {
                let le = labels.iter().find(|(k, _)| k == "le").map(|(_, v)| parse_value(v)).transpose()?.unwrap_or(f64::NAN);
                let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                series.entry(rest).or_default().push((le, *v));
            }
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{fam}{labels:?}: buckets are not cumulative"));
            }
            let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1).ok_or_else(|| format!("{fam}{labels:?}: no +Inf bucket"))?;
            let count = out.samples.get(&(format!("{fam}_count"), labels.clone())).ok_or_else(|| format!("{fam}{labels:?}: no _count"))?;
            if *count != inf {
                return Err(format!("{fam}{labels:?}: _count {count} != +Inf bucket {inf}"));
            }
        }
    }
    Ok(out)
}

impl Scrape {
    /// The sample with exactly these labels (0 when absent: a counter not yet touched).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.sort();
        self.samples.get(&(name.to_string(), l)).copied().unwrap_or(0.0)
    }

    /// Every value a label takes in the samples.
    fn label_values(&self, label: &str) -> BTreeSet<String> {
        self.samples.keys().flat_map(|(_, l)| l.iter().filter(|(k, _)| k == label).map(|(_, v)| v.clone())).collect()
    }
}

#[test]
fn strict_parser_refuses_malformed_text() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"q\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let s = parse_exposition(good).unwrap();
    assert_eq!(s.get("a_total", &[("k", "v\"q")]), 3.0);
    for bad in [
        "a_total 1",                                                                      // no final newline
        "a-b 1\n",                                                                        // bad name
        "a{k=v} 1\n",                                                                     // unquoted
        "a{k=\"v} 1\n",                                                                   // unterminated
        "a 1 x\n",                                                                        // bad timestamp
        "a 1\na 2\n",                                                                     // duplicate
        "# TYPE a counter\na -1\n",                                                       // negative counter
        "a 1\n# TYPE a counter\n",                                                        // TYPE after samples
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",                       // count mismatch
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// `dgzoo hub --port 0` with `extra` arguments: (guard, "127.0.0.1:port").
fn start_hub(root: &Path, extra: &[&str]) -> (ChildGuard, String) {
    let mut child = Command::new(BIN).args(["hub", "--port", "0", "--zoo"]).arg(root).args(extra).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let guard = ChildGuard(child);
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    (guard, addr)
}

fn scrape(host_port: &str) -> Scrape {
    let (host, port) = host_port.rsplit_once(':').unwrap();
    let (status, body) = dgzoo::protocol::http::request(host, port.parse().unwrap(), "GET", "/metrics", None, Duration::from_secs(10)).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{text}");
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn predict(model: &dgzoo::model::Model, img: &str) -> Value {
    let bytes = std::fs::read(image(img)).unwrap();
    let r = dgzoo::model::predict(model, &[Input::Bytes(&bytes)]).unwrap_or_else(|e| panic!("predict {img}: {e}"));
    serde_json::to_value(&r.results).unwrap()
}

const PYSDK_SCRIPT: &str = r#"
import sys
import degirum as dg
addr, model, images = sys.argv[1], sys.argv[2], sys.argv[3:]
m = dg.connect(addr, "", "").load_model(model)
for i in images:
    print("RESULT", m.predict(i).results[0]["label"])
"#;

fn file_name_of(model: &str) -> String {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(SHARED_ZOO).join(model).join(format!("{model}.json"))).unwrap()).unwrap();
    cfg["MODEL_PARAMETERS"][0]["ModelPath"].as_str().unwrap().to_string()
}

#[test]
fn metrics_count_frames_models_connections_cache_and_downloads() {
    let (eff_tfl, eff_onnx, yolo) = (MODELS[2], MODELS[1], MODELS[5]);
    let hub_dir = hub_root(&[EFF_F]);
    let zip_len = std::fs::metadata(hub_dir.path().join(ORG).join(ZOONAME).join(format!("{EFF_F}.zip"))).unwrap().len() as f64;
    let (_hub, hub) = start_hub(hub_dir.path(), &[]);
    let zoo = aiserver_common::clean_zoo();
    let cache = tempfile::tempdir().unwrap();
    let server = DgzooServer::spawn(zoo.path()).args(&["--quiet"]).env("DGZOO_CACHE_DIR", cache.path()).start();
    let port = server.port;
    let http = format!("127.0.0.1:{}", port + 1);
    let s0 = scrape(&http);
    let frames = |s: &Scrape, m: &str, outcome: &str| s.get("dgzoo_frames_total", &[("model", m), ("outcome", outcome)]);
    let stage = |s: &Scrape, stage: &str, m: &str| s.get(&format!("dgzoo_{stage}_duration_seconds_count"), &[("model", m)]);

    // asio, our client: 3 good frames, then one bad frame on a raw stream.
    let asio = Zoo::connect(&format!("127.0.0.1:{port}"), "", "").unwrap();
    let m = asio.load_model(eff_tfl, &json!({"input_image_format": "RAW"})).unwrap();
    for img in ["cat_224.jpg", "car_416.jpg", "girls_256.jpg"] {
        predict(&m, img);
    }
    let client = dgzoo::zoo::aiserver::AiServerClient::new(dgzoo::zoo::address::ServerAddress::parse(&format!("127.0.0.1:{port}")).unwrap());
    let mut raw = client.open_stream(eff_tfl, &json!({})).unwrap();
    raw.send_frame(&[b"not an image".to_vec()]).unwrap();
    assert!(dgzoo::protocol::decode_results(&raw.recv(Duration::from_secs(30)).unwrap()).unwrap().is_err());
    raw.close();
    let s1 = scrape(&http);
    assert_eq!(frames(&s1, eff_tfl, "ok") - frames(&s0, eff_tfl, "ok"), 3.0);
    assert_eq!(frames(&s1, eff_tfl, "error") - frames(&s0, eff_tfl, "error"), 1.0);
    for st in ["preprocess", "inference", "postprocess"] {
        // The bad frame fails in pre-processing: no stage sample of its own.
        assert_eq!(stage(&s1, st, eff_tfl) - stage(&s0, st, eff_tfl), 3.0, "{st}");
        assert!(s1.get(&format!("dgzoo_{st}_duration_seconds_sum"), &[("model", eff_tfl)]) > 0.0, "{st}");
    }
    let file = file_name_of(eff_tfl);
    let file_len = std::fs::metadata(Path::new(SHARED_ZOO).join(eff_tfl).join(&file)).unwrap().len() as f64;
    assert_eq!(s1.get("dgzoo_model_loads_total", &[("model", &file)]), 1.0);
    assert_eq!(s1.get("dgzoo_models_loaded", &[]), 1.0);
    assert_eq!(s1.get("dgzoo_models_loaded_bytes", &[]), file_len);
    assert_eq!(s1.get("dgzoo_frames_in_flight", &[]), 0.0);
    // At least the two streams, and the commands of the client's connect.
    assert!(s1.get("dgzoo_connections_total", &[("kind", "asio")]) - s0.get("dgzoo_connections_total", &[("kind", "asio")]) >= 2.0);
    // The first scrape is counted, under its route pattern.
    assert_eq!(s1.get("dgzoo_http_requests_total", &[("route", "/metrics"), ("status", "200")]), 1.0);

    // WebSocket (our client over http): 2 frames.
    let ws = Zoo::connect(&format!("http://{http}"), "", "").unwrap();
    let m = ws.load_model(yolo, &json!({"input_image_format": "RAW"})).unwrap();
    predict(&m, "girls_256.jpg");
    predict(&m, "car_416.jpg");
    let s2 = scrape(&http);
    assert_eq!(frames(&s2, yolo, "ok") - frames(&s1, yolo, "ok"), 2.0);
    assert_eq!(stage(&s2, "inference", yolo) - stage(&s1, "inference", yolo), 2.0);
    let d = |name: &str, labels: &[(&str, &str)]| s2.get(name, labels) - s1.get(name, labels);
    assert!(d("dgzoo_connections_total", &[("kind", "websocket")]) >= 1.0);
    assert!(d("dgzoo_http_requests_total", &[("route", "/v1/stream"), ("status", "101")]) >= 1.0);
    assert!(d("dgzoo_http_requests_total", &[("route", "/v1/modelzoo"), ("status", "200")]) >= 1.0);
    assert!(d("dgzoo_connections_total", &[("kind", "http")]) >= 1.0);
    assert_eq!(s2.get("dgzoo_models_loaded", &[]), 2.0);
    assert!(s2.get("dgzoo_http_request_duration_seconds_count", &[("route", "/v1/modelzoo")]) >= 1.0);

    // The real PySDK client over asio: 2 frames.
    let mut s3 = s2;
    if let Some(peer) = peer("metrics_count_frames_models_connections_cache_and_downloads") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("client.py");
        std::fs::write(&script, PYSDK_SCRIPT).unwrap();
        let out = Command::new(peer.join("venv/bin/python"))
            .arg(&script)
            .arg(format!("127.0.0.1:{port}"))
            .arg(eff_onnx)
            .arg(image("cat_224.jpg"))
            .arg(image("car_416.jpg"))
            .env("LD_LIBRARY_PATH", peer_ld_path(&peer))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().filter(|l| l.starts_with("RESULT ")).count(), 2, "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let s = scrape(&http);
        assert_eq!(frames(&s, eff_onnx, "ok") - frames(&s3, eff_onnx, "ok"), 2.0);
        assert_eq!(stage(&s, "postprocess", eff_onnx) - stage(&s3, "postprocess", eff_onnx), 2.0);
        assert_eq!(s.get("dgzoo_model_loads_total", &[("model", &file_name_of(eff_onnx))]), 1.0);
        s3 = s;
    }

    // A cloud model through the AI server: fetched once from the hub into the server's cache
    // (a miss, the archive's bytes), then served from it (a hit).
    let hub_url = format!("http://{hub}/{ORG}/{ZOONAME}");
    let h0 = scrape(&hub);
    let opts = ConnectOptions { cache: Some(cloud_common::cache_cfg(tempfile::tempdir().unwrap().path())), offline: None, ..Default::default() };
    let cloud = Zoo::connect_with(&format!("127.0.0.1:{port}"), &hub_url, TOKEN, &opts).unwrap();
    let cloud_name = format!("{ORG}/{ZOONAME}/{EFF_F}");
    predict(&cloud.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap(), "cat_224.jpg");
    let s4 = scrape(&http);
    assert_eq!(s4.get("dgzoo_cache_misses_total", &[]) - s3.get("dgzoo_cache_misses_total", &[]), 1.0);
    assert_eq!(s4.get("dgzoo_cache_downloaded_bytes_total", &[]) - s3.get("dgzoo_cache_downloaded_bytes_total", &[]), zip_len);
    assert_eq!(frames(&s4, &cloud_name, "ok") - frames(&s3, &cloud_name, "ok"), 1.0);
    predict(&cloud.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap(), "car_416.jpg");
    let s5 = scrape(&http);
    assert!(s5.get("dgzoo_cache_hits_total", &[]) - s4.get("dgzoo_cache_hits_total", &[]) >= 1.0);
    assert_eq!(s5.get("dgzoo_cache_misses_total", &[]), s4.get("dgzoo_cache_misses_total", &[]));
    let h1 = scrape(&hub);
    let hd = |name: &str, labels: &[(&str, &str)]| h1.get(name, labels) - h0.get(name, labels);
    assert_eq!(hd("dgzoo_hub_downloads_total", &[("model", &cloud_name)]), 1.0);
    assert_eq!(hd("dgzoo_hub_download_bytes_total", &[]), zip_len);
    assert_eq!(hd("dgzoo_http_requests_total", &[("route", "/zoo/v1/public/models/{org}/{zoo}/{model}"), ("status", "200")]), 1.0);

    // Hub cloud inference (socket.io): 2 frames.
    let cc = tempfile::tempdir().unwrap();
    let at_cloud =
        Zoo::connect_with("@cloud", &hub_url, TOKEN, &ConnectOptions { cache: Some(cloud_common::cache_cfg(cc.path())), offline: None, ..Default::default() })
            .unwrap();
    let m = at_cloud.load_model(EFF_F, &json!({"input_image_format": "RAW"})).unwrap();
    predict(&m, "cat_224.jpg");
    predict(&m, "girls_256.jpg");
    drop(m);
    let h2 = scrape(&hub);
    assert_eq!(frames(&h2, &cloud_name, "ok") - frames(&h1, &cloud_name, "ok"), 2.0);
    assert_eq!(stage(&h2, "inference", &cloud_name) - stage(&h1, "inference", &cloud_name), 2.0);
    assert!(h2.get("dgzoo_connections_total", &[("kind", "socketio")]) - h1.get("dgzoo_connections_total", &[("kind", "socketio")]) >= 1.0);
    assert!(h2.get("dgzoo_http_requests_total", &[("route", "/api/v2/socket.io/"), ("status", "101")]) >= 1.0);

    // Bounded labels: requests for made-up paths and models add no label value of their own.
    for path in ["/v1/label_dictionary/zz_unique_1", "/zz_unique_2/x", "/v1/sleep/123.456"] {
        let _ = dgzoo::protocol::http::request("127.0.0.1", port + 1, "GET", path, None, Duration::from_secs(5));
    }
    for path in ["/zoo/v1/public/models/zz_unique_3/b/c", "/zz_unique_4", "/zoo/v1/public/models/a/b/c/zz_unique_5"] {
        let (h, p) = hub.rsplit_once(':').unwrap();
        let _ = dgzoo::protocol::http::request(h, p.parse().unwrap(), "GET", path, None, Duration::from_secs(5));
    }
    let _ = client.open_stream("zz_unique_model", &json!({})).map(|s| s.close());
    let kinds: BTreeSet<String> = ["asio", "http", "websocket", "socketio"].iter().map(|s| s.to_string()).collect();
    let mut models: BTreeSet<String> = MODELS.iter().map(|m| m.to_string()).chain(MODELS.iter().map(|m| file_name_of(m))).collect();
    models.insert(cloud_name.clone());
    models.insert(format!("{ORG}/{ZOONAME}/{EFF_F}"));
    for (what, s) in [("AI server", scrape(&http)), ("hub", scrape(&hub))] {
        for route in s.label_values("route") {
            assert!(!route.contains("zz_unique"), "{what}: raw path as a route label: {route}");
            assert!(route == "other" || route.starts_with('/'), "{what}: {route}");
        }
        assert!(s.label_values("route").len() <= 24, "{what}: {:?}", s.label_values("route"));
        for model in s.label_values("model") {
            // Cloud models the hub ran are unpacked under names of the zoo too.
            assert!(models.contains(&model) || model.ends_with(".tflite") || model.ends_with(".onnx"), "{what}: unexpected model label {model}");
            assert!(!model.contains("zz_unique"), "{what}: {model}");
        }
        assert!(s.label_values("kind").is_subset(&kinds), "{what}: {:?}", s.label_values("kind"));
        assert!(s.label_values("outcome").iter().all(|o| o == "ok" || o == "error"), "{what}");
        assert!(s.label_values("status").iter().all(|c| c.len() == 3 && c.parse::<u16>().is_ok()), "{what}");
        for (name, _) in s.samples.keys() {
            assert!(name.starts_with("dgzoo_"), "{what}: {name}");
        }
    }
}

#[test]
fn json_logs_one_object_per_line_with_stream_ids() {
    let zoo = aiserver_common::clean_zoo();
    let mut server = DgzooServer::spawn(zoo.path()).args(&["--log-format", "json"]).env("DGZOO_LOG", "info,dgzoo_server=debug").start();
    let port = server.port;
    // Two asio streams (our client opens one per model load) and a WebSocket stream.
    let asio = Zoo::connect(&format!("127.0.0.1:{port}"), "", "").unwrap();
    for model in [MODELS[2], MODELS[0]] {
        let m = asio.load_model(model, &json!({"input_image_format": "RAW"})).unwrap();
        predict(&m, "cat_224.jpg");
        predict(&m, "car_416.jpg");
    }
    let ws = Zoo::connect(&format!("http://127.0.0.1:{}", port + 1), "", "").unwrap();
    predict(&ws.load_model(MODELS[5], &json!({"input_image_format": "RAW"})).unwrap(), "girls_256.jpg");
    drop((asio, ws));
    let out = Command::new(BIN).args(["server", "shutdown", "--port", &port.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.wait_exit(Duration::from_secs(15));
    let text = server.log();
    let lines: Vec<Value> = text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("asio protocol on"))), "{text}");
    // Per stream id: the lines of that stream, opened then closed on one model.
    let mut streams: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for l in &lines {
        if let Some(id) = l["span"]["stream_id"].as_u64() {
            streams.entry(id).or_default().push(l["fields"]["message"].as_str().unwrap_or_default().to_string());
        }
    }
    let inference: Vec<(&u64, &Vec<String>)> = streams.iter().filter(|(_, m)| m.iter().any(|x| x.starts_with("stream opened on model"))).collect();
    assert_eq!(inference.len(), 3, "{streams:#?}");
    for (id, msgs) in &inference {
        // The open line names the model (a first load logs the model file before it).
        let model = msgs.iter().find(|m| m.starts_with("stream opened on model")).unwrap().split('\'').nth(1).unwrap();
        assert!(
            msgs.iter()
                .any(|m| m == &format!("stream closed on model '{model}' after 2 frame(s)")
                    || m == &format!("stream closed on model '{model}' after 1 frame(s)")),
            "stream {id}: {msgs:?}"
        );
        // No other stream's model in this stream's lines.
        assert!(msgs.iter().all(|m| !m.contains("model '") || m.contains(&format!("'{model}'"))), "stream {id}: {msgs:?}");
    }
    // Requests carry a request id (commands over asio, REST requests over http), unique per request.
    let ids: Vec<u64> = lines.iter().filter_map(|l| l["span"]["request_id"].as_u64()).collect();
    assert!(!ids.is_empty(), "{text}");
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "request" && l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("http GET /v1/modelzoo"))),
        "{text}"
    );
}

#[test]
fn admin_token_guards_cli_management_and_hub_admin_routes() {
    let zoo = aiserver_common::clean_zoo();
    let mut server = DgzooServer::spawn(zoo.path()).args(&["--quiet", "--admin-token", "s3cret"]).start();
    let port = server.port;
    let p = port.to_string();
    let dgzoo = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(args).env_remove("DGZOO_ADMIN_TOKEN");
        if let Some(t) = env {
            c.env("DGZOO_ADMIN_TOKEN", t);
        }
        let o = c.output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for cmd in ["rescan-zoo", "cache-dump", "trace", "shutdown"] {
        let op = if cmd == "shutdown" {
            "shutdown"
        } else if cmd == "trace" {
            "trace_manage"
        } else {
            "zoo_manage"
        };
        let (ok, _, err) = dgzoo(&["server", cmd, "--port", &p], None);
        assert!(!ok && err.contains(&format!("Operation '{op}' with no admin token is prohibited")), "{cmd}: {err}");
        let (ok, _, err) = dgzoo(&["server", cmd, "--port", &p, "--admin-token", "guess"], None);
        assert!(!ok && err.contains(&format!("Operation '{op}' with a wrong admin token is prohibited")), "{cmd}: {err}");
    }
    // Nothing was done: the server still serves.
    assert!(server.alive());
    let (ok, out, err) = dgzoo(&["server", "cache-dump", "--port", &p], Some("s3cret"));
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["AgentCacheSize"], 0);
    assert!(dgzoo(&["server", "rescan-zoo", "--port", &p, "--admin-token", "s3cret"], None).0);
    let (ok, out, _) = dgzoo(&["server", "trace", "--port", &p, "--admin-token", "s3cret"], None);
    assert!(ok && out.contains("refused 'zoo_manage' without the admin token") && out.contains("zoo scanned"), "{out}");
    let (ok, _, err) = dgzoo(&["server", "shutdown", "--port", &p], Some("s3cret"));
    assert!(ok, "{err}");
    server.wait_exit(Duration::from_secs(15));

    // The hub: the operator's Bearer token works on the admin routes beside tokens.json's admin tokens.
    let root = hub_root(&[EFF_F]);
    let (_hub, hub) = start_hub(root.path(), &["--admin-token", "ops-token"]);
    let tokens = || std::fs::read_to_string(root.path().join("tokens.json")).unwrap();
    let before = tokens();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let create = |auth: Option<&str>| {
        let mut r = agent.post(&format!("http://{hub}/zoo/v1/public/tokens?is_admin=false"));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        match r.call() {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let (status, body) = create(Some("Bearer wrong"));
    assert_eq!((status, body.as_str()), (401, r#"{"detail":"Admin token is not valid"}"#));
    let (status, body) = create(None);
    assert_eq!((status, body.as_str()), (401, r#"{"detail":"Token does not have admin rights"}"#));
    assert_eq!(tokens(), before, "a refused request changed tokens.json");
    let (status, body) = create(Some("Bearer ops-token"));
    assert_eq!(status, 200, "{body}");
    let new = serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().unwrap().to_string();
    assert!(tokens().contains(&new));
    // Delete a model with the operator token; a wrong one leaves it in place.
    let url = format!("http://{hub}/zoo/v1/public/models/{ORG}/{ZOONAME}/{EFF_F}");
    let zip = root.path().join(ORG).join(ZOONAME).join(format!("{EFF_F}.zip"));
    assert!(matches!(agent.delete(&url).set("Authorization", "Bearer nope").call(), Err(ureq::Error::Status(401, _))));
    assert!(zip.exists());
    assert_eq!(agent.delete(&url).set("Authorization", "Bearer ops-token").call().unwrap().status(), 200);
    assert!(!zip.exists());
}
