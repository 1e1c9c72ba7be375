//! The HTTP API: routes that enqueue jobs, report on them, or enqueue and wait.
//!
//! Every answer is JSON except `GET /` (plain-text help). Errors are `{"error": "..."}`, with
//! `job_id` (and `attempts`) when they are about a job.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::tasks::{
    MAX_WIDTH, MIN_WIDTH, Signup, Thumbnail, WordCount, count_words, make_thumbnail, send_welcome,
};

/// How long the `sync` routes wait for a job before they give up and answer 504.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// The longest delay `POST /thumbnails` accepts.
const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;
/// The most widths one batch may ask for.
const MAX_BATCH: usize = 100;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The dtask client, also installed as the process-wide default; used here for the queue
    /// views, which need a client by name.
    pub client: dtask::Client,
    /// The server's own base URL, for the curl examples in the help text.
    pub base_url: Arc<str>,
    /// The app's resources (its database), shared with the tasks.
    pub app: crate::tasks::App,
}

/// The app's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(help))
        .route("/thumbnails", post(create_thumbnail))
        .route("/thumbnails/sync", post(create_thumbnail_sync))
        .route("/thumbnails/batch", post(create_thumbnails))
        .route("/jobs/{id}", get(thumbnail_job))
        .route(
            "/jobs/{id}/progress",
            get(crate::progress::thumbnail_progress),
        )
        .route("/jobs/{id}/watch", get(crate::progress::watch_page))
        .route("/signups", post(create_signup))
        .route("/signups/{id}", get(signup_job))
        .route("/welcomes", get(welcomes))
        .route("/words", post(words))
        .route("/queues/{name}", get(queue))
        .with_state(state)
}

/// `GET /`: what the app does, with curl examples.
async fn help(State(state): State<AppState>) -> String {
    let base = &state.base_url;
    let json = "-H 'content-type: application/json'";
    format!(
        r#"dtask example: thumbnails, welcome mails and word counts, made by background jobs.

Routes:
  POST /thumbnails        {{"image_url", "width", "delay_secs"?, "retries"?}} -> 202 {{"job_id"}}
  POST /thumbnails/batch  {{"image_url", "widths": [..]}}                      -> 202 {{"job_ids"}}
  POST /thumbnails/sync   {{"image_url", "width"}}: enqueues, waits up to 10 s -> 200 {{"job_id", "result"}}
  GET  /jobs/{{id}}         a thumbnail job: queued | scheduled | running (percent) | retrying |
                          succeeded | dead | cancelled | unknown
  GET  /jobs/{{id}}/watch   a page that follows the job live (its progress, streamed)
  GET  /jobs/{{id}}/progress  the job's states as server-sent events, until it ends
  POST /signups           {{"email", "name"}}: sends a welcome mail            -> 202 {{"job_id"}}
  GET  /signups/{{id}}      a welcome-mail job
  GET  /welcomes          the welcome mails sent, from the app's database
  POST /words             any text: counted by a worker, waits up to 10 s  -> 200 {{"job_id", "result"}}
  GET  /queues/{{name}}     job counts and recent dead jobs of thumbnails | emails | default

Try:
  curl -s {base}/thumbnails {json} -d '{{"image_url":"https://img.example/cat.png","width":320}}'
  curl -s {base}/jobs/JOB_ID
  curl -s {base}/thumbnails {json} -d '{{"image_url":"https://img.example/cat.png","width":64,"delay_secs":5}}'
  curl -s {base}/thumbnails/sync {json} -d '{{"image_url":"https://img.example/dog.png","width":640}}'
  curl -s {base}/thumbnails/batch {json} -d '{{"image_url":"https://img.example/cat.png","widths":[64,128,256]}}'
  curl -s {base}/signups {json} -d '{{"email":"ada@example.com","name":"Ada"}}'
  curl -s {base}/signups/JOB_ID
  curl -s {base}/words --data-binary @README.md

URLs containing "broken" always fail: watch the job retry (GET /jobs/JOB_ID), then land in the
dead set (GET /queues/thumbnails). "retries" lowers the retry count for one job:
  curl -s {base}/thumbnails {json} -d '{{"image_url":"https://img.example/broken.png","width":64,"retries":1}}'
Mail to an address ending in ".invalid" fails the same way.
"#
    )
}

