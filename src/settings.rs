//! Everything dgzoo reads from the environment, in one value. `Settings::from_env()` is the
//! only place that reads environment variables, and only two places call it (a test checks):
//! `Zoo::connect_with` when its options bring no settings (PySDK too reads its environment at
//! connect), and [`Settings::process`], read once, for what exists once per process (runtime
//! libraries, the checksum memo, the servers' and the CLI's configuration). Everything below
//! takes the value, or the fields it needs, as arguments. A leaf: uses nothing.
use std::path::PathBuf;

/// The environment as dgzoo sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `DGZOO_RUNTIME_DIR` (a path list): where runtime libraries are looked up first.
    pub runtime_dirs: Vec<PathBuf>,
    /// `DGZOO_NO_RUNTIMES` set: behave as if no runtime were installed (client-only, tests).
    pub no_runtimes: bool,
    /// `DGZOO_SKIP_CHECKSUM` set: do not verify model binaries against their `Checksum`.
    pub skip_checksum: bool,
    /// `DGZOO_CACHE_DIR`: the cloud model cache's root.
    pub cache_dir: Option<PathBuf>,
    /// `DGZOO_CACHE_LIMIT`: the cache's size limit in bytes.
    pub cache_limit: Option<u64>,
    /// `DGZOO_OFFLINE` is 1/true/yes/on: never contact the cloud.
    pub offline: bool,
    /// `DGZOO_OPENVINO_CACHE` is 0/false/no/off: OpenVINO compiles models without its blob cache.
    pub openvino_cache_off: bool,
    /// `DGZOO_TOKEN_FILE`: the cloud token file to use instead of PySDK's.
    pub token_file: Option<PathBuf>,
    /// `DGZOO_LOG`: the log filter (tracing-subscriber EnvFilter syntax), for the log
    /// subscribers of the C ABI and the CLI.
    pub log: Option<String>,
    /// `DGZOO_ADMIN_TOKEN`: the AI server's admin token (`dgzoo server start`; empty = none).
    pub admin_token: Option<String>,
    /// `HOME`, `APPDATA`, `XDG_DATA_HOME` (empty values count as unset).
    pub home: Option<PathBuf>,
    pub appdata: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    /// `DGZOO_DEMO_ZOO`: the CLI's zoo when none is given (cargo sets it to `demo/zoo` for the
    /// processes it runs; no build-machine path is compiled in).
    pub demo_zoo: Option<PathBuf>,
}

static PROCESS: once_cell::sync::OnceCell<Settings> = once_cell::sync::OnceCell::new();

fn path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

impl Settings {
    /// Read the environment now.
    pub fn from_env() -> Settings {
        Settings {
            runtime_dirs: std::env::var_os("DGZOO_RUNTIME_DIR").map(|d| std::env::split_paths(&d).collect()).unwrap_or_default(),
            no_runtimes: std::env::var_os("DGZOO_NO_RUNTIMES").is_some(),
            skip_checksum: std::env::var_os("DGZOO_SKIP_CHECKSUM").is_some(),
            cache_dir: path("DGZOO_CACHE_DIR"),
            cache_limit: std::env::var("DGZOO_CACHE_LIMIT").ok().and_then(|v| v.trim().parse().ok()),
            offline: flag("DGZOO_OFFLINE"),
            openvino_cache_off: std::env::var("DGZOO_OPENVINO_CACHE").is_ok_and(|v| matches!(v.trim(), "0" | "false" | "no" | "off")),
            token_file: path("DGZOO_TOKEN_FILE"),
            admin_token: std::env::var("DGZOO_ADMIN_TOKEN").ok().filter(|v| !v.is_empty()),
            log: std::env::var("DGZOO_LOG").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()),
            home: path("HOME"),
            appdata: path("APPDATA"),
            xdg_data_home: path("XDG_DATA_HOME"),
            demo_zoo: path("DGZOO_DEMO_ZOO"),
        }
    }

    /// The settings of what exists once per process: the runtime libraries (loaded once), the
    /// checksum memo, a server's or the CLI's configuration. The first connect's settings
    /// ([`Settings::install_for_process`]), else the environment, read once at first use.
    pub fn process() -> &'static Settings {
        PROCESS.get_or_init(Settings::from_env)
    }

    /// Make these the process's settings unless some are already in use (the runtime
    /// libraries cannot be loaded twice); returns whether they were taken.
    pub fn install_for_process(&self) -> bool {
        PROCESS.set(self.clone()).is_ok()
    }

    /// Whether model binaries are checked against their configuration's `Checksum`.
    pub fn verify_checksums(&self) -> bool {
        !self.skip_checksum
    }

    /// The model cache's root: `DGZOO_CACHE_DIR`, else `<os appdata>/dgzoo/cloud_zoo_cache`,
    /// else a folder in the temp dir.
    pub fn cache_root(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| self.os_appdata().map(|d| d.join("dgzoo").join("cloud_zoo_cache")))
            .unwrap_or_else(|| std::env::temp_dir().join("dgzoo-cloud-zoo-cache"))
    }

    /// The OS per-user data root: `$XDG_DATA_HOME` or `~/.local/share` (Linux),
    /// `~/Library/Application Support` (macOS), `%APPDATA%` (Windows).
    pub fn os_appdata(&self) -> Option<PathBuf> {
        if cfg!(windows) {
            self.appdata.clone()
        } else if cfg!(target_os = "macos") {
            self.home.as_ref().map(|h| h.join("Library/Application Support"))
        } else {
            self.xdg_data_home.clone().or_else(|| self.home.as_ref().map(|h| h.join(".local/share")))
        }
    }
}
