//! What every command resolves the same way: the repo (`--repo` or the one
//! around the current directory), the base folder (`--path`, else
//! `.gitops/config.yaml`, else "namespaces"), and the namespace (`-n`, else
//! the kubeconfig context's) or namespaces (`-A`).

use std::path::{Component, Path};

use anyhow::{Context as _, Result, anyhow, bail};
use gitops_shared::{
    Policy, RepoConfig,
    layout::{check_relative, list_namespaces},
    manifest::check_dns1123_label,
};

use crate::{
    cli::{Global, PolicyArgs},
    cluster,
    git::Repo,
    output::Format,
};

/// The resolved global flags.
#[derive(Debug)]
pub struct Context {
    pub global: Global,
}

impl Context {
    pub fn new(global: Global) -> Self {
        Self { global }
    }

    /// The output format; `wide` is the table (see [`Context::wide`]).
    pub fn format(&self) -> Format {
        match self.global.output {
            Format::Wide => Format::Table,
            format => format,
        }
    }

    /// `-o wide`: the table with the command's extra columns.
    pub fn wide(&self) -> bool {
        self.global.output == Format::Wide
    }

    /// The config repo.
    pub fn repo(&self) -> Result<Repo> {
        let start = match &self.global.repo {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("reading the current directory")?,
        };
        let repo = Repo::discover(&start)?;
        tracing::debug!(repo = %repo.workdir().display(), "config repo");
        Ok(repo)
    }

    /// The base folder, relative to the repo root, `/`-separated.
    pub fn base(&self, repo: &Repo) -> Result<String> {
        let base = match &self.global.path {
            Some(path) => {
                check_relative(path).map_err(|m| anyhow!("--path: {m}"))?;
                path.clone()
            }
            None => {
                RepoConfig::load(repo.workdir())
                    .map_err(|e| anyhow!("{e}"))?
                    .path
            }
        };
        let clean: Vec<String> = Path::new(&base)
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if clean.is_empty() {
            bail!("the base folder must not be the repository root");
        }
        let base = clean.join("/");
        tracing::debug!(base, "base folder");
        Ok(base)
    }

    /// The one namespace a command works on; `-A` is refused here.
    pub fn namespace(&self, command: &str) -> Result<String> {
        if self.global.all_namespaces {
            bail!("`{command}` works on one namespace; name it with -n NAMESPACE instead of -A");
        }
        let ns = match &self.global.namespace {
            Some(ns) => ns.clone(),
            None => cluster::context_namespace(&self.global)?,
        };
        check_namespace(&ns)?;
        tracing::debug!(namespace = ns, "namespace");
        Ok(ns)
    }

    /// `-A`: every folder under the base folder; else the one namespace.
    pub fn namespaces(&self, repo: &Repo, base: &str, command: &str) -> Result<Vec<String>> {
        if self.global.all_namespaces {
            let names = list_namespaces(repo.workdir(), base)
                .with_context(|| format!("listing the namespace folders in {base}"))?;
            Ok(names)
        } else {
            Ok(vec![self.namespace(command)?])
        }
    }
}

/// A namespace name as Kubernetes allows it.
pub fn check_namespace(ns: &str) -> Result<()> {
    check_dns1123_label(ns)
        .map_err(|rule| anyhow!("namespace {ns:?} is not a valid DNS-1123 {rule}"))
}

/// The policy for a namespace folder, with `--allow-kind`.
/// The policy of `namespace`: the kinds `--allow-kind` allows, and those the
/// repo's `.gitops/config.yaml` allows for everyone (`allowKinds`).
pub fn policy(ctx: &Context, namespace: &str, args: &PolicyArgs) -> Result<Policy> {
    let from_repo = match ctx.repo() {
        Ok(repo) => {
            RepoConfig::load(repo.workdir())
                .map_err(|e| anyhow!("{e}"))?
                .allow_kinds
        }
        Err(_) => Vec::new(),
    };
    Policy::new(namespace)
        .allow_kinds(&args.allow_kind)
        .and_then(|p| p.allow_kinds(&from_repo))
        .map_err(|e| anyhow!(e))
}
