//! #13 behind a real load balancer and #14's kill -9 of the AI server, with real processes
//! only: `dgzoo server` and `dgzoo hub` children, Debian's HAProxy running `docs/haproxy.cfg`
//! (the deployment recipe of docs/deploy.md, filled in through its environment variables with
//! free 127.0.0.1 ports), the real PySDK 1.5.0 client and dgzoo's own client.
//!
//! Every batch sends frame `i` as image `IMAGES[i % 3]` with `i` as its id, so each result is
//! checked against its own frame (the three images have different top classes), and frames sent
//! are counted against results plus errors: nothing silently dropped, nothing answered twice.
#[path = "../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use aiserver_common::{image, peer, peer_ld_path, DgzooServer, IMAGES, MODELS};
use dgzoo::pipeline::{AsyncPredictor, OwnedInput};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");
/// The smallest classifier of the shared zoo (EfficientNet-Lite0, TFLite float).
const EFF: &str = MODELS[2];
/// The start of PySDK's text for every frame lost with its connection (asio and WebSocket).
const LOST: &str = "[CRITICAL]Operation failed\n";

fn lost_prefix() -> String {
    format!("Failed to perform model '{EFF}' inference: {LOST}")
}

/// HAProxy's binary, or `None` (after printing SKIP) when it is not installed, unless
/// `DGZOO_REQUIRE_PEER=1` (CI: `scripts/bootstrap.sh haproxy` installs it), which fails.
fn haproxy(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).map(|d| d.join("haproxy")).find(|f| f.is_file()))
        .unwrap_or(None);
    if found.is_none() {
        if std::env::var("DGZOO_REQUIRE_PEER").as_deref() == Ok("1") {
            panic!("{test}: haproxy not found and DGZOO_REQUIRE_PEER=1 (scripts/bootstrap.sh haproxy installs it)");
        }
        eprintln!("SKIP {test}: haproxy not found (scripts/bootstrap.sh haproxy installs it)");
    }
    found
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// kill -9, and wait until it is gone.
    fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

