//! `import KIND/NAME...|--all`: adopt what is live. Reads the objects from
//! the cluster, normalizes them (no status, uid, resourceVersion,
//! managedFields, ...) and stages them like `stage` does.

use anyhow::{Result, bail};
use gitops_shared::KINDS;

use crate::{
    Status,
    cli::PolicyArgs,
    cluster::{Cluster, block_on},
    context::{Context, policy},
    objects::{clean, manifest_of, parse_kind_name},
    output,
};

/// Read live objects of the namespace and stage them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Objects to import, as KIND/NAME (vs/reviews, destinationrule/reviews)
    #[arg(value_name = "KIND/NAME", required_unless_present = "all")]
    pub objects: Vec<String>,
    /// Import every Istio config object of the namespace
    #[arg(long, conflicts_with = "objects")]
    pub all: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let namespace = ctx.namespace("import")?;
    let policy = policy(ctx, &namespace, &args.policy)?;
    let wanted = args
        .objects
        .iter()
        .map(|o| parse_kind_name(o))
        .collect::<Result<Vec<_>>>()?;

    let live = block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        let mut live = Vec::new();
        if args.all {
            for kind in KINDS {
                let Some(objects) = cluster.list(kind, &namespace, None).await? else {
                    continue;
                };
                if kind.dangerous && !policy.allowed_kinds.contains(kind.kind) {
                    for o in &objects {
                        tracing::warn!(
                            "skipped {}/{}: {} is refused unless allowed with --allow-kind {}",
                            kind.kind,
                            o["metadata"]["name"].as_str().unwrap_or("?"),
                            kind.kind,
                            kind.kind
                        );
                    }
                    continue;
                }
                live.extend(objects);
            }
        } else {
            for (kind, name) in &wanted {
                match cluster.get(kind, &namespace, name).await? {
                    Some(o) => live.push(o),
                    None => bail!("{}/{name} not found in namespace {namespace:?}", kind.kind),
                }
            }
        }
        anyhow::Ok(live)
    })??;
    let live: Vec<_> = live
        .into_iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .collect();
    if live.is_empty() {
        output::print(&format!(
            "no Istio config objects in namespace {namespace}\n"
        ))?;
        return Ok(Status::Ok);
    }

    let mut manifests = Vec::new();
    for object in &live {
        let cleaned = clean(object, &namespace);
        let origin = format!(
            "{namespace}/{}/{} (live)",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        manifests.push(manifest_of(&cleaned, &origin)?);
    }
    if let Err(errors) = policy.check(&manifests) {
        return Err(super::problems("nothing was imported", &errors));
    }
    let staged = super::stage::stage_manifests(&repo, &base, &namespace, &manifests)?;
    output::print(&super::stage::report(&staged))?;
    Ok(Status::Ok)
}
