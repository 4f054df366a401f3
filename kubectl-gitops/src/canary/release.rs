//! A canary release as Git holds it: the plan in the VirtualService's
//! `kubectl-gitops.io/canary` annotation, and the weights of one HTTP route.
//!
//! Every move is computed twice: on the parsed object (the model, plain
//! JSON) and on the document's text (the edit people see in review). The
//! edited text is parsed again and must give exactly the model's object, so
//! a file the editor cannot change faithfully is refused, never mangled.

use std::fmt;

use anyhow::{Context as _, Result, anyhow, bail};
use gitops_shared::manifest::parse_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::yamledit::{self, Node, Step};
use crate::objects::same;

/// The annotation holding a release's plan and state.
pub const ANNOTATION: &str = gitops_shared::ANNOTATION_CANARY;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Moving through the steps.
    Progressing,
    /// All traffic on the canary; the release is over.
    Promoted,
    /// All traffic back on the stable subset; the release is over.
    Aborted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Progressing => "Progressing",
            Phase::Promoted => "Promoted",
            Phase::Aborted => "Aborted",
        })
    }
}

/// The plan and state of one release, as recorded in [`ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub stable: String,
    pub canary: String,
    /// Canary weights, increasing, within 1..=100.
    pub steps: Vec<u32>,
    /// 1-based index into `steps` of the weight Git holds.
    pub step: usize,
    /// The HTTP route: its `name`, or `http[N]` for an unnamed one.
    pub route: String,
    pub phase: Phase,
}

impl Release {
    /// The canary's share of traffic that Git holds for this release.
    pub fn weight(&self) -> u32 {
        match self.phase {
            Phase::Promoted => 100,
            Phase::Aborted => 0,
            Phase::Progressing => self
                .steps
                .get(self.step.wrapping_sub(1))
                .copied()
                .unwrap_or(0),
        }
    }

    /// `2/4`.
    pub fn step_label(&self) -> String {
        format!("{}/{}", self.step, self.steps.len())
    }

    /// The release recorded on a VirtualService, if any.
    pub fn of(vs: &Value) -> Result<Option<Release>> {
        let Some(text) = vs["metadata"]["annotations"][ANNOTATION].as_str() else {
            return Ok(None);
        };
        let release: Release = serde_json::from_str(text)
            .with_context(|| format!("the annotation {ANNOTATION} does not hold a canary plan"))?;
        release.check()?;
        Ok(Some(release))
    }

    /// The plan's own rules (also for one read back from Git).
    pub fn check(&self) -> Result<()> {
        check_steps(&self.steps)?;
        if self.step == 0 || self.step > self.steps.len() {
            bail!("step {} is not within 1..{}", self.step, self.steps.len());
        }
        if self.stable == self.canary {
            bail!(
                "the stable and the canary subset are both {:?}",
                self.stable
            );
        }
        Ok(())
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a Release always serializes")
    }
}

/// Steps must increase strictly within 1..=100.
pub fn check_steps(steps: &[u32]) -> Result<()> {
    if steps.is_empty() {
        bail!("--steps needs at least one weight");
    }
    if let Some(bad) = steps.iter().find(|w| !(1..=100).contains(*w)) {
        bail!("--steps: {bad} is not a weight within 1..100");
    }
    if let Some(pair) = steps.windows(2).find(|p| p[0] >= p[1]) {
        bail!(
            "--steps must increase: {} is followed by {}",
            pair[0],
            pair[1]
        );
    }
    Ok(())
}

/// What traffic a move sends where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `canary` percent to the canary, the rest to the stable subset.
    Canary(u32),
    /// Promotion: the route's only destination is the canary, at 100.
    AllCanary,
    /// Rollback: the route's only destination is the stable subset, at 100.
    AllStable,
}

