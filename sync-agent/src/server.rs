//! `/metrics`, `/healthz` and `/readyz` on hyper's HTTP/1 server (already in
//! the tree through kube): parsing, keep-alive and the header timeout are
//! hyper's; the routes are [`respond`], a pure function of the request line.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::debug;

use crate::report::Metrics;

/// A client gets this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection is kept longer than this, idle keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// At most this many connections at once; more are closed at accept, so a
/// flood of scrapers cannot grow the sidecar's memory.
const MAX_CONNECTIONS: usize = 32;
/// The largest request head read; anything longer is refused by hyper.
const MAX_HEAD: usize = 16 * 1024;

/// What the server shows.
#[derive(Debug, Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set after the first pass that did what it was asked; never cleared.
    pub ready: Arc<AtomicBool>,
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, health: Health) {
    serve_with(listener, health, HEADER_TIMEOUT).await;
}

async fn serve_with(listener: TcpListener, health: Health, header_timeout: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "too many connections; closed");
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(req.method(), req.uri().path(), &health);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(error)) => debug!(%error, %peer, "http connection failed"),
                Err(_) => debug!(%peer, "http connection closed after its lifetime"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// The answer to `method path`.
pub fn respond(method: &Method, path: &str, health: &Health) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, health.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::report::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" if health.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ok\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no pass has done what it was asked yet\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    fn health() -> Health {
        Health {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes() {
        let h = health();
        assert_eq!(respond(&Method::GET, "/healthz", &h).status(), 200);
        assert_eq!(respond(&Method::GET, "/readyz", &h).status(), 503);
        h.ready.store(true, Ordering::SeqCst);
        assert_eq!(respond(&Method::GET, "/readyz", &h).status(), 200);
        let m = respond(&Method::GET, "/metrics", &h);
        assert_eq!(m.status(), 200);
        assert!(
            m.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert!(body(m).await.contains("gitops_sync_total"));
        assert_eq!(respond(&Method::GET, "/nope", &h).status(), 404);
        assert_eq!(respond(&Method::POST, "/metrics", &h).status(), 405);
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        exchange(addr, request.as_bytes()).await
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = health();
        let task = tokio::spawn(serve(listener, h.clone()));
        let r = get(addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        h.ready.store(true, Ordering::SeqCst);
        let r = get(addr, "/readyz?verbose").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let r = get(addr, "/metrics").await;
        assert!(r.to_lowercase().contains("content-length: "), "{r}");
        assert!(r.contains("gitops_drifted_objects 0\n"), "{r}");
        // HTTP/1.0, as curl -0 and the demo's bash client speak it
        let r = exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.0 200 OK\r\n") && r.ends_with("ok\n"),
            "{r}"
        );
        // HEAD: headers only
        let r = exchange(
            addr,
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        // keep-alive: two requests on one connection
        let r = exchange(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "{r}");
        // garbage and an oversized head do not kill the server
        let r = exchange(addr, &[b'x'; MAX_HEAD + 10]).await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
        let r = exchange(addr, b"\x00\x01 not http\r\n\r\n").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        task.abort();
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_header_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_millis(300);
        let task = tokio::spawn(serve_with(listener, health(), timeout));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let mut out = Vec::new();
        // hyper answers 408 or just closes; either way the read ends
        let read = tokio::time::timeout(timeout * 20, s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "still open long after the header timeout");
        task.abort();
    }
}
