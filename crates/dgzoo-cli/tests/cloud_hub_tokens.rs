//! The hub's token file, tried as an attacker would, with the real `dgzoo hub` binary: a
//! `tokens.json` that does not parse or has incomplete entries stops the hub at start with an
//! error naming the file and the entry; no request without an admin token mints a token or
//! writes the file (an empty, missing or broken table included); the operator makes the first
//! admin token with `dgzoo hub --new-token --admin`.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `dgzoo hub` on a root whose token file is bad: it must exit with an error, not serve.
fn hub_refuses_to_start(root: &Path) -> String {
    let mut child = Command::new(dgzoo_bin()).args(["hub", "--port", "0", "--zoo"]).arg(root).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dgzoo hub started on a bad tokens.json ({})", std::fs::read_to_string(root.join("tokens.json")).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    err
}

fn post(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut req = agent.post(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.set("token", t);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    (status, serde_json::from_str(&resp.into_string().unwrap()).unwrap_or(Value::Null))
}

fn new_token(root: &Path, admin: bool) -> Result<String, String> {
    let mut cmd = Command::new(dgzoo_bin());
    cmd.args(["hub", "--new-token", "--zoo"]).arg(root);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn bad_token_files_stop_the_hub_with_a_clear_error() {
    let root = hub_root(&[]);
    let file = root.path().join("tokens.json");
    let secret = "dg_operators_admin_token_0123456789";
    let cases: &[(String, &str)] = &[
        ("{not json".into(), "not a JSON object of tokens"),
        ("[]".into(), "not a JSON object of tokens"),
        (format!(r#"{{"{secret}": {{"zoos": []}}}}"#), r#"entry "dg_opera…" has no "is_admin""#),
        (format!(r#"{{"{TOKEN}": {{"is_admin": false, "zoos": []}}, "{secret}": {{"is_admin": true}}}}"#), r#"entry "dg_opera…" has no "zoos""#),
        (format!(r#"{{"{secret}": {{"is_admin": "yes", "zoos": []}}}}"#), r#"entry "dg_opera…": "is_admin" is not true or false"#),
        (format!(r#"{{"{secret}": {{"is_admin": true, "zoos": [1]}}}}"#), r#"entry "dg_opera…": "zoos" holds a non-string 1"#),
        (format!(r#"{{"{secret}": true}}"#), r#"entry "dg_opera…" is not an object"#),
    ];
    for (text, want) in cases {
        std::fs::write(&file, text).unwrap();
        let err = hub_refuses_to_start(root.path());
        assert!(err.contains(&format!("Invalid token file '{}'", file.display())), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains(secret), "the error shows the whole token: {err}");
        // The operator's file is left as it was.
        assert_eq!(&std::fs::read_to_string(&file).unwrap(), text);
        // --new-token refuses to write over it too.
        let e = new_token(root.path(), true).unwrap_err();
        assert!(e.contains(want), "{e}");
        assert_eq!(&std::fs::read_to_string(&file).unwrap(), text);
    }
}

#[test]
fn no_request_without_an_admin_token_mints_a_token_or_writes_the_file() {
    let root = hub_root(&[]);
    let file = root.path().join("tokens.json");
    // No tokens.json at all: the hub starts, but gives no token to anyone who asks.
    std::fs::remove_file(&file).unwrap();
    let (hub, addr) = start_hub_process(root.path());
    let base = format!("http://{addr}");
    for token in [None, Some(""), Some("dg_guess")] {
        for q in ["?is_admin=true", "?is_admin=false", ""] {
            let (status, body) = post(&base, &format!("/zoo/v1/public/tokens{q}"), token);
            assert_eq!((status, &body), (401, &json!({"detail": "Token does not have admin rights"})), "{token:?} {q}");
        }
    }
    assert!(!file.exists(), "a request without an admin token wrote {}", file.display());
    drop(hub);

    // The operator's way: a first admin token from the command line; it works over HTTP.
    let admin = new_token(root.path(), true).unwrap();
    assert!(admin.starts_with("dg_") && admin.len() == 40, "{admin}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (hub, addr) = start_hub_process(root.path());
    let base = format!("http://{addr}");
    let (status, body) = post(&base, "/zoo/v1/public/tokens?is_admin=false", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&base, "/zoo/v1/public/tokens?is_admin=false", Some(&admin));
    assert_eq!(status, 200, "{body}");
    let user = body["token"].as_str().unwrap().to_string();
    let (status, _) = post(&base, "/zoo/v1/public/tokens?is_admin=true", Some(&user));
    assert_eq!(status, 401, "a user token minted an admin token");
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(on_disk.as_object().unwrap().len(), 2);

    // The file breaks while the hub runs: the last good table is kept (never an empty one),
    // nobody without a token gets one, and no change is written over the broken file.
    std::fs::write(&file, "{ broken").unwrap();
    let (status, _) = post(&base, "/zoo/v1/public/tokens?is_admin=true", None);
    assert_eq!(status, 401);
    let (status, body) = post(&base, "/zoo/v1/public/tokens?is_admin=false", Some(&admin));
    assert_eq!(status, 500, "{body}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ broken");
    // The admin token still authenticates reads.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let r = agent.get(&format!("{base}/zoo/v1/public/tokens")).set("token", &admin).call().unwrap();
    assert_eq!(r.status(), 200);
    drop(hub);
}

/// A model archive `<name>/<name>.json` (a real config with a Checksum) plus `extra` entries.
type Zip = zip::ZipWriter<std::io::Cursor<Vec<u8>>>;

fn archive(name: &str, extra: &dyn Fn(&mut Zip)) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    z.start_file(format!("{name}/{name}.json"), o).unwrap();
    z.write_all(&std::fs::read(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap()).unwrap();
    extra(&mut z);
    z.finish().unwrap().into_inner()
}

#[test]
fn uploads_escaping_the_model_folder_are_refused_and_never_served() {
    use std::io::Write;
    let root = hub_root(&[]);
    let admin = new_token(root.path(), true).unwrap();
    let (hub, addr) = start_hub_process(root.path());
    let base = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let upload = |name: &str, data: &[u8]| -> (u16, Value) {
        let r = agent
            .post(&format!("{base}/zoo/v1/public/models/{ORG}/{ZOONAME}"))
            .set("token", &admin)
            .set("Content-Type", "multipart/form-data; boundary=dgzooBOUNDARY")
            .send_bytes(&multipart(&format!("{name}.zip"), data));
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (r.status(), serde_json::from_str(&r.into_string().unwrap()).unwrap())
    };
    type Extra = Box<dyn Fn(&mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>)>;
    let o = zip::write::SimpleFileOptions::default();
    let file = |n: &'static str| -> Extra {
        Box::new(move |z| {
            z.start_file(n, o).unwrap();
            z.write_all(b"x").unwrap();
        })
    };
    let cases: Vec<(&str, Extra, &str)> = vec![
        ("dotdot", file("dotdot/../../escaped.txt"), "unsafe path component '..'"),
        ("absolute", file("/tmp/absolute.txt"), "is an absolute path"),
        ("outside", file("other/file.txt"), "is outside the model directory 'outside/'"),
        ("link", Box::new(move |z| z.add_symlink("link/model.tflite", "/etc/passwd", o).unwrap()), "is a symbolic link"),
    ];
    for (name, extra, why) in &cases {
        let (status, body) = upload(name, &archive(name, extra.as_ref()));
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(why), "{name}: {body}");
        assert!(!zoo_dir(root.path()).join(format!("{name}.zip")).exists(), "{name} was stored");
    }
    // Such an archive put in the zoo by other means is not listed or served either.
    std::fs::write(zoo_dir(root.path()).join("dotdot.zip"), archive("dotdot", cases[0].1.as_ref())).unwrap();
    let list: Value =
        serde_json::from_str(&agent.get(&format!("{base}/zoo/v1/public/models/{ORG}/{ZOONAME}")).set("token", &admin).call().unwrap().into_string().unwrap())
            .unwrap();
    assert!(list.get("dotdot").is_none(), "{list}");
    let r = agent.get(&format!("{base}/zoo/v1/public/models/{ORG}/{ZOONAME}/dotdot")).set("token", &admin).call();
    assert!(matches!(r, Err(ureq::Error::Status(400, _))), "the archive was served");
    // A clean archive is accepted.
    let (status, body) = upload("good", &archive("good", &|_| {}));
    assert_eq!(status, 201, "{body}");
    drop(hub);
}

#[test]
fn zoos_check_tells_a_token_without_access_nothing() {
    let root = hub_root(&[]);
    std::fs::create_dir_all(root.path().join(ORG).join("secret")).unwrap();
    let (hub, addr) = start_hub_process(root.path());
    let base = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let check = |zoo: &str| -> (u16, String) {
        match agent.get(&format!("{base}/api/v1/public/zoos-check/{ORG}/{zoo}")).set("token", TOKEN).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap().replace(zoo, "ZOO")),
            Err(e) => panic!("{e}"),
        }
    };
    // TOKEN may use myorg/myzoo only: an existing zoo it may not use looks like a missing one.
    assert_eq!(check(ZOONAME).0, 200);
    let (secret, missing) = (check("secret"), check("nosuchzoo"));
    assert_eq!(secret, missing);
    assert_eq!(secret.0, 400);
    drop(hub);
}
