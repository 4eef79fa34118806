//! `download-zoo`, `cache ...`, `hub`, `pack-model`: cloud zoos from the command line.
use clap::{Args, Subcommand};
use dgzoo::cache::{archive, Cache, CacheConfig, Entry};
use dgzoo::cloud::CloudClient;
use dgzoo::settings::Settings;
use dgzoo::zoo::address::parse_cloud_url;
use dgzoo::zoo::download_zoo::{self, Progress};
use dgzoo::zoo::filter::Filters;
use dgzoo::{Error, Result};
use dgzoo_server::hub::{Hub, HubConfig};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

/// PySDK's `degirum download-zoo` flags.
#[derive(Args)]
pub struct DownloadZooArgs {
    /// Destination directory (created if missing).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Cloud zoo URL.
    #[arg(long, env = "DGZOO_ZOO_URL", default_value = "https://hub.degirum.com/degirum/public")]
    pub url: String,
    /// Cloud token (default: the one saved by `degirum token install`).
    #[arg(long, env = "DGZOO_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
    #[arg(long = "model_family", alias = "model-family")]
    pub model_family: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, value_parser = ["N2X", "TFLITE", "ONNX", "OPENVINO", "TENSORRT", "RKNN"])]
    pub runtime: Option<String>,
    #[arg(long, value_parser = ["QUANT", "FLOAT"])]
    pub precision: Option<String>,
    #[arg(long, value_parser = ["PRUNED", "DENSE"])]
    pub pruned: Option<String>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Write the zoo into S3-compatible object storage instead of --path: `s3://BUCKET/PREFIX`,
    /// in the hub's layout (`PREFIX/<org>/<zoo>/<model>.zip`, org and zoo from --url), ready for
    /// `dgzoo hub --zoo s3://BUCKET/PREFIX`. AWS settings come from the environment.
    #[arg(long)]
    pub to: Option<String>,
}

/// Progress: bars on a terminal, one line per finished model otherwise.
struct Reporter {
    bars: Option<(indicatif::MultiProgress, Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>)>,
}

impl CacheCommand {
    /// Whether errors are wanted as JSON.
    pub fn json(&self) -> bool {
        match self {
            CacheCommand::Ls { json } | CacheCommand::Prune { json, .. } | CacheCommand::Verify { json } | CacheCommand::Fetch { json, .. } => *json,
            CacheCommand::Rm { .. } => false,
        }
    }
}

impl Progress for Reporter {
    fn start(&self, model: &str) {
        if let Some((mp, bars)) = &self.bars {
            let pb = mp.add(indicatif::ProgressBar::new(0));
            pb.set_style(crate::progress::style());
            pb.set_message(model.to_string());
            bars.lock().unwrap_or_else(|p| p.into_inner()).insert(model.to_string(), pb);
        }
    }
    fn bytes(&self, model: &str, got: u64, total: u64) {
        if let Some((_, bars)) = &self.bars {
            if let Some(pb) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(model) {
                pb.set_length(total);
                pb.set_position(got);
            }
        }
    }
    fn done(&self, model: &str, result: &Result<()>) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(pb) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(model) {
                    match result {
                        Ok(()) => pb.finish(),
                        Err(e) => pb.abandon_with_message(format!("{model}: FAILED: {e}")),
                    }
                }
            }
            None => match result {
                Ok(()) => println!("{model}"),
                Err(e) => eprintln!("{model}: FAILED: {e}"),
            },
        }
    }
}

pub fn download_zoo(a: DownloadZooArgs) -> Result<()> {
    let mut f = serde_json::Map::new();
    for (k, v) in [("model_family", &a.model_family), ("device", &a.device), ("runtime", &a.runtime), ("precision", &a.precision), ("pruned", &a.pruned)] {
        if let Some(v) = v {
            f.insert(k.into(), json!(v));
        }
    }
    let filters = Filters::from_json(&Value::Object(f))?;
    if let Some(to) = &a.to {
        return download_zoo_to_s3(&a, to, &filters);
    }
    if !a.path.is_dir() {
        std::fs::create_dir(&a.path).map_err(|e| Error::io(format!("Cannot create '{}': {e}", a.path.display())))?;
    }
    let (client, models) = download_zoo::select(&a.url, &a.token, &filters, Settings::process())?;
    println!("Downloading models\n  from '{}'\n  into '{}'", a.url, a.path.display());
    let tty = std::io::stderr().is_terminal();
    let reporter = Reporter { bars: tty.then(|| (indicatif::MultiProgress::new(), Mutex::new(Default::default()))) };
    let failures = download_zoo::download_all(&client, &models, &a.path, a.jobs, &reporter);
    download_summary(models.len(), &failures)
}

