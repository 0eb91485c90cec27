//! `cfdr-status serve`: /metrics, /health, /gate and the status page, all
//! from the guard's in-memory state.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use cfdr_cli::Outcome;
use cfdr_guard::{Guard, TradingState};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

fn respond(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const JSON: &str = "application/json";

fn handle(guard: &Guard, page_refresh: u32, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        // 200 only while Active: a plain HTTP health check can gate on it.
        "/gate" => {
            let gate = guard.gate();
            let code = if gate.state == TradingState::Active {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_string(&gate).unwrap_or_default();
            respond(code, JSON, body)
        }
        // The exporter itself: 200 while the guard refreshes.
        "/health" => {
            let gate = guard.gate();
            let (code, word) = if gate.stale {
                (StatusCode::SERVICE_UNAVAILABLE, "stale")
            } else {
                (StatusCode::OK, "ok")
            };
            let body = serde_json::json!({"status": word, "last_refresh": gate.last_refresh});
            respond(code, JSON, body.to_string())
        }
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            cfdr_guard::metrics::render(&guard.status()),
        ),
        "/" | "/index.html" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            cfdr_guard::page::render(&guard.status(), page_refresh),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /gate, /health, /metrics\n".into(),
        ),
    }
}

/// Serves until SIGINT or SIGTERM.
pub(crate) async fn run(
    guard: Guard,
    listen: SocketAddr,
    page_refresh: u32,
    textfile: Option<PathBuf>,
) -> Result<Outcome> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // Tests and service managers read the bound address (port 0 = any).
    println!("listening on http://{}", listener.local_addr()?);
    if let Some(path) = textfile {
        let g = guard.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) =
                    crate::write_atomic(&path, &cfdr_guard::metrics::render(&g.status()))
                {
                    tracing::warn!(error = %e, "cannot write the metrics textfile");
                }
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Ok),
            _ = term.recv() => return Ok(Outcome::Ok),
        };
        let guard = guard.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = handle(&guard, page_refresh, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
}
