//! What each command does: reads or repairs through the admin API, then prints a table or JSON.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::CliError;
use super::args::{Command, DeadAction, DeadJobs, Output};
use super::render::{self, Table};
use crate::{Cancelled, Client, JobId, JobInfo, Order, QueueStats, Throughput};

/// Runs one command against `client`, printing to `out`.
pub(super) async fn run(
    client: &Client,
    command: Command,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::Queues(output) => queues(client, output, out).await,
        Command::Stats { watch, output } => stats(client, watch, output, out).await,
        Command::Jobs {
            queue,
            state,
            limit,
            offset,
            newest,
            output,
        } => {
            let order = if newest {
                Order::NewestFirst
            } else {
                Order::OldestFirst
            };
            let jobs = client
                .queue(&queue)
                .jobs(state, order, offset, limit as usize)
                .await?;
            print_jobs(&jobs, output, out)
        }
        Command::Job { id, output } => {
            let Some(job) = client.find_job(&JobId::from(id.as_str())).await? else {
                return Err(CliError::Refused(format!(
                    "no queue holds job `{id}` (a job that finished is no longer in its queue)"
                )));
            };
            print_job(&job, output, out)
        }
        Command::Dead { action } => dead(client, action, out).await,
        Command::Purge { queue, state, yes } => {
            if !yes {
                return Err(CliError::Refused(format!(
                    "purging deletes the jobs for good: add --yes to purge the {state} jobs of `{queue}`"
                )));
            }
            let purged = client.queue(&queue).purge(state).await?;
            writeln!(out, "purged {purged} job(s) from `{queue}`")?;
            Ok(())
        }
        Command::Pause { queue } => {
            client.queue(&queue).pause().await?;
            writeln!(
                out,
                "paused `{queue}`: workers take no job from it until `dtask resume {queue}`"
            )?;
            Ok(())
        }
        Command::Resume { queue } => {
            client.queue(&queue).resume().await?;
            writeln!(out, "resumed `{queue}`")?;
            Ok(())
        }
        Command::Cancel { id } => cancel(client, &id, out).await,
        Command::Workers(output) => workers(client, output, out).await,
        Command::Periodic(output) => periodic(client, output, out).await,
        Command::Rate { queue, limit } => rate(client, &queue, limit.as_deref(), out).await,
        Command::Dashboard {
            listen,
            allowed_hosts,
        } => dashboard(client, &listen, allowed_hosts, out).await,
    }
}

/// Every queue with its stats, read one after the other.
async fn all_stats(client: &Client) -> Result<Vec<(String, QueueStats)>, CliError> {
    let mut all = Vec::new();
    for name in client.queues().await? {
        let stats = client.queue(&name).stats().await?;
        all.push((name, stats));
    }
    Ok(all)
}

async fn queues(client: &Client, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let all = all_stats(client).await?;
    if output.json {
        let list: Vec<Value> = all.iter().map(|(name, s)| s.to_json(name)).collect();
        writeln!(out, "{}", Value::Array(list))?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("QUEUE", 20, false),
        ("PENDING", 8, true),
        ("SCHED", 7, true),
        ("RETRY", 7, true),
        ("RUNNING", 7, true),
        ("DEAD", 7, true),
        ("WORKERS", 7, true),
        ("PAUSED", 6, false),
    ]);
    for (name, stats) in &all {
        table.row(vec![
            name.clone(),
            (stats.pending + stats.suspects).to_string(),
            stats.scheduled.to_string(),
            stats.retry.to_string(),
            stats.running.to_string(),
            stats.dead.to_string(),
            stats.workers.to_string(),
            if stats.paused { "yes" } else { "" }.to_owned(),
        ]);
    }
    write!(out, "{}", table.render())?;
    if all.is_empty() {
        writeln!(
            out,
            "(no queue yet: none was enqueued to or served under this prefix)"
        )?;
    }
    Ok(())
}

