//! `dgzoo server start|rescan-zoo|shutdown|cache-dump`: PySDK's `degirum server` commands.
//! PySDK's server binds 0.0.0.0; ours binds `--host` (127.0.0.1 by default).
use clap::{Args, Subcommand, ValueEnum};
use dgzoo::zoo::address::ServerAddress;
use dgzoo::zoo::aiserver::AiServerClient;
use dgzoo_server::aiserver::{Config, Protocol, Server};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Start an AI server serving the models of a zoo directory (runs until `shutdown`).
    /// Logs go to stderr; DGZOO_LOG sets the filter: a level (error, info, debug, ...) or
    /// per-module directives such as `warn,dgzoo_server=debug` (--quiet = error).
    Start(StartArgs),
    /// Ask the local AI server to re-scan its zoo directory.
    RescanZoo(PortArgs),
    /// Stop the local AI server.
    Shutdown(PortArgs),
    /// Print the local AI server's model cache.
    CacheDump(PortArgs),
    /// Print the local AI server's recent log lines (`trace_manage` trace_read).
    Trace(PortArgs),
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the `request`/`stream` span (`request_id`, `stream_id`).
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    Asio,
    Http,
    Both,
}

#[derive(Args)]
pub struct StartArgs {
    /// TCP port (asio; http uses port+1 with `--protocol both`).
    #[arg(long, env = "DGZOO_SERVER_PORT", default_value_t = 8778)]
    port: u16,
    #[arg(long, value_enum, default_value = "asio")]
    protocol: ProtocolArg,
    /// Zoo directory.
    #[arg(long, env = "DGZOO_SERVER_ZOO", default_value = ".")]
    zoo: PathBuf,
    /// Only log errors.
    #[arg(long)]
    pub quiet: bool,
    /// Address to bind (PySDK binds 0.0.0.0).
    #[arg(long, env = "DGZOO_SERVER_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Largest frame accepted, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_packet_mb: usize,
    /// Largest JSON message accepted (command packet, WebSocket text message, REST body), in KiB.
    #[arg(long, default_value_t = 1024)]
    max_json_kb: usize,
    /// Web origin (scheme://host[:port]) allowed to use the HTTP side from a browser
    /// (repeatable; `*` = CORS headers for reads from any origin). None by default.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// LRU limit on loaded models, in MiB of model files: idle least recently used models are
    /// unloaded past it.
    #[arg(long, default_value_t = 512)]
    max_models_mb: u64,
    /// Sessions per loaded LiteRT model (each a copy of its weights): 1 keeps memory low,
    /// 2 gives one busy model 10-16% more frames per second on 2 cores. Capped at one per core.
    #[arg(long, default_value_t = dgzoo_server::aiserver::DEFAULT_MODEL_COPIES as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    model_copies: u64,
    /// Most connections served at once (asio and http together).
    #[arg(long, default_value_t = dgzoo_server::aiserver::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a connection may stay idle (between commands, keep-alive requests, or
    /// WebSocket messages) before it is closed.
    #[arg(long, default_value_t = dgzoo_server::aiserver::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    idle_timeout: f64,
    /// Seconds the listeners keep serving after a client's `shutdown` (readiness already
    /// false), for DeGirum's client, which connects once more after it; 0 = none.
    #[arg(long, default_value_t = dgzoo_server::aiserver::DEFAULT_SHUTDOWN_GRACE.as_secs_f64())]
    shutdown_grace: f64,
    /// Token that `shutdown`, `zoo_manage`, `trace_manage` and `dev_ctrl` must carry (default
    /// `DGZOO_ADMIN_TOKEN`; none = open to local clients, as on PySDK's server).
    #[arg(long)]
    admin_token: Option<String>,
    /// Log line format on stderr.
    #[arg(long, env = "DGZOO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Args)]
pub struct PortArgs {
    /// Port of the server's asio protocol.
    #[arg(long, env = "DGZOO_SERVER_PORT", default_value_t = 8778)]
    port: u16,
    /// The server's admin token (`dgzoo server start --admin-token`), sent with the command.
    #[arg(long, env = "DGZOO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// A number of seconds from option `--NAME`: positive, or with `zero_ok` also 0.
pub(crate) fn seconds(name: &str, v: f64, zero_ok: bool) -> dgzoo::Result<std::time::Duration> {
    let what = if zero_ok { "a non-negative" } else { "a positive" };
    std::time::Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| zero_ok || !d.is_zero())
        .ok_or_else(|| dgzoo::error::Error::invalid(format!("--{name} {v} is not {what} number of seconds")))
}

/// This machine's system info from a child `dgzoo sys-info --json`, so that the server process
/// maps only the runtimes its models use (every runtime is loaded to list its devices; the
/// child exits with them). `None` when the probe fails: the server then measures in-process.
fn probe_system_info() -> Option<serde_json::Value> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["sys-info", "--json", "--host", "@local"])
        .env_remove("DGZOO_ZOO_URL")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            Ok(v) if v.get("Devices").is_some_and(serde_json::Value::is_object) => Some(v),
            _ => {
                tracing::warn!(target: "dgzoo_cli", "sys-info probe printed no system info; measuring in the server process");
                None
            }
        },
        Ok(o) => {
            tracing::warn!(target: "dgzoo_cli", status = %o.status, "sys-info probe failed; measuring in the server process");
            None
        }
        Err(e) => {
            tracing::warn!(target: "dgzoo_cli", error = %e, "cannot run the sys-info probe; measuring in the server process");
            None
        }
    }
}

