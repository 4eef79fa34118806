//! `dgzoo` command-line tool: list, inspect and run models of a zoo; one module per command group.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::List(a) => models::list(a),
        Command::Info(a) => models::info(a),
        Command::Predict(a) => models::predict(a),
        Command::SysInfo(a) => models::sys_info(a),
        Command::Server(c) => server::run(c),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dgzoo: error: {e}");
            ExitCode::FAILURE
        }
    }
}
