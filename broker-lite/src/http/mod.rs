//! The broker's HTTP ports (the Prometheus endpoint and the console): one serving loop with
//! the same bounds against bad clients, and one rule for who may use them under ACL.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections (more are closed at once), a request
//! head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`] (hyper answers
//! 431 beyond), a body is read up to [`MAX_BODY_BYTES`] (413 beyond), and one connection
//! lives at most [`CONNECTION_LIFETIME`]. With ACL on, a request must come from a
//! `globalWhiteRemoteAddresses` address or carry HTTP Basic credentials of an admin account.

// Both ports sit above the broker and use the serving loop in this file.
pub mod console;
pub mod exporter;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::acl::Acl;

/// Connections served at once per port; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The largest request body read (a console form).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest one connection is served.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// An answer.
pub type HttpResponse = Response<Full<Bytes>>;

/// Serves `listener` with `respond` until `stop` fires; `name` labels the logs.
pub async fn serve<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    stop: CancellationToken,
    respond: F,
) where
    F: Fn(SocketAddr, Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let respond = Arc::new(respond);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(port = name, error = %e, "HTTP accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(port = name, %peer, "HTTP connection refused: too many open");
            continue; // dropped: closed
        };
        let respond = Arc::clone(&respond);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = respond(peer, req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                () = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// A plain-text answer.
pub fn plain(status: StatusCode, text: &str) -> HttpResponse {
    with_type(status, format!("{text}\n"), "text/plain; charset=utf-8")
}

/// An answer with a body of `content_type`.
pub fn with_type(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

/// Whether `peer` may use an HTTP port: always without ACL (the ports bind loopback unless
/// configured otherwise); with ACL, from a white-listed address or with Basic credentials
/// of an admin account.
pub fn allowed(acl: Option<&Acl>, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let Some(acl) = acl else {
        return true;
    };
    if acl.peer_allowed(peer.ip()) {
        return true;
    }
    let Some(credentials) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let Some((access_key, secret_key)) = credentials.split_once(':') else {
        return false;
    };
    acl.admin_password_matches(access_key, secret_key)
}

/// The 401 that asks a browser or scraper for an admin account.
pub fn unauthorized(realm: &'static str, what: &str) -> HttpResponse {
    let mut r = plain(
        StatusCode::UNAUTHORIZED,
        &format!("ACL is on: {what} from a globalWhiteRemoteAddresses address or with an admin account's accessKey:secretKey (HTTP Basic)"),
    );
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(realm),
    );
    r
}

/// The request's body, at most [`MAX_BODY_BYTES`].
///
/// # Errors
/// The answer to give instead: 413 when larger, 400 when it breaks off.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, HttpResponse> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(e) => Err(plain(
            StatusCode::BAD_REQUEST,
            &format!("the body broke off: {e}"),
        )),
    }
}
