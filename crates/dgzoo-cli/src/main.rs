//! `dgzoo` command-line tool: list, inspect and run models of a zoo; one module per command group.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cloud;
mod models;
mod server;

#[derive(Parser)]
#[command(name = "dgzoo", version, about = "Find, fetch and run AI models (DeGirum PySDK compatible)")]
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

/// Log records to stderr: `DGZOO_LOG` (an EnvFilter: a level such as `debug`, or per-module
/// directives such as `warn,dgzoo_server=debug`), else `default`.
fn init_logging(default: &str) {
    let filter = match dgzoo::settings::Settings::from_env().log {
        Some(v) => tracing_subscriber::EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("dgzoo: DGZOO_LOG is not a valid filter ({e}); using '{default}'");
            tracing_subscriber::EnvFilter::new(default)
        }),
        None => tracing_subscriber::EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The servers log their info lines unless told to be quiet; other commands only warnings.
    init_logging(match &cli.command {
        Command::Server(server::ServerCommand::Start(a)) if a.quiet => "error",
        Command::Server(_) | Command::Hub(_) => "warn,dgzoo_server=info",
        _ => "warn",
    });
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
        Err(e) => {
            eprintln!("dgzoo: error: {e}");
            ExitCode::FAILURE
        }
    }
}
