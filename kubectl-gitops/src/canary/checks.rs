//! The metric checks that judge a canary step: Flagger's Istio queries by
//! default (request success rate and p99 latency of the canary's version,
//! `reporter="destination"`), plus `--query NAME=PROMQL:MIN:MAX`, each over
//! a window that starts after the step went live.
//!
//! A check passes only on a number within its bounds. A query error, an
//! unreachable Prometheus, NaN, several series or no series at all fail it:
//! silence is never health. The success rate counts non-5xx answers over all
//! answers, so a canary with zero 5xx is at 100%, not "no data"
//! (flagger #1365), and one with only 5xx is at 0%.

use std::{fmt, time::Duration};

use anyhow::{Result, anyhow, bail};

use super::prometheus::{Answer, Prometheus};

/// One check: a PromQL template and its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    /// PromQL with `{{ selector }}`, `{{ namespace }}`, `{{ interval }}`
    /// (the window, e.g. `63s`) and `{{ version }}` to fill in.
    pub query: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Who the checks look at.
#[derive(Debug, Clone)]
pub struct Scope {
    pub namespace: String,
    /// The canary's version label value, when known.
    pub version: Option<String>,
    /// PromQL label matchers for the canary's requests, without braces.
    pub selector: String,
}

impl Scope {
    /// The canary of `service` in `namespace`: by `destination_version`, or
    /// by the user's `--canary-selector` (PromQL matchers, or Kubernetes
    /// `key=value,...` labels).
    pub fn new(
        namespace: &str,
        service: Option<&str>,
        version: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Scope> {
        let mut matchers = vec![format!("destination_workload_namespace=\"{namespace}\"")];
        match selector {
            Some(s) => matchers.push(promql_matchers(s)?),
            None => {
                let Some(version) = version else {
                    bail!(
                        "the canary subset has no `version` label to tell its requests apart by; give --canary-selector (e.g. 'destination_workload=\"reviews-v2\"')"
                    );
                };
                if let Some(service) = service {
                    matchers.push(format!("destination_service_name=\"{service}\""));
                }
                matchers.push(format!("destination_version=\"{version}\""));
            }
        }
        Ok(Scope {
            namespace: namespace.to_string(),
            version: version.map(str::to_string),
            selector: matchers.join(","),
        })
    }
}

/// `a=b,c=d` as PromQL matchers `a="b",c="d"`; text that already quotes its
/// values is PromQL and stays as written.
fn promql_matchers(selector: &str) -> Result<String> {
    let selector = selector
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}');
    if selector.contains('"') {
        return Ok(selector.to_string());
    }
    let mut out = Vec::new();
    for pair in selector.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--canary-selector: {pair:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--canary-selector: {k:?} is not a Prometheus label name");
        }
        out.push(format!(
            "{k}=\"{}\"",
            v.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    if out.is_empty() {
        bail!("--canary-selector is empty");
    }
    Ok(out.join(","))
}

/// Flagger's Istio request-success-rate, in percent, made total: non-5xx
/// over all, with an empty numerator (only 5xx) counted as 0.
pub const SUCCESS_RATE: &str = "(sum(rate(istio_requests_total{reporter=\"destination\",{{ selector }},response_code!~\"5.*\"}[{{ interval }}])) or on() vector(0)) / sum(rate(istio_requests_total{reporter=\"destination\",{{ selector }}}[{{ interval }}])) * 100";

/// Flagger's Istio request-duration: the p99 in milliseconds.
pub const P99_MS: &str = "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\",{{ selector }}}[{{ interval }}])) by (le))";

/// The default checks with the given bounds.
pub fn defaults(min_success_rate: f64, max_p99_ms: f64) -> Vec<Check> {
    vec![
        Check {
            name: "success-rate".into(),
            query: SUCCESS_RATE.into(),
            min: Some(min_success_rate),
            max: None,
        },
        Check {
            name: "p99-ms".into(),
            query: P99_MS.into(),
            min: None,
            max: Some(max_p99_ms),
        },
    ]
}

/// `--query NAME=PROMQL:MIN:MAX`, either bound may be empty. PROMQL may hold
/// colons itself (`[5m:1m]`, recording rules): the bounds are the last two.
pub fn parse_query(text: &str) -> Result<Check> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("--query {text:?}: expected NAME=PROMQL:MIN:MAX"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("--query {text:?}: the name {name:?} must be letters, digits, - _ or .");
    }
    let mut parts = rest.rsplitn(3, ':');
    let (max, min, query) = (parts.next(), parts.next(), parts.next());
    let (Some(max), Some(min), Some(query)) = (max, min, query) else {
        bail!("--query {text:?}: expected NAME=PROMQL:MIN:MAX (leave a bound empty for none)");
    };
    let bound = |s: &str, which: &str| -> Result<Option<f64>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| anyhow!("--query {name}: the {which} bound {s:?} is not a number"))
    };
    let (min, max) = (bound(min, "minimum")?, bound(max, "maximum")?);
    if min.is_none() && max.is_none() {
        bail!("--query {name}: give a minimum, a maximum or both, or the check can never fail");
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        bail!("--query {name}: the minimum {lo} is above the maximum {hi}");
    }
    if query.trim().is_empty() {
        bail!("--query {name}: the PromQL is empty");
    }
    Ok(Check {
        name: name.to_string(),
        query: query.trim().to_string(),
        min,
        max,
    })
}

