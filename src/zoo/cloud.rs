//! Local inference with a cloud zoo (zoo-and-filters.md §4 "local HW + cloud zoo"): the model
//! list and info come from the cloud, `load_model` brings the archive into the model cache and
//! builds a local model from the cached copy, with `CloudModelName`/`CloudURL`/`CloudToken`
//! set as PySDK does. Offline mode answers from the cache alone.
use super::address::CloudZoo;
use super::filter::{self, DevicePair};
use super::local::ZooEntry;
use crate::cache::{Cache, CacheConfig, CachedModel};
use crate::cloud::{token, CloudClient, SKIP_TOKEN};
use crate::error::{Code, Error, Result};
use crate::model::Model;
use crate::params::ModelParams;
use crate::settings::Settings;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Options of `Zoo::connect_with` beyond PySDK's three arguments.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The environment as read by the caller; `None` = read at connect.
    pub settings: Option<Settings>,
    /// Cache settings; `None` = the settings' (`CacheConfig::from_settings`).
    pub cache: Option<CacheConfig>,
    /// Force offline (`Some(true)`) or online (`Some(false)`); `None` = the cache config's.
    pub offline: Option<bool>,
    /// Skip the zoo existence check at connect (as the token `__SKIP__` does in PySDK), for a
    /// caller that only loads models: the load's own request then reports a bad token or zoo.
    pub skip_zoo_check: bool,
}

/// The cloud side of a `Zoo`.
#[derive(Debug)]
pub struct CloudAccess {
    pub client: CloudClient,
    pub cache: Cache,
}

impl CloudAccess {
    /// Open the zoo: check it exists (unless offline, the token is `__SKIP__` or the options
    /// say so). Offline, the model list (the cached models) comes with it; online it is
    /// fetched when first needed ([`CloudAccess::cloud_entries`]).
    pub fn open(zoo: &CloudZoo, token: &str, opts: &ConnectOptions, settings: &Settings) -> Result<(CloudAccess, Option<Vec<ZooEntry>>)> {
        let mut cfg = opts.cache.clone().unwrap_or_else(|| CacheConfig::from_settings(settings));
        if let Some(o) = opts.offline {
            cfg.offline = o;
        }
        let token = token::resolve(token, &zoo.base(), settings);
        let access = CloudAccess { client: CloudClient::new(zoo, &token), cache: Cache::new(cfg) };
        let entries = if access.cache.config().offline {
            Some(access.cached_entries())
        } else {
            if token != SKIP_TOKEN && !opts.skip_zoo_check {
                access.client.zoos_check()?;
            }
            None
        };
        Ok((access, entries))
    }

    fn zoo(&self) -> &CloudZoo {
        self.client.zoo()
    }