/// Index of the HTTP route `route` names (a route `name`, or `http[N]`);
/// with none given, the only route.
pub fn route_index(vs: &Value, route: Option<&str>) -> Result<usize> {
    let routes = vs["spec"]["http"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if routes.is_empty() {
        bail!("the VirtualService has no HTTP routes (spec.http)");
    }
    let names = || {
        routes
            .iter()
            .enumerate()
            .map(|(i, r)| match r["name"].as_str() {
                Some(n) => n.to_string(),
                None => format!("http[{i}]"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match route {
        None if routes.len() == 1 => Ok(0),
        None => bail!(
            "the VirtualService has {} HTTP routes; choose one with --route ({})",
            routes.len(),
            names()
        ),
        Some(name) => {
            if let Some(i) = routes.iter().position(|r| r["name"].as_str() == Some(name)) {
                return Ok(i);
            }
            let index = name
                .strip_prefix("http[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<usize>().ok());
            match index {
                Some(i) if i < routes.len() => Ok(i),
                _ => bail!(
                    "the VirtualService has no HTTP route {name:?} ({})",
                    names()
                ),
            }
        }
    }
}

/// How a route is called in the annotation: its name, else `http[N]`.
pub fn route_label(vs: &Value, index: usize) -> String {
    vs["spec"]["http"][index]["name"]
        .as_str()
        .map_or_else(|| format!("http[{index}]"), str::to_string)
}

/// The destinations of route `index`: `(subset, host, weight)` each.
pub fn destinations(vs: &Value, index: usize) -> Vec<(Option<String>, String, Option<u64>)> {
    vs["spec"]["http"][index]["route"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|d| {
            (
                d["destination"]["subset"].as_str().map(str::to_string),
                d["destination"]["host"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d["weight"].as_u64(),
            )
        })
        .collect()
}

/// Check that route `index` can carry a release from `stable` to `canary`:
/// it sends traffic to `stable`, and to no subset other than the two.
/// Returns the stable destination's host.
pub fn check_route(vs: &Value, index: usize, stable: &str, canary: &str) -> Result<String> {
    let dests = destinations(vs, index);
    let label = route_label(vs, index);
    let Some((_, host, _)) = dests.iter().find(|(s, _, _)| s.as_deref() == Some(stable)) else {
        bail!("HTTP route {label} sends no traffic to subset {stable:?}");
    };
    let others: Vec<String> = dests
        .iter()
        .filter(|(s, _, _)| s.as_deref() != Some(stable) && s.as_deref() != Some(canary))
        .map(|(s, h, _)| match s {
            Some(s) => format!("{h} subset {s}"),
            None => format!("{h} (no subset)"),
        })
        .collect();
    if !others.is_empty() {
        bail!(
            "HTTP route {label} also sends traffic to {}; a canary moves traffic between two subsets only",
            others.join(", ")
        );
    }
    if let Some((_, other, _)) = dests
        .iter()
        .find(|(s, h, _)| s.as_deref() == Some(canary) && h != host)
    {
        bail!("HTTP route {label} sends {canary:?} to host {other}, {stable:?} to host {host}");
    }
    Ok(host.clone())
}

/// The model: `vs` after the move, as plain data.
pub fn apply_to_object(vs: &Value, index: usize, release: &Release, split: Split) -> Result<Value> {
    let mut out = vs.clone();
    let route = out["spec"]["http"][index]["route"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("HTTP route {} has no destinations", release.route))?;
    let subset = |d: &Value, s: &str| d["destination"]["subset"].as_str() == Some(s);
    let stable_at = route
        .iter()
        .position(|d| subset(d, &release.stable))
        .ok_or_else(|| anyhow!("no destination with subset {}", release.stable));
    let canary_at = route.iter().position(|d| subset(d, &release.canary));
    // A missing canary destination is the stable one with the other subset.
    let canary_at = match (canary_at, &stable_at) {
        (Some(i), _) => i,
        (None, Ok(s)) => {
            let mut copy = route[*s].clone();
            copy["destination"]["subset"] = release.canary.clone().into();
            route.insert(s + 1, copy);
            s + 1
        }
        (None, Err(_)) => bail!("no destination with subset {}", release.stable),
    };
    let stable_at = stable_at?;
    match split {
        Split::Canary(w) => {
            route[stable_at]["weight"] = (100 - w).into();
            route[canary_at]["weight"] = w.into();
        }
        Split::AllCanary => {
            route[canary_at]["weight"] = 100.into();
            route.remove(stable_at);
        }
        Split::AllStable => {
            route[stable_at]["weight"] = 100.into();
            route.remove(canary_at);
        }
    }
    let annotations = &mut out["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    annotations[ANNOTATION] = release.to_annotation().into();
    Ok(out)
}

fn root(text: &str) -> Result<Node> {
    yamledit::parse(text)?.ok_or_else(|| anyhow!("the document is empty"))
}

fn route_path(index: usize) -> [Step<'static>; 4] {
    [
        Step::Key("spec"),
        Step::Key("http"),
        Step::Index(index),
        Step::Key("route"),
    ]
}

fn route_node(doc: &Node, index: usize) -> Result<&Node> {
    match yamledit::find(doc, &route_path(index)) {
        Some(n @ Node::Seq { .. }) => Ok(n),
        _ => bail!("spec.http[{index}].route is not a list of destinations"),
    }
}

fn destination_at(route: &Node, subset: &str) -> Option<usize> {
    route.items().iter().position(|d| {
        yamledit::find(d, &[Step::Key("destination"), Step::Key("subset")]).and_then(Node::as_str)
            == Some(subset)
    })
}

/// Set the `weight` of destination `at` of route `index`.
fn set_weight(text: &str, index: usize, at: usize, weight: u32) -> Result<String> {
    let doc = root(text)?;
    let route = route_node(&doc, index)?;
    let dest = &route.items()[at];
    match dest.get("weight") {
        Some(w @ Node::Scalar { .. }) => Ok(yamledit::splice(text, w.range(), &weight.to_string())),
        Some(_) => bail!("spec.http[{index}].route[{at}].weight is not a number"),
        None => yamledit::insert_entry(
            text,
            dest,
            "weight",
            &yamledit::Value::Scalar(weight.to_string()),
        ),
    }
}

/// The text edit: the document `text` after the move, changed only where
/// the move changes it.
fn apply_to_text(text: &str, index: usize, release: &Release, split: Split) -> Result<String> {
    let mut text = text.to_string();
    let doc = root(&text)?;
    let route = route_node(&doc, index)?;
    if let Some(at) = shared_node(&doc, index) {
        return Err(Shared { at }.into());
    }
    let stable_at = destination_at(route, &release.stable)
        .ok_or_else(|| anyhow!("no destination with subset {}", release.stable))?;
    if destination_at(route, &release.canary).is_none() {
        // Copy the stable destination, then give the copy the canary subset.
        text = yamledit::duplicate_item(&text, route, stable_at)?;
        let doc = root(&text)?;
        let copy = &route_node(&doc, index)?.items()[stable_at + 1];
        let subset = yamledit::find(copy, &[Step::Key("destination"), Step::Key("subset")])
            .ok_or_else(|| anyhow!("the copied destination has no subset"))?;
        let written = yamledit::scalar_like(&text[subset.range()], &release.canary);
        text = yamledit::splice(&text, subset.range(), &written);
    }
    let find = |text: &str, subset: &str| -> Result<usize> {
        let doc = root(text)?;
        destination_at(route_node(&doc, index)?, subset)
            .ok_or_else(|| anyhow!("no destination with subset {subset}"))
    };
    match split {
        Split::Canary(w) => {
            text = set_weight(&text, index, find(&text, &release.stable)?, 100 - w)?;
            text = set_weight(&text, index, find(&text, &release.canary)?, w)?;
        }
        Split::AllCanary | Split::AllStable => {
            let (keep, drop) = if split == Split::AllCanary {
                (&release.canary, &release.stable)
            } else {
                (&release.stable, &release.canary)
            };
            text = set_weight(&text, index, find(&text, keep)?, 100)?;
            let at = find(&text, drop)?;
            let doc = root(&text)?;
            text = yamledit::remove_item(&text, route_node(&doc, index)?, at)?;
        }
    }
    set_annotation(&text, &release.to_annotation())
}

/// Where the parts a move edits (the HTTP route, the metadata) hold a YAML
/// anchor or alias: an edit there would change the nodes that share it.
fn shared_node(doc: &Node, index: usize) -> Option<usize> {
    let route = yamledit::find(
        doc,
        &[Step::Key("spec"), Step::Key("http"), Step::Index(index)],
    );
    let http = yamledit::find(doc, &[Step::Key("spec"), Step::Key("http")]);
    let metadata = doc.get("metadata");
    // An anchor on the whole list or the metadata shares them too.
    let own = |n: Option<&Node>| match n {
        Some(Node::Seq { anchored, .. } | Node::Map { anchored, .. }) => *anchored,
        Some(Node::Alias { range }) => Some(range.start),
        _ => None,
    };
    own(http)
        .or_else(|| route.and_then(Node::shared))
        .or_else(|| metadata.and_then(Node::shared))
}

/// An edit refused because the text it would change is shared through a
/// YAML anchor (`&name`) or alias (`*name`), at byte `at` of the document.
#[derive(Debug)]
struct Shared {
    at: usize,
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML anchor or alias")
    }
}

impl std::error::Error for Shared {}

/// Set [`ANNOTATION`] to `value` in the document's `metadata.annotations`.
fn set_annotation(text: &str, value: &str) -> Result<String> {
    let quoted = yamledit::single_quoted(value);
    let doc = root(text)?;
    let metadata = doc
        .get("metadata")
        .ok_or_else(|| anyhow!("the document has no metadata"))?;
    match metadata.get("annotations") {
        Some(annotations @ Node::Map { .. }) => match annotations.get(ANNOTATION) {
            Some(old @ Node::Scalar { .. }) => Ok(yamledit::splice(text, old.range(), &quoted)),
            Some(_) => bail!("metadata.annotations.{ANNOTATION} is not a string"),
            None => yamledit::insert_entry(
                text,
                annotations,
                ANNOTATION,
                &yamledit::Value::Scalar(quoted),
            ),
        },
        Some(_) => bail!("metadata.annotations is not a mapping"),
        None => yamledit::insert_entry(
            text,
            metadata,
            "annotations",
            &yamledit::Value::Map(vec![(ANNOTATION.to_string(), quoted)]),
        ),
    }
}

/// Move the release in one document's text (one chunk of its file): the new
/// text, checked to mean exactly the model's object. `file` names the file
/// in messages.
pub fn edit_document(
    chunk: &str,
    file: &std::path::Path,
    first_line: usize,
    index: usize,
    release: &Release,
    split: Split,
) -> Result<String> {
    let parse = |text: &str| -> Result<Value> {
        match parse_str(text, file, &Default::default()) {
            Ok(ms) if ms.len() == 1 => {
                Ok(ms.into_iter().next().map(|m| m.object).unwrap_or_default())
            }
            Ok(ms) => bail!("expected one document, found {}", ms.len()),
            Err(errors) => Err(anyhow!(
                "{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    };
    let before = parse(chunk)?;
    let expected = apply_to_object(&before, index, release, split)?;
    let edited = match apply_to_text(chunk, index, release, split) {
        Ok(edited) => edited,
        Err(e) => {
            if let Some(Shared { at }) = e.downcast_ref::<Shared>() {
                bail!(
                    "{}:{}: HTTP route {} (or the metadata) uses a YAML anchor or alias, so editing its weights would change the nodes that share it; write it out in full without `&`/`*` and run again",
                    file.display(),
                    first_line + yamledit::line_of(chunk, *at) - 1,
                    release.route
                );
            }
            return Err(e.context(format!(
                "{}:{first_line}: cannot edit the weights of HTTP route {} in place; set them by hand",
                file.display(),
                release.route
            )));
        }
    };
    let after = parse(&edited).with_context(|| {
        format!(
            "{}:{first_line}: the edited document does not parse (nothing was written)",
            file.display()
        )
    })?;
    if !same(&after, &expected) {
        bail!(
            "{}:{first_line}: editing HTTP route {} in place would change more than its weights (an unusual layout?); set them by hand",
            file.display(),
            release.route
        );
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::{Path, PathBuf};

    use super::*;

    fn sample(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/istio-samples")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn release(stable: &str, canary: &str, route: &str, step: usize) -> Release {
        Release {
            stable: stable.into(),
            canary: canary.into(),
            steps: vec![10, 25, 50, 100],
            step,
            route: route.into(),
            phase: Phase::Progressing,
        }
    }

    fn object(text: &str) -> Value {
        parse_str(text, Path::new("vs.yaml"), &Default::default())
            .unwrap()
            .remove(0)
            .object
    }

    fn file() -> PathBuf {
        PathBuf::from("namespaces/team-a/vs.yaml")
    }

    /// The lines of `after` that are not in `before`, and those gone.
    fn changed_lines(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
        let b: Vec<&str> = before.lines().collect();
        let a: Vec<&str> = after.lines().collect();
        let added = a
            .iter()
            .filter(|l| !b.contains(l))
            .map(|l| l.to_string())
            .collect();
        let removed = b
            .iter()
            .filter(|l| !a.contains(l))
            .map(|l| l.to_string())
            .collect();
        (added, removed)
    }

    #[test]
    fn moves_the_80_20_split_and_keeps_everything_else() {
        let text = format!(
            "# reviews: owned by team-a\n{}",
            sample("virtual-service-reviews-80-20.yaml")
        )
        .replace("      weight: 20", "      weight: 20 # the canary");
        let r = release("v1", "v2", "http[0]", 2);
        let out = edit_document(&text, &file(), 1, 0, &r, Split::Canary(25)).unwrap();
        let (added, removed) = changed_lines(&text, &out);
        assert_eq!(
            added,
            [
                "  annotations:".to_string(),
                format!("    {ANNOTATION}: '{}'", r.to_annotation()),
                "      weight: 75".into(),
                "      weight: 25 # the canary".into(),
            ]
        );
        assert_eq!(
            removed,
            ["      weight: 80", "      weight: 20 # the canary"]
        );
        assert!(out.starts_with("# reviews: owned by team-a\n"));
        let vs = object(&out);
        assert_eq!(
            destinations(&vs, 0)[0],
            (Some("v1".into()), "reviews".into(), Some(75))
        );
        assert_eq!(
            destinations(&vs, 0)[1],
            (Some("v2".into()), "reviews".into(), Some(25))
        );
        assert_eq!(Release::of(&vs).unwrap(), Some(r.clone()));

        // A second move replaces the annotation in place.
        let r3 = Release { step: 3, ..r };
        let again = edit_document(&out, &file(), 1, 0, &r3, Split::Canary(50)).unwrap();
        let (added, _) = changed_lines(&out, &again);
        assert_eq!(added.len(), 3, "{added:?}");
        assert_eq!(Release::of(&object(&again)).unwrap(), Some(r3));
    }

    #[test]
    fn adds_the_canary_destination_and_promotes_to_it() {
        // A route with one destination and no weight: the canary is a copy
        // of the stable destination with the other subset.
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  annotations:\n    team: a # keep me\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews # short name\n        subset: v1\n";
        let r = release("v1", "v2", "http[0]", 1);
        let out = edit_document(text, &file(), 1, 0, &r, Split::Canary(10)).unwrap();
        let vs = object(&out);
        assert_eq!(
            destinations(&vs, 0),
            [
                (Some("v1".into()), "reviews".into(), Some(90)),
                (Some("v2".into()), "reviews".into(), Some(10))
            ]
        );
        assert!(out.contains("    team: a # keep me\n"), "{out}");
        assert_eq!(
            out.matches("host: reviews # short name").count(),
            2,
            "{out}"
        );

        let promoted = Release {
            phase: Phase::Promoted,
            step: 4,
            ..r.clone()
        };
        let done = edit_document(&out, &file(), 1, 0, &promoted, Split::AllCanary).unwrap();
        let vs = object(&done);
        assert_eq!(
            destinations(&vs, 0),
            [(Some("v2".into()), "reviews".into(), Some(100))]
        );
        assert_eq!(Release::of(&vs).unwrap().unwrap().weight(), 100);

        let aborted = Release {
            phase: Phase::Aborted,
            ..r
        };
        let back = edit_document(&out, &file(), 1, 0, &aborted, Split::AllStable).unwrap();
        let vs = object(&back);
        assert_eq!(
            destinations(&vs, 0),
            [(Some("v1".into()), "reviews".into(), Some(100))]
        );
        // Back where it started, but for the explicit weight and the plan.
        let (added, removed) = changed_lines(text, &back);
        assert_eq!(removed, Vec::<String>::new());
        assert_eq!(added.len(), 2, "{added:?}");
    }

    #[test]
    fn changes_only_the_chosen_route_of_the_multi_route_sample() {
        let text = sample("virtual-service-reviews-jason-v2-v3.yaml")
            .replace("  - match:", "  # jason sees v2\n  - match:");
        let vs = object(&text);
        assert!(
            route_index(&vs, None)
                .unwrap_err()
                .to_string()
                .contains("2 HTTP routes")
        );
        let index = route_index(&vs, Some("http[1]")).unwrap();
        assert_eq!(index, 1);
        check_route(&vs, index, "v3", "v2").unwrap();
        let r = release("v3", "v2", "http[1]", 1);
        let out = edit_document(&text, &file(), 1, index, &r, Split::Canary(10)).unwrap();
        // The first route, its comment included, is byte for byte the same.
        let first =
            |t: &str| t[t.find("  # jason").unwrap()..t.find("  - route:").unwrap()].to_string();
        assert_eq!(first(&out), first(&text));
        let after = object(&out);
        assert_eq!(after["spec"]["http"][0], vs["spec"]["http"][0]);
        assert_eq!(
            destinations(&after, 1),
            [
                (Some("v3".into()), "reviews".into(), Some(90)),
                (Some("v2".into()), "reviews".into(), Some(10))
            ]
        );
    }

    #[test]
    fn edits_one_document_of_a_multi_document_file() {
        let dr = sample("destination-rule-reviews.yaml");
        let vs = sample("virtual-service-reviews-90-10.yaml");
        let text = format!("{dr}---\n# the route\n{vs}");
        let chunks = crate::objects::split_documents(&text);
        assert_eq!(chunks.len(), 2);
        let r = release("v1", "v2", "http[0]", 3);
        let edited = edit_document(&chunks[1], &file(), 1, 0, &r, Split::Canary(50)).unwrap();
        let whole = format!("{}{edited}", chunks[0]);
        assert!(whole.starts_with(&dr), "the DestinationRule changed");
        assert!(edited.starts_with("---\n# the route\n"), "{edited}");
        let vs = object(&edited);
        assert_eq!(destinations(&vs, 0)[1].2, Some(50));
    }

    #[test]
    fn refuses_routes_it_cannot_carry() {
        let vs = object(&sample("virtual-service-reviews-80-20.yaml"));
        assert!(
            check_route(&vs, 0, "v3", "v2")
                .unwrap_err()
                .to_string()
                .contains("no traffic to subset \"v3\"")
        );
        assert!(
            check_route(&vs, 0, "v1", "v3")
                .unwrap_err()
                .to_string()
                .contains("also sends traffic to reviews subset v2")
        );
        assert_eq!(check_route(&vs, 0, "v1", "v2").unwrap(), "reviews");
        assert!(route_index(&vs, Some("nope")).is_err());
    }

    #[test]
    fn refuses_an_edit_that_would_change_more_than_the_weights() {
        // An alias shared by two routes: editing one in place would change
        // the other, so the edit is refused.
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [r]\n  http:\n  - route: &dests\n    - destination: {host: r, subset: v1}\n      weight: 100\n  - route: *dests\n";
        let r = release("v1", "v2", "http[0]", 1);
        let error = edit_document(text, &file(), 3, 0, &r, Split::Canary(10))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("namespaces/team-a/vs.yaml:10: HTTP route http[0] (or the metadata) uses a YAML anchor or alias"),
            "{error}"
        );
    }

    #[test]
    fn steps_must_increase_within_1_to_100() {
        check_steps(&[5, 10, 25, 50, 100]).unwrap();
        assert!(check_steps(&[]).is_err());
        assert!(check_steps(&[0, 10]).is_err());
        assert!(check_steps(&[10, 10]).is_err());
        assert!(check_steps(&[50, 20]).is_err());
        assert!(check_steps(&[10, 101]).is_err());
    }
}
