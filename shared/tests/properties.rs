//! Properties of the core, over generated input (issue 12): the loader never
//! panics on any bytes; normalizing is idempotent; the hash depends on the
//! object, not on key order or formatting; and planning a desired set
//! against what applying its own plan leaves on the server gives nothing to
//! do, in any order of the live objects.
//!
//! `PROPTEST_CASES` sets the cases per property (default 256 here); the
//! counts of a run are in docs/reliability.md.

// A failed unwrap is a failed property, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use gitops_shared::{
    DesiredSet, ObjectKey,
    hash::object_hash,
    manifest::{LoadOptions, parse_bytes, parse_str, split_documents},
    normalize::{desired_object, normalize},
    plan::{KeepLive, PlanOptions, Planner, plan},
};
use proptest::{prelude::*, test_runner::Config};
use serde_json::{Map, Value, json};

const FILE: &str = "namespaces/team-a/generated.yaml";

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A short string from `alphabet`.
fn word(alphabet: &'static str, len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(prop::sample::select(chars), len)
        .prop_map(|c| c.into_iter().collect())
        .boxed()
}

/// A DNS-1123 label.
fn dns_label() -> BoxedStrategy<String> {
    (
        word("abcdefghijklmnopqrstuvwxyz", 1..=1),
        word("abcdefghijklmnopqrstuvwxyz0123456789-", 0..=12),
    )
        .prop_map(|(head, tail)| format!("{head}{}", tail.trim_end_matches('-')))
        .boxed()
}

/// Any string a user might write, quotes, colons, hashes and unicode among them.
fn text() -> BoxedStrategy<String> {
    word("abcxyzABC019 :#-_.,'\"\\/*&!%@`{}[]|>é✓\t", 0..=16)
}

/// A JSON value of a spec: maps, lists, strings, integers, booleans, null.
fn spec_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                word("abcdefghijklmnopqrstuvwxyzAB_-.", 1..=10),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Labels or annotations: a string map.
fn string_map() -> BoxedStrategy<Map<String, Value>> {
    prop::collection::btree_map(dns_label(), text(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        .boxed()
}

const KINDS: &[&str] = &[
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
];

/// An Istio object as a user writes it, maybe with what a server adds.
fn object() -> BoxedStrategy<Value> {
    (
        prop::sample::select(KINDS),
        dns_label(),
        string_map(),
        string_map(),
        spec_value(),
        any::<bool>(),
    )
        .prop_map(|(kind, name, labels, annotations, spec, served)| {
            let mut o = json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "spec": {"field": spec},
            });
            if !labels.is_empty() {
                o["metadata"]["labels"] = Value::Object(labels);
            }
            if !annotations.is_empty() {
                o["metadata"]["annotations"] = Value::Object(annotations);
            }
            if served {
                let m = &mut o["metadata"];
                m["uid"] = json!("0b1c");
                m["resourceVersion"] = json!("42");
                m["generation"] = json!(3);
                m["managedFields"] = json!([{"manager": "kubectl"}]);
                m["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{}");
                o["status"] = json!({"conditions": []});
            }
            o
        })
        .boxed()
}

/// `value` as JSON text (which is YAML), keys in reverse order when
/// `reverse`, indented when `pretty`.
fn emit(value: &Value, reverse: bool, pretty: bool, depth: usize, out: &mut String) {
    let indent = |out: &mut String, d: usize| {
        if pretty {
            out.push('\n');
            out.push_str(&"  ".repeat(d));
        }
    };
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut entries: Vec<_> = map.iter().collect();
            if reverse {
                entries.reverse();
            }
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(": ");
                emit(v, reverse, pretty, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit(v, reverse, pretty, depth + 1, out);
            }
            out.push(']');
        }
        leaf => out.push_str(&serde_json::to_string(leaf).unwrap()),
    }
}

fn json_text(value: &Value, reverse: bool, pretty: bool) -> String {
    let mut out = String::new();
    emit(value, reverse, pretty, 0, &mut out);
    out.push('\n');
    out
}

