//! Every way people write a VirtualService, and every canary move on each:
//! the edited text parses and means exactly the move made on the object
//! (issue 29). A corpus of styles, and a property test that prints
//! generated VirtualServices in random styles.
#![cfg(test)]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use gitops_shared::manifest::parse_str;
use serde_json::Value;

use super::release::{Phase, Release, Split, apply_to_object, edit_document};
use crate::objects::{same, split_documents};

fn object(text: &str) -> Value {
    let mut docs = parse_str(text, Path::new("vs.yaml"), &Default::default())
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0).object
}

fn release(step: usize) -> Release {
    Release {
        stable: "v1".into(),
        canary: "v2".into(),
        steps: vec![10, 50, 100],
        step,
        route: "http[0]".into(),
        phase: Phase::Progressing,
    }
}

/// `start` (10% to v2) on `text`, the document at `first_line` of `file`.
fn start(text: &str, file: &str, first_line: usize) -> anyhow::Result<String> {
    edit_document(
        text,
        Path::new(file),
        first_line,
        0,
        &release(1),
        Split::Canary(10),
    )
}

/// The moves of a release, each from the text the one before left:
/// start, step, promote; and start, abort (the rollback of `canary run`).
fn moves() -> Vec<Vec<(Release, Split)>> {
    let promoted = Release {
        phase: Phase::Promoted,
        ..release(3)
    };
    let aborted = Release {
        phase: Phase::Aborted,
        ..release(1)
    };
    vec![
        vec![
            (release(1), Split::Canary(10)),
            (release(2), Split::Canary(50)),
            (promoted, Split::AllCanary),
        ],
        vec![(release(1), Split::Canary(10)), (aborted, Split::AllStable)],
    ]
}

/// Run every move sequence on `text` (one document); each result must parse
/// and equal the same move made on the object.
fn every_move_is_exact(name: &str, text: &str) {
    for sequence in moves() {
        let mut text = text.to_string();
        for (release, split) in sequence {
            let before = object(&text);
            let expected = apply_to_object(&before, 0, &release, split).unwrap();
            let edited = edit_document(&text, Path::new("vs.yaml"), 1, 0, &release, split)
                .unwrap_or_else(|e| panic!("{name}: {split:?}: {e:#}\n{text}"));
            let after = object(&edited);
            assert!(
                same(&after, &expected),
                "{name}: {split:?}:\n{edited}\n{after}\n{expected}"
            );
            if text.contains("\r\n") {
                assert!(
                    !edited.replace("\r\n", "").contains('\n'),
                    "{name}: {split:?}: a bare line feed in a CRLF file:\n{edited:?}"
                );
            }
            text = edited;
        }
    }
}

/// The VirtualService of the report (issue 29): compact flow style.
const FLOW: &str = "# the reviews service: all traffic to v1 for now\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - name: primary\n    route:\n    - destination: {host: reviews, subset: v1}\n";

const BLOCK: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  annotations:\n    team: a\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 100\n";

fn styles() -> Vec<(&'static str, String)> {
    vec![
        ("block", BLOCK.to_string()),
        ("flow (the report's)", FLOW.to_string()),
        (
            "all flow",
            "{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: reviews, annotations: {team: a}}, spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}, weight: 100}]}]}}\n".into(),
        ),
        (
            "json",
            r#"{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews"}, "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}}"#.into(),
        ),
        (
            "mixed: flow destinations, block weights",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}, weight: 100}]\n".into(),
        ),
        (
            "quoted keys and values",
            "\"apiVersion\": 'networking.istio.io/v1'\n\"kind\": \"VirtualService\"\n'metadata':\n  \"name\": 'reviews'\n\"spec\":\n  'hosts': ['reviews']\n  \"http\":\n  - \"route\":\n    - 'destination':\n        \"host\": \"reviews\"\n        'subset': 'v1'\n      \"weight\": 100\n".into(),
        ),
        ("crlf block", BLOCK.replace('\n', "\r\n")),
        ("crlf flow", FLOW.replace('\n', "\r\n")),
        (
            "comments between items",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  # who\n  name: reviews # the name\n  # no annotations yet\nspec:\n  hosts:\n  # the host\n  - reviews\n  http:\n  # the only route\n  - route:\n    # stable first\n    - destination:\n        host: reviews # short\n        subset: v1\n      # all of it\n      weight: 100 # for now\n    # end of route\n".into(),
        ),
        (
            "four-space indents, indented sequences",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n    name: reviews\nspec:\n    hosts:\n        - reviews\n    http:\n        -   route:\n                -   destination:\n                        host: reviews\n                        subset: v1\n                    weight: 100\n".into(),
        ),
        (
            "flush sequences",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n".into(),
        ),
        (
            "document markers",
            format!("---\n{BLOCK}...\n"),
        ),
        (
            "two routes, the canary already there",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 90}\n    - {destination: {host: reviews, subset: v2}, weight: 10}\n  - route: [{destination: {host: ratings}}]\n".into(),
        ),
    ]
}

