//! The zoo manager: `connect` classifies the arguments, opens the matching accessor and keeps
//! a snapshot of the model list; `list_models`, `model_info`, `system_info` and `load_model`
//! follow PySDK 1.5.0 (zoo-and-filters.md).
pub mod cloud;
pub mod download_zoo;
pub mod local;
// The leaf modules this layer builds on, under their former paths too.
pub use crate::aiclient as aiserver;
pub use crate::{address, filter};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::params::ModelParams;
use address::{Host, ZooLocation};
use cloud::CloudAccess;
pub use cloud::ConnectOptions;
use filter::{DevicePair, Filters};
use local::ZooEntry;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// "Software Version" reported in system info.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A connection to a zoo plus an inference host. Immutable after `connect`: safe to share
/// between threads.
#[derive(Debug)]
pub struct Zoo {
    host: Host,
    location: ZooLocation,
    zoo_url: String,
    /// The model list: set at connect, except for an online cloud zoo, whose list is fetched
    /// on first use (loading a model needs no list, so a node that only loads makes no request for it).
    models: once_cell::sync::OnceCell<Listing>,
    /// System info and its device pairs: the server's or the cloud's, set at connect; this
    /// machine's, computed on first use (see [`Zoo::model_system`]).
    system: once_cell::sync::OnceCell<(Value, Vec<DevicePair>)>,
    /// The device pairs `list_*` filters with while `system` is not computed: only the runtimes
    /// the zoo's models name are loaded (`None`: they name `*`, or none loads; use `system`).
    listing: once_cell::sync::OnceCell<Option<Vec<DevicePair>>>,
    /// The AI server whose zoo this is (models then run on it).
    server: Option<aiserver::AiServerClient>,
    /// Set for cloud zoos.
    cloud: Option<CloudAccess>,
}

/// A zoo's models and their index by name.
#[derive(Debug)]
struct Listing {
    entries: Vec<ZooEntry>,
    by_name: HashMap<String, usize>,
}

impl Listing {
    fn new(entries: Vec<ZooEntry>) -> Self {
        let by_name = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Listing { entries, by_name }
    }
    fn get(&self, name: &str) -> Option<&ZooEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }
}

/// System info of this machine's local runtimes: `{"Devices": {"RT/DEV": [..]}, "Software Version": ..}`.
pub fn local_system_info() -> Value {
    local_system_info_among(&crate::runtime::RUNTIMES)
}

/// [`local_system_info`] restricted to some runtimes (loading only those).
pub fn local_system_info_among(runtimes: &[&str]) -> Value {
    let mut devices = Map::new();
    for a in crate::runtime::agents_among(runtimes) {
        for (dev, entries) in a.devices() {
            devices.insert(format!("{}/{dev}", a.runtime()), Value::Array(entries.into_iter().map(Value::Object).collect()));
        }
    }
    let mut m = Map::new();
    m.insert("Devices".into(), Value::Object(devices));
    m.insert("Software Version".into(), SOFTWARE_VERSION.into());
    Value::Object(m)
}

/// Device pairs from a system-info value, in its order.
pub fn system_pairs(info: &Value) -> Vec<DevicePair> {
    info.get("Devices")
        .and_then(Value::as_object)
        .map(|d| d.keys().filter_map(|k| k.split_once('/')).map(|(r, d)| (r.to_string(), d.to_string())).collect())
        .unwrap_or_default()
}

impl Zoo {
    /// `connect(host, zoo_url, token)`.
    pub fn connect(host: &str, zoo_url: &str, token: &str) -> Result<Zoo> {
        Self::connect_with(host, zoo_url, token, &ConnectOptions::default())
    }

