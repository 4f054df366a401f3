//! A TCP proxy that injects network faults between a client and the test
//! API server: added latency, connections cut mid-stream, new connections
//! refused. It forwards bytes (TLS included) without looking at them, so a
//! client pointed at it (see [`TestCluster::client_via`](crate::cluster::TestCluster::client_via))
//! still verifies the server's certificate for 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Faults {
    latency: Mutex<Duration>,
    refuse: AtomicBool,
    accepted: AtomicUsize,
    /// Bumped by [`FaultProxy::cut`]; every open connection watches it.
    cuts: watch::Sender<u64>,
}

impl Faults {
    fn latency(&self) -> Duration {
        // A poisoned lock still holds a valid Duration.
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A loopback TCP proxy to `target`; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy's port")?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults {
            latency: Mutex::new(Duration::ZERO),
            refuse: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            cuts: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept_loop(listener, target, Arc::clone(&faults)));
        Ok(FaultProxy {
            addr,
            faults,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`, for [`TestCluster::client_via`](crate::cluster::TestCluster::client_via).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Delay every chunk of bytes, in both directions, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *self
            .faults
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// Close every open connection at once (both sides see a reset or EOF).
    pub fn cut(&self) {
        self.faults.cuts.send_modify(|n| *n += 1);
    }

    /// While set, accept new connections and close them at once.
    pub fn set_refuse(&self, refuse: bool) {
        self.faults.refuse.store(refuse, Ordering::SeqCst);
    }

    /// How many connections the proxy has accepted.
    pub fn accepted(&self) -> usize {
        self.faults.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, faults: Arc<Faults>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        if faults.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        // Watch for cuts from the moment of accepting, so that a cut while
        // the connection to the server is still being made counts too.
        let cuts = faults.cuts.subscribe();
        tokio::spawn(connection(client, target, Arc::clone(&faults), cuts));
    }
}

async fn connection(
    client: TcpStream,
    target: SocketAddr,
    faults: Arc<Faults>,
    mut cuts: watch::Receiver<u64>,
) {
    // Dropping the client closes it, as a dead server would.
    let server = tokio::select! {
        server = TcpStream::connect(target) => match server {
            Ok(server) => server,
            Err(_) => return,
        },
        _ = cuts.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, Arc::clone(&faults), cuts.clone()),
        pump(server_read, client_write, faults, cuts),
    );
}

/// Copy one direction until EOF, an error or a cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: Arc<Faults>,
    mut cuts: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = cuts.changed() => return,
        };
        let latency = faults.latency();
        if !latency.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                _ = cuts.changed() => return,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
