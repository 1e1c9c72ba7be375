//! dtask example: an axum web app that hands slow work to background jobs.
//!
//! Run with a Redis at hand:
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run -p dtask-example                 # web server and an embedded worker
//! cargo run -p dtask-example -- web          # only the web server  (or DTASK_MODE=web)
//! cargo run -p dtask-example -- worker       # only a worker        (or DTASK_MODE=worker)
//! curl -s http://127.0.0.1:3000/             # help, with curl examples
//! ```
//!
//! One binary, three modes: small deployments run web and worker in one process; larger ones
//! run `web` behind the load balancer and as many `worker` processes as the jobs need. Jobs are
//! enqueued into Redis, so any worker of this binary may run them, whichever process enqueued
//! them.
//!
//! Settings, from the environment:
//!
//! - `LISTEN_ADDR`: where the web server listens (default `127.0.0.1:3000`);
//! - `DTASK_REDIS_URL`: the Redis (default `redis://127.0.0.1:6379`), and `DTASK_PREFIX` its
//!   key prefix (default `dtask`), both read by dtask itself;
//! - `DTASK_CONCURRENCY`: jobs run at once per worker (default 8 embedded, 16 standalone);
//! - `DTASK_MODE`: `all` (default), `web` or `worker`; a first argument takes precedence;
//! - `DATABASE_URL`: the app's SQLite database, shared by web and worker processes (default
//!   `sqlite://dtask-example.db`, created when missing);
//! - `TENANT`: the tenant header every job is stamped with (default `example`);
//! - `SMTP_DOWN=1`: the welcome mails fail (a simulated outage, to fill the dead set and try
//!   the dashboard at `/dtask`);
//! - `RUST_LOG`: log filter (default `info`).
//!
//! SIGTERM or SIGINT (Ctrl-C) stops the process gracefully: the web server finishes the
//! requests in progress, then the worker finishes its running jobs (and returns any it cannot
//! finish in time to their queue).

mod middleware;
mod progress;
mod routes;
mod tasks;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

/// What `--help` prints.
const USAGE: &str = "\
usage: dtask-example [all|web|worker]

  all     the web server and a worker in one process (default)
  web     only the web server; jobs wait in Redis for a worker
  worker  only a worker

environment: LISTEN_ADDR (127.0.0.1:3000), DTASK_REDIS_URL (redis://127.0.0.1:6379),
DTASK_PREFIX (dtask), DTASK_CONCURRENCY, DTASK_MODE (instead of the argument), RUST_LOG (info),
DATABASE_URL (sqlite://dtask-example.db), TENANT (example), SMTP_DOWN (1 = mails fail)
dashboard: http://LISTEN_ADDR/dtask    metrics (Prometheus): http://LISTEN_ADDR/metrics
";

/// Any error that ends the process.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The web server and a worker, in one process.
    All,
    /// Only the web server: it enqueues jobs; other processes run them.
    Web,
    /// Only a worker: it runs the jobs of this binary's tasks.
    Worker,
}

impl Mode {
    /// The mode named by the first argument, or else by `DTASK_MODE`; `All` when neither is set.
    fn from_args_or_env() -> Result<Mode, String> {
        let name = std::env::args()
            .nth(1)
            .or_else(|| std::env::var("DTASK_MODE").ok());
        match name.as_deref().map(str::trim) {
            None | Some("" | "all") => Ok(Mode::All),
            Some("web") => Ok(Mode::Web),
            Some("worker") => Ok(Mode::Worker),
            Some(other) => Err(format!(
                "unknown mode `{other}`: use `all`, `web` or `worker` (as the first argument or in DTASK_MODE)"
            )),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args()
        .nth(1)
        .is_some_and(|arg| arg == "-h" || arg == "--help")
    {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let mode = Mode::from_args_or_env()?;
    tracing::info!(?mode, "starting");
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://dtask-example.db".to_owned());
    let app = tasks::App::open(&database_url)
        .await
        .map_err(|error| format!("cannot open the database {database_url}: {error}"))?;
    match mode {
        Mode::Worker => {
            // Returns after SIGTERM or SIGINT, once running jobs are done.
            worker(app)?.run().await?;
            Ok(())
        }
        Mode::Web => serve(app, false).await,
        Mode::All => serve(app, true).await,
    }
}

/// A worker of this binary's tasks: they reach the app's database through `State<App>`, and
/// every run is timed by the `Timing` middleware.
fn worker(app: tasks::App) -> Result<dtask::Worker, dtask::Error> {
    Ok(dtask::Worker::from_env()?
        .state(app)
        .middleware(middleware::Timing))
}

/// Runs the web server, and with `embedded_worker` a worker beside it, until SIGTERM or SIGINT.
async fn serve(app: tasks::App, embedded_worker: bool) -> Result<(), BoxError> {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // One client for the whole process: the generated `enqueue` and `job` functions use it as
    // the default, and the queue views use it by name. Connecting here also makes a wrong
    // DTASK_REDIS_URL fail at start rather than on the first request.
    let client = dtask::ClientBuilder::from_env()
        .enqueue_middleware(middleware::Tenant::from_env())
        .connect()
        .await?;
    dtask::init_with(client.clone())?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let base_url: Arc<str> = format!("http://{}", listener.local_addr()?).into();

    let worker = if embedded_worker {
        let mut worker = worker(app.clone())?;
        if std::env::var_os("DTASK_CONCURRENCY").is_none() {
            // Leave room for the web server.
            worker = worker.concurrency(8);
        }
        Some(worker.spawn())
    } else {
        None
    };

    tracing::info!("listening on {base_url}");
    // The operators' dashboard, under /dtask; put the app's own authentication in front of
    // it in production (see the README).
    let dashboard = dtask::dashboard::router(client.clone());
    // Prometheus metrics of the jobs this process enqueues and runs, at /metrics.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    let router = routes::router(routes::AppState {
        client,
        base_url,
        app,
    })
    .nest("/dtask", dashboard)
    .route(
        "/metrics",
        axum::routing::get(move || std::future::ready(metrics.render())),
    );
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(dtask::shutdown_signal())
        .await;
    tracing::info!("web server stopped");

    // Stop the worker whatever became of the server, so its jobs are not left in flight.
    if let Some(worker) = worker {
        worker.shutdown().await?;
    }
    served?;
    Ok(())
}