    fn pseudo_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.zoo().url()))
    }

    /// The cloud's model list (one request).
    pub fn cloud_entries(&self) -> Result<Vec<ZooEntry>> {
        let list = self.client.list_models(false)?;
        // A model whose parameters do not parse is left out, like a broken file in a local zoo.
        Ok(list
            .into_iter()
            .filter_map(|(name, v)| ModelParams::from_value(v).ok().map(|params| ZooEntry { config_path: self.pseudo_path(&name), name, params }))
            .collect())
    }

    fn cached_entries(&self) -> Vec<ZooEntry> {
        self.cache
            .cached_models(self.zoo())
            .into_iter()
            .filter_map(|(name, cfg)| {
                let mut params = ModelParams::from_file(&cfg).ok()?;
                params.absolutize_paths(cfg.parent()?).ok()?;
                Some(ZooEntry { name, params, config_path: cfg })
            })
            .collect()
    }

    /// `model_info`: the cloud's `.../info` (its error surfaces as is); offline: the cached config.
    pub fn model_info(&self, name: &str, snapshot: Option<&ZooEntry>) -> Result<Value> {
        if self.cache.config().offline {
            if let Some(e) = snapshot {
                return Ok(e.params.full_form());
            }
            // Cached after `connect` (by another process, say).
            let held = self.cache.get_offline(self.zoo(), name)?;
            return Ok(ModelParams::from_file(&held.config)?.full_form());
        }
        Ok(self.info_params(name)?.full_form())
    }

    fn info_params(&self, name: &str) -> Result<ModelParams> {
        // A name that is not one path segment would change the URL (and the cache path).
        crate::cache::archive::check_model_name(name)?;
        let info = self.client.model_info(name)?;
        ModelParams::from_value(info["model_params"].clone()).map_err(|e| e.context(format!("Cloud model '{name}'")))
    }

    /// Bring the model into the cache (unless it is there with the zoo's checksum) and hold it.
    pub fn fetch(&self, name: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<CachedModel> {
        self.cache.fetch(&self.client, name, progress)
    }

    /// `load_model`: check the device support on the cloud's parameters first (no download for
    /// a model this machine cannot run), then fetch and build a local model.
    pub fn load_model(&self, name: &str, system_info: &Value, pairs: &[DevicePair], progress: &mut dyn FnMut(u64, u64)) -> Result<Model> {
        match self.load_model_once(name, system_info, pairs, progress) {
            // A cached copy damaged on disk (truncated, overwritten) fails its checksum at load:
            // drop it and download once more, instead of failing the same way forever.
            Err(e) if e.message.contains("Checksum mismatch for model file") && !self.cache.config().offline => {
                match self.cache.remove_model(self.zoo(), name) {
                    Ok(true) => self.load_model_once(name, system_info, pairs, progress),
                    _ => Err(e),
                }
            }
            r => r,
        }
    }

    fn load_model_once(&self, name: &str, system_info: &Value, pairs: &[DevicePair], progress: &mut dyn FnMut(u64, u64)) -> Result<Model> {
        let unsupported = || {
            Error::unsupported(format!("Cloud Model '{name}' does not have any supported runtime/device combinations that will work on this system."))
                .with_reason(crate::error::Reason::NoSupportedDevice)
        };
        let held = if self.cache.config().offline {
            self.cache.get_offline(self.zoo(), name)?
        } else if let Some(held) = {
            crate::cache::archive::check_model_name(name)?;
            // A cached copy costs one request (the checksum check); its devices are checked
            // on its own parameters when the model is built below.
            self.cache.hold_if_current(&self.client, name)?
        } {
            held
        } else {
            match self.info_params(name) {
                Ok(params) => {
                    if filter::supported_device_types(&params, pairs)?.is_empty() {
                        return Err(unsupported());
                    }
                    let sum = params.str("Checksum", 0);
                    self.cache.ensure(&self.client, name, (!sum.is_empty()).then_some(sum.as_str()), progress)?
                }
                // The cloud is unreachable or failing: a cached copy is used as is, like PySDK's
                // native cache does; without one, the cloud's error stands.
                Err(e) if e.code == Code::Network => self.cache.get_offline(self.zoo(), name).map_err(|_| e)?,
                Err(e) => return Err(e),
            }
        };
        let mut params = ModelParams::from_file(&held.config)?;
        params.absolutize_paths(&held.dir)?;
        if !held.downloaded {
            // A copy cached earlier is checked now (once per file state and process; the engine
            // does not hash it again), so a damaged one is replaced by `load_model`.
            let bin = params.str("ModelPath", 0);
            if !bin.is_empty() {
                crate::inference::verify_checksum(&params, std::path::Path::new(&bin))?;
            }
        }
        let z = self.zoo();
        params.set("CloudModelName", 0, json!(format!("{}/{}/{name}", z.org, z.zoo)))?;
        params.set("CloudURL", 0, json!(z.base()))?;
        params.set("CloudToken", 0, json!(self.client.token()))?;
        let entry = ZooEntry { name: name.to_string(), params, config_path: held.config.clone() };
        let model = Model::new_local(&entry.name, &entry.params, &entry.config_path, system_info, pairs).map_err(|e| {
            if e.reason == crate::error::Reason::NoSupportedDevice {
                unsupported()
            } else {
                e
            }
        })?;
        model.keep_alive(Box::new(held));
        Ok(model)
    }
}

/// `load_model` of a `@cloud` zoo: parameters and labels from the cloud's `.../info`, the
/// device check against the cloud's system info, a model named `org/zoo/<m>`.
pub fn load_cloud_inference_model(
    access: &CloudAccess,
    name: &str,
    system_info: &Value,
    pairs: &[crate::zoo::filter::DevicePair],
) -> Result<crate::model::Model> {
    crate::cache::archive::check_model_name(name)?;
    let info = access.client.model_info(name)?;
    let params = crate::params::ModelParams::from_value(info.get("model_params").cloned().unwrap_or(Value::Null))
        .map_err(|e| e.context(format!("Cloud model '{name}'")))?;
    let supported = crate::zoo::filter::supported_device_types(&params, pairs)?;
    if supported.is_empty() {
        return Err(Error::unsupported(format!("Cloud Model '{name}' does not have any supported runtime/device combinations that will work on this system."))
            .with_reason(crate::error::Reason::NoSupportedDevice));
    }
    let labels = match info.get("model_labels") {
        Some(l) if l.is_object() => l.clone(),
        _ => access.client.dictionary(name)?,
    };
    let z = access.client.zoo();
    let full = format!("{}/{}/{name}", z.org, z.zoo);
    crate::model::Model::new_cloud(&full, params, &labels, system_info, supported, crate::cloud::infer::CloudBackend::new(access.client.clone(), name))
}
