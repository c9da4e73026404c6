//! `echo`: a bare axum server that answers every request to an Open
//! Inference Protocol infer path with the request's own body. It does what
//! any HTTP server on this stack must (accept, parse, read the body,
//! answer) and nothing of inference: the ceiling `cargo xtask bench peers`
//! compares `preflight-serve` with.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Address to listen on; port 0 picks a free one, printed as
    /// `listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

async fn echo(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let app = Router::new()
        .route("/v2/models/{model}/versions/{version}/infer", post(echo))
        .route("/v2/models/{model}/infer", post(echo))
        .route("/v2/health/ready", axum::routing::get(|| async { "" }));
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    #[allow(clippy::print_stdout)] // How the bench finds the port.
    {
        println!("listening on http://{}", listener.local_addr()?);
    }
    axum::serve(listener, app).await.context("serving")
}
