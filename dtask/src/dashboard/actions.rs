//! The dashboard's repairs (POST): pause, resume, purge, retry or delete dead jobs, cancel.
//! Each checks the CSRF token and the request's origin, does one admin call, and redirects
//! back to the page it came from with what it did.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::seg;
use super::{CsrfKey, base_path, csrf_cookie};
use crate::{Cancelled, Client, JobId, PurgeState};

/// The form fields a repair posts.
type Fields = HashMap<String, String>;

/// Whether the request is a genuine post of a dashboard page: its CSRF field matches the
/// cookie, and the browser does not say it came from another site.
fn genuine(headers: &HeaderMap, fields: &Fields, key: &CsrfKey) -> bool {
    let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let same_site =
        value("sec-fetch-site").is_none_or(|site| site == "same-origin" || site == "none");
    // A browser that does not say where a request comes from still sends its `Origin`: it
    // must be this host.
    let same_origin = match (value("origin"), value("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, origin_host)| origin_host == host),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let token = csrf_cookie(headers, key);
    same_site && same_origin && token.is_some() && fields.get("csrf") == token.as_ref()
}

/// What a repair answers: a redirect to `page` (under the dashboard's base) with `done` and
/// the count, or an error status with a one-line message.
fn done(base: &str, page: &str, done: &str, n: u64) -> Response {
    Redirect::to(&format!("{base}{page}?done={done}&n={n}")).into_response()
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: this form did not come from the dashboard (missing or stale CSRF token); reload the page and try again",
    )
        .into_response()
}

fn failed(error: crate::Error) -> Response {
    (StatusCode::BAD_GATEWAY, format!("Redis failed: {error}")).into_response()
}

/// The common frame of a repair on queue `name`.
struct Repair {
    base: String,
    page: String,
}

impl Repair {
    fn new(original: &OriginalUri, uri: &Uri, name: &str) -> Repair {
        Repair {
            base: base_path(original, uri),
            page: format!("/queues/{}", seg(name)),
        }
    }
}

/// POST `/queues/{queue}/pause`.
pub(super) async fn pause(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let repair = Repair::new(&original, &uri, &name);
    match client.queue(&name).pause().await {
        Ok(()) => done(&repair.base, &repair.page, "paused", 0),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/resume`.
pub(super) async fn resume(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let repair = Repair::new(&original, &uri, &name);
    match client.queue(&name).resume().await {
        Ok(()) => done(&repair.base, &repair.page, "resumed", 0),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/purge` with `state`.
pub(super) async fn purge(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let Some(state) = fields
        .get("state")
        .and_then(|s| s.parse::<PurgeState>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "purge: state must be pending, scheduled or retry",
        )
            .into_response();
    };
    let repair = Repair::new(&original, &uri, &name);
    match client.queue(&name).purge(state).await {
        Ok(n) => done(&repair.base, &repair.page, "purged", n),
        Err(error) => failed(error),
    }
}

/// The dead jobs a form names: every one (`all`), or the job `id`.
enum Which {
    All,
    One(JobId),
}

fn which(fields: &Fields) -> Option<Which> {
    if fields.get("all").is_some_and(|all| all == "1") {
        return Some(Which::All);
    }
    fields
        .get("id")
        .filter(|id| !id.is_empty())
        .map(|id| Which::One(JobId::from(id.as_str())))
}

/// POST `/queues/{queue}/dead/retry` with `all=1` or `id`.
pub(super) async fn retry_dead(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let repair = Repair::new(&original, &uri, &name);
    let queue = client.queue(&name);
    let revived = match which(&fields) {
        Some(Which::All) => queue.retry_all_dead().await,
        Some(Which::One(id)) => queue.retry_dead(&[id]).await,
        None => return (StatusCode::BAD_REQUEST, "retry: give all=1 or an id").into_response(),
    };
    match revived {
        Ok(n) => done(&repair.base, &repair.page, "retried", n),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/dead/delete` with `all=1` or `id`.
pub(super) async fn delete_dead(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let repair = Repair::new(&original, &uri, &name);
    let queue = client.queue(&name);
    let deleted = match which(&fields) {
        Some(Which::All) => queue.delete_all_dead().await,
        Some(Which::One(id)) => queue.delete_dead(&[id]).await,
        None => return (StatusCode::BAD_REQUEST, "delete: give all=1 or an id").into_response(),
    };
    match deleted {
        Ok(n) => done(&repair.base, &repair.page, "deleted", n),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path((name, id)): Path<(String, String)>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !genuine(&headers, &fields, &key) {
        return refused();
    }
    let repair = Repair::new(&original, &uri, &name);
    let page = format!("{}/jobs/{}", repair.page, seg(&id));
    match client.queue(&name).cancel(&JobId::from(id.as_str())).await {
        Ok(Cancelled::Cancelled(_)) => done(&repair.base, &page, "cancelled", 1),
        Ok(_) => done(&repair.base, &page, "not-cancelled", 0),
        Err(error) => failed(error),
    }
}