fn parse_one(text: &str) -> Value {
    let mut manifests = parse_str(text, Path::new(FILE), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(manifests.len(), 1, "{text}");
    manifests.remove(0).object
}

/// YAML-looking text: fragments of real manifests, in any order.
fn yamlish() -> BoxedStrategy<String> {
    let fragments = prop::sample::select(vec![
        "apiVersion: networking.istio.io/v1\n",
        "kind: VirtualService\n",
        "metadata:\n",
        "  name: reviews\n",
        "  namespace: team-b\n",
        "spec:\n",
        "  hosts: [reviews]\n",
        "  - route:\n",
        "    - destination: {host: reviews}\n",
        "---\n",
        "--- |\n",
        "...\n",
        "- a\n",
        "&a [*a, *a]\n",
        "*a\n",
        "? complex\n",
        ": value\n",
        "\t",
        "  ",
        "\"unterminated\n",
        "'quoted': 'x'\n",
        "key: value\nkey: again\n",
        "!!binary aGVsbG8=\n",
        "!custom {a: 1}\n",
        "%YAML 1.2\n",
        "# comment\n",
        "{a: [b, {c: d}]}\n",
        "[[[[[[[[\n",
        "x: 0x1F\ny: .inf\nz: ~\n",
        "\u{feff}",
        "é: ✓\n",
    ]);
    prop::collection::vec(fragments, 0..24)
        .prop_map(|f| f.concat())
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    /// The loader never panics, and an error names the file.
    #[test]
    fn the_loader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = split_documents(&String::from_utf8_lossy(&bytes));
        if let Err(errors) = parse_bytes(&bytes, Path::new(FILE), &LoadOptions::default()) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert_eq!(e.file.as_path(), Path::new(FILE));
            }
        }
    }

    /// The same on text made of manifest fragments (where the parser's
    /// deeper states are), and a document it accepts is an object.
    #[test]
    fn the_loader_never_panics_on_yaml_fragments(text in yamlish()) {
        match parse_str(&text, Path::new(FILE), &LoadOptions::default()) {
            Ok(manifests) => {
                for m in manifests {
                    prop_assert!(m.object.is_object());
                    prop_assert!(!m.kind.is_empty() && !m.name.is_empty());
                }
            }
            Err(errors) => prop_assert!(errors.iter().all(|e| e.file == Path::new(FILE))),
        }
    }

    #[test]
    fn normalize_is_idempotent(o in object(), ns in dns_label()) {
        let once = normalize(&o, &ns);
        prop_assert_eq!(normalize(&once, &ns), once.clone());
        prop_assert_eq!(&once["metadata"]["namespace"], &json!(ns));
        prop_assert!(once.get("status").is_none());
    }

    /// Written with keys in another order, indented or not, the object
    /// parses to the same value and hashes the same; what a server adds
    /// does not change the hash of the normalized object.
    #[test]
    fn the_hash_is_stable_under_key_order_and_formatting(o in object()) {
        let a = parse_one(&json_text(&o, false, false));
        let b = parse_one(&json_text(&o, true, true));
        prop_assert_eq!(&a, &b);
        let hash = |v: &Value| object_hash(&normalize(v, "team-a"));
        prop_assert_eq!(hash(&a), hash(&b));
        let mut served = a.clone();
        served["metadata"]["resourceVersion"] = json!("99");
        served["status"] = json!({"observedGeneration": 9});
        prop_assert_eq!(hash(&served), hash(&a));
    }

    /// Apply the plan of a desired set to an empty server, add what the
    /// server adds, and plan again, the live objects in any order: nothing
    /// to do and no drift.
    #[test]
    fn the_plan_of_what_its_own_plan_applied_is_empty(
        objects in prop::collection::vec(object(), 1..8),
        seed in any::<u64>(),
    ) {
        // unique keys: the loader refuses duplicates before any plan
        let mut seen = std::collections::BTreeSet::new();
        let docs: Vec<String> = objects
            .into_iter()
            .filter(|o| seen.insert((o["kind"].to_string(), o["metadata"]["name"].to_string())))
            .map(|o| json_text(&o, false, true))
            .collect();
        let manifests = parse_str(&docs.join("---\n"), Path::new(FILE), &LoadOptions::default())
            .unwrap();
        let desired = Ok(DesiredSet { namespace: "team-a".into(), manifests, allow_empty: false });
        let opts = PlanOptions::default();
        let first = plan(&desired, &[], &[], &opts).unwrap();
        prop_assert_eq!(first.apply.len(), docs.len());
        let mut live: Vec<Value> = first
            .apply
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let mut o = step.object_value().unwrap();
                o["metadata"]["uid"] = json!(format!("uid-{i}"));
                o["metadata"]["resourceVersion"] = json!(format!("{}", 100 + i));
                o["metadata"]["creationTimestamp"] = json!("2026-12-04T00:00:00Z");
                o["metadata"]["managedFields"] = json!([{"manager": "kubectl-gitops"}]);
                o["status"] = json!({});
                o
            })
            .collect();
        // any order (a planner is fed LIST pages as they come)
        let n = live.len();
        for i in 0..n {
            live.swap(i, (seed as usize).wrapping_add(i * 7) % n);
        }
        let inventory: Vec<ObjectKey> = live.iter().filter_map(ObjectKey::of).collect();
        let again = plan(&desired, &live, &inventory, &opts).unwrap();
        prop_assert!(again.is_noop(), "{:?}", again.apply.iter().map(|s| &s.reason).collect::<Vec<_>>());
        prop_assert!(again.drift.is_empty(), "{:?}", again.drift);
        let mut planner = Planner::new(&desired, &inventory, &opts, KeepLive::Metadata).unwrap();
        live.into_iter().rev().for_each(|o| planner.add(o));
        let streamed = planner.finish().unwrap();
        prop_assert!(streamed.is_noop() && streamed.drift.is_empty());
        // and the hash the plan applied is the desired object's own
        for m in &desired.as_ref().unwrap().manifests {
            let (_, hash) = desired_object(&m.object, "team-a", &opts.agent, FILE);
            prop_assert!(again.unchanged.iter().any(|s| s.hash.as_deref() == Some(hash.as_str())));
        }
    }
}
