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

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{HeaderMap, Uri, header};
use axum::routing::{get, post};

use crate::Client;

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
        .with_state(client)
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

/// The CSRF token the browser holds, if any.
fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A fresh CSRF token: 128 random bits in hex.
fn new_csrf_token() -> String {
    let token: u128 = rand::random();
    format!("{token:032x}")
}
