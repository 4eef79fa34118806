//! The AI server's management replies against the real PySDK 1.5.0 server: `zoo_manage
//! {"cache_dump"}` (the agent list) and `trace_manage` (groups, levels, the trace text), over
//! asio and HTTP. Both servers serve a copy of the same zoo; values that differ by nature
//! (times, memory) are compared by meaning.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
use aiserver_common::*;
use dgzoo::protocol::{read_packet, write_packet};
use dgzoo_server::aiserver::Protocol;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;

/// Loads each model with the real PySDK client and predicts one frame (frames one at a
/// time), then, when given, runs a batch on the last argument's model (frames overlap).
const LOAD_SCRIPT: &str = r#"
import sys
import degirum as dg
addr, image, batch = sys.argv[1], sys.argv[2], sys.argv[4]
models = [m for m in sys.argv[3].split(",") if m]
zoo = dg.connect(addr, "", "")
for m in models:
    zoo.load_model(m).predict(image)
if batch:
    with zoo.load_model(batch) as model:
        for _ in model.predict_batch([image] * 40):
            pass
print("LOADED")
"#;

fn pysdk_load(peer: &Path, dir: &Path, asio_port: u16, models: &[&str], batch: &str) {
    let script = dir.join("load.py");
    std::fs::write(&script, LOAD_SCRIPT).unwrap();
    let out = std::process::Command::new(peer.join("venv/bin/python"))
        .arg(&script)
        .arg(format!("127.0.0.1:{asio_port}"))
        .arg(image("cat_224.jpg"))
        .arg(models.join(","))
        .arg(batch)
        .env("LD_LIBRARY_PATH", peer_ld_path(peer))
        .output()
        .expect("run the PySDK client");
    assert!(String::from_utf8_lossy(&out.stdout).contains("LOADED"), "PySDK client failed on port {asio_port}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One asio command on a fresh connection: the whole reply.
fn asio(port: u16, op: &str, args: Value) -> Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write_packet(&mut s, json!({"VERSION": 4, "op": op, "args": args}).to_string().as_bytes()).unwrap();
    serde_json::from_slice(&read_packet(&mut s, 1 << 26).unwrap().unwrap()).unwrap()
}

/// `POST /v1/<op>` with `args` as the body: (status, body as JSON).
fn http(port: u16, op: &str, args: Value) -> (u16, Value) {
    let (status, _, body) =
        dgzoo::protocol::http::request_full("127.0.0.1", port, "POST", &format!("/v1/{op}"), Some(args.to_string().as_bytes()), Duration::from_secs(30))
            .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// A JSON value's kind, integers apart from floats (the servers' replies are typed by it).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same keys, and each key's value of the same kind.
fn same_shape(ours: &Map<String, Value>, theirs: &Map<String, Value>, what: &str) {
    let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ours), keys(theirs), "{what}: keys");
    for (k, v) in theirs {
        assert_eq!(kind(&ours[k]), kind(v), "{what}.{k}: ours {} theirs {v}", ours[k]);
    }
}

/// A local time `YYYY-MM-DD HH:MM:SS` (PySDK's agent timestamps).
fn local_time(s: &str) -> chrono::DateTime<chrono::Local> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap_or_else(|e| panic!("timestamp '{s}': {e}"));
    t.and_local_timezone(chrono::Local).single().unwrap()
}

/// What an agent entry means, for comparing servers: (type, device type, device mask, model
/// file, size in MiB).
fn agent_key(a: &Value) -> (String, String, u64, String, u64) {
    let path = Path::new(a["ModelPath"].as_str().unwrap());
    // Both name the file in the zoo copy; the directory compared canonical (a TMPDIR symlink).
    let file = std::fs::canonicalize(path.parent().unwrap()).unwrap().join(path.file_name().unwrap());
    let size_mb = std::fs::metadata(path).unwrap().len() >> 20;
    assert_eq!(a["ModelSize_MB"].as_u64(), Some(size_mb), "{a}: the model file is {size_mb} MiB");
    (
        a["AgentType"].as_str().unwrap().into(),
        a["DeviceType"].as_str().unwrap().into(),
        a["DeviceMask"].as_u64().unwrap(),
        file.to_string_lossy().into(),
        size_mb,
    )
}

const ONNX: &str = "efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1";
const QUANT: &str = "efficientnet_lite0_imagenet--224x224_quant_tflite_cpu_1";
const FACE: &str = "blazeface_short_range--128x128_float_tflite_cpu_1";

