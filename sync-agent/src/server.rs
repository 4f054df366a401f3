//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1, by hand on a
//! tokio `TcpListener`: three fixed GET routes do not need a web framework.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::debug;

use crate::report::Metrics;

/// The largest request head read; anything longer is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server shows.
#[derive(Debug, Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set after the first successful sync; never cleared.
    pub ready: Arc<AtomicBool>,
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, health: Health) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(stream, &health).await {
                debug!(%error, %peer, "http connection failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = find_head_end(&buf) {
                return Ok(Some(end));
            }
            if buf.len() > MAX_HEAD {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let response = match head {
        Ok(Ok(Some(_))) => respond(&String::from_utf8_lossy(&buf), health),
        Ok(Ok(None)) => Response::text(400, "Bad Request", "bad request\n"),
        Ok(Err(e)) => return Err(e),
        Err(_) => Response::text(408, "Request Timeout", "timeout\n"),
    };
    stream.write_all(&response.bytes()).await?;
    stream.shutdown().await
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| {
        // be lenient with bare-LF clients
        buf.windows(2).position(|w| w == b"\n\n")
    })
}

/// One response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: headers only.
    pub head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Route a request head.
pub fn respond(head: &str, health: &Health) -> Response {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "only GET\n");
    }
    let mut response = match path {
        "/metrics" => Response {
            content_type: crate::report::metrics::CONTENT_TYPE,
            ..Response::text(200, "OK", &health.metrics.render())
        },
        "/healthz" | "/livez" => Response::text(200, "OK", "ok\n"),
        "/readyz" if health.ready.load(Ordering::SeqCst) => Response::text(200, "OK", "ok\n"),
        "/readyz" => Response::text(
            503,
            "Service Unavailable",
            "not ready: no successful sync yet\n",
        ),
        _ => Response::text(404, "Not Found", "not found\n"),
    };
    response.head_only = method == "HEAD";
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn routes() {
        let h = health();
        assert_eq!(respond("GET /healthz HTTP/1.1\r\n\r\n", &h).status, 200);
        assert_eq!(respond("GET /readyz HTTP/1.1\r\n\r\n", &h).status, 503);
        h.ready.store(true, Ordering::SeqCst);
        assert_eq!(
            respond("GET /readyz?verbose HTTP/1.1\r\n\r\n", &h).status,
            200
        );
        let m = respond("GET /metrics HTTP/1.1\r\n\r\n", &h);
        assert_eq!(m.status, 200);
        assert!(m.content_type.starts_with("application/openmetrics-text"));
        assert!(m.body.contains("gitops_sync_total"));
        assert_eq!(respond("GET /nope HTTP/1.1\r\n\r\n", &h).status, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1\r\n\r\n", &h).status, 405);
        let head = respond("HEAD /healthz HTTP/1.1\r\n\r\n", &h);
        assert!(head.head_only);
        assert!(
            String::from_utf8(head.bytes())
                .unwrap()
                .ends_with("\r\n\r\n")
        );
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
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
        let r = get(addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let r = get(addr, "/metrics").await;
        assert!(r.contains("Content-Length: "), "{r}");
        assert!(r.contains("gitops_drifted_objects 0\n"), "{r}");
        // garbage and a client that says nothing useful do not kill the server
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[b'x'; MAX_HEAD + 10]).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        task.abort();
    }
}
