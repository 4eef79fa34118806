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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
