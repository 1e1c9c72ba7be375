//! A thumbnail job followed live: `GET /jobs/{id}/progress` streams the job's state as
//! server-sent events (one now, one at each change the queue's events announce, until the job
//! is over), and `GET /jobs/{id}/watch` is a page that shows them with a progress bar.
//!
//! Each event of the job is only a cue: the state sent is read from Redis (`status()`), the
//! truth, so a missed event (the subscription broke) costs nothing but a re-read.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use crate::routes::{ApiError, AppState, JobReport, job_report};
use crate::tasks::{Thumbnail, make_thumbnail};

/// `GET /jobs/{id}/progress`: `state` events, each the JSON `GET /jobs/{id}` answers.
pub async fn thumbnail_progress(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribed before the first read: no change falls in between.
    let events = state.client.events("thumbnails").await?;
    let handle = make_thumbnail::job(id).with_client(&state.client);
    let first = job_report(&handle).await?;
    let stream = futures_util::stream::unfold(
        Some((events, handle, Some(first))),
        |following| async move {
            let (mut events, handle, ready) = following?;
            let report = match ready {
                Some(report) => report,
                None => {
                    // The next cue: an event of this job, or a window that may have hidden one.
                    loop {
                        match events.next().await? {
                            Ok(event) if &event.job_id == handle.id() => break,
                            Ok(_) => {}
                            Err(_missed) => break,
                        }
                    }
                    job_report(&handle).await.ok()?
                }
            };
            let event = sse_event(&report);
            let next = (!report.is_over()).then_some((events, handle, None));
            Some((Ok(event), next))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One `state` event.
fn sse_event(report: &JobReport<Thumbnail>) -> Event {
    Event::default()
        .event("state")
        .json_data(report)
        .unwrap_or_else(|_| Event::default().event("state").data("{}"))
}

/// `GET /jobs/{id}/watch`: the page that follows the job.
pub async fn watch_page(Path(id): Path<String>) -> Html<String> {
    let id = escape(&id);
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Thumbnail job {id}</title>
<style>
 body {{ font: 16px system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; color: #222 }}
 progress {{ width: 100%; height: 1.5rem }}
 #state {{ font-weight: 600 }} .over {{ color: #1a7f37 }} .failed {{ color: #b42318 }}
 ol {{ color: #555; font-size: 14px }}
</style></head>
<body>
<h1>Thumbnail job</h1>
<p><code>{id}</code></p>
<progress id="bar" max="100" value="0"></progress>
<p><span id="state">connecting…</span> <span id="message"></span></p>
<pre id="result"></pre>
<h2>Seen</h2>
<ol id="log"></ol>
<script>
const source = new EventSource(location.pathname.replace(/\/watch$/, "/progress"));
const $ = (id) => document.getElementById(id);
source.addEventListener("state", (event) => {{
  const job = JSON.parse(event.data);
  const percent = job.percent ?? (job.state === "succeeded" ? 100 : null);
  if (percent !== null) $("bar").value = percent;
  $("state").textContent = job.state + (percent !== null ? " " + percent + "%" : "");
  $("message").textContent = job.message ?? job.error ?? "";
  const entry = document.createElement("li");
  entry.textContent = $("state").textContent + (job.message ? " (" + job.message + ")" : "");
  $("log").appendChild(entry);
  if (["succeeded", "dead", "cancelled"].includes(job.state)) {{
    $("state").className = job.state === "succeeded" ? "over" : "failed";
    if (job.result) $("result").textContent = JSON.stringify(job.result, null, 2);
    source.close();
  }}
}});
</script>
</body></html>
"#
    ))
}

/// `text` safe to put in HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
