//! The process's life, the binary's and not the library's: listen on both
//! protocols' ports, say where, load the repository, serve, and on a signal
//! drain, stop and exit within the grace period.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use preflight_serving::{AppState, ConnectionLimits, ServeConfig, app, grpc, serve};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Cli;

/// Listens, loads the repository, and serves until a signal and its drain.
pub(crate) async fn listen(cli: &Cli, config: &ServeConfig, state: Arc<AppState>) -> Result<()> {
    let (rest, grpc) = (bind(cli.addr).await?, bind_some(cli.grpc_addr).await?);
    announce(rest.0, grpc.as_ref().map(|(addr, _)| *addr));
    tracing::info!(
        addr = %rest.0,
        grpc = grpc.as_ref().map(|(addr, _)| addr.to_string()),
        models = %config.models.display(),
        "listening; loading models"
    );
    load(Arc::clone(&state));

    // Told once the drain is over; each protocol then stops accepting and
    // answers what it has read.
    let (stop, stopped) = watch::channel(false);
    let shutdown = shutdown(cli, Arc::clone(&state), stop);
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(cli.header_timeout_seconds),
        max_connections: cli.max_connections,
    };
    let connections = Arc::clone(&state.metrics.connections);
    let router = app(Arc::clone(&state));
    let rest = serve(rest.1, router, limits, connections, until(stopped.clone()));
    let grpc = async {
        let Some((_, listener)) = grpc else { return };
        let served = grpc::serve(listener, state, cli.max_body_bytes, until(stopped.clone()));
        if let Err(error) = served.await {
            tracing::error!(%error, "the gRPC service stopped");
        }
    };
    let grace = Duration::from_secs(cli.shutdown_grace_seconds);
    let grace_over = async {
        until(stopped.clone()).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        ((), ()) = async { tokio::join!(rest, grpc) } => {},
        () = shutdown => {},
        () = grace_over => tracing::warn!(
            seconds = grace.as_secs(),
            "the shutdown grace period is over: exiting with requests still open"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<(SocketAddr, TcpListener)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok((listener.local_addr()?, listener))
}

async fn bind_some(addr: Option<SocketAddr>) -> Result<Option<(SocketAddr, TcpListener)>> {
    match addr {
        Some(addr) => bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// Resolves once `stopped` says so.
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|&stop| stop).await;
}

/// The lines on standard output: how a supervisor finds the ports. Serving
/// goes on without them. One write, of less than the pipe's atomic size,
/// so that a reader of the first line has the second with it.
fn announce(rest: SocketAddr, grpc: Option<SocketAddr>) {
    let mut stdout = std::io::stdout().lock();
    let mut lines = format!("listening on http://{rest}\n");
    if let Some(grpc) = grpc {
        lines.push_str(&format!("listening on grpc://{grpc}\n"));
    }
    if let Err(error) = stdout.write_all(lines.as_bytes()).and(stdout.flush()) {
        tracing::warn!(%error, "cannot write the address to standard output");
    }
}

/// Loads the repository off the async workers: liveness answers at once,
/// readiness once every model is loaded.
fn load(state: Arc<AppState>) {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match state.load() {
            Ok(()) => {
                let states: Vec<String> = (state.registry.states().into_iter())
                    .map(|(state, n)| format!("{n} {}", state.as_str()))
                    .collect();
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(?states, seconds, "models loaded; ready");
            }
            Err(error) => tracing::error!(%error, "cannot read the model repository"),
        }
    });
}

/// On a signal: readiness turns 503 and requests are still answered for the
/// drain; then the servers are told to stop. Never resolves itself.
async fn shutdown(cli: &Cli, state: Arc<AppState>, stop: watch::Sender<bool>) {
    let drain = Duration::from_secs(cli.drain_seconds);
    shutdown_signal().await;
    state.begin_drain();
    tracing::info!(
        seconds = drain.as_secs(),
        "draining: readiness is 503, still serving"
    );
    tokio::time::sleep(drain).await;
    tracing::info!("drained: finishing the requests already read");
    // A body still arriving is answered 503 now, not waited for.
    state.stop();
    stop.send_replace(true);
    std::future::pending::<()>().await;
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