/// `POST /thumbnails` and `POST /thumbnails/sync` bodies.
#[derive(Debug, Deserialize)]
struct ThumbnailRequest {
    image_url: String,
    width: u32,
    /// Run the job no sooner than this many seconds from now.
    #[serde(default)]
    delay_secs: Option<u64>,
    /// Retry this job at most this many times, instead of the task's 3.
    #[serde(default)]
    retries: Option<u32>,
}

impl ThumbnailRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_image_url(&self.image_url)?;
        check_width(self.width)?;
        if self.delay_secs.is_some_and(|delay| delay > MAX_DELAY_SECS) {
            return Err(ApiError::invalid(format!(
                "delay_secs must be at most {MAX_DELAY_SECS}"
            )));
        }
        Ok(())
    }

    /// Enqueues the job this request asks for.
    async fn enqueue(self) -> Result<dtask::JobHandle<Thumbnail>, ApiError> {
        self.validate()?;
        let mut job = make_thumbnail::with();
        if let Some(delay) = self.delay_secs {
            job = job.delay(Duration::from_secs(delay));
        }
        if let Some(retries) = self.retries {
            job = job.retries(retries);
        }
        let handle = job.enqueue(self.image_url, self.width).await?;
        tracing::info!(job_id = %handle.id(), delay_secs = ?self.delay_secs, "thumbnail job enqueued");
        Ok(handle)
    }
}

fn check_image_url(url: &str) -> Result<(), ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "image_url must be an http:// or https:// URL",
        ))
    }
}

fn check_width(width: u32) -> Result<(), ApiError> {
    if (MIN_WIDTH..=MAX_WIDTH).contains(&width) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "width must be between {MIN_WIDTH} and {MAX_WIDTH}"
        )))
    }
}

/// `POST /thumbnails`: enqueues a thumbnail job, now or after `delay_secs`.
async fn create_thumbnail(
    request: Result<Json<ThumbnailRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(request) = request?;
    let job = request.enqueue().await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job.id() }))))
}

/// `POST /thumbnails/sync`: enqueues a thumbnail job and waits for its result.
async fn create_thumbnail_sync(
    request: Result<Json<ThumbnailRequest>, JsonRejection>,
) -> Result<Json<Finished<Thumbnail>>, ApiError> {
    let Json(request) = request?;
    let job = request.enqueue().await?;
    let result = job.wait(SYNC_WAIT).await?;
    Ok(Json(Finished {
        job_id: job.id().to_string(),
        result,
    }))
}

/// What the `sync` routes answer: the job and what it returned.
#[derive(Debug, Serialize)]
struct Finished<T> {
    job_id: String,
    result: T,
}

/// `POST /thumbnails/batch` body.
#[derive(Debug, Deserialize)]
struct BatchRequest {
    image_url: String,
    widths: Vec<u32>,
}

/// `POST /thumbnails/batch`: one job per width, enqueued in one round trip.
async fn create_thumbnails(
    request: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(request) = request?;
    check_image_url(&request.image_url)?;
    if request.widths.is_empty() || request.widths.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "widths must hold 1 to {MAX_BATCH} widths"
        )));
    }
    for &width in &request.widths {
        check_width(width)?;
    }
    let url = request.image_url;
    let jobs =
        make_thumbnail::enqueue_many(request.widths.into_iter().map(|w| (url.clone(), w))).await?;
    tracing::info!(jobs = jobs.len(), "thumbnail jobs enqueued");
    let ids: Vec<_> = jobs.iter().map(dtask::JobHandle::id).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_ids": ids }))))
}

/// `GET /jobs/{id}`: where a thumbnail job stands.
async fn thumbnail_job(Path(id): Path<String>) -> Result<Json<JobReport<Thumbnail>>, ApiError> {
    report(make_thumbnail::job(id)).await
}

/// How long a signup's welcome mail is enqueued at most once.
const SIGNUP_WINDOW: Duration = Duration::from_secs(600);

