//! `suspend` / `resume`: set or clear `spec.suspend` on the namespace's
//! `GitOpsSync`. The emergency brake, and the plugin's only write to the
//! cluster: the agent stops applying and pruning, and still reports drift.

use anyhow::Result;
use gitops_shared::gitopssync;

use crate::{
    Status,
    cluster::{Cluster, block_on},
    context::Context,
    output,
};

/// Which agent to brake or release.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the namespace's GitOpsSync
    #[arg(long, default_value = gitopssync::DEFAULT_NAME, value_name = "NAME")]
    pub name: String,
}

pub fn run(ctx: &Context, args: Args, suspend: bool) -> Result<Status> {
    let ns = ctx.namespace(if suspend { "suspend" } else { "resume" })?;
    block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        cluster.set_suspend(&ns, &args.name, suspend).await
    })??;
    let text = if suspend {
        format!(
            "suspended {ns}/{}: the agent stops applying and pruning (drift is still reported); `kubectl gitops resume -n {ns}` releases it\n",
            args.name
        )
    } else {
        format!("resumed {ns}/{}: the agent applies Git again\n", args.name)
    };
    output::print(&text)?;
    Ok(Status::Ok)
}
