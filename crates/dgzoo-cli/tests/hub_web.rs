//! The hub's web page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/bootstrap.sh chromium`) driven over WebDriver. A
//! hub on 127.0.0.1 serves two models of the shared zoo; the test enters the token, checks
//! the model list, opens a model, uploads cat_224.jpg through the "try it" form and checks the
//! results JSON (PySDK's top label) and the overlay, then saves a screenshot. The token must
//! stay out of every URL the page loads. Without Chromium the test prints SKIP, unless
//! DGZOO_REQUIRE_PEER=1 (CI), where it fails. Also: the page's own HTTP routes without a browser.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn browser() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(std::env::var("DGZOO_REQUIRE_PEER").as_deref() != Ok("1"), "{CHROMIUM} or {CHROMEDRIVER} missing (scripts/bootstrap.sh chromium)");
    eprintln!("SKIP hub_web: {CHROMIUM} or {CHROMEDRIVER} missing (scripts/bootstrap.sh chromium)");
    false
}

/// A WebDriver session on a chromedriver of our own.
struct Driver {
    base: String,
    session: String,
    _chromedriver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let guard = ChildGuard(child);
        assert!(wait_port(port, Duration::from_secs(20)), "chromedriver did not listen on {port}");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
        let r = ureq::post(&format!("{base}/session")).timeout(Duration::from_secs(60)).send_string(&caps.to_string()).expect("new WebDriver session");
        let r: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Driver { base, session, _chromedriver: guard, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let r = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        match r {
            Ok(r) => serde_json::from_str::<Value>(&r.into_string().unwrap()).unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => panic!("WebDriver {method} {path}: {code} {}", r.into_string().unwrap_or_default()),
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": js, "args": []})))
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Poll `js` (an expression) until it is truthy.
    fn wait_for(&self, js: &str, what: &str) -> Value {
        let t = Instant::now();
        loop {
            let v = self.script(&format!("return ({js});"));
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            let status = self.script("return document.getElementById('status').textContent;");
            assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what} (page status: {status})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).timeout(Duration::from_secs(20)).call();
    }
}

#[test]
fn hub_page_lists_models_and_runs_a_prediction_in_chromium() {
    if !browser() {
        return;
    }
    let root = hub_root(&[EFF_F, YOLO]);
    let hub = start_hub(root.path());
    let page = format!("http://{}/", hub.addr());
    let d = Driver::start();
    d.call("POST", "/url", Some(json!({"url": page})));
    d.wait_for("document.readyState === 'complete'", "the page to load");
    d.type_into("#token", TOKEN);
    d.click("#save-token");
    d.wait_for("document.querySelectorAll('tr.model').length === 2", "the model list");
    let names = d.script("return Array.from(document.querySelectorAll('tr.model')).map(r => r.dataset.model);");
    assert_eq!(names, json!([EFF_F, YOLO]), "models of {ORG}/{ZOONAME}");
    let zoos = d.script("return Array.from(document.querySelectorAll('section.zoo')).map(s => s.dataset.zoo);");
    assert_eq!(zoos, json!([format!("{ORG}/{ZOONAME}")]));
    // The model parameters that matter, and the label counts from each model's info.
    d.wait_for("Array.from(document.querySelectorAll('td.labels')).every(td => /^[0-9]+$/.test(td.textContent))", "the label counts");
    let row = d.script(&format!("return Array.from(document.querySelector('tr.model[data-model=\"{EFF_F}\"]').cells).map(c => c.textContent);"));
    assert_eq!(row, json!([EFF_F, "TFLITE", "CPU", "224x224", "Classification", "1000"]), "the classification model's row");

    d.click(&format!("tr.model[data-model=\"{EFF_F}\"]"));
    d.wait_for("!document.getElementById('details').hidden", "the model details");
    assert_eq!(d.script("return document.getElementById('model-name').textContent;"), json!(EFF_F));
    assert_eq!(d.script("return document.getElementById('label-count').textContent;"), json!("1000"));

    // WebDriver wants a canonical path for a file input.
    let cat = Path::new(ZOO).join("images/cat_224.jpg").canonicalize().unwrap();
    d.type_into("#image", cat.to_str().unwrap());
    d.click("#run");
    d.wait_for("!document.getElementById('outcome').hidden", "the prediction");
    let results: Value = serde_json::from_str(d.script("return document.getElementById('results').textContent;").as_str().unwrap()).unwrap();
    let want = golden(EFF_F, "cat_224.jpg");
    // Cloud frames travel as JPEG (PySDK's cloud default), so scores move a little; the
    // classes stay.
    assert_eq!(results[0]["label"], want[0]["label"], "top label: ours {results} vs PySDK's {want}");
    assert_eq!(results.as_array().unwrap().len(), want.as_array().unwrap().len());
    let top = d.script("return document.getElementById('top-label').textContent;");
    assert!(top.as_str().unwrap().starts_with(want[0]["label"].as_str().unwrap()), "top label shown: {top}");
    // The overlay is a decoded image of the frame's size plus the classification band.
    let (w, h) = (
        d.wait_for("document.getElementById('overlay').complete && document.getElementById('overlay').naturalWidth", "the overlay"),
        d.script("return document.getElementById('overlay').naturalHeight;"),
    );
    assert_eq!(w, json!(224));
    assert!(h.as_u64().unwrap() > 224, "overlay height {h}: the image plus the text band");

    // The token is kept in sessionStorage and never put in a URL.
    assert_eq!(d.script("return sessionStorage.getItem('dgzoo.hub.token');"), json!(TOKEN));
    let urls = d.script("return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));");
    for u in urls.as_array().unwrap() {
        assert!(!u.as_str().unwrap().contains(TOKEN), "token in a URL: {u}");
        assert!(u.as_str().unwrap().starts_with(&page), "a resource not from the hub: {u}");
    }

    let png = d.call("GET", "/screenshot", None);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "screenshot is a PNG");
    let shot = std::env::temp_dir().join("dgzoo-hub-page.png");
    std::fs::write(&shot, &bytes).unwrap();
    eprintln!("hub page screenshot: {}", shot.display());
}

