//! `version`.

use anyhow::Result;
use serde::Serialize;

use crate::{
    Status,
    context::Context,
    output::{self, Format},
};

/// Print the version.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Version {
    name: &'static str,
    version: &'static str,
}

pub fn run(ctx: &Context, _args: Args) -> Result<Status> {
    let v = Version {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
    };
    match ctx.format() {
        Format::Table => output::print(&format!("{} {}\n", v.name, v.version))?,
        format => output::print_data(format, &v)?,
    }
    Ok(Status::Ok)
}