#[test]
fn cache_dump_lists_the_agents_as_pysdk() {
    let Some(peer) = peer("cache_dump_lists_the_agents_as_pysdk") else { return };
    let zoo = clean_zoo();
    let tmp = tempfile::tempdir().unwrap();
    let theirs = start_peer_server(&peer, zoo.path(), &[]);
    // PySDK's server adds a TFLite agent on device 1 for overlapping frames; ours does so with
    // `--model-copies 2` (its default keeps one copy per model: README, "AI-server memory").
    let ours = {
        let mut cfg = dgzoo_server::aiserver::Config::new(zoo.path());
        (cfg.port, cfg.protocol, cfg.quiet, cfg.model_copies) = (0, Protocol::Both, true, 2);
        dgzoo_server::aiserver::Server::start(cfg).expect("server starts")
    };
    let servers = [("PySDK", theirs.port, theirs.port + 1), ("dgzoo", ours.asio_addr().unwrap().port(), ours.http_addr().unwrap().port())];

    // Nothing loaded yet: the same empty list.
    for (who, a, h) in servers {
        let r = asio(a, "zoo_manage", json!({"cache_dump": 1}));
        assert_eq!(r["zoo_manage"]["AgentList"], json!([]), "{who}: {r}");
        assert_eq!(http(h, "zoo_manage", json!({"cache_dump": 1})).1["AgentCacheSize"], json!(0), "{who}");
    }

    // Timestamps are whole seconds: the window starts at the second the loads begin.
    let t0 = chrono::Local::now() - chrono::Duration::seconds(1);
    for (_, a, _) in servers {
        pysdk_load(&peer, tmp.path(), a, &[ONNX, QUANT, FACE], "");
    }
    let t1 = chrono::Local::now();
    let dumps: Vec<(Value, Value)> = servers
        .iter()
        .map(|&(who, a, h)| {
            let r = asio(a, "zoo_manage", json!({"cache_dump": 1}));
            assert_eq!(r["success"], json!(true), "{who}: {r}");
            let (status, body) = http(h, "zoo_manage", json!({"cache_dump": 1}));
            assert_eq!(status, 200, "{who}: {body}");
            (r["zoo_manage"].clone(), body)
        })
        .collect();
    let mut keys = Vec::new();
    for ((who, _, _), (over_asio, over_http)) in servers.iter().zip(&dumps) {
        // The same object over both protocols (memory moves between the two requests).
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("CurrentlyUsedMemory_MB");
            v
        };
        assert_eq!(strip(over_asio), strip(over_http), "{who}: asio and HTTP replies differ");
        let list = over_asio["AgentList"].as_array().unwrap();
        assert_eq!(over_asio["AgentCacheSize"].as_u64(), Some(list.len() as u64), "{who}: {over_asio}");
        assert!(over_asio["CurrentlyUsedMemory_MB"].as_u64().unwrap() > 0, "{who}: {over_asio}");
        for a in list {
            let t = local_time(a["Timestamp"].as_str().unwrap());
            assert!(t >= t0 && t <= t1, "{who}: {a} is outside the test's window {t0} .. {t1}");
        }
        let mut k: Vec<_> = list.iter().map(agent_key).collect();
        k.sort();
        keys.push(k);
    }
    let ((ours_d, _), (theirs_d, _)) = (&dumps[1], &dumps[0]);
    same_shape(ours_d.as_object().unwrap(), theirs_d.as_object().unwrap(), "cache_dump");
    assert_eq!(ours_d["TotalSystemMemory_MB"], theirs_d["TotalSystemMemory_MB"], "the same machine");
    for (o, t) in ours_d["AgentList"].as_array().unwrap().iter().zip(theirs_d["AgentList"].as_array().unwrap()) {
        same_shape(o.as_object().unwrap(), t.as_object().unwrap(), "AgentList entry");
    }
    // One frame at a time: the ONNX agent spans both CPU devices, each TFLite model is on device 0.
    assert_eq!(keys[1], keys[0], "agents: dgzoo\n{ours_d:#}\nPySDK\n{theirs_d:#}");
    assert_eq!(keys[0].iter().map(|k| k.2).collect::<Vec<_>>(), [3, 1, 1], "{theirs_d:#}");

    // Overlapping frames: the TFLite model gets an agent on device 1 too.
    let masks = |port: u16| {
        let r = asio(port, "zoo_manage", json!({"cache_dump": 1}));
        let mut m: Vec<(String, u64)> = r["zoo_manage"]["AgentList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["ModelPath"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), a["DeviceMask"].as_u64().unwrap()))
            .collect();
        m.sort();
        m
    };
    for (_, a, _) in servers {
        pysdk_load(&peer, tmp.path(), a, &[], QUANT);
    }
    let (o, t) = (masks(servers[1].1), masks(servers[0].1));
    assert_eq!(o, t, "after a batch");
    assert_eq!(t.iter().filter(|(f, _)| f.starts_with(QUANT)).map(|x| x.1).collect::<Vec<_>>(), [1, 2], "{t:?}");
}

