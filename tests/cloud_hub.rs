//! Our hub against the real dg-zoo-server 0.3.0 on the same zoo root: same statuses and JSON
//! bodies per endpoint (documented differences excepted), byte-identical downloads with
//! Content-Length; the `dgzoo hub` binary; `dgzoo download-zoo` against both servers.
mod cloud_common;
use cloud_common::*;
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
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
    let mut child = Command::new(dgzoo_bin())
        .args(["hub", "--port", "0", "--zoo"])
        .arg(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _guard = ChildGuard(child);
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
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