/// One model of `download-zoo --to s3://...`: downloaded and verified into a temp directory,
/// packed as `<m>.zip`, put into the bucket as `<org>/<zoo>/<m>.zip`.
fn copy_to_bucket(
    client: &CloudClient,
    m: &str,
    bucket: &dgzoo_server::hub::s3::S3Zoo,
    zoo: &dgzoo::zoo::address::CloudZoo,
    to: &str,
    reporter: &Reporter,
) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io(format!("Cannot create a temporary directory: {e}")))?;
    let dir = download_zoo::download_model(client, m, tmp.path(), &mut |g, t| reporter.bytes(m, g, t))?;
    let zip = tmp.path().join(format!("{m}.zip"));
    archive::pack_model(&dir, &zip)?;
    bucket.put_file(&[&zoo.org, &zoo.zoo, &format!("{m}.zip")], &zip).map_err(|e| Error::io(format!("Cannot put {m}.zip into {to}: {e}")))
}

/// `download-zoo --to s3://...`: each selected model is downloaded and verified into a local
/// temp directory (as for --path), packed as a hub archive and put into the bucket, then its
/// local copy is deleted (local disk holds at most the models in flight).
fn download_zoo_to_s3(a: &DownloadZooArgs, to: &str, filters: &Filters) -> Result<()> {
    let zoo = parse_cloud_url(&a.url).ok_or_else(|| Error::invalid(format!("ZooManager: incorrect cloud model zoo URL '{}'", a.url)))?;
    // Checks the bucket and credentials before anything is downloaded.
    let bucket = dgzoo_server::hub::s3::S3Zoo::open(to, dgzoo_server::hub::s3::LISTING_TTL).map_err(Error::io)?;
    let (client, models) = download_zoo::select(&a.url, &a.token, filters, Settings::process())?;
    println!("Downloading models\n  from '{}'\n  into '{}/{}/{}'", a.url, to.trim_end_matches('/'), zoo.org, zoo.zoo);
    let tty = std::io::stderr().is_terminal();
    let reporter = Reporter { bars: tty.then(|| (indicatif::MultiProgress::new(), Mutex::new(Default::default()))) };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..a.jobs.clamp(1, 16).min(models.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(m) = models.get(i) else { break };
                reporter.start(m);
                let r = copy_to_bucket(&client, m, &bucket, &zoo, to, &reporter);
                reporter.done(m, &r);
                if let Err(e) = r {
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push((m.clone(), e));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    download_summary(models.len(), &failures)
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List cached cloud models, least recently used first.
    Ls {
        #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
        json: bool,
    },
    /// Remove cached models: `MODEL` (any zoo) or `ZOO_KEY/MODEL`; --all removes everything not in use.
    Rm {
        models: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Evict least recently used models until the cache fits in --limit bytes (default: the cap).
    Prune {
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
        json: bool,
    },
    /// Check every cached model's files against its checksum.
    Verify {
        #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
        json: bool,
    },
    /// Download one model of a cloud zoo into the cache (or check the cached copy is current).
    Fetch {
        /// Cloud zoo URL (http(s)://host[:port]/org/zoo).
        #[arg(long, env = "DGZOO_ZOO_URL")]
        url: String,
        #[arg(long, env = "DGZOO_TOKEN", hide_env_values = true, default_value = "")]
        token: String,
        model: String,
        /// The reply is JSON either way; errors as JSON too.
        #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
        json: bool,
    },
}

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

fn print_entries(entries: &[Entry], as_json: bool) {
    if as_json {
        println!("{}", Value::Array(entries.iter().map(Entry::to_json).collect()));
    } else {
        for e in entries {
            println!("{:>12}  {}/{}", e.size, e.zoo_key, e.model);
        }
    }
}

pub fn cache(a: CacheArgs) -> Result<()> {
    let cache = Cache::new(CacheConfig::from_settings(Settings::process()));
    match a.command {
        CacheCommand::Ls { json } => print_entries(&cache.entries(), json),
        CacheCommand::Rm { models, all } => {
            let entries = cache.entries();
            let mut errors = Vec::new();
            let mut matched = 0;
            for e in &entries {
                let full = format!("{}/{}", e.zoo_key, e.model);
                if all || models.iter().any(|m| *m == e.model || *m == full) {
                    matched += 1;
                    match cache.remove(e) {
                        Ok(_) => println!("removed {full}"),
                        Err(err) => errors.push(err.message),
                    }
                }
            }
            if !all && matched == 0 {
                return Err(Error::not_found(format!("No cached model matches {}", models.join(", "))));
            }
            if !errors.is_empty() {
                return Err(Error::io(errors.join("; ")));
            }
        }
        CacheCommand::Prune { limit, json } => print_entries(&cache.prune(limit)?, json),
        CacheCommand::Verify { json } => {
            let results = cache.verify();
            let bad = results.iter().filter(|(_, r)| r.is_err()).count();
            if json {
                let v: Vec<Value> = results
                    .iter()
                    .map(|(e, r)| {
                        let mut j = e.to_json();
                        j["ok"] = json!(r.is_ok());
                        if let Err(err) = r {
                            j["error"] = json!(err.message);
                        }
                        j
                    })
                    .collect();
                println!("{}", Value::Array(v));
            } else {
                for (e, r) in &results {
                    match r {
                        Ok(()) => println!("ok      {}/{}", e.zoo_key, e.model),
                        Err(err) => println!("BAD     {}/{}: {err}", e.zoo_key, e.model),
                    }
                }
            }
            if bad > 0 {
                return Err(Error::bad_model(format!("{bad} cached model(s) failed verification")));
            }
        }
        CacheCommand::Fetch { url, token, model, .. } => {
            let zoo = parse_cloud_url(&url).ok_or_else(|| Error::invalid(format!("ZooManager: incorrect cloud model zoo URL '{url}'")))?;
            let token = dgzoo::cloud::token::resolve(&token, &zoo.base(), Settings::process());
            let client = CloudClient::new(&zoo, &token);
            let pb = crate::progress::bar(&model);
            let held = cache.fetch(&client, &model, &mut crate::progress::callback(&pb));
            pb.finish_and_clear();
            let held = held?;
            println!("{}", json!({"model": model, "path": held.dir, "downloaded": held.downloaded}));
        }
    }
    Ok(())
}

/// `dgzoo hub`: serve a zoo root like dg-zoo-server.
#[derive(Args)]
pub struct HubArgs {
    /// Zoo root: tokens.json and <org>/<zoo>/<model>.zip, in a directory or in S3-compatible
    /// object storage (`s3://BUCKET/PREFIX`, with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_REGION from the environment).
    #[arg(long, env = "DGZOO_HUB_ZOO", default_value = "./zoo")]
    pub zoo: PathBuf,
    /// With an s3:// zoo: how long (ms) a bucket listing and the tokens.json version are reused,
    /// i.e. the longest a model or token change made by another replica takes to show here.
    #[arg(long, env = "DGZOO_HUB_LISTING_TTL_MS", default_value_t = 2000)]
    pub listing_ttl_ms: u64,
    #[arg(long, env = "DGZOO_HUB_PORT", default_value_t = 8878)]
    pub port: u16,
    #[arg(long, env = "DGZOO_HUB_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Accepted for compatibility and ignored: the hub runs on the servers' shared runtime,
    /// with a bounded blocking pool.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Throttle each download to this many bytes per second.
    #[arg(long)]
    pub rate_limit: Option<u64>,
    /// Print one line per request on stderr.
    #[arg(long)]
    pub log: bool,
    /// Run cloud inference on these AI servers (host:port, http://host:port; repeatable),
    /// least-busy first, instead of this machine's runtimes. They must serve the zoo's
    /// models under their simple names.
    #[arg(long = "aiserver")]
    pub aiservers: Vec<String>,
    /// Add a new token to the zoo root's tokens.json, print it and exit (the way to make the
    /// first admin token: the hub gives none to requests without an admin token).
    #[arg(long)]
    pub new_token: bool,
    /// With --new-token: the new token has admin rights.
    #[arg(long, requires = "new_token")]
    pub admin: bool,
    /// Operator token for the administrative routes (`Authorization: Bearer`), in addition to
    /// the admin tokens of tokens.json; the AI server's --admin-token.
    #[arg(long, env = "DGZOO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds a connection may stay idle (no bytes either way, no request in progress)
    /// before it is closed.
    #[arg(long, default_value_t = dgzoo_server::hub::listen::Limits::default().idle.as_secs_f64())]
    pub idle_timeout: f64,
    /// Seconds a client has to send a whole request head.
    #[arg(long, default_value_t = dgzoo_server::hub::listen::Limits::default().header_read.as_secs_f64())]
    pub header_timeout: f64,
    /// Log line format on stderr.
    #[arg(long, env = "DGZOO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::server::LogFormat,
}

/// `s3://...` when the argument names object storage.
fn s3_url(p: &std::path::Path) -> Option<String> {
    p.to_str().filter(|s| s.starts_with("s3://")).map(str::to_string)
}

pub fn hub(a: HubArgs) -> Result<()> {
    let s3 = s3_url(&a.zoo);
    let ttl = std::time::Duration::from_millis(a.listing_ttl_ms);
    if a.new_token {
        let store = match &s3 {
            Some(url) => dgzoo_server::hub::store::Store::with_storage(Box::new(dgzoo_server::hub::s3::S3Zoo::open(url, ttl).map_err(Error::io)?)),
            None => {
                std::fs::create_dir_all(&a.zoo).map_err(|e| dgzoo::Error::io(format!("Cannot create zoo root '{}': {e}", a.zoo.display())))?;
                dgzoo_server::hub::store::Store::new(&a.zoo)
            }
        };
        let t = dgzoo_server::hub::admin::mint_token(&store, a.admin).map_err(dgzoo::Error::invalid)?;
        println!("{t}");
        return Ok(());
    }
    let cfg = HubConfig {
        root: a.zoo.clone(),
        s3,
        listing_ttl: ttl,
        host: a.host,
        port: a.port,
        threads: a.threads,
        rate_limit: a.rate_limit,
        log: a.log,
        admin_token: a.admin_token.clone(),
        limits: dgzoo_server::hub::listen::Limits {
            idle: crate::server::seconds("idle-timeout", a.idle_timeout, false)?,
            header_read: crate::server::seconds("header-timeout", a.header_timeout, false)?,
            ..Default::default()
        },
    };
    let hub = Hub::start(&cfg)?;
    if !a.aiservers.is_empty() {
        let pool = a.aiservers.iter().map(|s| dgzoo::zoo::address::ServerAddress::parse(s)).collect::<dgzoo::Result<Vec<_>>>()?;
        hub.set_aiserver_pool(pool);
    }
    // The address line lets scripts and tests find the port when --port 0 is used.
    println!("dgzoo hub listening on http://{} serving zoo root {}", hub.addr(), a.zoo.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    hub.wait();
    Ok(())
}

/// `dgzoo pack-model DIR... --out ZOO_DIR`: make hub archives from model directories.
#[derive(Args)]
pub struct PackArgs {
    /// Model directories (each holding <name>.json and its files).
    pub dirs: Vec<PathBuf>,
    /// Output directory (<org>/<zoo> under a hub root).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn pack(a: PackArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(format!("Cannot create '{}': {e}", a.out.display())))?;
    for d in &a.dirs {
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let out = a.out.join(format!("{name}.zip"));
        archive::pack_model(d, &out)?;
        println!("{}", out.display());
    }
    Ok(())
}

/// `download-zoo`'s last line, and one error listing every model that failed.
fn download_summary(count: usize, failures: &[(String, Error)]) -> Result<()> {
    println!("Downloaded {} model(s)", count - failures.len());
    if failures.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = failures.iter().map(|(m, e)| format!("{m}: {e}")).collect();
    Err(Error::io(format!("{} model(s) failed: {}", failures.len(), list.join("; "))))
}