async fn stats(
    client: &Client,
    watch: bool,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    loop {
        let mut rows = Vec::new();
        for (name, stats) in all_stats(client).await? {
            let throughput = client.queue(&name).throughput().await?;
            rows.push((name, stats, throughput));
        }
        if output.json {
            let list: Vec<Value> = rows
                .iter()
                .map(|(name, stats, throughput)| {
                    let mut value = stats.to_json(name);
                    value["last_minute"] = counts_json(throughput, true);
                    value["last_hour"] = counts_json(throughput, false);
                    value
                })
                .collect();
            writeln!(out, "{}", Value::Array(list))?;
        } else {
            if watch {
                // Clear the screen and go home, as `watch` does.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            let mut table = Table::new(&[
                ("QUEUE", 20, false),
                ("PENDING", 8, true),
                ("RUNNING", 7, true),
                ("RETRY", 7, true),
                ("DEAD", 7, true),
                ("OK/MIN", 7, true),
                ("FAIL/MIN", 8, true),
                ("OK/HOUR", 8, true),
            ]);
            for (name, stats, throughput) in &rows {
                // The mark must survive the cut of a long name.
                let name = if stats.paused {
                    format!("{} (paused)", render::fit(name, 11))
                } else {
                    name.clone()
                };
                table.row(vec![
                    name,
                    (stats.pending + stats.suspects).to_string(),
                    stats.running.to_string(),
                    stats.retry.to_string(),
                    stats.dead.to_string(),
                    throughput.last_minute.succeeded.to_string(),
                    throughput.last_minute.failed.to_string(),
                    throughput.last_hour.succeeded.to_string(),
                ]);
            }
            write!(out, "{}", table.render())?;
        }
        out.flush()?;
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn counts_json(throughput: &Throughput, minute: bool) -> Value {
    let counts = if minute {
        throughput.last_minute
    } else {
        throughput.last_hour
    };
    json!({ "succeeded": counts.succeeded, "failed": counts.failed })
}

fn job_json(job: &JobInfo) -> Value {
    json!({
        "id": job.id.as_str(),
        "queue": job.queue,
        "state": job.state.as_str(),
        "task": job.task,
        "args": job.args,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "enqueued_at_ms": job.enqueued_at.map(render::ms),
        "due_at_ms": job.due_at.map(render::ms),
        "died_at_ms": job.died_at.map(render::ms),
        "worker": job.worker,
    })
}

/// The time that matters most for a job in its state.
fn job_time(job: &JobInfo) -> String {
    job.died_at
        .or(job.due_at)
        .or(job.enqueued_at)
        .map(render::time)
        .unwrap_or_default()
}

fn print_jobs(jobs: &[JobInfo], output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    if output.json {
        let list: Vec<Value> = jobs.iter().map(job_json).collect();
        writeln!(out, "{}", Value::Array(list))?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ID", 22, false),
        ("TASK", 18, false),
        ("TRY", 3, true),
        ("AT (UTC)", 19, false),
        ("ERROR/WORKER", 13, false),
    ]);
    for job in jobs {
        table.row(vec![
            job.id.to_string(),
            job.task.clone().unwrap_or_default(),
            job.attempts.to_string(),
            job_time(job),
            job.last_error
                .clone()
                .or_else(|| job.worker.clone())
                .unwrap_or_default(),
        ]);
    }
    write!(out, "{}", table.render())?;
    Ok(())
}

fn print_job(job: &JobInfo, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    if output.json {
        writeln!(out, "{}", job_json(job))?;
        return Ok(());
    }
    let args = job.args.as_ref().map_or_else(
        || "(not a job this version reads)".to_owned(),
        Value::to_string,
    );
    let lines = [
        ("id", job.id.to_string()),
        ("queue", job.queue.clone()),
        ("state", job.state.to_string()),
        ("task", job.task.clone().unwrap_or_default()),
        ("args", args),
        ("attempts", job.attempts.to_string()),
        ("last error", job.last_error.clone().unwrap_or_default()),
        (
            "enqueued",
            job.enqueued_at.map(render::time).unwrap_or_default(),
        ),
        ("due", job.due_at.map(render::time).unwrap_or_default()),
        ("died", job.died_at.map(render::time).unwrap_or_default()),
        ("worker", job.worker.clone().unwrap_or_default()),
    ];
    for (name, value) in lines {
        if !value.is_empty() {
            writeln!(out, "{name:<10} {}", render::fit(&value, usize::MAX))?;
        }
    }
    Ok(())
}

async fn dead(client: &Client, action: DeadAction, out: &mut dyn Write) -> Result<(), CliError> {
    let (retry, DeadJobs { queue, all, ids }) = match action {
        DeadAction::Retry(jobs) => (true, jobs),
        DeadAction::Delete { jobs, yes } => {
            if jobs.all && !yes {
                return Err(CliError::Refused(format!(
                    "deleting every dead job of `{}` is for good: add --yes",
                    jobs.queue
                )));
            }
            (false, jobs)
        }
    };
    let view = client.queue(&queue);
    let mut ids: Vec<JobId> = ids.iter().map(|id| JobId::from(id.as_str())).collect();
    ids.sort();
    ids.dedup();
    let done = match (retry, all) {
        (true, true) => view.retry_all_dead().await?,
        (true, false) => view.retry_dead(&ids).await?,
        (false, true) => view.delete_all_dead().await?,
        (false, false) => view.delete_dead(&ids).await?,
    };
    let verb = if retry { "queued again" } else { "deleted" };
    writeln!(out, "{verb} {done} dead job(s) of `{queue}`")?;
    if !all && (done as usize) < ids.len() {
        return Err(CliError::Refused(format!(
            "{} of the {} id(s) given are not in the dead set of `{queue}`",
            ids.len() - done as usize,
            ids.len()
        )));
    }
    Ok(())
}