    /// `connect` with dgzoo's extra options (model cache location, offline mode).
    pub fn connect_with(host: &str, zoo_url: &str, token: &str, opts: &ConnectOptions) -> Result<Zoo> {
        // The one read of the environment for a connect that brings none (PySDK too reads its
        // environment at connect); the first connect's settings also become the process's
        // (runtime libraries load once per process).
        let settings = opts.settings.clone().unwrap_or_else(crate::settings::Settings::from_env);
        settings.install_for_process();
        let host_text = host.to_string();
        let (host, location) = address::classify(host, zoo_url)?;
        let mut server = None;
        let mut cloud = None;
        // `None`: this machine's runtimes, loaded when first needed.
        let (models, system_info) = match (&host, &location) {
            (Host::Local, ZooLocation::LocalDir(dir)) => (Some(local::scan_dir(dir)), None),
            (Host::Local, ZooLocation::LocalFile(file)) => (Some(local::load_file(file)?), None),
            (Host::Local, ZooLocation::Cloud(c)) => {
                let (access, entries) = CloudAccess::open(c, token, opts, &settings)?;
                cloud = Some(access);
                (entries, None)
            }
            (Host::AiServer(a), ZooLocation::AiServerZoo) => {
                let client = aiserver::AiServerClient::with_failover(a.clone());
                // Zoo and system info are fetched once, like PySDK's AI-server accessor.
                let models = client
                    .modelzoo()?
                    .into_iter()
                    .map(|(name, v)| Ok(ZooEntry { name, params: ModelParams::from_value(v)?, config_path: Default::default() }))
                    .collect::<Result<Vec<_>>>()?;
                let info = client.system_info()?;
                server = Some(client);
                (Some(models), Some(info))
            }
            (Host::AiServer(a), ZooLocation::Cloud(c)) => {
                // Models listed by the cloud, run by the AI server (which fetches them itself).
                let client = aiserver::AiServerClient::with_failover(a.clone());
                let (access, entries) = CloudAccess::open(c, token, opts, &settings)?;
                let info = client.system_info()?;
                cloud = Some(access);
                server = Some(client);
                (entries, Some(info))
            }
            (Host::AiServer(_), ZooLocation::LocalDir(_) | ZooLocation::LocalFile(_)) => {
                unreachable!("classify pairs an AI server only with its own zoo or a cloud zoo")
            }
            (Host::Cloud, ZooLocation::Cloud(c)) => {
                // Cloud inference always talks to the cloud (no offline mode); devices come
                // from the cloud's system info.
                let online = ConnectOptions { offline: Some(false), ..opts.clone() };
                let (access, entries) = CloudAccess::open(c, token, &online, &settings)?;
                let info = access.client.system_info()?;
                cloud = Some(access);
                (entries, Some(info))
            }
            (Host::Cloud, _) => return Err(Error::invalid(format!("ZooManager: incorrect cloud model zoo URL '{zoo_url}'"))),
            (Host::Local, ZooLocation::AiServerZoo) => unreachable!("classify never pairs @local with an AI server zoo"),
        };
        let listing = once_cell::sync::OnceCell::new();
        if let Some(models) = models {
            let _ = listing.set(Listing::new(models));
        }
        let system = once_cell::sync::OnceCell::new();
        if let Some(info) = system_info {
            let pairs = system_pairs(&info);
            let _ = system.set((info, pairs));
        }
        // PySDK names an AI server's own zoo by the server address in its messages.
        let zoo_url = if server.is_some() && cloud.is_none() { host_text } else { zoo_url.to_string() };
        Ok(Zoo { host, location, zoo_url, models: listing, system, listing: Default::default(), server, cloud })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn location(&self) -> &ZooLocation {
        &self.location
    }
    /// The AI server client, for zoos served by an AI server.
    pub fn ai_server(&self) -> Option<&aiserver::AiServerClient> {
        self.server.as_ref()
    }

    /// The model list; an online cloud zoo's is fetched on the first call.
    fn models(&self) -> Result<&Listing> {
        self.models.get_or_try_init(|| match &self.cloud {
            Some(c) => c.cloud_entries().map(Listing::new),
            None => Ok(Listing::new(Vec::new())),
        })
    }

    /// Model names passing `filters`: sorted names.
    pub fn list_names(&self, filters: &Filters) -> Result<Vec<String>> {
        let models = self.models()?;
        let mut names: Vec<String> = self.filtered(models, filters).into_iter().map(|i| models.entries[i].name.clone()).collect();
        names.sort();
        Ok(names)
    }

    /// Models passing `filters` with their full-form parameters, in zoo order.
    pub fn list_full(&self, filters: &Filters) -> Result<Vec<(String, Value)>> {
        let models = self.models()?;
        Ok(self.filtered(models, filters).into_iter().map(|i| (models.entries[i].name.clone(), models.entries[i].params.full_form())).collect())
    }

    fn filtered(&self, models: &Listing, filters: &Filters) -> Vec<usize> {
        let list: Vec<(&str, &ModelParams)> = models.entries.iter().map(|e| (e.name.as_str(), &e.params)).collect();
        filter::apply(&list, filters, self.listing_pairs(models))
    }

    /// The system pairs the listing filters need. A filter only intersects a model's pairs with
    /// the system's, so the pairs of runtimes no model names change nothing: leaving those
    /// runtimes unloaded keeps a listing from mapping every installed runtime (OpenVINO alone
    /// costs ~20 MB and 30-40 ms) for a zoo that never uses them.
    fn listing_pairs(&self, models: &Listing) -> &[DevicePair] {
        if let Some(s) = self.system.get() {
            return &s.1;
        }
        let restricted = self.listing.get_or_init(|| {
            let mut named: Vec<String> = Vec::new();
            for e in &models.entries {
                for (r, _) in e.params.device_pairs().ok()? {
                    if r == "*" {
                        return None;
                    }
                    if !named.contains(&r) {
                        named.push(r);
                    }
                }
            }
            let named: Vec<&str> = named.iter().map(String::as_str).collect();
            // An empty system means "no system filter": decide on the full info then.
            Some(system_pairs(&local_system_info_among(&named))).filter(|p| !p.is_empty())
        });
        match restricted {
            Some(pairs) => pairs,
            None => self.system_device_pairs(),
        }
    }

    fn entry(&self, name: &str) -> Result<&ZooEntry> {
        self.models()?.get(name).ok_or_else(|| Error::not_found(format!("Model '{name}' is not found in model zoo '{}'", self.zoo_url)))
    }

    /// Full-form parameters of one model (a copy: editing it changes nothing).
    pub fn model_info(&self, name: &str) -> Result<Value> {
        if let Some(c) = &self.cloud {
            return c.model_info(name, self.models.get().and_then(|m| m.get(name)));
        }
        Ok(self.entry(name)?.params.full_form())
    }

    fn system(&self) -> &(Value, Vec<DevicePair>) {
        self.system.get_or_init(|| {
            let info = local_system_info();
            let pairs = system_pairs(&info);
            (info, pairs)
        })
    }

    pub fn system_info(&self) -> &Value {
        &self.system().0
    }

    /// The system info a local model is built with: when this machine's runtimes are not
    /// loaded yet, only the runtimes the model names are (a TFLite model never loads ONNX
    /// Runtime). The devices the model supports come out the same as with the full info.
    fn model_system(&self, params: &ModelParams) -> (Value, Vec<DevicePair>) {
        if let Some(s) = self.system.get() {
            return s.clone();
        }
        let named: Option<Vec<String>> = params.device_pairs().ok().map(|p| p.into_iter().map(|(r, _)| r).collect());
        if let Some(named) = named.filter(|n| !n.iter().any(|r| r == "*")) {
            let named: Vec<&str> = named.iter().map(String::as_str).collect();
            let info = local_system_info_among(&named);
            let pairs = system_pairs(&info);
            // An empty system means "unknown" to the filters: decide on the full info then.
            if !pairs.is_empty() {
                return (info, pairs);
            }
        }
        self.system().clone()
    }

    /// `RT/DEV` keys of the system info, in order.
    pub fn supported_device_types(&self) -> Vec<String> {
        self.system_device_pairs().iter().map(|(r, d)| format!("{r}/{d}")).collect()
    }

    /// The cloud client and model cache of a cloud zoo.
    pub fn cloud(&self) -> Option<&CloudAccess> {
        self.cloud.as_ref()
    }

    pub fn system_device_pairs(&self) -> &[DevicePair] {
        &self.system().1
    }

    /// `load_model(name, **properties)`: `properties` is a JSON object applied in order.
    pub fn load_model(&self, name: &str, properties: &Value) -> Result<Model> {
        self.load_model_with_progress(name, properties, &mut |_, _| {})
    }

    /// [`Zoo::load_model`] reporting a cloud model's download as (received, total) bytes.
    pub fn load_model_with_progress(&self, name: &str, properties: &Value, progress: &mut dyn FnMut(u64, u64)) -> Result<Model> {
        let model = match (&self.server, &self.cloud) {
            (Some(client), Some(c)) => load_cloud_model(client, c, name, self.system_info(), self.system_device_pairs())?,
            (Some(client), None) => {
                let entry = self.entry(name)?;
                let labels = client.label_dictionary(name)?;
                let backend = crate::remote::RemoteBackend::new(client.clone());
                Model::new_remote(name, entry.params.clone(), &labels, self.system_info(), self.system_device_pairs(), backend)?
            }
            (None, Some(c)) if self.host == Host::Cloud => cloud::load_cloud_inference_model(c, name, self.system_info(), self.system_device_pairs())?,
            (None, Some(c)) => c.load_model(name, self.system_info(), self.system_device_pairs(), progress)?,
            (None, None) => {
                let entry = self.entry(name)?;
                let (info, pairs) = self.model_system(&entry.params);
                Model::new_local(&entry.name, &entry.params, &entry.config_path, &info, &pairs)?
            }
        };
        match properties {
            Value::Null => {}
            Value::Object(props) => {
                for (k, v) in props {
                    model.set_property_from_load(k, v)?;
                }
            }
            _ => return Err(Error::invalid("model properties must be a JSON object")),
        }
        let backend = if self.server.is_some() {
            "AI server"
        } else if model.is_remote() {
            "cloud"
        } else {
            "local"
        };
        tracing::info!(target: "dgzoo::zoo", model = %model.name(), backend, "model loaded");
        Ok(model)
    }
}

/// `load_model` for an AI server with a cloud zoo (PySDK: the model is named `org/zoo/<m>`,
/// its parameters come from the cloud with `CloudURL`/`CloudToken` set so the server can fetch
/// it, labels from the cloud; refused before anything runs if the server has no device for it).
fn load_cloud_model(client: &aiserver::AiServerClient, cloud: &CloudAccess, name: &str, system_info: &Value, pairs: &[DevicePair]) -> Result<Model> {
    let mut params = crate::params::ModelParams::from_value(cloud.model_info(name, None)?)?;
    if filter::supported_device_types(&params, pairs)?.is_empty() {
        return Err(Error::unsupported(format!("Cloud Model '{name}' does not have any supported runtime/device combinations that will work on this system."))
            .with_reason(crate::error::Reason::NoSupportedDevice));
    }
    let z = cloud.client.zoo();
    params.set("CloudURL", 0, json!(z.base()))?;
    params.set("CloudToken", 0, json!(cloud.client.token()))?;
    let labels = cloud.client.dictionary(name)?;
    let full = format!("{}/{}/{name}", z.org, z.zoo);
    Model::new_remote(&full, params, &labels, system_info, pairs, crate::remote::RemoteBackend::new(client.clone()))
}