/// Bytes a process has read (`rchar` of /proc/PID/io; file reads, not socket receives): the
/// server that loaded the model since a snapshot is the one carrying the stream.
fn read_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("rchar: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}
fn http_status(port: u16, path: &str) -> Option<u16> {
    dgzoo::protocol::http::request_full("127.0.0.1", port, "GET", path, None, Duration::from_secs(2)).ok().map(|(s, _, _)| s)
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dgzoo server start --protocol both` (asio on `port`, http on `port + 1`), ready; with
/// `port`, in place of a killed one.
fn ai_server(zoo: &Path, port: Option<u16>) -> DgzooServer {
    let spawn = DgzooServer::spawn(zoo);
    match port {
        Some(p) => spawn.port(p),
        None => spawn,
    }
    .start()
}

/// HAProxy on `docs/haproxy.cfg` with free ports for its three fronts.
struct Lb {
    _proc: Proc,
    asio: u16,
    http: u16,
    hub: u16,
}

fn free_port() -> u16 {
    cloud_common::free_port()
}

impl Lb {
    /// `ai`: the two AI servers' asio ports (http = +1); `hubs`: the two hub ports (any free
    /// port when the test has no hub: its backend is simply down).
    fn start(bin: &Path, ai: [u16; 2], hubs: Option<[u16; 2]>) -> Lb {
        let (asio, http, hub) = (free_port(), free_port(), free_port());
        let hubs = hubs.unwrap_or_else(|| [free_port(), free_port()]);
        let cfg = Path::new(env!("DGZOO_REPO")).join("docs/haproxy.cfg");
        let a = |p: u16| format!("127.0.0.1:{p}");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("DGZOO_LB_ASIO", a(asio))
            .env("DGZOO_LB_HTTP", a(http))
            .env("DGZOO_LB_HUB", a(hub))
            .env("DGZOO_AI1", a(ai[0]))
            .env("DGZOO_AI2", a(ai[1]))
            .env("DGZOO_AI1_HTTP", a(ai[0] + 1))
            .env("DGZOO_AI2_HTTP", a(ai[1] + 1))
            .env("DGZOO_AI1_HTTP_PORT", (ai[0] + 1).to_string())
            .env("DGZOO_AI2_HTTP_PORT", (ai[1] + 1).to_string())
            .env("DGZOO_HUB1", a(hubs[0]))
            .env("DGZOO_HUB2", a(hubs[1]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lb = Lb { _proc: Proc(child), asio, http, hub };
        wait_until("HAProxy listening", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", asio)).is_ok());
        lb
    }
    fn asio(&self) -> String {
        format!("127.0.0.1:{}", self.asio)
    }
    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

/// The frames of a batch: frame `i` is image `IMAGES[i % 3]`.
fn frame(i: usize) -> Vec<OwnedInput> {
    vec![OwnedInput::Bytes(std::fs::read(image(IMAGES[i % IMAGES.len()])).unwrap())]
}

/// The top class of each of the three images (from a model on `host`).
fn labels(host: &str) -> Vec<String> {
    labels_on(host, "")
}

/// The same from this process's runtimes: the servers stay untouched, so the one that loads
/// the model (reads its 5 MB file) is the one carrying the batch's stream.
fn local_labels(zoo: &Path) -> Vec<String> {
    labels_on("@local", zoo.to_str().unwrap())
}

fn labels_on(host: &str, zoo_url: &str) -> Vec<String> {
    let m = Zoo::connect(host, zoo_url, "").unwrap().load_model(EFF, &Value::Null).unwrap();
    (0..IMAGES.len())
        .map(|i| {
            let inputs = frame(i);
            let r = dgzoo::model::predict(&m, &inputs.iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
            r.results[0]["label"].as_str().unwrap().to_string()
        })
        .collect()
}

type Outcomes = Arc<Mutex<Vec<(u64, dgzoo::Result<String>)>>>;

/// Run `n` frames through `model` on an async predictor; `during(results so far)` is called
/// while they run (it may kill a server). Returns each frame's outcome by id.
fn run_batch(model: &dgzoo::model::Model, n: usize, mut during: impl FnMut(&Outcomes)) -> Vec<(u64, dgzoo::Result<String>)> {
    let out: Outcomes = Arc::default();
    let o = out.clone();
    let p = AsyncPredictor::new(
        model.clone(),
        8,
        Box::new(move |id, r| o.lock().unwrap().push((id, r.map(|r| r.results[0]["label"].as_str().unwrap_or_default().to_string())))),
    )
    .unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit(i as u64, frame(i)).unwrap();
        during(&out);
    }
    p.wait();
    during(&out);
    assert!(t0.elapsed() < Duration::from_secs(60), "the batch hung: {:?}", t0.elapsed());
    let mut got = out.lock().unwrap().clone();
    got.sort_by_key(|(id, _)| *id);
    got
}

/// Every frame answered exactly once, each result the top class of its own image, each error
/// PySDK's connection-lost text; the errors are the frames in flight at the kill (`at_least`
/// of them, one run of consecutive ids), every later frame succeeds. Returns the error count.
fn check_batch(got: &[(u64, dgzoo::Result<String>)], n: usize, want: &[String], at_least: usize) -> usize {
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..n as u64).collect::<Vec<_>>(), "each frame answered once");
    let mut errs = Vec::new();
    for (id, r) in got {
        match r {
            Ok(label) => assert_eq!(label, &want[*id as usize % want.len()], "frame {id} got another frame's result"),
            Err(e) => {
                assert!(e.message.starts_with(&lost_prefix()), "frame {id}: {:?}", e.message);
                assert_eq!(e.code, dgzoo::Code::Network, "frame {id}");
                errs.push(*id);
            }
        }
    }
    assert!(errs.len() >= at_least, "{} frames failed, expected at least {at_least}", errs.len());
    if let (Some(a), Some(b)) = (errs.first(), errs.last()) {
        assert_eq!((b - a + 1) as usize, errs.len(), "the lost frames are the ones in flight at the kill: {errs:?}");
        assert!((*b as usize) < n - 1, "frames after the kill succeed: {errs:?}");
    }
    errs.len()
}

/// dgzoo's client through HAProxy (asio and http fronts): kill -9 the server carrying a
/// batch in its middle; the frames in flight get PySDK's connection-lost error, the rest of
/// the batch and the next connect land on the survivor.
#[test]
fn dgzoo_client_behind_haproxy_survives_kill9() {
    let Some(hap) = haproxy("dgzoo_client_behind_haproxy_survives_kill9") else { return };
    let zoo = aiserver_common::clean_zoo();
    for front in ["asio", "http"] {
        let mut servers = [ai_server(zoo.path(), None), ai_server(zoo.path(), None)];
        let lb = Lb::start(&hap, [servers[0].port, servers[1].port], None);
        let host = if front == "asio" { lb.asio() } else { lb.http() };
        let want = local_labels(zoo.path());
        let model = Zoo::connect(&host, "", "").unwrap().load_model(EFF, &json!({"inference_timeout_s": 10})).unwrap();
        const N: usize = 40;
        let base: Vec<u64> = servers.iter().map(|s| read_bytes(s.pid())).collect();
        let mut killed = None;
        let got = run_batch(&model, N, |out| {
            if killed.is_none() && out.lock().unwrap().len() >= 10 {
                let busy = (0..2).max_by_key(|&i| read_bytes(servers[i].pid()).saturating_sub(base[i])).unwrap();
                servers[busy].kill9();
                killed = Some(busy);
            }
        });
        let dead = killed.expect("the batch ended before the kill");
        let lost = check_batch(&got, N, &want, 1);
        eprintln!("{front} through HAProxy: server {dead} killed, {lost} of {N} frames lost, the rest answered");
        // The next connect lands on the survivor.
        let survivor = 1 - dead;
        assert!(servers[survivor].alive());
        let again = labels(&host);
        assert_eq!(again, want, "{front}: the survivor answers");
    }
}

/// PySDK's client on one batch, frame `i` = image `i % 3` with id `i`: prints `{"at": K}` when
/// it hands frame K to PySDK (the test kills a server then), each result as `{"ok": id,
/// "label": ...}`, the batch's exception as `{"err": text, "sent": frames handed over,
/// "answered": results}`. After an exception it waits for a line on stdin, connects again and
/// sends the frames from the first unanswered one.
const PYSDK_BATCH: &str = r#"
import sys, json, degirum as dg
host, model, n, at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
imgs = sys.argv[5:8]
def say(**k):
    print(json.dumps(k), flush=True)
def attempt(start, mark):
    m = dg.connect(host).load_model(model, inference_timeout_s=3)
    sent, answered = [], []
    def frames():
        for i in range(start, n):
            if mark and i == at:
                say(at=i)
            sent.append(i)
            yield (imgs[i % 3], i)
    try:
        for r in m.predict_batch(frames()):
            answered.append(r.info)
            say(ok=r.info, label=r.results[0]["label"])
        return None
    except Exception as e:
        say(err=str(e), sent=len(sent), answered=len(answered))
        return start + len(answered)
nxt = attempt(0, True)
if nxt is not None:
    sys.stdin.readline()
    attempt(nxt, False)
say(done=True)
"#;

/// Run [`PYSDK_BATCH`] on `host`; `at_kill()` runs when it reaches frame `at`, `before_retry()`
/// after its exception. Checks every frame was answered exactly once with its own image's
/// class after exactly one exception with PySDK's connection-lost text.
fn pysdk_batch(peer: &Path, host: &str, want: &[String], mut at_kill: impl FnMut(), mut before_retry: impl FnMut()) {
    const N: usize = 30;
    const AT: usize = 12;
    let imgs: Vec<String> = IMAGES.iter().map(|i| image(i).to_string_lossy().into_owned()).collect();
    let mut child = Proc(
        Command::new(peer.join("venv/bin/python"))
            .arg("-c")
            .arg(PYSDK_BATCH)
            .args([host, EFF, &N.to_string(), &AT.to_string()])
            .args(&imgs)
            .env("LD_LIBRARY_PATH", peer_ld_path(peer))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    let mut stdin = child.0.stdin.take().unwrap();
    let out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let (mut oks, mut errs) = (Vec::new(), Vec::new());
    let mut done = false;
    for line in out.lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v.get("at").is_some() {
            at_kill();
        } else if let Some(id) = v["ok"].as_u64() {
            oks.push((id, v["label"].as_str().unwrap().to_string()));
        } else if let Some(e) = v["err"].as_str() {
            errs.push((e.to_string(), v["sent"].as_u64().unwrap(), v["answered"].as_u64().unwrap()));
            before_retry();
            std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
        } else if v.get("done").is_some() {
            done = true;
        }
    }
    assert!(done, "the PySDK client did not finish");
    assert!(t0.elapsed() < Duration::from_secs(90), "the PySDK client hung: {:?}", t0.elapsed());
    let ids: Vec<u64> = oks.iter().map(|(id, _)| *id).collect();
    assert_eq!(errs.len(), 1, "one exception for the frames lost: {errs:?}; answered {ids:?}");
    let (text, sent, answered) = &errs[0];
    assert!(text.starts_with(&lost_prefix()), "{text:?}");
    assert!(sent > answered, "frames were in flight at the kill: sent {sent}, answered {answered}");
    assert_eq!(ids, (0..N as u64).collect::<Vec<_>>(), "each frame answered exactly once");
    for (id, label) in &oks {
        assert_eq!(label, &want[*id as usize % want.len()], "frame {id} got another frame's result");
    }
    eprintln!("PySDK on {host}: {} frames lost with {text:?}, re-sent and answered", sent - answered);
}

/// The real PySDK client through HAProxy (asio and http fronts), kill -9 of the server
/// carrying its batch: one exception with PySDK's text, the re-sent frames land on the
/// survivor, nothing dropped or answered twice.
#[test]
fn pysdk_client_behind_haproxy_survives_kill9() {
    let Some(hap) = haproxy("pysdk_client_behind_haproxy_survives_kill9") else { return };
    let Some(peer) = peer("pysdk_client_behind_haproxy_survives_kill9") else { return };
    let zoo = aiserver_common::clean_zoo();
    for front in ["asio", "http"] {
        let mut servers = [ai_server(zoo.path(), None), ai_server(zoo.path(), None)];
        let lb = Lb::start(&hap, [servers[0].port, servers[1].port], None);
        let want = local_labels(zoo.path());
        let host = if front == "asio" { lb.asio() } else { lb.http() };
        let base: Vec<u64> = servers.iter().map(|s| read_bytes(s.pid())).collect();
        let mut killed = None;
        pysdk_batch(
            &peer,
            &host,
            &want,
            || {
                let d: Vec<u64> = (0..2).map(|i| read_bytes(servers[i].pid()).saturating_sub(base[i])).collect();
                let busy = if d[0] >= d[1] { 0 } else { 1 };
                eprintln!("{front}: bytes read since the start {d:?}: killing server {busy}");
                servers[busy].kill9();
                killed = Some(busy);
            },
            || {},
        );
        let dead = killed.expect("killed a server");
        assert!(servers[1 - dead].alive());
    }
}

/// #14 without a load balancer: kill -9 of the AI server mid-batch (PySDK's client and
/// dgzoo's, asio and http) and mid-stream (one `predict` after another): PySDK's texts, no
/// hang, and once the server is back on its port the next connect (and the same model
/// object) works.
#[test]
fn kill9_mid_batch_and_mid_stream_then_restart() {
    let zoo = aiserver_common::clean_zoo();
    let mut server = ai_server(zoo.path(), None);
    let port = server.port;
    let want = labels(&server.asio());
    if let Some(peer) = peer("kill9_mid_batch_and_mid_stream_then_restart") {
        for host in [format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{}", port + 1)] {
            let srv = std::cell::RefCell::new(&mut server);
            pysdk_batch(&peer, &host, &want, || srv.borrow_mut().kill9(), || **srv.borrow_mut() = ai_server(zoo.path(), Some(port)));
        }
    }
    for host in [format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{}", port + 1)] {
        // Mid-batch, dgzoo's client.
        let model = Zoo::connect(&host, "", "").unwrap().load_model(EFF, &json!({"inference_timeout_s": 10})).unwrap();
        const N: usize = 24;
        let mut killed = false;
        let got = run_batch(&model, N, |out| {
            if !killed && out.lock().unwrap().len() >= 8 {
                server.kill9();
                killed = true;
            }
        });
        assert!(killed);
        // Every frame after the kill fails too (nothing to fail over to), each with an error.
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..N as u64).collect::<Vec<_>>(), "each frame answered once");
        let first_err = got.iter().position(|(_, r)| r.is_err()).expect("frames were lost");
        for (id, r) in &got[first_err..] {
            let e = r.as_ref().expect_err("no server: every later frame fails");
            let refused = e.message.contains("Error connecting to 127.0.0.1:")
                || e.message.contains("Could not establish connection")
                || e.message.contains("Connection refused");
            assert!(e.message.starts_with(&lost_prefix()) || refused, "frame {id}: {:?}", e.message);
        }
        assert!(got[first_err].1.as_ref().unwrap_err().message.starts_with(&lost_prefix()));
        for (id, r) in &got[..first_err] {
            assert_eq!(r.as_ref().unwrap(), &want[*id as usize % 3]);
        }
        server = ai_server(zoo.path(), Some(port));
        // The same model object works again (a new stream), and so does a new connect.
        let r = dgzoo::model::predict(&model, &frame(1).iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.results[0]["label"].as_str().unwrap(), want[1]);
        assert_eq!(labels(&host), want);

        // Mid-stream: single predicts on the model's pooled stream, the server killed between
        // two of them; the first predict after the kill fails (or reconnects) without hanging.
        server.kill9();
        let t0 = Instant::now();
        let e = dgzoo::model::predict(&model, &frame(0).iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(15), "predict hung: {:?}", t0.elapsed());
        assert_eq!(e.code, dgzoo::Code::Network, "{}", e.message);
        assert!(e.message.starts_with(&format!("Failed to perform model '{EFF}' inference: ")), "{}", e.message);
        server = ai_server(zoo.path(), Some(port));
        let r = dgzoo::model::predict(&model, &frame(2).iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.results[0]["label"].as_str().unwrap(), want[2]);
    }
}

/// Fail-over without a load balancer: `dg_connect`'s host as `a:port,b:port`. Killing the
/// server in use mid-batch fails the frames in flight (PySDK's text); the same zoo and model
/// go on on the other server. Also over http (health from `/v2/health/ready`), and a list
/// whose servers are all dead gives one error naming each.
#[test]
fn failover_list_without_a_load_balancer() {
    let zoo = aiserver_common::clean_zoo();
    for http in [false, true] {
        let mut servers = [ai_server(zoo.path(), None), ai_server(zoo.path(), None)];
        let addr = |s: &DgzooServer| if http { format!("http://127.0.0.1:{}", s.port + 1) } else { s.asio() };
        let list = format!("{},{}", addr(&servers[0]), addr(&servers[1]));
        let z = Zoo::connect(&list, "", "").unwrap();
        let want = local_labels(zoo.path());
        let model = z.load_model(EFF, &json!({"inference_timeout_s": 10})).unwrap();
        const N: usize = 30;
        let mut killed = false;
        let got = run_batch(&model, N, |out| {
            if !killed && out.lock().unwrap().len() >= 8 {
                // The first server of the list is the one in use.
                servers[0].kill9();
                killed = true;
            }
        });
        assert!(killed);
        let lost = check_batch(&got, N, &want, 1);
        eprintln!("fail-over list (http: {http}): {lost} of {N} frames lost at the kill, the rest answered by the other server");
        assert_eq!(z.ai_server().unwrap().server(), format!("127.0.0.1:{}", servers[1].port + http as u16));
        // The same zoo and model keep working on the other server.
        assert!(z.list_names(&dgzoo::zoo::filter::Filters::default()).unwrap().iter().any(|m| m == EFF));
        let fresh = z.load_model(EFF, &Value::Null).unwrap();
        let r = dgzoo::model::predict(&fresh, &frame(1).iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.results[0]["label"].as_str().unwrap(), want[1]);
        let r = dgzoo::model::predict(&model, &frame(0).iter().map(|x| x.as_input()).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.results[0]["label"].as_str().unwrap(), want[0]);
        assert_eq!(labels(&list), want, "a new connect with the same list works");
    }
    // Every server dead: one error naming them all.
    let (a, b) = (free_port(), free_port());
    let e = Zoo::connect(&format!("127.0.0.1:{a},127.0.0.1:{b}"), "", "").unwrap_err();
    assert_eq!(e.code, dgzoo::Code::Network);
    assert!(e.message.starts_with(&format!("None of the AI servers '127.0.0.1:{a},127.0.0.1:{b}' can be reached: 127.0.0.1:{a}: ")), "{}", e.message);
    assert!(e.message.contains(&format!("; 127.0.0.1:{b}: ")) && e.message.contains("Connection refused"), "{}", e.message);
}

/// A graceful shutdown of one server behind HAProxy loses nothing: its readiness turns false
/// at once, HAProxy's checks take it out within the 1.5 s it keeps serving, and short batches
/// running all along are all answered (by both servers, then by the survivor).
#[test]
fn graceful_shutdown_behind_haproxy_loses_nothing() {
    let Some(hap) = haproxy("graceful_shutdown_behind_haproxy_loses_nothing") else { return };
    let zoo = aiserver_common::clean_zoo();
    let mut servers = [ai_server(zoo.path(), None), ai_server(zoo.path(), None)];
    let lb = Lb::start(&hap, [servers[0].port, servers[1].port], None);
    let want = local_labels(zoo.path());
    let model = Zoo::connect(&lb.asio(), "", "").unwrap().load_model(EFF, &Value::Null).unwrap();
    let (mut frames, mut batches) = (0usize, 0usize);
    let mut shutdown_at = None;
    let t0 = Instant::now();
    loop {
        let batch: Vec<Vec<OwnedInput>> = (0..4).map(frame).collect();
        let got = dgzoo::pipeline::predict_batch(&model, batch).unwrap();
        for (i, r) in got.iter().enumerate() {
            let r = r.as_ref().unwrap_or_else(|e| panic!("batch {batches} frame {i} lost: {}", e.message));
            assert_eq!(r.results[0]["label"].as_str().unwrap(), want[i % 3]);
        }
        frames += got.len();
        batches += 1;
        if batches == 3 {
            let out = Command::new(BIN).args(["server", "shutdown", "--port", &servers[0].port.to_string()]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            shutdown_at = Some(Instant::now());
        }
        if shutdown_at.is_some_and(|t| t.elapsed() > Duration::from_secs(4)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "batches too slow");
    }
    wait_until("the shut-down server exits", Duration::from_secs(15), || !servers[0].alive());
    assert!(servers[1].alive());
    eprintln!("graceful shutdown behind HAProxy: {batches} batches, {frames} frames, none lost");
}

/// Two hub replicas over one zoo folder behind HAProxy: one is killed (-9) in the middle of a
/// model download; the cache keeps what it got, and its next fetch resumes with `Range`
/// through the other replica and verifies the whole archive.
#[test]
fn hub_replica_killed_mid_download_resumes_on_the_other() {
    use cloud_common::{hub_root, EFF_Q, ORG, TOKEN, ZOONAME};
    let Some(hap) = haproxy("hub_replica_killed_mid_download_resumes_on_the_other") else { return };
    let root = hub_root(&[EFF_Q]);
    let hub = |port: u16| {
        let child = Command::new(BIN)
            .args(["hub", "--port", &port.to_string(), "--rate-limit", "2000000", "--zoo"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Proc(child);
        wait_until("hub ready", Duration::from_secs(20), || http_status(port, "/v2/health/ready") == Some(200));
        p
    };
    let ports = [free_port(), free_port()];
    let mut hubs = [hub(ports[0]), hub(ports[1])];
    let ai = [free_port(), free_port()];
    let lb = Lb::start(&hap, ai, Some(ports));
    wait_until("hubs up behind HAProxy", Duration::from_secs(10), || http_status(lb.hub, "/v2/health/ready") == Some(200));
    let url = format!("http://127.0.0.1:{}/{ORG}/{ZOONAME}", lb.hub);
    let zoo = dgzoo::zoo::address::parse_cloud_url(&url).unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let cache = Arc::new(dgzoo::cache::Cache::new(cloud_common::cache_cfg(cdir.path())));
    let zoo_cache = cache.zoo_dir(&zoo).unwrap();
    let resume = zoo_cache.join(format!(".partial/{EFF_Q}.dl-resume.zip"));
    let base: Vec<u64> = hubs.iter().map(|h| read_bytes(h.pid())).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (cache, zoo) = (cache.clone(), zoo.clone());
        std::thread::spawn(move || {
            let c = dgzoo::cloud::CloudClient::new(&zoo, TOKEN);
            let _ = tx.send(cache.fetch(&c, EFF_Q, &mut |_, _| {}).map(|h| h.dir.clone()));
        });
    }
    wait_until("download under way", Duration::from_secs(20), || std::fs::metadata(&resume).is_ok_and(|m| m.len() >= 1 << 20));
    let busy = (0..2).max_by_key(|&i| read_bytes(hubs[i].pid()).saturating_sub(base[i])).unwrap();
    hubs[busy].kill9();
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("the interrupted download hung");
    assert!(first.is_err(), "the download from the killed replica cannot have completed");
    let kept = std::fs::metadata(&resume).unwrap().len();
    let size = std::fs::metadata(cloud_common::zoo_dir(root.path()).join(format!("{EFF_Q}.zip"))).unwrap().len();
    assert!(kept >= 1 << 20 && kept < size, "kept {kept} of {size}");
    // The retry goes through HAProxy to the surviving replica and resumes.
    let c = dgzoo::cloud::CloudClient::new(&zoo, TOKEN);
    let mut first_report = None;
    let held = cache
        .fetch(&c, EFF_Q, &mut |got, total| {
            first_report.get_or_insert((got, total));
        })
        .unwrap();
    assert!(held.downloaded);
    let (got, total) = first_report.unwrap();
    assert_eq!(total, size);
    assert!(got > kept, "resumed: first report at {got} bytes, {kept} were kept");
    dgzoo::cache::verify_model_dir(&held.dir, EFF_Q, None).unwrap();
    assert!(hubs[1 - busy].alive());
    eprintln!("hub replica {busy} killed at {kept} of {size} bytes; resumed through the other");
}