/// `trace_manage` args over asio: the op's data, or the error text.
fn trace(port: u16, args: Value) -> Result<Value, String> {
    let r = asio(port, "trace_manage", args);
    match r["success"].as_bool() {
        Some(true) => Ok(r["trace_manage"].clone()),
        _ => Err(r["msg"].as_str().unwrap_or_default().to_string()),
    }
}

fn levels(port: u16) -> Map<String, Value> {
    trace(port, json!({"config_get": 1})).unwrap()["config_get"].as_object().unwrap().clone()
}

fn trace_text(port: u16, size: Option<u64>) -> String {
    let args = match size {
        Some(n) => json!({"trace_read": {"size": n}}),
        None => json!({"trace_read": {}}),
    };
    trace(port, args).unwrap()["trace_read"].as_str().unwrap().to_string()
}

fn ping(port: u16) {
    let r = asio(port, "sleep", Value::Null);
    assert_eq!(r["success"], json!(true), "{r}");
}

/// The header's parts that both servers write alike: the start time and the enabled groups.
fn header(text: &str, who: &str) -> (chrono::DateTime<chrono::Local>, String) {
    let rest = text.strip_prefix("----------------------------------------\nStarted: ").unwrap_or_else(|| panic!("{who}: {text}"));
    let (started, rest) = rest.split_once('\n').unwrap();
    let t = chrono::NaiveDateTime::parse_from_str(started, "%a %b %e %H:%M:%S %Y").unwrap_or_else(|e| panic!("{who}: Started '{started}': {e}"));
    let groups = rest.strip_prefix("\nEnabled trace groups:\n").unwrap_or_else(|| panic!("{who}: {text}"));
    let groups = &groups[..groups.find("\n\n\n\nLine format:\n").unwrap_or_else(|| panic!("{who}: {text}")) + 1];
    (t.and_local_timezone(chrono::Local).single().unwrap(), groups.to_string())
}

/// The record lines after the header (a record may start with PySDK's `*` flush mark).
fn records(text: &str) -> Vec<&str> {
    let body = text.find("\n\n[").or_else(|| text.find("\n\n*[")).map_or("", |i| &text[i + 2..]);
    body.lines().collect()
}