#[test]
fn every_style_takes_every_move_exactly() {
    for (name, text) in styles() {
        every_move_is_exact(name, &text);
    }
}

/// The file of the report: a DestinationRule and the VirtualService in flow
/// style, one file; the other document stays byte for byte the same.
#[test]
fn the_other_documents_of_the_file_stay_byte_for_byte() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    for nl in ["\n", "\r\n"] {
        let file = format!("{dr}---\n{FLOW}").replace('\n', nl);
        let chunks = split_documents(&file);
        assert_eq!(chunks.len(), 2);
        let edited = start(&chunks[1], "vs.yaml", 1 + chunks[0].matches('\n').count()).unwrap();
        let whole = format!("{}{edited}", chunks[0]);
        assert!(whole.starts_with(&chunks[0]));
        let docs = parse_str(&whole, Path::new("both.yaml"), &Default::default()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[1].object["spec"]["http"][0]["route"][1]["destination"]["subset"],
            "v2"
        );
        // and the comment above the VirtualService is kept
        assert!(edited.contains("# the reviews service: all traffic to v1 for now"));
    }
}

/// Aliases shared between routes: refused with the file's line and what to
/// change, never written.
#[test]
fn shared_anchors_are_refused_with_their_line() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route: &dests\n    - destination: {host: r, subset: v1}\n  - route: *dests\n";
    let error = start(text, "ns/vs.yaml", 5).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "ns/vs.yaml:11: HTTP route http[0] (or the metadata) uses a YAML anchor or alias"
        ) && error.contains("without `&`/`*`"),
        "{error}"
    );
    // an alias inside the route, pointing elsewhere, likewise
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nx-host: &h r\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: *h, subset: v1}\n";
    let error = start(text, "vs.yaml", 1).unwrap_err().to_string();
    assert!(error.starts_with("vs.yaml:9: "), "{error}");
}

mod generated {
    //! VirtualServices printed in random styles: every move's result parses
    //! and equals the object-level move.

    use proptest::prelude::*;

    use super::*;

    /// How one collection is printed.
    #[derive(Debug, Clone, Copy)]
    enum Style {
        Block,
        Flow,
    }

    #[derive(Debug, Clone)]
    struct Printer {
        indent: usize,
        /// Block sequences indented under their key, or flush with it.
        indented_seqs: bool,
        quote_keys: bool,
        quote_values: bool,
        crlf: bool,
        comments: bool,
        markers: bool,
        metadata: Style,
        hosts: Style,
        route: Style,
        destination: Style,
    }

    fn style() -> impl Strategy<Value = Style> {
        prop_oneof![Just(Style::Block), Just(Style::Flow)]
    }

