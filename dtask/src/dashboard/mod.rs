//! The web dashboard (feature `dashboard`): an axum [`Router`] to nest under any path of an
//! app (`app.nest("/dtask", dtask::dashboard::router(client))`), also served by
//! `dtask dashboard`. Server-rendered HTML with a little vanilla JavaScript, all in the binary:
//! no build step, works offline.
//!
//! Pages: the overview (queues with live counts, the last hour's throughput, workers), a queue
//! (jobs by state, paged, search by id; pause, resume, purge, retry or delete dead jobs), a
//! job (arguments, attempts, error, times; retry, delete or cancel). Every change is a POST
//! carrying a CSRF token that must match the dashboard's cookie, from a same-origin page.
//!
//! The dashboard has no login of its own: put the app's authentication in front of it, as a
//! layer on the nested router (see the README).

mod actions;
mod html;
mod pages;

use std::hash::BuildHasher;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Client;

/// What the dashboard's handlers share: the client, and the key its CSRF tokens are signed
/// with (drawn at random when the router is made).
#[derive(Clone)]
pub(crate) struct Shared {
    client: Client,
    csrf_key: Arc<std::collections::hash_map::RandomState>,
}

impl FromRef<Shared> for Client {
    fn from_ref(shared: &Shared) -> Client {
        shared.client.clone()
    }
}

/// The key the dashboard signs its CSRF tokens with.
#[derive(Clone)]
pub(crate) struct CsrfKey(Arc<std::collections::hash_map::RandomState>);

impl FromRef<Shared> for CsrfKey {
    fn from_ref(shared: &Shared) -> CsrfKey {
        CsrfKey(shared.csrf_key.clone())
    }
}

/// The dashboard's routes, reading and repairing the queues of `client`'s prefix. Nest it
/// under any path; put authentication in front of it.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask::Error> {
/// let client = dtask::Client::connect("redis://127.0.0.1:6379").await?;
/// let app: axum::Router = axum::Router::new().nest("/dtask", dtask::dashboard::router(client));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
pub fn router(client: Client) -> Router {
    let shared = Shared {
        client,
        csrf_key: Arc::new(std::collections::hash_map::RandomState::new()),
    };
    Router::new()
        .route("/", get(pages::overview))
        .route("/api/stats", get(pages::stats))
        .route("/queues/{queue}", get(pages::queue))
        .route("/queues/{queue}/jobs/{id}", get(pages::job))
        .route("/queues/{queue}/pause", post(actions::pause))
        .route("/queues/{queue}/resume", post(actions::resume))
        .route("/queues/{queue}/purge", post(actions::purge))
        .route("/queues/{queue}/dead/retry", post(actions::retry_dead))
        .route("/queues/{queue}/dead/delete", post(actions::delete_dead))
        .route("/queues/{queue}/jobs/{id}/cancel", post(actions::cancel))
        .layer(axum::middleware::from_fn(guard))
        .with_state(shared)
}

/// Every answer's safety headers (no framing, no sniffing, no caching), and the refusal of
/// reads another site's page makes in the background (an image or a script pointing at a
/// page: only a navigation to it, such as a link, is let through).
async fn guard(request: Request, next: Next) -> Response {
    let background_read_by_another_site = {
        let headers = request.headers();
        let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let cross_site = value("sec-fetch-site").is_some_and(|site| site == "cross-site");
        let navigation = value("sec-fetch-mode").is_none_or(|mode| mode == "navigate");
        request.method() == axum::http::Method::GET && cross_site && !navigation
    };
    if background_read_by_another_site {
        return (
            StatusCode::FORBIDDEN,
            "refused: a read made by another site",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The path the dashboard is nested under (`/dtask`, or `` at the root), from the request's
/// full path and the path the dashboard's router saw.
fn base_path(original: &OriginalUri, inner: &Uri) -> String {
    let full = original.path();
    let inner = inner.path();
    let base = if inner == "/" {
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(inner).unwrap_or("")
    };
    base.to_owned()
}

/// The name of the cookie holding the CSRF token.
const CSRF_COOKIE: &str = "dtask_csrf";

/// The CSRF token the browser holds, if any and if this dashboard made it (a token planted
/// by someone else, who can set cookies for the host but not sign them, is not taken).
fn csrf_cookie(headers: &HeaderMap, key: &CsrfKey) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value)
        .find(|value| signed_by(value, &key.0))
        .map(str::to_owned)
}

/// Whether `token` is 128 random bits followed by their signature under `key`.
fn signed_by(token: &str, key: &std::collections::hash_map::RandomState) -> bool {
    if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let (random, signature) = token.split_at(32);
    match (
        u128::from_str_radix(random, 16),
        u64::from_str_radix(signature, 16),
    ) {
        (Ok(random), Ok(signature)) => key.hash_one(random) == signature,
        _ => false,
    }
}

/// A fresh CSRF token: 128 random bits, and their signature under `key` (SipHash with the
/// dashboard's random key).
fn new_csrf_token(key: &CsrfKey) -> String {
    let random: u128 = rand::random();
    format!("{random:032x}{:016x}", key.0.hash_one(random))
}
