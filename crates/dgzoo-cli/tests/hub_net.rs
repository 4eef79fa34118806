//! The hub's transport (tokio + axum): resumable downloads (ETag, Range, If-Range, 416), the
//! REST body limit, health probes, clients that never read a download, idle socket.io upgrades
//! next to a real PySDK cloud client, EMFILE survival of a `dgzoo hub` with a low descriptor
//! limit, and the hub's threads and memory with 1,000 idle connections.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use dgzoo::cache::archive::pack_model;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): (status, headers lowercased, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, raw[end + 4..].to_vec())
}

fn hdr<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn download_path(model: &str) -> String {
    format!("/zoo/v1/public/models/{ORG}/{ZOONAME}/{model}")
}

#[test]
fn downloads_carry_etag_and_honour_range_and_if_range() {
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let addr = hub.addr().to_string();
    let path = download_path(EFF_F);
    let auth = ("token", TOKEN);
    let on_disk = std::fs::read(zoo_dir(root.path()).join(format!("{EFF_F}.zip"))).unwrap();
    let len = on_disk.len();

    let (st, h, full) = http(&addr, "GET", &path, &[auth], b"");
    assert_eq!(st, 200);
    assert_eq!(full, on_disk);
    assert_eq!(hdr(&h, "content-length"), Some(len.to_string().as_str()));
    assert_eq!(hdr(&h, "accept-ranges"), Some("bytes"));
    let etag = hdr(&h, "etag").expect("ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "strong tag: {etag}");
    let last_modified = hdr(&h, "last-modified").expect("Last-Modified").to_string();
    // Stable for the same file.
    assert_eq!(hdr(&http(&addr, "GET", &path, &[auth], b"").1, "etag"), Some(etag.as_str()));

    // One range: 206 with Content-Range and exactly those bytes.
    let (st, h, part) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=100-1099")], b"");
    assert_eq!(st, 206);
    assert_eq!(hdr(&h, "content-range"), Some(format!("bytes 100-1099/{len}").as_str()));
    assert_eq!(hdr(&h, "content-length"), Some("1000"));
    assert_eq!(part, on_disk[100..1100]);
    // Open-ended and suffix ranges, the resume a cache does.
    let (st, _, tail) = http(&addr, "GET", &path, &[auth, ("Range", &format!("bytes={}-", len - 10))], b"");
    assert_eq!((st, tail.as_slice()), (206, &on_disk[len - 10..]));
    let (st, _, tail) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=-7")], b"");
    assert_eq!((st, tail.as_slice()), (206, &on_disk[len - 7..]));
    // Past the end: 416 with the size, JSON error.
    let (st, h, body) = http(&addr, "GET", &path, &[auth, ("Range", &format!("bytes={len}-"))], b"");
    assert_eq!(st, 416);
    assert_eq!(hdr(&h, "content-range"), Some(format!("bytes */{len}").as_str()));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["detail"].as_str().unwrap().contains("Range not satisfiable"), "{v}");
    // If-Range: the current tag (or date) resumes; another tag gets the whole file.
    let (st, _, part) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=5-9"), ("If-Range", &etag)], b"");
    assert_eq!((st, part.as_slice()), (206, &on_disk[5..10]));
    let (st, _, part) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=5-9"), ("If-Range", &last_modified)], b"");
    assert_eq!((st, part.as_slice()), (206, &on_disk[5..10]));
    let (st, _, whole) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=5-9"), ("If-Range", "\"not-this-one\"")], b"");
    assert_eq!((st, whole.len()), (200, len));
    // Without a token: still 401 before any range logic.
    assert_eq!(http(&addr, "GET", &path, &[("Range", "bytes=0-1")], b"").0, 401);

    // A new version of the archive: a new tag, and the old tag's If-Range gets the new file whole.
    std::thread::sleep(Duration::from_millis(20));
    let zdir = zoo_dir(root.path());
    let tmp = zdir.join("new.zip.tmp");
    pack_model(&std::path::Path::new(ZOO).join(EFF_F), &tmp).unwrap();
    let replaced = std::fs::read(&tmp).unwrap();
    std::fs::rename(&tmp, zdir.join(format!("{EFF_F}.zip"))).unwrap();
    let (st, h, whole) = http(&addr, "GET", &path, &[auth, ("Range", "bytes=5-9"), ("If-Range", &etag)], b"");
    assert_eq!(st, 200);
    assert_eq!(whole, replaced);
    assert_ne!(hdr(&h, "etag"), Some(etag.as_str()), "a replaced archive must get a new tag");
}

