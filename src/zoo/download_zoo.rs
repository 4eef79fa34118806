//! `download-zoo` (zoo-and-filters.md §9): list a cloud zoo with PySDK's filters (device
//! filter against the cloud's system info, as `ZooManager("@cloud", ...)` does) and unpack
//! every selected model archive into `<dest>/<m>/`, several at a time. Each archive is
//! streamed to a temp file, validated and extracted into a temp directory that replaces
//! `<dest>/<m>` only when complete.
use crate::address::parse_cloud_url;
use crate::cache::archive;
use crate::cloud::CloudClient;
use crate::error::{Error, Result};
use crate::filter::{self, Filters};
use crate::params::ModelParams;
use crate::zoo::system_pairs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Progress events for one model.
pub trait Progress: Sync {
    fn start(&self, model: &str);
    fn bytes(&self, model: &str, got: u64, total: u64);
    fn done(&self, model: &str, result: &Result<()>);
}

/// Resolve the zoo URL and token, list and filter the models.
pub fn select(url: &str, token: &str, filters: &Filters, settings: &crate::settings::Settings) -> Result<(CloudClient, Vec<String>)> {
    let zoo = parse_cloud_url(url).ok_or_else(|| Error::invalid(format!("ZooManager: incorrect cloud model zoo URL '{url}'")))?;
    let token = crate::cloud::token::resolve(token, &zoo.base(), settings);
    let client = CloudClient::new(&zoo, &token);
    if token != crate::cloud::SKIP_TOKEN {
        client.zoos_check()?;
    }
    let list = client.list_models(false)?;
    let system = client.system_info()?;
    let parsed: Vec<(String, ModelParams)> = list.into_iter().filter_map(|(n, v)| ModelParams::from_value(v).ok().map(|p| (n, p))).collect();
    let refs: Vec<(&str, &ModelParams)> = parsed.iter().map(|(n, p)| (n.as_str(), p)).collect();
    let names = filter::apply(&refs, filters, &system_pairs(&system)).into_iter().map(|i| parsed[i].0.clone()).collect();
    Ok((client, names))
}

/// Download one model archive into `dest/<model>/`.
pub fn download_model(client: &CloudClient, model: &str, dest: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<PathBuf> {
    archive::check_model_name(model)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{model}.partial-"))
        .tempdir_in(dest)
        .map_err(|e| Error::io(format!("Cannot create a temporary directory in '{}': {e}", dest.display())))?;
    let unpacked = tmp.path().join(model);
    crate::cache::download_verified(
        client,
        model,
        &tmp.path().join("archive.zip"),
        &unpacked,
        None,
        crate::cache::archive::Limits::default().max_total_bytes,
        progress,
    )?;
    let target = dest.join(model);
    if target.exists() {
        let old = tmp.path().join("old");
        std::fs::rename(&target, &old).map_err(|e| Error::io(format!("Cannot replace '{}': {e}", target.display())))?;
    }
    std::fs::rename(&unpacked, &target).map_err(|e| Error::io(format!("Cannot create '{}': {e}", target.display())))?;
    Ok(target)
}

/// Download `models` into `dest` with `jobs` parallel downloads; returns the failures.
pub fn download_all(client: &CloudClient, models: &[String], dest: &Path, jobs: usize, progress: &dyn Progress) -> Vec<(String, Error)> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 16).min(models.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(m) = models.get(i) else { break };
                progress.start(m);
                let r = download_model(client, m, dest, &mut |g, t| progress.bytes(m, g, t)).map(|_| ());
                progress.done(m, &r);
                if let Err(e) = r {
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push((m.clone(), e));
                }
            });
        }
    });
    failures.into_inner().unwrap_or_else(|p| p.into_inner())
}
