//! Command line of Switchboard. `up` runs every service in one process (with an embedded
//! broker when no Kafka is configured); `run <service>` runs one against any Kafka cluster.

mod cli;
pub mod gate;
mod services;
pub mod settings;
pub mod tools;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let async_runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match async_runtime.block_on(cli::execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