#[test]
fn rest_bodies_over_the_json_limit_get_413() {
    let root = hub_root(&[]);
    let hub = start_hub(root.path());
    let addr = hub.addr().to_string();
    let big = vec![b' '; (1 << 20) + 1];
    let (st, h, body) = http(&addr, "POST", "/zoo/v1/public/tokens", &[("token", TOKEN), ("Content-Type", "application/json")], &big);
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hdr(&h, "content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["detail"], "request body exceeds the limit of 1048576 bytes");
    // Chunked, so no length is declared: counted as it arrives.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "POST /zoo/v1/public/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\ntoken: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for _ in 0..20 {
        write!(s, "{:x}\r\n", 64 << 10).unwrap();
        s.write_all(&vec![b'x'; 64 << 10]).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (st, _, body) = parse_response(&raw);
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&body));
    // A body within the limit reaches the route (this token is no admin: dg-zoo-server's 401).
    let (st, _, body) = http(&addr, "POST", "/zoo/v1/public/tokens", &[("token", TOKEN)], b"{}");
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn health_endpoints() {
    let root = hub_root(&[]);
    let hub = start_hub(root.path());
    let addr = hub.addr().to_string();
    let (st, _, body) = http(&addr, "GET", "/v2/health/live", &[], b"");
    assert_eq!((st, serde_json::from_slice::<Value>(&body).unwrap()["live"].as_bool()), (200, Some(true)));
    let (st, _, body) = http(&addr, "GET", "/v2/health/ready", &[], b"");
    assert_eq!((st, serde_json::from_slice::<Value>(&body).unwrap()["ready"].as_bool()), (200, Some(true)));
    // The hub's own routes are untouched by the probes.
    assert_eq!(http(&addr, "GET", "/v2/health/other", &[], b"").0, 404);
    assert_eq!(http(&addr, "GET", "/zoo/version", &[], b"").0, 200);
}

#[test]
fn clients_that_never_read_a_download_block_nobody() {
    let root = hub_root(&[EFF_F, EFF_Q]);
    let hub = start_hub(root.path());
    let addr = hub.addr().to_string();
    let path = download_path(EFF_F);
    // 100 clients ask for the archive and never read a byte of it.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\ntoken: {TOKEN}\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (st, _, list) = http(&addr, "GET", &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}"), &[("token", TOKEN)], b"");
    assert_eq!(st, 200);
    assert!(serde_json::from_slice::<Value>(&list).unwrap().get(EFF_Q).is_some());
    let (st, _, bytes) = http(&addr, "GET", &download_path(EFF_Q), &[("token", TOKEN)], b"");
    assert_eq!(st, 200);
    assert_eq!(bytes, std::fs::read(zoo_dir(root.path()).join(format!("{EFF_Q}.zip"))).unwrap());
    assert!(t.elapsed() < Duration::from_secs(10), "list + download took {:?} beside 100 stalled readers", t.elapsed());
    drop(stalled);
}

const PREDICT_SCRIPT: &str = r#"
import sys, json, faulthandler, degirum as dg
faulthandler.dump_traceback_later(120, exit=True)
url, tok, img, name = sys.argv[1:5]
m = dg.connect(dg.CLOUD, url, tok).load_model(name, input_image_format="RAW")
print("JSON" + json.dumps(m.predict(img).results), flush=True)
import os
os._exit(0)
"#;

fn raw_upgrade(port: u16) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://127.0.0.1:{port}/api/v2/socket.io/?transport=websocket&EIO=4");
    tungstenite::client::client(url.as_str(), sock).map(|(ws, _)| ws).map_err(|e| e.to_string())
}

