//! The dashboard's pages (GET): overview, queue, job, and the live counts they refresh from.

use std::collections::HashMap;
use std::fmt::Write;

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::html::{self, esc, seg};
use super::{CSRF_COOKIE, CsrfKey, base_path, csrf_cookie, new_csrf_token};
use crate::{Client, Counts, JobId, JobInfo, JobState, Order, QueueStats, Throughput};

/// Jobs per page of a queue's list.
const PAGE: usize = 50;
/// The highest page number a queue's list answers (its jobs beyond 50 million are reached
/// with the CLI's `--offset`).
const MAX_PAGE: usize = 1_000_000;

/// What a page needs to know of its request.
pub(super) struct Request {
    /// The path the dashboard is nested under.
    pub(super) base: String,
    /// The CSRF token forms carry (the cookie's, or a fresh one set with the page).
    pub(super) csrf: String,
    fresh_csrf: bool,
}

impl Request {
    pub(super) fn new(
        original: &OriginalUri,
        uri: &Uri,
        headers: &HeaderMap,
        key: &CsrfKey,
    ) -> Request {
        let base = base_path(original, uri);
        match csrf_cookie(headers, key) {
            Some(csrf) => Request {
                base,
                csrf,
                fresh_csrf: false,
            },
            None => Request {
                base,
                csrf: new_csrf_token(key),
                fresh_csrf: true,
            },
        }
    }

