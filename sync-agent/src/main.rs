//! `sync-agent`: parse the flags, run the agent, print the error chain.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use sync_agent::{Args, Config};

fn main() -> ExitCode {
    sync_agent::memory::one_arena();
    let args = Args::parse();
    let config = match Config::from_args(args, std::env::var("POD_NAMESPACE").ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    sync_agent::init_tracing(config.log_format);
    // One thread: the agent waits on the API server, not on its CPU, and
    // a worker per core is only more stacks and contention on the one
    // malloc arena (memory.rs). The revision is read on tokio's
    // blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sync_agent::run(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
