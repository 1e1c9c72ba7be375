//! Traces: every run is a `dtask.job` span with the job's id, task, queue, attempt and outcome;
//! with OpenTelemetry wired up (feature `opentelemetry`), a job enqueued inside a request's
//! span carries that trace (a W3C `traceparent` header), so each run's span is the request's
//! child and the handler's own spans are the run's children: one trace from request to job.
//! One test in this binary: it installs the process's global `tracing` subscriber.

use std::time::Duration;

use dtask::Worker;
use dtask_tests::harness::{eventually, start_redis, unique_prefix, wait_dead};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(10);

/// Opens a span of its own inside the run, and says which trace the job carried.
#[dtask::task(queue = "traced")]
async fn traced(order: u32) -> Option<String> {
    tracing::info_span!("render.invoice", order).in_scope(|| {
        tracing::info!("rendering");
    });
    dtask::current().and_then(|job| job.header("traceparent").map(str::to_owned))
}

/// Always fails: one retry, then the dead set.
#[dtask::task(queue = "traced", retries = 1)]
async fn refused(order: u32) -> Result<(), String> {
    Err(format!("order {order} refused"))
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn job_spans(exporter: &InMemorySpanExporter, id: &str) -> Vec<SpanData> {
    let mut spans: Vec<SpanData> = exporter
        .get_finished_spans()
        .expect("the in-memory exporter")
        .into_iter()
        .filter(|span| span.name == "dtask.job" && attribute(span, "id").as_deref() == Some(id))
        .collect();
    spans.sort_by_key(|span| attribute(span, "attempt"));
    spans
}

#[tokio::test]
async fn a_job_run_is_a_span_in_the_trace_of_the_request_that_enqueued_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("dtask-tests")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let redis = start_redis();
    let client = dtask::Client::connect_with_prefix(&redis.url(), &unique_prefix("traces"))
        .await
        .expect("connect");
    let worker = Worker::new(&client)
        .queues(["traced"])
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .spawn();

    // A request handler enqueues two jobs inside its span.
    let request = tracing::info_span!("POST /orders");
    let request_context = request.context().span().span_context().clone();
    assert!(
        request_context.is_valid(),
        "the OpenTelemetry layer is installed"
    );
    let (good, bad) = async {
        let good = traced::with().client(&client).enqueue(7).await.unwrap();
        let bad = refused::with().client(&client).enqueue(8).await.unwrap();
        (good, bad)
    }
    .instrument(request.clone())
    .await;
    drop(request);
    // And one outside any span.
    let orphan = traced::with().client(&client).enqueue(9).await.unwrap();

    // The job carried the request's trace as a W3C traceparent.
    let carried = good
        .wait(WAIT)
        .await
        .unwrap()
        .expect("a traceparent header");
    assert_eq!(
        carried,
        format!(
            "00-{:032x}-{:016x}-01",
            request_context.trace_id(),
            request_context.span_id()
        )
    );
    assert_eq!(orphan.wait(WAIT).await.unwrap(), None, "no trace to carry");
    let (attempts, error) = wait_dead(&bad, WAIT).await;
    assert_eq!((attempts, error.as_str()), (2, "order 8 refused"));

    // The run's span: the request's child, with the job's fields and outcome.
    let good_id = good.id().to_string();
    let run = eventually(WAIT, "the good job's span", || async {
        job_spans(&exporter, &good_id).pop()
    })
    .await;
    assert_eq!(run.span_context.trace_id(), request_context.trace_id());
    assert_eq!(run.parent_span_id, request_context.span_id());
    assert_eq!(run.span_kind, SpanKind::Consumer);
    assert_eq!(attribute(&run, "task").as_deref(), Some(traced::NAME));
    assert_eq!(attribute(&run, "queue").as_deref(), Some("traced"));
    assert_eq!(attribute(&run, "attempt").as_deref(), Some("1"));
    assert_eq!(attribute(&run, "outcome").as_deref(), Some("succeeded"));
    assert_eq!(run.status, Status::Unset);
    // The handler's own span is the run's child.
    let spans = exporter.get_finished_spans().unwrap();
    let inner = spans
        .iter()
        .find(|span| {
            span.name == "render.invoice" && attribute(span, "order").as_deref() == Some("7")
        })
        .expect("the handler's span");
    assert_eq!(inner.parent_span_id, run.span_context.span_id());
    assert_eq!(inner.span_context.trace_id(), request_context.trace_id());

    // Each attempt of the failing job is a span of the same trace, marked as an error.
    let bad_id = bad.id().to_string();
    let runs = eventually(WAIT, "both attempts' spans", || async {
        Some(job_spans(&exporter, &bad_id)).filter(|runs| runs.len() == 2)
    })
    .await;
    for (run, (attempt, outcome)) in runs.iter().zip([("1", "retrying"), ("2", "dead")]) {
        assert_eq!(run.span_context.trace_id(), request_context.trace_id());
        assert_eq!(run.parent_span_id, request_context.span_id());
        assert_eq!(attribute(run, "attempt").as_deref(), Some(attempt));
        assert_eq!(attribute(run, "outcome").as_deref(), Some(outcome));
        assert!(
            matches!(run.status, Status::Error { .. }),
            "{:?}",
            run.status
        );
    }

    // A job enqueued outside any trace starts its own.
    let orphan_id = orphan.id().to_string();
    let run = eventually(WAIT, "the orphan's span", || async {
        job_spans(&exporter, &orphan_id).pop()
    })
    .await;
    assert_eq!(run.parent_span_id, SpanId::INVALID);
    assert_ne!(run.span_context.trace_id(), request_context.trace_id());

    worker.shutdown().await.unwrap();
}