/// `POST /signups`: sends the welcome mail in the background, once per signup.
async fn create_signup(
    signup: Result<Json<Signup>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(signup) = signup?;
    let valid = signup
        .email
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if !valid {
        return Err(ApiError::invalid("email must look like user@example.com"));
    }
    if signup.name.trim().is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    // A form submitted twice (a double click, a retried request) sends one mail: at most one
    // job with the same signup in ten minutes; the second gets the first job's id.
    let job = send_welcome::with()
        .unique_for(SIGNUP_WINDOW)
        .enqueue(signup)
        .await?;
    if job.is_duplicate() {
        tracing::info!(job_id = %job.id(), "welcome mail already enqueued");
    } else {
        tracing::info!(job_id = %job.id(), "welcome mail enqueued");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job_id": job.id(), "duplicate": job.is_duplicate() })),
    ))
}

/// `GET /signups/{id}`: where a welcome-mail job stands.
async fn signup_job(Path(id): Path<String>) -> Result<Json<JobReport<()>>, ApiError> {
    report(send_welcome::job(id)).await
}

/// `GET /welcomes`: the welcome mails the workers recorded in the app's database.
async fn welcomes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let welcomes = state.app.welcomes().await.map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("database: {error}"),
        )
    })?;
    Ok(Json(json!({ "welcomes": welcomes })))
}

/// `POST /words`: counts the words of the body, on a worker, and waits for the answer.
async fn words(text: String) -> Result<Json<Finished<WordCount>>, ApiError> {
    let job = count_words::enqueue(text).await?;
    let result = job.wait(SYNC_WAIT).await?;
    Ok(Json(Finished {
        job_id: job.id().to_string(),
        result,
    }))
}

/// `GET /queues/{name}`: job counts of one of the app's queues, and its latest dead jobs.
async fn queue(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<QueueReport>, ApiError> {
    let known = [
        make_thumbnail::INFO.queue,
        send_welcome::INFO.queue,
        count_words::INFO.queue,
    ];
    if !known.contains(&name.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no queue `{name}`; the app's queues are {}",
                known.join(", ")
            ),
        ));
    }
    let queue = state.client.queue(&name);
    let stats = queue.stats().await?;
    let recent_dead = queue
        .dead_jobs(10)
        .await?
        .into_iter()
        .map(|job| DeadReport {
            job_id: job.id.to_string(),
            task: job.task,
            attempts: job.attempts,
            error: job.error,
            died_secs_ago: SystemTime::now()
                .duration_since(job.died_at)
                .unwrap_or_default()
                .as_secs(),
        })
        .collect();
    Ok(Json(QueueReport {
        queue: name,
        pending: stats.pending,
        scheduled: stats.scheduled,
        retry: stats.retry,
        dead: stats.dead,
        recent_dead,
    }))
}

/// What `GET /queues/{name}` answers.
#[derive(Debug, Serialize)]
struct QueueReport {
    queue: String,
    pending: u64,
    scheduled: u64,
    retry: u64,
    dead: u64,
    /// The latest dead jobs, newest first.
    recent_dead: Vec<DeadReport>,
}

/// One job of a queue's dead set.
#[derive(Debug, Serialize)]
struct DeadReport {
    job_id: String,
    task: Option<String>,
    attempts: u32,
    error: String,
    died_secs_ago: u64,
}

/// A job's state, as the status routes report it.
#[derive(Debug, Serialize)]
pub(crate) struct JobReport<T> {
    job_id: String,
    #[serde(flatten)]
    state: JobState<T>,
}

impl<T> JobReport<T> {
    /// Whether the job is over: it will not change again.
    pub(crate) fn is_over(&self) -> bool {
        matches!(
            self.state,
            JobState::Succeeded { .. } | JobState::Dead { .. } | JobState::Cancelled
        )
    }
}

/// `{"state": "queued" | "scheduled" | "running" | "retrying" | "succeeded" | "dead" |
/// "cancelled" | "unknown", ...}`.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum JobState<T> {
    Queued,
    Scheduled {
        due_in_ms: u64,
    },
    Running {
        attempt: u32,
        percent: Option<u32>,
        message: Option<String>,
    },
    Retrying {
        attempts: u32,
        error: String,
        next_attempt_in_ms: u64,
    },
    Succeeded {
        result: T,
    },
    Dead {
        attempts: u32,
        error: String,
    },
    Cancelled,
    /// Never enqueued, or its record expired.
    Unknown,
}

