//! Accepting connections: `axum::serve`'s loop, with what it does not
//! configure. A connection that has not sent a whole request head within the
//! header timeout is closed (which also bounds an idle kept-alive
//! connection, since hyper times the next head from when it waits for it),
//! and a shutdown stops accepting, lets the requests already read be
//! answered, closes the other connections (`run`), and returns when they
//! have closed. At most `max_connections` are open at once; the
//! next waits in the kernel's accept queue until one closes, so that a flood
//! of connections costs a bounded amount of memory. A connection that ends
//! in an error (a head that is not HTTP, or too large, or too slow) is
//! counted by why (`Closed`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::connections::{Closed, Connections};

/// The bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request head may take to arrive whole.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves and the open
/// connections have finished.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) {
    let ConnectionLimits {
        header_timeout,
        max_connections,
    } = limits;
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // No `pipeline_flush`: with it hyper holds back the 400 or 431 it
        // writes for a malformed request head, and the connection closes
        // without a word.
        .header_read_timeout(header_timeout);
    // Told once the shutdown begins: each connection then ends as below.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // An answer leaves at once, not when the last one is acknowledged.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                let reading = Reading::default();
                let service = reading.clone().service(router.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connections = Arc::clone(&connections);
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    if let Err(error) = run(connection, &reading, stopped).await {
                        tracing::debug!(%error, "connection ended with an error");
                        if let Some(why) = Closed::of(&error) {
                            connections.count(why);
                        }
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    stop.send_replace(true);
    // Every connection holds a permit until it ends: all of them back means
    // every connection has.
    let _ = open.acquire_many(max_connections.max(1) as u32).await;
}

/// How long a connection answering nothing is given, once the shutdown
/// begins, to flush what it has written and close: an idle connection or a
/// partial request head closes at once, a client that does not read its
/// answers is let go after it.
const CLOSING: Duration = Duration::from_secs(1);

/// Runs one connection. Once the shutdown begins, it takes no new request.
/// One with a request being answered finishes that request and closes,
/// within the process's grace period. One answering nothing (idle, still
/// sending a request head, or not reading what was written to it) is closed
/// within `CLOSING`: nothing it sent has been read, so nothing is lost.
async fn run<I, S>(
    connection: http1::Connection<I, S>,
    reading: &Reading,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
{
    let mut connection = std::pin::pin!(connection);
    let stopping = async {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        result = connection.as_mut() => result,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            if reading.answering() {
                connection.await
            } else {
                tokio::time::timeout(CLOSING, connection).await.unwrap_or(Ok(()))
            }
        }
    }
}

type Request = hyper::Request<hyper::body::Incoming>;
type Response = axum::response::Response;

/// How many requests of a connection have reached the router and whose
/// answer has not yet been handed whole to the HTTP layer.
#[derive(Debug, Clone, Default)]
struct Reading(Arc<AtomicUsize>);

impl Reading {
    fn answering(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// The router, counting its requests in and out.
    fn service(
        self,
        router: Router,
    ) -> impl hyper::service::Service<
        Request,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone {
        let count = self.0;
        hyper::service::service_fn(move |request: Request| {
            let guard = Answering::enter(&count);
            let router = router.clone();
            async move {
                let Ok(response) = tower::ServiceExt::oneshot(router, request).await;
                // The request is answered once the last frame of its body is
                // taken, when the body (and the guard with it) is dropped.
                Ok(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _answering = &guard;
                        frame
                    }))
                }))
            }
        })
    }
}

/// One request being answered, for as long as it lives.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