async fn cancel(client: &Client, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let id = JobId::from(id);
    for queue in client.queues().await? {
        match client.queue(&queue).cancel(&id).await? {
            Cancelled::Cancelled(state) => {
                writeln!(out, "cancelled job `{id}` ({state} in `{queue}`)")?;
                return Ok(());
            }
            Cancelled::Running => {
                writeln!(
                    out,
                    "job `{id}` is running in `{queue}`: its worker was told to stop it"
                )?;
                return Ok(());
            }
            Cancelled::NotFound => {}
        }
    }
    Err(CliError::Refused(format!(
        "no queue holds job `{id}` waiting or running (finished, dead or unknown)"
    )))
}

async fn workers(client: &Client, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for queue in client.queues().await? {
        for worker in client.queue(&queue).workers().await? {
            rows.push((queue.clone(), worker));
        }
    }
    if output.json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(queue, w)| {
                json!({
                    "queue": queue,
                    "id": w.id,
                    "host": w.host,
                    "pid": w.pid,
                    "last_heartbeat_ms": render::ms(w.last_heartbeat),
                    "in_flight": w.in_flight,
                })
            })
            .collect();
        writeln!(out, "{}", Value::Array(list))?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("QUEUE", 16, false),
        ("WORKER", 30, false),
        ("PID", 7, true),
        ("BUSY", 5, true),
        ("HEARTBEAT (UTC)", 17, false),
    ]);
    for (queue, w) in &rows {
        table.row(vec![
            queue.clone(),
            w.id.clone(),
            w.pid.map(|pid| pid.to_string()).unwrap_or_default(),
            w.in_flight.to_string(),
            render::time(w.last_heartbeat)[5..].to_owned(),
        ]);
    }
    write!(out, "{}", table.render())?;
    Ok(())
}

async fn rate(
    client: &Client,
    queue: &str,
    limit: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let view = client.queue(queue);
    match limit {
        None => match view.rate_limit().await? {
            Some(limit) => writeln!(out, "`{queue}`: at most {limit}")?,
            None => writeln!(out, "`{queue}` has no rate limit")?,
        },
        Some("off") => {
            view.clear_rate_limit().await?;
            writeln!(out, "removed the rate limit of `{queue}`")?;
        }
        Some(text) => {
            let limit: crate::RateLimit = text.parse()?;
            view.set_rate_limit(limit).await?;
            writeln!(out, "`{queue}`: at most {limit}")?;
        }
    }
    Ok(())
}

async fn periodic(client: &Client, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let schedules = client.periodic_jobs().await?;
    if output.json {
        let list: Vec<Value> = schedules
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "queue": p.queue,
                    "task": p.task,
                    "cron": p.cron,
                    "tz": p.tz,
                    "missed": p.missed,
                    "last_tick_ms": p.last_tick.map(render::ms),
                    "next_tick_ms": p.next_tick.map(render::ms),
                })
            })
            .collect();
        writeln!(out, "{}", Value::Array(list))?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("NAME", 20, false),
        ("QUEUE", 14, false),
        ("CRON", 16, false),
        ("LAST (UTC)", 11, false),
        ("NEXT (UTC)", 11, false),
    ]);
    let short = |time: Option<std::time::SystemTime>| {
        time.map(|t| render::time(t)[5..16].to_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    for p in &schedules {
        let cron = if p.tz == "UTC" {
            p.cron.clone()
        } else {
            format!("{} {}", p.cron, p.tz)
        };
        table.row(vec![
            p.name.clone(),
            p.queue.clone(),
            cron,
            short(p.last_tick),
            short(p.next_tick),
        ]);
    }
    write!(out, "{}", table.render())?;
    Ok(())
}

/// Serves the dashboard at `listen` until the process is interrupted, answering only
/// requests addressed to it by its own address, `localhost`, or one of `allowed_hosts`.
async fn dashboard(
    client: &Client,
    listen: &str,
    mut allowed_hosts: Vec<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| CliError::Refused(format!("cannot listen on {listen}: {error}")))?;
    let address = listener.local_addr()?;
    let port = address.port();
    allowed_hosts.extend([
        address.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ]);
    writeln!(out, "dashboard on http://{address}/ (Ctrl-C to stop)")?;
    out.flush()?;
    let app = crate::dashboard::router(client.clone()).layer(axum::middleware::from_fn_with_state(
        std::sync::Arc::new(allowed_hosts),
        only_known_hosts,
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Refuses a request whose `Host` is not one the dashboard is served as.
async fn only_known_hosts(
    axum::extract::State(allowed): axum::extract::State<std::sync::Arc<Vec<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let known = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            allowed
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        });
    if !known {
        return (
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "refused: this dashboard is not served under that host name (see --allowed-host)",
        )
            .into_response();
    }
    next.run(request).await
}