fn local_client(p: &PortArgs) -> AiServerClient {
    AiServerClient::new(ServerAddress { host: "127.0.0.1".into(), port: p.port, http: false }).with_admin_token(p.admin_token.clone())
}

pub fn run(cmd: ServerCommand) -> dgzoo::Result<()> {
    match cmd {
        ServerCommand::Start(a) => {
            let mut cfg = Config::new(&a.zoo);
            cfg.host = a.host;
            cfg.port = a.port;
            cfg.quiet = a.quiet;
            cfg.max_packet = a.max_packet_mb.saturating_mul(1 << 20);
            cfg.max_json = a.max_json_kb.saturating_mul(1 << 10);
            cfg.cors_origins = a.cors_origins;
            cfg.max_model_bytes = a.max_models_mb.saturating_mul(1 << 20);
            cfg.max_connections = a.max_connections;
            cfg.model_copies = a.model_copies as usize;
            cfg.system_info = probe_system_info();
            cfg.admin_token = a.admin_token.or_else(|| dgzoo::settings::Settings::process().admin_token.clone());
            cfg.idle_timeout = seconds("idle-timeout", a.idle_timeout, false)?;
            cfg.shutdown_grace = seconds("shutdown-grace", a.shutdown_grace, true)?;
            cfg.protocol = match a.protocol {
                ProtocolArg::Asio => Protocol::Asio,
                ProtocolArg::Http => Protocol::Http,
                ProtocolArg::Both => Protocol::Both,
            };
            let server = Server::start(cfg)?;
            if !a.quiet {
                // In JSON mode every stderr line is a JSON object, these too.
                let say = |line: String| match a.log_format {
                    LogFormat::Text => eprintln!("{line}"),
                    LogFormat::Json => tracing::info!(target: "dgzoo_cli", "{line}"),
                };
                if let Some(s) = server.asio_addr() {
                    say(format!("dgzoo AI server: asio protocol on {s}"));
                }
                if let Some(s) = server.http_addr() {
                    say(format!("dgzoo AI server: http protocol on {s}"));
                }
            }
            server.wait();
            Ok(())
        }
        ServerCommand::RescanZoo(p) => local_client(&p).zoo_manage(serde_json::json!({"rescan": 1})).map(|_| ()),
        ServerCommand::Shutdown(p) => local_client(&p).shutdown(),
        ServerCommand::CacheDump(p) => {
            let v = local_client(&p).zoo_manage(serde_json::json!({"cache_dump": 1}))?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        ServerCommand::Trace(p) => {
            let v = local_client(&p).trace_manage(serde_json::json!({"trace_read": {"size": 1 << 20}}))?;
            print!("{}", v.get("trace_read").and_then(serde_json::Value::as_str).unwrap_or_default());
            Ok(())
        }
    }
}
