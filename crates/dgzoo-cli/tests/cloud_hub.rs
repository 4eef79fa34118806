//! Our hub against the real dg-zoo-server 0.3.0 on the same zoo root: same statuses and JSON
//! bodies per endpoint (documented differences excepted), byte-identical downloads with
//! Content-Length; the `dgzoo hub` binary; `dgzoo download-zoo` against both servers.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::Value;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Vec<u8>, Option<String>) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut req = agent.get(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.set("token", t);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    let len = resp.header("Content-Length").map(str::to_string);
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (status, body, len)
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(b)))
}

#[test]
fn hub_matches_dg_zoo_server() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_Q, BLAZE]);
    // A second token limited to another zoo, and an admin token.
    std::fs::write(
        root.path().join("tokens.json"),
        format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": ["{ORG}/{ZOONAME}"]}}, "other": {{"is_admin": false, "zoos": ["{ORG}/other"]}}, "admin": {{"is_admin": true, "zoos": []}}}}"#),
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join(ORG).join("other")).unwrap();
    let (_server, port) = start_dg_zoo_server(&peer, root.path());
    let theirs = format!("http://127.0.0.1:{port}");
    let hub = start_hub(root.path());
    let ours = format!("http://{}", hub.addr());

    let z = format!("{ORG}/{ZOONAME}");
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("/api/v1/public/zoos-check/{z}"), Some(TOKEN)),
        (format!("/api/v1/public/zoos-check/{ORG}/nozoo"), Some(TOKEN)),
        (format!("/api/v1/public/zoos-check/{z}"), Some("bad")),
        (format!("/zoo/v1/public/models/{z}"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}"), Some("admin")),
        (format!("/zoo/v1/public/models/{z}"), Some("other")),
        (format!("/zoo/v1/public/models/{z}"), Some("bad")),
        (format!("/zoo/v1/public/models/{ORG}/other"), Some("other")),
        (format!("/zoo/v1/public/models/{ORG}/nozoo"), Some("admin")),
        (format!("/zoo/v1/public/models/{z}/{EFF_Q}/dictionary"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}/{BLAZE}/dictionary"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}/{BLAZE}/readme"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}/nomodel/info"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}/nomodel"), Some(TOKEN)),
        (format!("/zoo/v1/public/models/{z}/{EFF_Q}/check?checksum=abc"), Some(TOKEN)),
        (format!("/zoo/v1/public/zoos/{ORG}"), Some(TOKEN)),
        (format!("/zoo/v1/public/zoos/{ORG}"), Some("admin")),
        ("/zoo/version".to_string(), None),
        ("/devices/api/v1/public/system-info".to_string(), None),
        ("/no/such/route".to_string(), None),
    ];
    for (path, tok) in &cases {
        let (s1, b1, _) = get(&theirs, path, *tok);
        let (s2, b2, _) = get(&ours, path, *tok);
        assert_eq!(s2, s1, "{path} {tok:?}: status");
        assert_eq!(json(&b2), json(&b1), "{path} {tok:?}: body");
    }
    // check with the real checksum, info (ours adds `model_labels`, which PySDK reads).
    let sum = json(&get(&ours, &format!("/zoo/v1/public/models/{z}/{EFF_Q}/info"), Some(TOKEN)).1)["crc"].as_str().unwrap().to_string();
    let p = format!("/zoo/v1/public/models/{z}/{EFF_Q}/check?checksum={sum}");
    assert_eq!(json(&get(&ours, &p, Some(TOKEN)).1), serde_json::json!({"status": true}));
    assert_eq!(json(&get(&theirs, &p, Some(TOKEN)).1), serde_json::json!({"status": true}));
    let mut i2 = json(&get(&ours, &format!("/zoo/v1/public/models/{z}/{EFF_Q}/info"), Some(TOKEN)).1);
    let i1 = json(&get(&theirs, &format!("/zoo/v1/public/models/{z}/{EFF_Q}/info"), Some(TOKEN)).1);
    assert_eq!(i2["model_labels"], i1["model_dictionary"]);
    i2.as_object_mut().unwrap().remove("model_labels");
    assert_eq!(i2, i1);
    // Downloads: identical bytes, Content-Length equal to the body size.
    for m in [EFF_Q, BLAZE] {
        let (s1, b1, l1) = get(&theirs, &format!("/zoo/v1/public/models/{z}/{m}"), Some(TOKEN));
        let (s2, b2, l2) = get(&ours, &format!("/zoo/v1/public/models/{z}/{m}"), Some(TOKEN));
        assert_eq!((s1, s2), (200, 200));
        assert!(b1 == b2, "{m}: bodies differ");
        assert_eq!(l2, Some(b2.len().to_string()));
        assert_eq!(l1, l2);
    }
    // Path traversal through percent-encoded names goes nowhere.
    let (s, b, _) = get(&ours, &format!("/zoo/v1/public/models/{z}/..%2F..%2Ftokens/info"), Some(TOKEN));
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = get(&ours, "/zoo/v1/public/models/..%2F..%2F/x", Some("admin"));
    assert_eq!(s, 400);
}

