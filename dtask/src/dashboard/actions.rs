//! The dashboard's repairs (POST): pause, resume, purge, retry or delete dead jobs, cancel.
//! Each takes a [`Repair`] (a form whose CSRF token and origin were checked before the handler
//! runs), does one admin call, and redirects back to the page it came from with what it did.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{FromRef, FromRequest, FromRequestParts, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::seg;
use super::{CsrfKey, Shared, base_path, csrf_cookie};
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

/// A repair's form, taken only from a genuine post of a dashboard page (else the request is
/// refused before any handler runs), with the path the dashboard is nested under.
pub(super) struct Repair {
    base: String,
    fields: Fields,
}

impl FromRequest<Shared> for Repair {
    type Rejection = Response;

    async fn from_request(request: Request, shared: &Shared) -> Result<Repair, Response> {
        let (mut parts, body) = request.into_parts();
        let Ok(original) = OriginalUri::from_request_parts(&mut parts, shared).await;
        let base = base_path(&original, &parts.uri);
        let headers = parts.headers.clone();
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), shared)
            .await
            .map_err(IntoResponse::into_response)?;
        if !genuine(&headers, &fields, &CsrfKey::from_ref(shared)) {
            return Err((
                StatusCode::FORBIDDEN,
                "refused: this form did not come from the dashboard (missing or stale CSRF token); reload the page and try again",
            )
                .into_response());
        }
        Ok(Repair { base, fields })
    }
}

impl Repair {
    /// The answer to a repair that worked: a redirect to `page` (under the dashboard's base)
    /// saying what was `done`, to how many jobs.
    fn done(&self, page: &str, done: &str, n: u64) -> Response {
        Redirect::to(&format!("{}{page}?done={done}&n={n}", self.base)).into_response()
    }
}

fn failed(error: crate::Error) -> Response {
    (StatusCode::BAD_GATEWAY, format!("Redis failed: {error}")).into_response()
}

/// The page of queue `name`, under the dashboard's base.
fn queue_page(name: &str) -> String {
    format!("/queues/{}", seg(name))
}

/// POST `/queues/{queue}/pause`.
pub(super) async fn pause(
    State(client): State<Client>,
    Path(name): Path<String>,
    repair: Repair,
) -> Response {
    match client.queue(&name).pause().await {
        Ok(()) => repair.done(&queue_page(&name), "paused", 0),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/resume`.
pub(super) async fn resume(
    State(client): State<Client>,
    Path(name): Path<String>,
    repair: Repair,
) -> Response {
    match client.queue(&name).resume().await {
        Ok(()) => repair.done(&queue_page(&name), "resumed", 0),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/purge` with `state`.
pub(super) async fn purge(
    State(client): State<Client>,
    Path(name): Path<String>,
    repair: Repair,
) -> Response {
    let Some(state) = repair
        .fields
        .get("state")
        .and_then(|s| s.parse::<PurgeState>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "purge: state must be pending, scheduled or retry",
        )
            .into_response();
    };
    match client.queue(&name).purge(state).await {
        Ok(n) => repair.done(&queue_page(&name), "purged", n),
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
    Path(name): Path<String>,
    repair: Repair,
) -> Response {
    let queue = client.queue(&name);
    let revived = match which(&repair.fields) {
        Some(Which::All) => queue.retry_all_dead().await,
        Some(Which::One(id)) => queue.retry_dead(&[id]).await,
        None => return (StatusCode::BAD_REQUEST, "retry: give all=1 or an id").into_response(),
    };
    match revived {
        Ok(n) => repair.done(&queue_page(&name), "retried", n),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/dead/delete` with `all=1` or `id`.
pub(super) async fn delete_dead(
    State(client): State<Client>,
    Path(name): Path<String>,
    repair: Repair,
) -> Response {
    let queue = client.queue(&name);
    let deleted = match which(&repair.fields) {
        Some(Which::All) => queue.delete_all_dead().await,
        Some(Which::One(id)) => queue.delete_dead(&[id]).await,
        None => return (StatusCode::BAD_REQUEST, "delete: give all=1 or an id").into_response(),
    };
    match deleted {
        Ok(n) => repair.done(&queue_page(&name), "deleted", n),
        Err(error) => failed(error),
    }
}

/// POST `/queues/{queue}/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(client): State<Client>,
    Path((name, id)): Path<(String, String)>,
    repair: Repair,
) -> Response {
    let page = format!("{}/jobs/{}", queue_page(&name), seg(&id));
    match client.queue(&name).cancel(&JobId::from(id.as_str())).await {
        Ok(Cancelled::Cancelled(_)) => repair.done(&page, "cancelled", 1),
        Ok(Cancelled::Running) => repair.done(&page, "stopping", 1),
        Ok(_) => repair.done(&page, "not-cancelled", 0),
        Err(error) => failed(error),
    }
}