    /// `body` as an HTML page, setting the CSRF cookie when the browser had none.
    fn respond(&self, status: StatusCode, body: String) -> Response {
        let mut response = (status, axum::response::Html(body)).into_response();
        if self.fresh_csrf {
            let path = if self.base.is_empty() {
                "/"
            } else {
                &self.base
            };
            let cookie = format!(
                "{CSRF_COOKIE}={}; Path={path}; SameSite=Strict; HttpOnly",
                self.csrf
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// A hidden form field with the CSRF token.
    pub(super) fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(&self.csrf)
        )
    }

    /// A one-button form posting to `action` (relative to the dashboard), with hidden
    /// `fields`, asking `confirm` first when given.
    fn button(
        &self,
        action: &str,
        label: &str,
        class: &str,
        fields: &[(&str, &str)],
        confirm: Option<&str>,
    ) -> String {
        let mut hidden = self.csrf_field();
        for (name, value) in fields {
            let _ = write!(
                hidden,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(name),
                esc(value)
            );
        }
        let confirm = confirm
            .map(|text| format!(" data-confirm=\"{}\"", esc(text)))
            .unwrap_or_default();
        format!(
            "<form method=\"post\" action=\"{}{action}\"{confirm}>{hidden}<button class=\"{class}\">{}</button></form>",
            esc(&self.base),
            esc(label)
        )
    }
}

/// A page saying what went wrong, for an error reading Redis.
fn failure(request: &Request, error: &crate::Error) -> Response {
    let body = html::page(
        &request.base,
        "Error",
        "",
        None,
        &format!(
            "<h1>Redis did not answer as expected</h1><div class=\"card\"><pre>{}</pre></div>",
            esc(&error.to_string())
        ),
    );
    request.respond(StatusCode::BAD_GATEWAY, body)
}

/// What a repair did, as the notice on the page it leads back to (`?done=..&n=..`).
fn notice(query: &HashMap<String, String>) -> Option<String> {
    let n = query.get("n").map_or("0", String::as_str);
    let n: u64 = n.parse().unwrap_or(0);
    Some(match query.get("done")?.as_str() {
        "paused" => "Paused: workers take no job from this queue until it is resumed.".to_owned(),
        "resumed" => "Resumed.".to_owned(),
        "purged" => format!("Purged {n} job(s)."),
        "retried" => format!("Queued {n} dead job(s) again."),
        "deleted" => format!("Deleted {n} dead job(s)."),
        "cancelled" => "Cancelled: the job will not run.".to_owned(),
        "stopping" => "Cancelled: its worker was told to stop the running job.".to_owned(),
        "not-cancelled" => "Not cancelled: the job is no longer queued or running.".to_owned(),
        _ => return None,
    })
}

/// Every queue with its stats and throughput.
async fn everything(
    client: &Client,
) -> Result<(Vec<(String, QueueStats, Throughput)>, Vec<(String, String)>), crate::Error> {
    let mut all = Vec::new();
    // A queue whose keys cannot be read (a key of the wrong type, a denied command) is
    // reported beside the others, not in their place.
    let mut unreadable = Vec::new();
    for name in client.queues().await? {
        let queue = client.queue(&name);
        match tokio::try_join!(queue.stats(), queue.throughput()) {
            Ok((stats, throughput)) => all.push((name, stats, throughput)),
            Err(error) => unreadable.push((name, error.to_string())),
        }
    }
    Ok((all, unreadable))
}

fn stats_json(name: &str, stats: &QueueStats, throughput: &Throughput) -> Value {
    let mut value = stats.to_json(name);
    value["ok_min"] = json!(throughput.last_minute.succeeded);
    value["failed_min"] = json!(throughput.last_minute.failed);
    value
}

/// GET `api/stats`: every queue's counts, for the pages' live refresh.
pub(super) async fn stats(State(client): State<Client>) -> Response {
    match everything(&client).await {
        Ok((all, unreadable)) => {
            let queues: Vec<Value> = all
                .iter()
                .map(|(name, stats, throughput)| stats_json(name, stats, throughput))
                .collect();
            let unreadable: Vec<Value> = unreadable
                .iter()
                .map(|(name, error)| json!({ "queue": name, "error": error }))
                .collect();
            Json(json!({ "queues": queues, "unreadable": unreadable })).into_response()
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

/// A table cell the script keeps up to date with `key` of `queue`'s live counts.
fn live(queue: &str, key: &str, value: impl std::fmt::Display, class: &str) -> String {
    format!(
        "<td class=\"{class}\" data-q=\"{}\" data-k=\"{key}\">{value}</td>",
        esc(queue)
    )
}

/// GET `/`: the overview.
pub(super) async fn overview(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = Request::new(&original, &uri, &headers, &key);
    let (all, unreadable) = match everything(&client).await {
        Ok(both) => both,
        Err(error) => return failure(&request, &error),
    };
    let mut total = QueueStats::default();
    let mut minute = Counts::default();
    let mut hour = Throughput {
        last_minute: Counts::default(),
        last_hour: Counts::default(),
        per_minute: Vec::new(),
    };
    let mut rows = String::new();
    for (name, stats, throughput) in &all {
        total.pending += stats.pending + stats.suspects;
        total.running += stats.running;
        total.retry += stats.retry;
        total.dead += stats.dead;
        minute.succeeded += throughput.last_minute.succeeded;
        minute.failed += throughput.last_minute.failed;
        if hour.per_minute.is_empty() {
            hour.per_minute = throughput.per_minute.clone();
        } else {
            for (sum, (_, counts)) in hour.per_minute.iter_mut().zip(&throughput.per_minute) {
                sum.1.succeeded += counts.succeeded;
                sum.1.failed += counts.failed;
            }
        }
        let paused = if stats.paused {
            "<span class=\"badge paused\">paused</span>"
        } else {
            ""
        };
        let _ = write!(
            rows,
            "<tr><td><a href=\"{}/queues/{}\">{}</a></td>{}{}{}{}{}{}{}{}</tr>",
            esc(&request.base),
            seg(name),
            esc(name),
            live(name, "pending", stats.pending + stats.suspects, "n"),
            live(name, "scheduled", stats.scheduled, "n hide-s"),
            live(name, "retry", stats.retry, "n"),
            live(name, "running", stats.running, "n"),
            live(name, "dead", stats.dead, "n"),
            live(name, "ok_min", throughput.last_minute.succeeded, "n hide-s"),
            live(name, "workers", stats.workers, "n hide-s"),
            live(name, "paused", paused, "badge-cell"),
        );
    }
    for (name, error) in &unreadable {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td colspan=\"8\" class=\"err\">cannot be read: {}</td></tr>",
            esc(name),
            esc(error)
        );
    }
    if all.is_empty() && unreadable.is_empty() {
        rows.push_str("<tr><td colspan=\"9\" class=\"muted\">No queue yet: none was enqueued to or served under this prefix.</td></tr>");
    }
    let mut workers = String::new();
    for (name, stats, _) in &all {
        if stats.workers == 0 {
            continue;
        }
        let Ok(list) = client.queue(name).workers().await else {
            continue;
        };
        for worker in list {
            let _ = write!(
                workers,
                "<tr><td>{}</td><td>{}</td><td class=\"n hide-s\">{}</td><td class=\"n\">{}</td><td class=\"hide-s\">{}</td></tr>",
                esc(name),
                esc(&worker.id),
                worker.pid.map(|p| p.to_string()).unwrap_or_default(),
                worker.in_flight,
                html::time(worker.last_heartbeat),
            );
        }
    }
    if workers.is_empty() {
        workers.push_str(
            "<tr><td colspan=\"5\" class=\"muted\">No worker is serving these queues.</td></tr>",
        );
    }
    // Periodic schedules, when there are any (best effort: the rest of the page stands alone).
    let mut periodic = String::new();
    for schedule in client.periodic_jobs().await.unwrap_or_default() {
        let zone = if schedule.tz == "UTC" {
            String::new()
        } else {
            format!(" <span class=\"muted\">{}</span>", esc(&schedule.tz))
        };
        let _ = write!(
            periodic,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code>{zone}</td><td class=\"hide-s\">{}</td><td>{}</td></tr>",
            esc(&schedule.name),
            esc(&schedule.queue),
            esc(&schedule.cron),
            schedule.last_tick.map(html::time).unwrap_or_default(),
            schedule.next_tick.map(html::time).unwrap_or_default(),
        );
    }
    let periodic = if periodic.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Periodic jobs</h2><div class=\"card\"><table><thead><tr><th>Name</th><th>Queue</th><th>Schedule</th><th class=\"hide-s\">Last tick</th><th>Next tick</th></tr></thead><tbody>{periodic}</tbody></table></div>"
        )
    };
    let tile = |value: u64, label: &str| {
        format!("<div class=\"tile\"><b>{value}</b><span>{label}</span></div>")
    };
    let body = format!(
        "<h1>Queues</h1><div class=\"tiles\">{}{}{}{}{}{}</div>\
<div class=\"card\"><table><thead><tr><th>Queue</th><th class=\"n\">Pending</th><th class=\"n hide-s\">Scheduled</th><th class=\"n\">Retry</th><th class=\"n\">Running</th><th class=\"n\">Dead</th><th class=\"n hide-s\">Done/min</th><th class=\"n hide-s\">Workers</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>\
<h2>Last hour <span class=\"muted\">(jobs per minute: succeeded, failed)</span></h2><div class=\"card\">{}</div>\
<h2>Workers</h2><div class=\"card\"><table><thead><tr><th>Queue</th><th>Worker</th><th class=\"n hide-s\">PID</th><th class=\"n\">Busy</th><th class=\"hide-s\">Heartbeat</th></tr></thead><tbody>{workers}</tbody></table></div>{periodic}",
        tile(total.pending, "pending"),
        tile(total.running, "running"),
        tile(total.retry, "retrying"),
        tile(total.dead, "dead"),
        tile(minute.succeeded, "done, last minute"),
        tile(minute.failed, "failed, last minute"),
        html::chart(&hour),
    );
    request.respond(
        StatusCode::OK,
        html::page(&request.base, "Queues", "", None, &body),
    )
}

/// One row of a job list.
fn job_row(request: &Request, queue: &str, job: &JobInfo) -> String {
    let when = job
        .died_at
        .or(job.due_at)
        .or(job.enqueued_at)
        .map(html::time)
        .unwrap_or_default();
    let detail = match (&job.last_error, &job.worker) {
        (Some(error), _) => format!("<td class=\"err\">{}</td>", esc(&crate_fit(error, 160))),
        (None, Some(worker)) => format!("<td class=\"muted\">on {}</td>", esc(worker)),
        (None, None) => "<td></td>".to_owned(),
    };
    format!(
        "<tr><td><a href=\"{}/queues/{}/jobs/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"hide-s\">{when}</td>{detail}</tr>",
        esc(&request.base),
        seg(queue),
        seg(job.id.as_str()),
        esc(job.id.as_str()),
        esc(job.task.as_deref().unwrap_or("")),
        job.attempts,
    )
}

/// `text` cut to `chars` characters.
fn crate_fit(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// GET `/queues/{queue}`: one queue, its jobs in one state, and its repairs.
pub(super) async fn queue(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = Request::new(&original, &uri, &headers, &key);
    let queue = client.queue(&name);
    let base_q = format!("{}/queues/{}", request.base, seg(&name));
    if let Some(id) = query
        .get("id")
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
    {
        return match queue.job(&JobId::from(id)).await {
            Ok(Some(_)) => Redirect::to(&format!("{base_q}/jobs/{}", seg(id))).into_response(),
            Ok(None) => {
                let body = format!(
                    "<h1>{}</h1><div class=\"card\">No job <code>{}</code> in this queue (a job that finished is no longer in its queue).</div><p><a href=\"{}\">Back to the queue</a></p>",
                    esc(&name),
                    esc(id),
                    esc(&base_q)
                );
                request.respond(
                    StatusCode::NOT_FOUND,
                    html::page(&request.base, &name, "", None, &body),
                )
            }
            Err(error) => failure(&request, &error),
        };
    }
    let state: JobState = query
        .get("state")
        .and_then(|s| s.parse().ok())
        .unwrap_or(JobState::Pending);
    // A page number past any queue's length is the last page anyone could ask for.
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .min(MAX_PAGE);
    let (stats, jobs) = match tokio::try_join!(
        queue.stats(),
        queue.jobs(state, Order::NewestFirst, page * PAGE, PAGE + 1)
    ) {
        Ok(both) => both,
        Err(error) => return failure(&request, &error),
    };
    let more = jobs.len() > PAGE;
    let mut tabs = String::new();
    for (tab, count) in [
        (JobState::Pending, stats.pending + stats.suspects),
        (JobState::Scheduled, stats.scheduled),
        (JobState::Retry, stats.retry),
        (JobState::Running, stats.running),
        (JobState::Dead, stats.dead),
    ] {
        let _ = write!(
            tabs,
            "<a class=\"{}\" href=\"{}?state={tab}\">{tab}<span data-q=\"{}\" data-k=\"{}\">{count}</span></a>",
            if tab == state { "on" } else { "" },
            esc(&base_q),
            esc(&name),
            tab.as_str(),
        );
    }
    let mut actions = String::new();
    if stats.paused {
        actions.push_str(&request.button(
            &format!("/queues/{}/resume", seg(&name)),
            "Resume",
            "primary",
            &[],
            None,
        ));
    } else {
        actions.push_str(&request.button(
            &format!("/queues/{}/pause", seg(&name)),
            "Pause",
            "",
            &[],
            None,
        ));
    }
    match state {
        JobState::Dead if stats.dead > 0 => {
            actions.push_str(&request.button(
                &format!("/queues/{}/dead/retry", seg(&name)),
                "Retry all dead",
                "primary",
                &[("all", "1")],
                None,
            ));
            actions.push_str(&request.button(
                &format!("/queues/{}/dead/delete", seg(&name)),
                "Delete all dead",
                "danger",
                &[("all", "1")],
                Some("Delete every dead job of this queue for good?"),
            ));
        }
        JobState::Pending | JobState::Scheduled | JobState::Retry if !jobs.is_empty() => {
            actions.push_str(&request.button(
                &format!("/queues/{}/purge", seg(&name)),
                &format!("Purge {state}"),
                "danger",
                &[("state", state.as_str())],
                Some(&format!("Delete every {state} job of this queue for good?")),
            ));
        }
        _ => {}
    }
    let mut rows: String = jobs
        .iter()
        .take(PAGE)
        .map(|job| job_row(&request, &name, job))
        .collect();
    if rows.is_empty() {
        let _ = write!(
            rows,
            "<tr><td colspan=\"5\" class=\"muted\">No {state} job.</td></tr>"
        );
    }
    let mut pager = String::new();
    if page > 0 {
        let _ = write!(
            pager,
            "<a href=\"{}?state={state}&page={}\">← newer</a>",
            esc(&base_q),
            page - 1
        );
    }
    if more {
        let _ = write!(
            pager,
            "<a href=\"{}?state={state}&page={}\">older →</a>",
            esc(&base_q),
            page + 1
        );
    }
    let badge = if stats.paused {
        " <span class=\"badge paused\">paused</span>"
    } else {
        ""
    };
    let body = format!(
        "<h1>{}{badge}</h1><div class=\"actions\">{actions}<form method=\"get\" action=\"{}\"><input type=\"search\" name=\"id\" placeholder=\"Find a job by id\" aria-label=\"job id\"></form></div>\
<div class=\"tabs\">{tabs}</div><div class=\"card\"><table><thead><tr><th>Id</th><th>Task</th><th class=\"n\">Tries</th><th class=\"hide-s\">When</th><th>Error / worker</th></tr></thead><tbody>{rows}</tbody></table><div class=\"pager\">{pager}</div></div>",
        esc(&name),
        esc(&base_q),
    );
    let trail = format!(" / {}", esc(&name));
    let notice = notice(&query);
    request.respond(
        StatusCode::OK,
        html::page(&request.base, &name, &trail, notice.as_deref(), &body),
    )
}

/// GET `/queues/{queue}/jobs/{id}`: one job.
pub(super) async fn job(
    State(client): State<Client>,
    State(key): State<CsrfKey>,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = Request::new(&original, &uri, &headers, &key);
    let base_q = format!("{}/queues/{}", request.base, seg(&name));
    let trail = format!(" / <a href=\"{}\">{}</a> / job", esc(&base_q), esc(&name));
    let notice = notice(&query);
    let found = match client.queue(&name).job(&JobId::from(id.as_str())).await {
        Ok(found) => found,
        Err(error) => return failure(&request, &error),
    };
    let Some(job) = found else {
        let status = match client.job(id.as_str()).status().await {
            Ok(crate::JobStatus::Succeeded(value)) => format!(
                "It succeeded and returned <pre>{}</pre>",
                esc(&value.to_string())
            ),
            Ok(crate::JobStatus::Dead { error, .. }) => format!("It ended dead: {}", esc(&error)),
            Ok(crate::JobStatus::Cancelled { .. }) => "It was cancelled.".to_owned(),
            Ok(crate::JobStatus::Waiting) => {
                "It is a step of a workflow, waiting for the steps before it.".to_owned()
            }
            _ => "It is not in this queue (it may have finished, or never existed).".to_owned(),
        };
        let body = format!(
            "<h1>Job <code>{}</code></h1><div class=\"card\">{status}</div>",
            esc(&id)
        );
        return request.respond(
            StatusCode::OK,
            html::page(&request.base, "Job", &trail, notice.as_deref(), &body),
        );
    };
    let args = job
        .args
        .as_ref()
        .and_then(|args| serde_json::to_string_pretty(args).ok())
        .unwrap_or_else(|| job.payload.clone());
    let mut fields = String::new();
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            let _ = write!(fields, "<dt>{name}</dt><dd>{value}</dd>");
        }
    };
    field("Id", esc(job.id.as_str()));
    field(
        "Queue",
        format!("<a href=\"{}\">{}</a>", esc(&base_q), esc(&name)),
    );
    field(
        "State",
        format!(
            "<span class=\"badge{}\">{}</span>",
            if job.state == JobState::Dead {
                " dead"
            } else {
                " live"
            },
            job.state
        ),
    );
    field("Task", esc(job.task.as_deref().unwrap_or("")));
    field("Attempts", job.attempts.to_string());
    field(
        "Last error",
        job.last_error
            .as_deref()
            .map(|e| format!("<span class=\"err\">{}</span>", esc(e)))
            .unwrap_or_default(),
    );
    field(
        "Enqueued",
        job.enqueued_at.map(html::time).unwrap_or_default(),
    );
    field("Due", job.due_at.map(html::time).unwrap_or_default());
    field("Died", job.died_at.map(html::time).unwrap_or_default());
    field("Worker", esc(job.worker.as_deref().unwrap_or("")));
    if job.state == JobState::Running
        && let Ok(crate::JobStatus::Running {
            progress: Some(progress),
            ..
        }) = client.job(id.as_str()).status().await
    {
        field(
            "Progress",
            format!("{}% {}", progress.percent, esc(&progress.message)),
        );
    }
    let id_field = [("id", job.id.as_str())];
    let actions = match job.state {
        JobState::Dead => format!(
            "{}{}",
            request.button(
                &format!("/queues/{}/dead/retry", seg(&name)),
                "Retry",
                "primary",
                &id_field,
                None
            ),
            request.button(
                &format!("/queues/{}/dead/delete", seg(&name)),
                "Delete",
                "danger",
                &id_field,
                Some("Delete this dead job for good?")
            ),
        ),
        JobState::Pending | JobState::Scheduled | JobState::Retry => request.button(
            &format!(
                "/queues/{}/jobs/{}/cancel",
                seg(&name),
                seg(job.id.as_str())
            ),
            "Cancel",
            "danger",
            &[],
            Some("Cancel this job? It will not run."),
        ),
        JobState::Running => String::new(),
    };
    let body = format!(
        "<h1>Job <code>{}</code></h1><div class=\"actions\">{actions}</div><div class=\"card\"><dl>{fields}</dl></div><h2>Arguments</h2><div class=\"card\"><pre>{}</pre></div>",
        esc(job.id.as_str()),
        esc(&args)
    );
    request.respond(
        StatusCode::OK,
        html::page(&request.base, "Job", &trail, notice.as_deref(), &body),
    )
}
