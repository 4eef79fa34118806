//! A real SeaweedFS (`weed server -s3`: master, volume, filer and the S3 gateway) on 127.0.0.1
//! for the object-storage tests, one per test binary ([`shared`]), with free ports, a temp data
//! directory and an S3 identity (ACCESS_KEY / SECRET_KEY). `weed` comes from
//! scripts/setup-seaweedfs.sh (`DGZOO_SEAWEEDFS` names the binary); without it the tests skip
//! with a reason, unless `DGZOO_REQUIRE_PEER=1` (CI), where it is a failure.
//!
//! `weed` runs under a small shell that kills it (and removes its data) when its stdin closes:
//! the test binary holds the pipe's other end, so the server ends with the test process even
//! though a static is never dropped.
#![allow(dead_code)]
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "dgzoo-test-key";
pub const SECRET_KEY: &str = "dgzoo-test-secret";

pub struct Seaweed {
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub filer: String,
    _child: Mutex<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

/// The `weed` binary, or `None` (after printing SKIP) when it is not installed.
pub fn weed_bin() -> Option<PathBuf> {
    let p = std::env::var_os("DGZOO_SEAWEEDFS").map(PathBuf::from).unwrap_or_else(|| {
        let cache =
            std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
        cache.join("dgzoo/seaweedfs/bin/weed")
    });
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("DGZOO_REQUIRE_PEER").is_ok_and(|v| v == "1") {
        panic!("SeaweedFS not found at {} and DGZOO_REQUIRE_PEER=1 (run scripts/setup-seaweedfs.sh)", p.display());
    }
    eprintln!("SKIP: SeaweedFS not found at {} (run scripts/setup-seaweedfs.sh)", p.display());
    None
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so no two are the same.
    let ls: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Seaweed {
    fn start(weed: &std::path::Path) -> Seaweed {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let ids = dir.path().join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"dgzoo","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&ids, identities).unwrap();
        let p = free_ports(8);
        let args: Vec<String> = vec![
            "server".into(),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-dir={}", data.display()),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            "-volume.max=0".into(),
            "-master.volumeSizeLimitMB=256".into(),
            "-filer".into(),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            "-s3".into(),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", ids.display()),
            "-metricsPort=0".into(),
        ];
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let mut child = Command::new("bash")
            .arg("-c")
            // SIGKILL: the data is scratch, and weed can take long to stop on SIGTERM. The data
            // directory goes too (the static's TempDir is never dropped).
            .arg(r#""$@" & pid=$!; read -r _; kill -KILL $pid 2>/dev/null; wait $pid; rm -rf "$DGZOO_WEED_DIR""#)
            .env("DGZOO_WEED_DIR", dir.path())
            .arg("weed-guard")
            .arg(weed)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed");
        let stdin = child.stdin.take().unwrap();
        let sw = Seaweed {
            endpoint: format!("http://127.0.0.1:{}", p[6]),
            filer: format!("http://127.0.0.1:{}", p[4]),
            _child: Mutex::new((child, stdin)),
            _dir: dir,
        };
        // Ready when the filer can make a bucket and the S3 gateway answers (403 without a
        // signature): master, volume and filer are up by then.
        let t = Instant::now();
        loop {
            // 201 made, 409 already there (an earlier round of this loop).
            let filer_ok = matches!(ureq::post(&format!("{}/buckets/dgzoo-probe/", sw.filer)).call(), Ok(_) | Err(ureq::Error::Status(409, _)));
            let s3_ok = matches!(ureq::get(&sw.endpoint).call(), Err(ureq::Error::Status(_, _)) | Ok(_));
            if filer_ok && s3_ok {
                break;
            }
            let log = std::fs::read_to_string(sw._dir.path().join("weed.log")).unwrap_or_default();
            assert!(t.elapsed() < Duration::from_secs(60), "SeaweedFS did not start in 60 s:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
        sw
    }

    /// Make a bucket (through the filer: a bucket is its `/buckets/NAME` directory).
    pub fn create_bucket(&self, name: &str) {
        ureq::post(&format!("{}/buckets/{name}/", self.filer)).call().unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
    }

    /// The AWS settings the hub reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The SeaweedFS log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let mut g = self._child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = g.1.write_all(b"\n");
        let _ = g.0.wait();
    }
}

/// The test binary's SeaweedFS, started on first use, with its AWS settings put into this
/// process's environment (the in-process hubs read them); `None` when `weed` is missing.
pub fn shared() -> Option<&'static Seaweed> {
    static SW: OnceLock<Option<Seaweed>> = OnceLock::new();
    SW.get_or_init(|| {
        let weed = weed_bin()?;
        let sw = Seaweed::start(&weed);
        for (k, v) in sw.env() {
            std::env::set_var(k, v);
        }
        Some(sw)
    })
    .as_ref()
}
