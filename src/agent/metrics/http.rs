//! The metrics endpoint: hyper 1 (HTTP/1.1) on a tokio current-thread runtime in one thread
//! of its own. Connections are served concurrently (one task each), and none can hold the
//! others up: each has [`HEADER_READ_TIMEOUT`] to send its request head and
//! [`CONNECTION_DEADLINE`] for the whole exchange, after which it is dropped; at most
//! [`MAX_CONNECTIONS`] are open at once (more are closed on accept). Every response closes
//! its connection (no keep-alive: a scrape is one request every few seconds).
//!
//! Dropping the [`Server`] closes the listener, gives requests in flight [`STOP_GRACE`] to
//! finish, drops the rest and joins the thread: bounded whatever the clients do.

use super::encode::{encode, Format};
use super::AgentMetrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Time a client has to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time one connection may take in all: request, response, close.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest request head read (hyper's smallest allowed buffer).
pub const MAX_REQUEST_BYTES: usize = 8192;
/// How long a stopping server lets requests in flight finish.
pub const STOP_GRACE: Duration = Duration::from_millis(500);

const PLAIN: &str = "text/plain; charset=utf-8";

/// The answer to one request (pure, for tests): status, content type, body.
pub fn route(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    m: &Mutex<AgentMetrics>,
) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            let snap = m.lock().map(|g| g.clone()).unwrap_or_default();
            let f = Format::negotiate(accept);
            (StatusCode::OK, f.content_type(), encode(&snap, f))
        }
        "/healthz" => (StatusCode::OK, PLAIN, "ok\n".into()),
        "/" => (
            StatusCode::OK,
            PLAIN,
            "madvd agent: /metrics, /healthz\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

fn respond(req: &Request<Incoming>, m: &Mutex<AgentMetrics>) -> Response<Full<Bytes>> {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let (status, ctype, body) = route(req.method(), req.uri().path(), accept, m);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    r
}

/// One connection, within its deadline.
async fn connection(s: tokio::net::TcpStream, m: Arc<Mutex<AgentMetrics>>) {
    let _ = s.set_nodelay(true);
    let svc = service_fn(move |req: Request<Incoming>| {
        let r = respond(&req, &m);
        async move { Ok::<_, Infallible>(r) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_BYTES)
        .serve_connection(TokioIo::new(s), svc);
    // On the deadline the future is dropped, and with it the socket.
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
}

async fn serve(
    l: std::net::TcpListener,
    m: Arc<Mutex<AgentMetrics>>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(l) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics: cannot serve: {e}");
            return;
        }
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    while conns.try_join_next().is_some() {}
                    if conns.len() >= MAX_CONNECTIONS {
                        drop(s);
                    } else {
                        conns.spawn(connection(s, m.clone()));
                    }
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    // `conns` drops here: the connections still open are aborted and their sockets closed.
}

/// The metrics server thread; stopped (listener closed, connections dropped) and joined on
/// drop, within [`STOP_GRACE`] and a little more.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` (errors here, not in the thread) and serve `metrics`.
    pub fn start(addr: SocketAddr, metrics: Arc<Mutex<AgentMetrics>>) -> std::io::Result<Server> {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("madvd-metrics".into())
            .spawn(move || rt.block_on(serve(l, metrics, rx)))?;
        Ok(Server {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address bound (the port chosen when `addr` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