#[test]
fn parallel_downloads_from_our_hub() {
    let root = hub_root(&[EFF_Q, YOLO, BLAZE]);
    let hub = start_hub(root.path());
    let base = format!("http://{}", hub.addr());
    let want: Vec<Vec<u8>> = [EFF_Q, YOLO, BLAZE].iter().map(|m| std::fs::read(zoo_dir(root.path()).join(format!("{m}.zip"))).unwrap()).collect();
    std::thread::scope(|s| {
        for i in 0..12 {
            let (base, want) = (&base, &want);
            s.spawn(move || {
                let m = [EFF_Q, YOLO, BLAZE][i % 3];
                let (st, body, len) = get(base, &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}/{m}"), Some(TOKEN));
                assert_eq!(st, 200);
                assert_eq!(len, Some(body.len().to_string()));
                assert!(body == want[i % 3]);
            });
        }
    });
}

/// `dgzoo hub` (the binary, port 0) serves; `dgzoo download-zoo` fetches from it and from
/// dg-zoo-server with PySDK's output and filters.
#[test]
fn hub_binary_and_download_zoo_cli() {
    let root = hub_root(&[EFF_Q, BLAZE, YOLO]);
    let (_guard, addr) = start_hub_process(root.path());
    let mut servers = vec![format!("http://{addr}/{ORG}/{ZOONAME}")];
    let _dgzs = peer().map(|p| {
        let (g, port) = start_dg_zoo_server(&p, root.path());
        servers.push(format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}"));
        g
    });
    for url in servers {
        let dest = tempfile::tempdir().unwrap();
        let path = dest.path().join("models");
        let out = Command::new(dgzoo_bin())
            .args(["download-zoo", "--url", &url, "--token", TOKEN, "--precision", "FLOAT", "--model_family", "_", "--path"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{url}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.starts_with(&format!("Downloading models\n  from '{url}'\n  into '{}'\n", path.display())), "{stdout}");
        assert!(stdout.ends_with("Downloaded 2 model(s)\n"), "{stdout}");
        for m in [BLAZE, YOLO] {
            assert!(stdout.contains(&format!("\n{m}\n")), "{stdout}");
            for f in std::fs::read_dir(format!("{ZOO}/{m}")).unwrap().flatten() {
                assert!(std::fs::read(path.join(m).join(f.file_name())).unwrap() == std::fs::read(f.path()).unwrap());
            }
        }
        assert!(!path.join(EFF_Q).exists());
        let leftovers: Vec<_> = std::fs::read_dir(&path).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        // A wrong token: PySDK's message, non-zero exit.
        let out = Command::new(dgzoo_bin()).args(["download-zoo", "--url", &url, "--token", "bad", "--path"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Token is not valid"));
    }
}

/// One request with any method, headers and body: (status, JSON body).
fn call(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut req = agent.request(method, &format!("{base}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match body {
        Some((ct, b)) => req.set("Content-Type", ct).send_bytes(&b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    (status, json(resp.into_string().unwrap().as_bytes()))
}

/// The upload body and its content type.
fn multipart_upload(filename: &str, data: &[u8]) -> (&'static str, Vec<u8>) {
    ("multipart/form-data; boundary=dgzooBOUNDARY", multipart(filename, data))
}

/// The administrative flow (tokens, zoo access, upload, delete) gives the same statuses and
/// bodies on our hub as on dg-zoo-server, token values aside.
#[test]
fn admin_endpoints_match_dg_zoo_server() {
    let Some(peer) = peer() else { return };
    let archive = {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.zip");
        dgzoo::cache::archive::pack_model(&std::path::Path::new(ZOO).join(BLAZE), &p).unwrap();
        std::fs::read(p).unwrap()
    };
    // The first admin token: dg-zoo-server gives it to the first request that asks; our hub
    // never mints a token for a request without an admin token, the operator makes it with
    // `dgzoo hub --new-token --admin` (tested in cloud_hub_tokens.rs).
    let run = |base: &str, a: &str| -> Vec<(u16, Value)> {
        let a = a.to_string();
        let mut out = Vec::new();
        let push = |r: (u16, Value), out: &mut Vec<(u16, Value)>| {
            out.push(r.clone());
            r.1
        };
        let m = format!("/zoo/v1/public/models/{ORG}/{ZOONAME}");
        push(call(base, "POST", "/zoo/v1/public/tokens?is_admin=false", &[], None), &mut out);
        let u = push(call(base, "POST", "/zoo/v1/public/tokens?is_admin=false", &[("token", &a)], None), &mut out)["token"].as_str().unwrap().to_string();
        let access = format!("/zoo/v1/public/tokens/{ORG}/{ZOONAME}");
        for _ in 0..2 {
            push(call(base, "POST", &access, &[("token", &a), ("token-to-modify", &u)], None), &mut out);
        }
        // Uploads that are refused before the body is read (a user token, a missing zoo) send a
        // body that fits the socket buffers: dg-zoo-server answers them and closes without
        // reading, and a 200 KB body then broke the pipe mid-send now and then (CI, once).
        let refused_body = &archive[..1024];
        push(call(base, "POST", &m, &[("token", &u)], Some(multipart_upload(&format!("{BLAZE}.zip"), refused_body))), &mut out);
        for q in ["", "", "?allow_overwrite=true"] {
            push(call(base, "POST", &format!("{m}{q}"), &[("token", &a)], Some(multipart_upload(&format!("{BLAZE}.zip"), &archive))), &mut out);
        }
        push(
            call(base, "POST", &format!("/zoo/v1/public/models/{ORG}/nozoo"), &[("token", &a)], Some(multipart_upload(&format!("{BLAZE}.zip"), refused_body))),
            &mut out,
        );
        push(call(base, "GET", &m, &[("token", &u)], None), &mut out);
        push(call(base, "GET", &format!("{m}/{BLAZE}/check?checksum=x"), &[("token", &u)], None), &mut out);
        for _ in 0..2 {
            push(call(base, "DELETE", &format!("{m}/{BLAZE}"), &[("token", &a)], None), &mut out);
        }
        push(call(base, "GET", &m, &[("token", &u)], None), &mut out);
        for _ in 0..2 {
            push(call(base, "DELETE", &access, &[("token", &a), ("token-to-modify", &u)], None), &mut out);
        }
        for _ in 0..2 {
            push(call(base, "DELETE", "/zoo/v1/public/tokens", &[("token", &a), ("token-to-delete", &u)], None), &mut out);
        }
        push(call(base, "GET", &m, &[("token", &u)], None), &mut out);
        // Token values differ between servers: compare their shape, then blank them.
        for (_, v) in out.iter_mut() {
            if let Some(t) = v.get("token").and_then(Value::as_str) {
                assert!(t.starts_with("dg_") && t.len() == 40, "{t}");
                v["token"] = Value::String(if t == a {
                    "A".into()
                } else if t == u {
                    "U".into()
                } else {
                    t.into()
                });
            }
        }
        out
    };
    let fresh = || {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(zoo_dir(root.path())).unwrap();
        root
    };
    let (r1, r2) = (fresh(), fresh());
    let (_server, port) = start_dg_zoo_server(&peer, r1.path());
    let theirs_base = format!("http://127.0.0.1:{port}");
    let first = call(&theirs_base, "POST", "/zoo/v1/public/tokens?is_admin=true", &[], None).1["token"].as_str().unwrap().to_string();
    let out = Command::new(dgzoo_bin()).args(["hub", "--new-token", "--admin", "--zoo"]).arg(r2.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours_first = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let hub = start_hub(r2.path());
    let theirs = run(&theirs_base, &first);
    let ours = run(&format!("http://{}", hub.addr()), &ours_first);
    assert_eq!(ours.len(), theirs.len());
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "step {i}");
    }
    // Both left one admin token on disk.
    for r in [&r1, &r2] {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(r.path().join("tokens.json")).unwrap()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert_eq!(v.as_object().unwrap().values().next().unwrap(), &serde_json::json!({"is_admin": true, "zoos": []}));
    }
}

/// A slow download does not block other requests, even with a single pool thread.
#[test]
fn slow_download_does_not_block_the_pool() {
    let root = hub_root(&[YOLO]);
    let mut cfg = dgzoo_server::hub::HubConfig::new(root.path());
    cfg.port = 0;
    cfg.threads = 1;
    cfg.rate_limit = Some(1 << 20);
    let hub = dgzoo_server::hub::Hub::start(&cfg).unwrap();
    let base = format!("http://{}", hub.addr());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let resp = agent.get(&format!("{base}/zoo/v1/public/models/{ORG}/{ZOONAME}/{YOLO}")).set("token", TOKEN).call().unwrap();
    let mut reader = resp.into_reader();
    let mut first = [0u8; 1024];
    reader.read_exact(&mut first).unwrap();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (status, body, _) = get(&base, &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}?short=true"), Some(TOKEN));
        assert_eq!(status, 200);
        assert_eq!(json(&body), serde_json::json!({ YOLO: {} }));
        assert!(t.elapsed() < Duration::from_secs(3), "JSON request took {:?} during a download", t.elapsed());
    }
    drop(reader);
}