    fn printer() -> impl Strategy<Value = Printer> {
        (
            prop_oneof![Just(2usize), Just(4)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            (style(), style(), style(), style()),
        )
            .prop_map(
                |(indent, indented_seqs, quote_keys, quote_values, crlf, comments, markers, s)| {
                    Printer {
                        indent,
                        indented_seqs,
                        quote_keys,
                        quote_values,
                        crlf,
                        comments,
                        markers,
                        metadata: s.0,
                        hosts: s.1,
                        route: s.2,
                        destination: s.3,
                    }
                },
            )
    }

    /// A VirtualService: routes of (subset, weight) destinations; route 0
    /// starts at v1 alone or v1 and v2.
    #[derive(Debug, Clone)]
    struct Vs {
        first: Vec<(&'static str, Option<u32>)>,
        others: Vec<Vec<(&'static str, Option<u32>)>>,
        name: Option<&'static str>,
    }

    fn vs() -> impl Strategy<Value = Vs> {
        let first = prop_oneof![
            Just(vec![("v1", None)]),
            Just(vec![("v1", Some(100))]),
            Just(vec![("v1", Some(90)), ("v2", Some(10))]),
        ];
        let other = prop_oneof![
            Just(vec![("v3", None)]),
            Just(vec![("v1", Some(50)), ("v3", Some(50))]),
        ];
        (
            first,
            proptest::collection::vec(other, 0..3),
            prop_oneof![Just(None), Just(Some("primary"))],
        )
            .prop_map(|(first, others, name)| Vs {
                first,
                others,
                name,
            })
    }

    impl Printer {
        fn key(&self, k: &str) -> String {
            if self.quote_keys {
                format!("\"{k}\"")
            } else {
                k.to_string()
            }
        }

        fn value(&self, v: &str) -> String {
            if self.quote_values {
                format!("'{v}'")
            } else {
                v.to_string()
            }
        }

        fn destination(&self, subset: &str, weight: Option<u32>) -> (String, Vec<String>) {
            // the destination map in flow style
            let dest = format!(
                "{{{}: {}, {}: {}}}",
                self.key("host"),
                self.value("reviews"),
                self.key("subset"),
                self.value(subset)
            );
            // the whole route item in flow style, for a flow route
            let weighted = weight
                .map(|w| format!(", {}: {w}", self.key("weight")))
                .unwrap_or_default();
            let flow = format!("{{{}: {dest}{weighted}}}", self.key("destination"));
            // or block lines relative to the item
            let pad = " ".repeat(self.indent);
            let mut lines = match self.destination {
                Style::Flow => vec![format!("{}: {dest}", self.key("destination"))],
                Style::Block => vec![
                    format!("{}:", self.key("destination")),
                    format!("{pad}{}: {}", self.key("host"), self.value("reviews")),
                    format!("{pad}{}: {}", self.key("subset"), self.value(subset)),
                ],
            };
            if let Some(w) = weight {
                lines.push(format!("{}: {w}", self.key("weight")));
            }
            (flow, lines)
        }

        fn print(&self, vs: &Vs) -> String {
            let pad = " ".repeat(self.indent);
            let seq = if self.indented_seqs {
                pad.clone()
            } else {
                String::new()
            };
            let mut out = Vec::new();
            if self.markers {
                out.push("---".to_string());
            }
            if self.comments {
                out.push("# generated".to_string());
            }
            out.push(format!(
                "{}: {}",
                self.key("apiVersion"),
                self.value("networking.istio.io/v1")
            ));
            out.push(format!(
                "{}: {}",
                self.key("kind"),
                self.value("VirtualService")
            ));
            match self.metadata {
                Style::Flow => out.push(format!(
                    "{}: {{{}: {}}}",
                    self.key("metadata"),
                    self.key("name"),
                    self.value("reviews")
                )),
                Style::Block => {
                    out.push(format!("{}:", self.key("metadata")));
                    out.push(format!(
                        "{pad}{}: {}",
                        self.key("name"),
                        self.value("reviews")
                    ));
                }
            }
            out.push(format!("{}:", self.key("spec")));
            match self.hosts {
                Style::Flow => out.push(format!(
                    "{pad}{}: [{}]",
                    self.key("hosts"),
                    self.value("reviews")
                )),
                Style::Block => {
                    out.push(format!("{pad}{}:", self.key("hosts")));
                    out.push(format!("{pad}{seq}- {}", self.value("reviews")));
                }
            }
            out.push(format!("{pad}{}:", self.key("http")));
            let routes =
                std::iter::once((vs.name, &vs.first)).chain(vs.others.iter().map(|r| (None, r)));
            // a route item's keys sit two past its `- `
            let item = format!("{pad}{seq}");
            let inner = format!("{item}  ");
            for (name, dests) in routes {
                if self.comments {
                    out.push(format!("{item}# a route"));
                }
                let mut first_key = true;
                let mut key_line = |text: String, out: &mut Vec<String>| {
                    if first_key {
                        out.push(format!("{item}- {text}"));
                        first_key = false;
                    } else {
                        out.push(format!("{inner}{text}"));
                    }
                };
                if let Some(n) = name {
                    key_line(format!("{}: {}", self.key("name"), self.value(n)), &mut out);
                }
                match self.route {
                    Style::Flow => {
                        let items: Vec<String> = dests
                            .iter()
                            .map(|(s, w)| self.destination(s, *w).0)
                            .collect();
                        key_line(
                            format!("{}: [{}]", self.key("route"), items.join(", ")),
                            &mut out,
                        );
                    }
                    Style::Block => {
                        key_line(format!("{}:", self.key("route")), &mut out);
                        let dash = format!("{inner}{seq}- ");
                        let under = format!("{inner}{seq}  ");
                        for (s, w) in dests {
                            if self.comments {
                                out.push(format!("{inner}{seq}# a destination"));
                            }
                            let (_, lines) = self.destination(s, *w);
                            for (i, line) in lines.iter().enumerate() {
                                out.push(if i == 0 {
                                    format!("{dash}{line}")
                                } else {
                                    format!("{under}{line}")
                                });
                            }
                        }
                    }
                }
            }
            if self.markers {
                out.push("...".to_string());
            }
            let nl = if self.crlf { "\r\n" } else { "\n" };
            let mut text = out.join(nl);
            text.push_str(nl);
            text
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn every_move_on_a_generated_style_is_exact(vs in vs(), printer in printer()) {
            let text = printer.print(&vs);
            // the printer writes what the loader reads
            let _ = object(&text);
            every_move_is_exact(&format!("{printer:?}"), &text);
            // the canary's copy of a quoted subset is quoted the same way
            if printer.quote_values && vs.first.len() == 1 {
                let edited = start(&text, "vs.yaml", 1).unwrap();
                prop_assert!(edited.contains("'v2'"), "{}", edited);
            }
        }
    }
}
