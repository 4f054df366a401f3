//! The API client both programs build: kube's own stack (TLS from the
//! kubeconfig, the base URI, retries when asked, the credentials, extra
//! headers) over a hyper client whose connections hold small buffers.
//!
//! kube's default client keeps hyper's adaptive read buffer, which grows to
//! about 400 KiB on a large LIST and stays that size on every pooled
//! connection: at 1,000 objects and 16 connections that was a quarter of
//! the idle agent's heap (docs/benchmarks.md). Capped at 16 KiB, a LIST
//! page is read in a few more `read` calls and each idle connection holds
//! a sixteenth of it. Proxies, which kube supports only through features
//! this workspace does not build, go through kube's own builder and its
//! error.

use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioExecutor};
use kube::{
    Client, Config,
    client::{ConfigExt as _, retry::RetryPolicy},
};
use tower::{BoxError, ServiceBuilder, retry::RetryLayer};

/// The largest read (and write) buffer of one connection.
const BUFFER: usize = 16 * 1024;

/// Idle connections kept for reuse. An apply opens one per write in flight
/// (`--concurrency`, 16) and hyper would keep them all, each with its TLS
/// state and buffers, for 90 s: a few hundred KiB of an idle agent that
/// needs two (a pass, a status write; its watches hold their own).
const IDLE_CONNECTIONS: usize = 2;

/// A client for `config`, with its connect, read and write timeouts on
/// each connection.
pub fn build(config: Config) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() {
        return Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .http1_max_buf_size(BUFFER)
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .build(connector);
    // kube's retries of 429/503/504 when the config asks for them (the
    // plugin; the agent retries on its own terms).
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}