#[test]
fn idle_socketio_upgrades_do_not_lock_out_a_pysdk_client() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_F]);
    let hub = start_hub(root.path());
    let port = hub.addr().port();
    // 300 upgrades that never send CONNECT (no token): the cap is 256, so some are refused.
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match raw_upgrade(port) {
            Ok(ws) => idle.push(ws),
            Err(e) => {
                assert!(e.contains("503"), "{e}");
                refused += 1;
            }
        }
    }
    println!("idle upgrades: {} open, {refused} refused; hub counts {}", idle.len(), hub.inference_connections());
    // (More than the cap only if the loop outlived EVICT_AFTER and idle ones were evicted.)
    assert!(idle.len() >= dgzoo_server::hub::infer::MAX_CONNECTIONS, "{} open", idle.len());
    // Once they are older than EVICT_AFTER, a real client takes a slot of one of them.
    std::thread::sleep(dgzoo_server::hub::infer::EVICT_AFTER + Duration::from_millis(200));
    let home = tempfile::tempdir().unwrap();
    let img = format!("{ZOO}/images/cat_224.jpg");
    let t = Instant::now();
    let (ok, out, err) = run_pysdk(&peer, home.path(), PREDICT_SCRIPT, &[&hub_url(&hub), TOKEN, &img, EFF_F]);
    assert!(ok, "{out}\n{err}");
    let got: Value = serde_json::from_str(out.lines().find_map(|l| l.strip_prefix("JSON")).expect("results")).unwrap();
    assert_close(&got, &golden(EFF_F, "cat_224.jpg"), 1e-4, "PySDK beside 256 idle upgrades");
    println!("PySDK predict beside the idle upgrades: {:?}", t.elapsed());
    // The idle ones are closed after CONNECT_TIMEOUT.
    let t = Instant::now();
    while hub.inference_connections() > 0 {
        assert!(t.elapsed() < dgzoo_server::hub::infer::CONNECT_TIMEOUT + Duration::from_secs(10), "idle upgrades still open: {}", hub.inference_connections());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
}

/// `dgzoo hub --port 0` with a descriptor limit, under `prlimit`.
fn spawn_hub_limited(root: &std::path::Path, nofile: u32) -> (ChildGuard, String) {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(dgzoo_bin())
        .args(["hub", "--port", "0", "--zoo"])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) and dgzoo");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let guard = ChildGuard(child);
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    (guard, addr)
}

#[test]
fn hub_survives_running_out_of_file_descriptors() {
    let root = hub_root(&[EFF_F]);
    let (mut child, addr) = spawn_hub_limited(root.path(), 64);
    // Far more connections than descriptors: the hub's accepts fail with EMFILE.
    let hogs: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(hogs.len() > 100, "only {} connections", hogs.len());
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.0.try_wait().unwrap().is_none(), "the hub exited on EMFILE");
    drop(hogs);
    // Descriptors come back: the hub answers again.
    let t = Instant::now();
    loop {
        let r = std::panic::catch_unwind(|| http(&addr, "GET", "/zoo/version", &[], b""));
        if let Ok((200, _, body)) = r {
            assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["version"], "v1");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the hub did not recover from EMFILE");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (st, _, bytes) = http(&addr, "GET", &download_path(EFF_F), &[("token", TOKEN)], b"");
    assert_eq!((st, bytes.len() as u64), (200, std::fs::metadata(zoo_dir(root.path()).join(format!("{EFF_F}.zip"))).unwrap().len()));
    assert!(child.0.try_wait().unwrap().is_none());
}

fn proc_status(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("Threads:"), field("VmRSS:"))
}

#[test]
fn threads_and_memory_with_1000_idle_connections() {
    let root = hub_root(&[EFF_F]);
    let (child, addr) = start_hub_process(root.path());
    let pid = child.0.id();
    assert_eq!(http(&addr, "GET", "/zoo/version", &[], b"").0, 200);
    let (threads0, rss0) = proc_status(pid);
    // Half keep-alive connections after one request, half that never send a byte.
    let mut conns = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i % 2 == 0 {
            write!(s, "GET /zoo/version HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        conns.push(s);
    }
    for s in conns.iter_mut().step_by(2) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).unwrap() > 0);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (threads, rss) = proc_status(pid);
    println!("hub with 1000 idle connections: {threads} threads (idle hub: {threads0}), RSS {rss} KiB (idle hub: {rss0} KiB)");
    // Threads do not follow connections: the shared runtime's workers plus at most its blocking
    // pool's 16 (started by the 500 requests, they idle out after 10 s).
    assert!(threads <= threads0 + dgzoo_server::net::MAX_BLOCKING_THREADS as u64, "threads grew from {threads0} to {threads}");
    assert!(rss < rss0 + 64 * 1024, "RSS grew from {rss0} KiB to {rss} KiB");
    // And the hub still serves.
    let (st, _, _) = http(&addr, "GET", &format!("/zoo/v1/public/models/{ORG}/{ZOONAME}"), &[("token", TOKEN)], b"");
    assert_eq!(st, 200);
    drop(conns);
}
