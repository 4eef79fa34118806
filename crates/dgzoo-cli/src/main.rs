//! `dgzoo` command-line tool: list, inspect and run models of a zoo; one module per command group.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cloud;
mod exit;
mod logging;
mod models;
mod progress;
mod server;

/// Settings read from the environment when their option is not given (shown by each command's
/// `--help`), listed once for the top-level help.
const ENV_HELP: &str = "Environment (used when the option is not given): DGZOO_HOST (--host), DGZOO_ZOO_URL (--zoo, --url), DGZOO_TOKEN (--token), \
DGZOO_JSON=true (--json), DGZOO_SERVER_PORT/_ZOO/_HOST (server), DGZOO_HUB_PORT/_ZOO/_HOST (hub), DGZOO_ADMIN_TOKEN (--admin-token), \
DGZOO_LOG_FORMAT (--log-format); and DGZOO_CACHE_DIR, DGZOO_CACHE_LIMIT, DGZOO_OFFLINE, DGZOO_LOG.";

#[derive(Parser)]
#[command(name = "dgzoo", version, about = "Find, fetch and run AI models (DeGirum PySDK compatible)", after_help = format!("{}\n\n{ENV_HELP}", exit::table()))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models of a zoo (names, or full parameters with --full).
    List(models::ListArgs),
    /// Print one model's parameters (full form) as JSON.
    Info(models::InfoArgs),
    /// Run a model on image files and print PySDK's results as JSON, one line per image.
    Predict(models::PredictArgs),
    /// Print the inference host's system info (devices) as YAML-like text, like `degirum sys-info`.
    SysInfo(models::SysInfoArgs),
    /// Run or control an AI server (DeGirum asio/http protocols).
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Download the models of a cloud zoo into a directory (PySDK's `degirum download-zoo`).
    #[command(name = "download-zoo")]
    DownloadZoo(cloud::DownloadZooArgs),
    /// Inspect and manage the cloud model cache.
    Cache(cloud::CacheArgs),
    /// Serve a zoo root as a cloud zoo (dg-zoo-server compatible).
    Hub(cloud::HubArgs),
    /// Pack model directories into hub archives (<name>.zip).
    #[command(name = "pack-model")]
    PackModel(cloud::PackArgs),
}

impl Command {
    /// Whether the command was asked for JSON output (its errors are then JSON too).
    fn json(&self) -> bool {
        match self {
            Command::List(a) => a.json,
            Command::Info(a) => a.json,
            Command::Predict(a) => a.json,
            Command::SysInfo(a) => a.json,
            Command::Cache(a) => a.command.json(),
            _ => false,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "--json") => {
            let msg = e.render().to_string();
            let msg = msg.lines().next().unwrap_or_default().trim_start_matches("error: ");
            eprintln!("{}", serde_json::json!({"error": {"code": "INVALID_ARGUMENT", "dg_code": 1, "message": msg}, "exit_status": exit::USAGE}));
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    let json = cli.command.json();
    // The servers log their info lines unless told to be quiet; other commands only warnings.
    logging::init(
        match &cli.command {
            Command::Server(server::ServerCommand::Start(a)) if a.quiet => "error",
            Command::Server(_) | Command::Hub(_) => "warn,dgzoo_server=info",
            _ => "warn",
        },
        match &cli.command {
            Command::Server(server::ServerCommand::Start(a)) => a.log_format,
            Command::Hub(a) => a.log_format,
            _ => server::LogFormat::Text,
        },
    );
    // A long-running server holds many models: one malloc arena per core instead of glibc's
    // eight keeps what the runtimes free reusable (runtime/heap.rs has the numbers).
    if matches!(&cli.command, Command::Server(server::ServerCommand::Start(_)) | Command::Hub(_)) {
        dgzoo::runtime::heap::limit_arenas(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    let r = match cli.command {
        Command::List(a) => models::list(a),
        Command::Info(a) => models::info(a),
        Command::Predict(a) => models::predict(a),
        Command::SysInfo(a) => models::sys_info(a),
        Command::Server(c) => server::run(c),
        Command::DownloadZoo(a) => cloud::download_zoo(a),
        Command::Cache(a) => cloud::cache(a),
        Command::Hub(a) => cloud::hub(a),
        Command::PackModel(a) => cloud::pack(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::fail(&e, json),
    }
}