/// Milliseconds from now until `at` (0 when it passed).
fn ms_until(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// Reads where the job behind `handle` stands.
async fn report<T: DeserializeOwned>(
    handle: dtask::JobHandle<T>,
) -> Result<Json<JobReport<T>>, ApiError> {
    job_report(&handle).await.map(Json)
}

/// Reads where the job behind `handle` stands, as the status routes report it.
pub(crate) async fn job_report<T: DeserializeOwned>(
    handle: &dtask::JobHandle<T>,
) -> Result<JobReport<T>, ApiError> {
    let state = match handle.status().await? {
        dtask::JobStatus::Queued => JobState::Queued,
        dtask::JobStatus::Scheduled { due_at } => JobState::Scheduled {
            due_in_ms: ms_until(due_at),
        },
        dtask::JobStatus::Running {
            attempt, progress, ..
        } => JobState::Running {
            attempt,
            percent: progress.as_ref().map(|p| p.percent),
            message: progress.map(|p| p.message),
        },
        dtask::JobStatus::Retrying {
            attempts,
            error,
            next_attempt_at,
        } => JobState::Retrying {
            attempts,
            error,
            next_attempt_in_ms: ms_until(next_attempt_at),
        },
        dtask::JobStatus::Cancelled { .. } => JobState::Cancelled,
        dtask::JobStatus::Unknown => JobState::Unknown,
        dtask::JobStatus::Succeeded(result) => JobState::Succeeded { result },
        dtask::JobStatus::Dead { attempts, error } => JobState::Dead { attempts, error },
        // `JobStatus` is non-exhaustive: a newer dtask may know more states.
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the job is in a state this app does not know",
            ));
        }
    };
    Ok(JobReport {
        job_id: handle.id().to_string(),
        state,
    })
}

/// An error answer: a status and a JSON body with at least `error`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// An error answer with `status` and `{"error": message}`.
    pub fn new(status: StatusCode, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.to_string() }),
        }
    }

    /// A 422 for a request that parsed but makes no sense.
    fn invalid(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<dtask::Error> for ApiError {
    fn from(error: dtask::Error) -> ApiError {
        let answer = match &error {
            // The job failed for good: the thing it stood for (the image, the mailbox) failed.
            dtask::Error::JobDead { id, attempts, .. } => {
                let mut answer = ApiError::new(StatusCode::BAD_GATEWAY, &error);
                answer.body["job_id"] = json!(id);
                answer.body["state"] = json!("dead");
                answer.body["attempts"] = json!(attempts);
                answer
            }
            // Still running, or no worker is serving its queue: the caller can poll the id.
            dtask::Error::WaitTimeout { id, .. } => {
                let mut answer = ApiError::new(StatusCode::GATEWAY_TIMEOUT, &error);
                answer.body["job_id"] = json!(id);
                answer
            }
            dtask::Error::Redis { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, &error),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, &error),
        };
        if answer.status != StatusCode::BAD_GATEWAY && answer.status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(%error, "request failed");
        }
        answer
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signup handler as a user's test would check it, with `dtask::testing`: a private
    /// Redis, the typed arguments of the job it enqueued, and the job run in-process.
    #[tokio::test]
    async fn a_signup_enqueues_one_welcome_mail_that_a_worker_sends() {
        let env = dtask::testing::TestRedis::start().await.unwrap();
        // The handler enqueues through the process-wide client, as in the app.
        dtask::init_with(env.client().clone()).unwrap();
        let signup = Signup {
            email: "ann@example.com".into(),
            name: "Ann".into(),
        };
        for _ in 0..2 {
            // Submitted twice: one job.
            create_signup(Ok(Json(signup.clone()))).await.unwrap();
        }
        assert_eq!(
            env.enqueued::<send_welcome::Task>().await.unwrap(),
            [(signup.clone(),)]
        );

        // A database file of the test's own (each connection to `sqlite::memory:` would have
        // a database of its own).
        let db = std::env::temp_dir().join(format!("dtask-example-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let app = crate::tasks::App::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let worker = dtask::Worker::new(env.client()).state(app.clone());
        let ran = env.drain_with(worker).await.unwrap();
        let welcomes: Vec<_> = ran
            .iter()
            .filter(|job| job.task == send_welcome::NAME)
            .collect();
        assert_eq!(welcomes.len(), 1, "{ran:?}");
        assert!(welcomes[0].succeeded(), "{ran:?}");
        let sent = app.welcomes().await.unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].email.as_str(), sent[0].sends),
            ("ann@example.com", 1)
        );
        app.db.close().await;
        let _ = std::fs::remove_file(&db);
    }
}
