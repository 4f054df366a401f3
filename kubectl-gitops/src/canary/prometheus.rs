//! The one call `canary run` makes to Prometheus: an instant query,
//! `GET /api/v1/query`, over hyper (already in the tree through kube), with
//! rustls and the system's roots for `https://`.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Prometheus server's HTTP API.
pub struct Prometheus {
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("base", &self.base)
            .finish()
    }
}

/// What an instant query gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One number (a scalar, or a vector of one sample). May be NaN.
    Value(f64),
    /// An empty vector: no series matched (no traffic, or no such metric).
    Empty,
    /// A vector of several series: the query must aggregate to one.
    Series(usize),
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

impl Prometheus {
    /// A client for the server at `url` (`http://host:9090`, a path prefix allowed).
    pub fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--prometheus {url:?}: give an http:// or https:// URL");
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("reading the system's TLS roots")?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self { base, client })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Run `promql` as an instant query at the server's now.
    pub async fn query(&self, promql: &str) -> Result<Answer> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let uri: hyper::Uri = format!("{}/api/v1/query?{query}", self.base)
            .parse()
            .with_context(|| format!("{} is not a valid URL", self.base))?;
        let request = hyper::Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())?;
        let response = tokio::time::timeout(QUERY_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| {
                anyhow!(
                    "Prometheus at {} did not answer within {QUERY_TIMEOUT:?}",
                    self.base
                )
            })?
            .map_err(|e| anyhow!("Prometheus at {} is unreachable: {e}", self.base))?;
        let status = response.status();
        let body = tokio::time::timeout(QUERY_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| anyhow!("Prometheus at {} stopped answering", self.base))?
            .map_err(|e| anyhow!("reading Prometheus's answer: {e}"))?
            .to_bytes();
        parse_answer(status.as_u16(), &body)
    }
}

/// The answer of `/api/v1/query` (any status: Prometheus explains its 4xx
/// and 5xx in the same JSON shape).
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Answer> {
    let response: Response = serde_json::from_slice(body).map_err(|_| {
        anyhow!(
            "Prometheus answered HTTP {status} with no query result: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        )
    })?;
    if response.status != "success" {
        bail!(
            "Prometheus refused the query ({}): {}",
            response.error_type.as_deref().unwrap_or("error"),
            response.error.as_deref().unwrap_or("no reason given")
        );
    }
    let data = response
        .data
        .ok_or_else(|| anyhow!("Prometheus answered without data"))?;
    let number = |pair: &serde_json::Value| -> Result<f64> {
        // [ <time>, "<value>" ]; Prometheus writes NaN and Inf as strings too.
        let text = pair[1]
            .as_str()
            .ok_or_else(|| anyhow!("a sample without a value"))?;
        match text {
            "NaN" => Ok(f64::NAN),
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            t => t
                .parse()
                .map_err(|_| anyhow!("the sample value {t:?} is not a number")),
        }
    };
    match data.result_type.as_str() {
        "scalar" => Ok(Answer::Value(number(&data.result)?)),
        "vector" => {
            let series = data.result.as_array().map(Vec::as_slice).unwrap_or(&[]);
            match series {
                [] => Ok(Answer::Empty),
                [one] => Ok(Answer::Value(number(&one["value"])?)),
                many => Ok(Answer::Series(many.len())),
            }
        }
        other => bail!("the query gave a {other}, not a number; write an instant vector or scalar"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_vectors_scalars_and_errors() {
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"99.5"]}]}}"#;
        assert_eq!(parse_answer(200, one).unwrap(), Answer::Value(99.5));
        let none = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(200, none).unwrap(), Answer::Empty);
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(matches!(parse_answer(200, nan).unwrap(), Answer::Value(v) if v.is_nan()));
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert_eq!(parse_answer(200, two).unwrap(), Answer::Series(2));
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let e = parse_answer(400, bad).unwrap_err().to_string();
        assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
        let html = b"<html>502 Bad Gateway</html>";
        assert!(
            parse_answer(502, html)
                .unwrap_err()
                .to_string()
                .contains("HTTP 502")
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_answer(200, matrix).is_err());
    }
}