/// A window as a PromQL duration (whole seconds, at least 1s).
pub fn window(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

impl Check {
    /// The PromQL sent for this check.
    pub fn render(&self, scope: &Scope, window: &str) -> String {
        self.query
            .replace("{{ selector }}", &scope.selector)
            .replace("{{ namespace }}", &scope.namespace)
            .replace("{{ interval }}", window)
            .replace("{{ version }}", scope.version.as_deref().unwrap_or(""))
    }

    fn bounds(&self) -> String {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
            (Some(lo), None) => format!(">= {lo}"),
            (None, Some(hi)) => format!("<= {hi}"),
            (None, None) => "any".into(),
        }
    }

    /// Judge one answer.
    pub fn judge(&self, answer: Result<Answer>) -> Verdict {
        let (value, failure) = match answer {
            Err(e) => (None, Some(format!("{e:#}"))),
            Ok(Answer::Empty) => (
                None,
                Some("no data: no requests to the canary in the window".into()),
            ),
            Ok(Answer::Series(n)) => (
                None,
                Some(format!("the query gave {n} series; aggregate it to one")),
            ),
            Ok(Answer::Value(v)) if v.is_nan() => (
                None,
                Some("NaN: no requests to the canary in the window".into()),
            ),
            Ok(Answer::Value(v)) => {
                let low = self.min.is_some_and(|lo| v < lo);
                let high = self.max.is_some_and(|hi| v > hi);
                let failure = (low || high).then(|| format!("outside {}", self.bounds()));
                (Some(v), failure)
            }
        };
        Verdict {
            name: self.name.clone(),
            bounds: self.bounds(),
            value,
            failure,
        }
    }

    /// Query and judge.
    pub async fn run(&self, prometheus: &Prometheus, scope: &Scope, window: &str) -> Verdict {
        let promql = self.render(scope, window);
        tracing::debug!(check = self.name, promql, "query");
        self.judge(prometheus.query(&promql).await)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub name: String,
    pub bounds: String,
    pub value: Option<f64>,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// `success-rate=99.87 (>= 99) ok`, or `... failed: why`: the value of a
/// `Gitops-Canary-Check:` trailer and of a progress line.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{}={} ({})", self.name, round(v), self.bounds)?,
            None => write!(f, "{}=none ({})", self.name, self.bounds)?,
        }
        match &self.failure {
            None => write!(f, " ok"),
            Some(why) => write!(f, " failed: {}", why.replace('\n', " ")),
        }
    }
}

fn round(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scope() -> Scope {
        Scope::new("team-a", Some("reviews"), Some("v2"), None).unwrap()
    }

    #[test]
    fn default_queries_are_scoped_to_the_canary_and_the_window() {
        let q = defaults(99.0, 500.0)[0].render(&scope(), "63s");
        assert_eq!(
            q,
            "(sum(rate(istio_requests_total{reporter=\"destination\",destination_workload_namespace=\"team-a\",destination_service_name=\"reviews\",destination_version=\"v2\",response_code!~\"5.*\"}[63s])) or on() vector(0)) / sum(rate(istio_requests_total{reporter=\"destination\",destination_workload_namespace=\"team-a\",destination_service_name=\"reviews\",destination_version=\"v2\"}[63s])) * 100"
        );
        let p99 = defaults(99.0, 500.0)[1].render(&scope(), "10s");
        assert!(p99.starts_with("histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\",destination_workload_namespace=\"team-a\""), "{p99}");
        assert_eq!(window(Duration::from_millis(400)), "1s");
    }

    #[test]
    fn selectors() {
        let s = Scope::new("team-a", None, None, Some("app=reviews,version=v2")).unwrap();
        assert_eq!(
            s.selector,
            "destination_workload_namespace=\"team-a\",app=\"reviews\",version=\"v2\""
        );
        let s = Scope::new(
            "team-a",
            None,
            None,
            Some("destination_workload=~\"reviews-v2.*\""),
        )
        .unwrap();
        assert!(
            s.selector
                .ends_with(",destination_workload=~\"reviews-v2.*\"")
        );
        assert!(Scope::new("team-a", Some("reviews"), None, None).is_err());
        assert!(Scope::new("team-a", None, None, Some("bad label=x")).is_err());
    }

    #[test]
    fn no_data_nan_errors_and_many_series_fail() {
        let check = &defaults(99.0, 500.0)[0];
        assert!(check.judge(Ok(Answer::Value(100.0))).ok());
        assert!(check.judge(Ok(Answer::Value(99.0))).ok());
        let low = check.judge(Ok(Answer::Value(80.0)));
        assert_eq!(
            low.to_string(),
            "success-rate=80 (>= 99) failed: outside >= 99"
        );
        for bad in [
            Ok(Answer::Empty),
            Ok(Answer::Value(f64::NAN)),
            Ok(Answer::Series(3)),
            Err(anyhow!("connection refused")),
        ] {
            let v = check.judge(bad);
            assert!(!v.ok(), "{v}");
            assert!(v.value.is_none());
        }
        let p99 = &defaults(99.0, 500.0)[1];
        assert!(!p99.judge(Ok(Answer::Value(501.5))).ok());
        assert_eq!(
            p99.judge(Ok(Answer::Value(12.345))).to_string(),
            "p99-ms=12.35 (<= 500) ok"
        );
    }

    #[test]
    fn parses_custom_queries_with_colons() {
        let c = parse_query("errors=sum(rate(x[5m:1m])):0:0.5").unwrap();
        assert_eq!(
            (c.name.as_str(), c.query.as_str(), c.min, c.max),
            ("errors", "sum(rate(x[5m:1m]))", Some(0.0), Some(0.5))
        );
        let c = parse_query("rps=job:requests:rate5m:10:").unwrap();
        assert_eq!(
            (c.query.as_str(), c.min, c.max),
            ("job:requests:rate5m", Some(10.0), None)
        );
        assert!(parse_query("x=up::").is_err());
        assert!(parse_query("x=up").is_err());
        assert!(parse_query("=up:1:2").is_err());
        assert!(parse_query("x=up:2:1").is_err());
        assert!(parse_query("x=up:a:1").is_err());
    }
}