#[test]
fn trace_manage_answers_as_pysdk() {
    let Some(peer) = peer("trace_manage_answers_as_pysdk") else { return };
    let zoo = clean_zoo();
    let theirs = start_peer_server(&peer, zoo.path(), &[]);
    let ours = start_server(zoo.path(), Protocol::Both);
    let (oa, oh) = (ours.asio_addr().unwrap().port(), ours.http_addr().unwrap().port());
    let (ta, th) = (theirs.port, theirs.port + 1);

    // Every group: None at start, over asio and HTTP alike; ours are PySDK's names.
    let (og, tg) = (levels(oa), levels(ta));
    for (who, g, h) in [("dgzoo", &og, oh), ("PySDK", &tg, th)] {
        assert!(g.values().all(|v| v == "None"), "{who}: {g:?}");
        assert_eq!(http(h, "trace_manage", json!({"config_get": 1})), (200, json!({"config_get": g})), "{who}");
    }
    for name in og.keys() {
        assert!(tg.contains_key(name), "PySDK's server has no trace group '{name}'");
    }
    let ours_of = |g: &Map<String, Value>| og.keys().map(|k| (k.clone(), g[k].clone())).collect::<Vec<_>>();

    // config_set replaces the configuration: numbers truncated, out of range None, unknown
    // names ignored; `null` and `{}` set every group to None.
    for set in [
        json!({"AIServer": 2, "CoreAgentCache": 3.7, "CoreRuntime": 9, "NoSuchGroup": 1}),
        json!(null),
        json!({"AIServer": 1}),
        json!({}),
        json!({"CoreModelZoo": true}),
    ] {
        for (a, h) in [(oa, oh), (ta, th)] {
            assert_eq!(asio(a, "trace_manage", json!({"config_set": set})), json!({"VERSION": 4, "success": true, "trace_manage": null}));
            assert_eq!(http(h, "trace_manage", json!({"config_set": set})), (200, Value::Null));
        }
        let (o, t) = (levels(oa), levels(ta));
        assert_eq!(ours_of(&o), ours_of(&t), "after config_set {set}");
        assert!(!o.contains_key("NoSuchGroup") && !t.contains_key("NoSuchGroup"));
    }
    assert_eq!(levels(oa)["CoreModelZoo"], "Basic");
    assert_eq!(levels(oa)["AIServer"], "None");
    // Only unknown names: everything back to None.
    for a in [oa, ta] {
        trace(a, json!({"config_set": {"NoSuchGroup": 2}})).unwrap();
    }
    assert_eq!(ours_of(&levels(oa)), ours_of(&levels(ta)));
    assert!(levels(oa).values().all(|v| v == "None"));

    // Bad arguments: PySDK's texts, nothing changed.
    for bad in
        [json!({"config_set": {"AIServer": "2"}}), json!({"config_set": [1]}), json!({"trace_read": {"size": "a"}}), json!({"trace_read": {"size": null}})]
    {
        let want = trace(ta, bad.clone()).unwrap_err();
        assert_eq!(trace(oa, bad.clone()).unwrap_err(), want, "{bad}");
        assert_eq!(http(oh, "trace_manage", bad.clone()), (500, json!({"msg": want, "success": false})), "{bad}");
    }
    assert_eq!(ours_of(&levels(oa)), ours_of(&levels(ta)));

    // trace_read: the header (start time, enabled groups), then one record a line.
    let t0 = chrono::Local::now() - chrono::Duration::seconds(1);
    for a in [oa, ta] {
        trace(a, json!({"config_set": {"AIServer": 2, "CoreTaskServerAsio": 1}})).unwrap();
        ping(a);
    }
    // PySDK writes its records from another thread: wait for the ping's.
    let pinged = |text: &str| records(text).iter().any(|l| l.contains("[2]") && l.contains("sleep"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut texts = [trace_text(oa, None), trace_text(ta, None)];
    while !texts.iter().all(|t| pinged(t)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        texts = [trace_text(oa, None), trace_text(ta, None)];
    }
    let t1 = chrono::Local::now();
    let (mine, their) = (&texts[0], &texts[1]);
    let ((ot, ogroups), (tt, tgroups)) = (header(mine, "dgzoo"), header(their, "PySDK"));
    assert_eq!(ogroups, tgroups);
    assert_eq!(ogroups, "  AIServer                         = Detailed\n  CoreTaskServerAsio               = Basic\n");
    for (who, t, text) in [("dgzoo", ot, mine), ("PySDK", tt, their)] {
        assert!(t >= t0 && t <= t1, "{who}: started {t}, outside {t0} .. {t1}");
        assert!(pinged(text), "{who}: no record of the ping:\n{text}");
        assert!(text.ends_with('\n'), "{who}");
        assert!(records(text).iter().all(|l| l.starts_with('[') || l.starts_with("*[")), "{who}:\n{text}");
        assert_eq!(trace_text(if who == "dgzoo" { oa } else { ta }, Some(0)), "", "{who}");
    }

    // `size` caps the text. PySDK gives the first `size` bytes of its trace, cut anywhere; ours
    // the newest whole records that fit (the header only with all of them).
    let full = trace_text(ta, None);
    let cut = trace_text(ta, Some(full.len() as u64 / 2));
    assert!(full.starts_with(&cut) && cut.len() == full.len() / 2, "PySDK's trace_read is no longer a prefix");
    for _ in 0..5 {
        ping(oa);
    }
    let full = trace_text(oa, None);
    let recs = records(&full);
    assert!(recs.len() >= 5, "{full}");
    for size in [full.len() - 1, recs[recs.len() - 3..].iter().map(|l| l.len() + 1).sum::<usize>() + 5, 1] {
        // Each trace_read adds a record of its own request (AIServer is Detailed).
        let got = trace_text(oa, Some(size as u64));
        assert!(got.len() <= size, "size {size}: {} bytes", got.len());
        assert!(got.is_empty() || got.starts_with('['), "size {size}: a partial first record: {got}");
        assert!(got.lines().all(|l| recs.contains(&l) || l.contains("op 'trace_manage'")), "size {size}: {got}");
    }
}