/// The page's routes without a browser: the page and its assets (no external resource), the
/// zoo listing per token, and the "try it" route's refusals and answer.
#[test]
fn hub_page_routes() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let base = format!("http://{}", hub.addr());
    let get = |path: &str, token: Option<&str>| {
        let mut r = ureq::get(&format!("{base}{path}"));
        if let Some(t) = token {
            r = r.set("token", t);
        }
        match r.call() {
            Ok(r) => (r.status(), r.header("Content-Type").unwrap_or("").to_string(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, String::new(), r.into_string().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    let (code, ct, html) = get("/", None);
    assert_eq!((code, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(html.contains("/ui/app.js") && html.contains("/ui/app.css"));
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let (code, _, body) = get(asset, None);
        assert_eq!(code, 200, "{asset}");
        assert!(!body.contains("http://") && !body.contains("https://"), "{asset} refers to an external resource");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "the page refers to an external resource");

    assert_eq!(get("/ui/api/zoos", None).0, 401);
    assert_eq!(get("/ui/api/zoos", Some("wrong")).0, 401);
    let (code, _, body) = get("/ui/api/zoos", Some(TOKEN));
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"zoos": [format!("{ORG}/{ZOONAME}")]}));

    let post = |path: &str, token: &str, body: &[u8]| match ureq::post(&format!("{base}{path}")).set("token", token).send_bytes(body) {
        Ok(r) => (r.status(), serde_json::from_str::<Value>(&r.into_string().unwrap()).unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, serde_json::from_str::<Value>(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null)),
        Err(e) => panic!("{path}: {e}"),
    };
    let path = format!("/ui/api/predict/{ORG}/{ZOONAME}/{EFF_F}");
    let cat = image("cat_224.jpg");
    assert_eq!(post(&path, "wrong", &cat).0, 401);
    assert_eq!(post(&format!("/ui/api/predict/{ORG}/{ZOONAME}/nope"), TOKEN, &cat).0, 400);
    let (code, v) = post(&path, TOKEN, b"");
    assert_eq!(code, 422, "{v}");
    let (code, v) = post(&path, TOKEN, b"not an image");
    assert_eq!(code, 422, "{v}");
    let (code, v) = post(&path, TOKEN, &cat);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["label"], golden(EFF_F, "cat_224.jpg")[0]["label"], "try-it results: {v}");
    assert!(v["overlay"].as_str().unwrap().starts_with("data:image/jpeg;base64,"));
}
