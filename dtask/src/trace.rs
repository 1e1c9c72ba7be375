//! Tracing of job runs: the `dtask.job` span every run happens in (with the job's id, task,
//! queue, attempt and, once settled, its outcome), and, with the feature `opentelemetry`, the
//! enqueuer's trace carried to its jobs in a W3C `traceparent` header so that each run's span
//! is a child of the request that enqueued it.
//!
//! The span's target is `dtask::job` (at INFO), apart from the per-job log lines of
//! `dtask::worker`, so that `RUST_LOG=info,dtask=warn,dtask::job=info` keeps the spans while
//! quieting the logs. Without a `tracing` subscriber it costs one cached "disabled" check.

use std::collections::BTreeMap;

use crate::envelope::Envelope;

/// The header that carries the enqueuer's trace (W3C Trace Context).
pub(crate) const TRACEPARENT: &str = "traceparent";

/// How a run ended, as its span's `outcome` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Acknowledged with its result.
    Succeeded,
    /// Failed; scheduled for another attempt.
    Retrying,
    /// Moved to the dead set.
    Dead,
    /// Put off: this worker cannot run it yet (a rolling deploy).
    Deferred,
    /// Cancelled: stopped, or never started, because someone cancelled the job.
    Cancelled,
    /// Waits in Redis for its task's limits (`rate`, `max_running`) to let it start.
    Waiting,
    /// Taken back from this worker before it settled; its outcome was dropped.
    Stale,
    /// Left in flight at shutdown, to be requeued.
    Abandoned,
}

impl Settled {
    fn as_str(self) -> &'static str {
        match self {
            Settled::Succeeded => "succeeded",
            Settled::Retrying => "retrying",
            Settled::Dead => "dead",
            Settled::Deferred => "deferred",
            Settled::Waiting => "waiting",
            Settled::Cancelled => "cancelled",
            Settled::Stale => "stale",
            Settled::Abandoned => "abandoned",
        }
    }

    /// Whether the run failed (OpenTelemetry's span status `ERROR`).
    fn failed(self) -> bool {
        matches!(self, Settled::Retrying | Settled::Dead)
    }
}

/// The span run number `attempt` of `envelope`'s job, taken from `queue`, happens in: a child
/// of the enqueuer's trace when the job carries one and OpenTelemetry is wired up.
pub(crate) fn job_span(envelope: &Envelope, queue: &str, attempt: u32) -> tracing::Span {
    let span = tracing::info_span!(
        target: "dtask::job",
        "dtask.job",
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        id = %envelope.id,
        task = %envelope.task,
        queue,
        attempt,
        outcome = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        otel::adopt_parent(&span, &envelope.headers);
    }
    span
}

/// Records on `span` how its run ended.
pub(crate) fn record_outcome(span: &tracing::Span, settled: Settled) {
    span.record("outcome", settled.as_str());
    if settled.failed() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace headers of the caller's current span, to carry in the jobs it enqueues now; none
/// without the feature `opentelemetry` or outside a sampled-or-not OpenTelemetry trace.
pub(crate) fn current_trace_headers() -> Vec<(&'static str, String)> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::current_headers()
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        Vec::new()
    }
}

/// Adds `trace` to `headers`, unless the enqueue middleware already set a trace of its own
/// (either W3C header, in any letter case).
pub(crate) fn carry(headers: &mut BTreeMap<String, String>, trace: &[(&'static str, String)]) {
    let own_trace = || {
        headers.keys().any(|name| {
            name.eq_ignore_ascii_case(TRACEPARENT) || name.eq_ignore_ascii_case("tracestate")
        })
    };
    if trace.is_empty() || own_trace() {
        return;
    }
    for (name, value) in trace {
        headers.insert((*name).to_owned(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_set_by_the_enqueue_middleware_wins_in_any_letter_case() {
        let trace = [(TRACEPARENT, "00-ours".to_owned())];
        let mut plain = BTreeMap::new();
        carry(&mut plain, &trace);
        assert_eq!(plain.get(TRACEPARENT).map(String::as_str), Some("00-ours"));
        for theirs in ["traceparent", "TraceParent", "tracestate"] {
            let mut headers = BTreeMap::from([(theirs.to_owned(), "theirs".to_owned())]);
            carry(&mut headers, &trace);
            assert_eq!(headers.len(), 1, "{theirs}: {headers:?}");
        }
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    //! W3C Trace Context in job headers, through `tracing-opentelemetry`.

    use std::collections::BTreeMap;
    use std::str::FromStr;

    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TRACEPARENT;

    /// The header that carries the enqueuer's vendor trace state (W3C Trace Context).
    const TRACESTATE: &str = "tracestate";

    /// `traceparent` (and `tracestate` when there is one) of the current span's trace.
    pub(super) fn current_headers() -> Vec<(&'static str, String)> {
        let current = tracing::Span::current();
        if current.is_disabled() {
            return Vec::new();
        }
        let context = current.context();
        let span = context.span();
        let parent = span.span_context();
        if !parent.is_valid() {
            return Vec::new();
        }
        let mut headers = vec![(TRACEPARENT, traceparent(parent))];
        let state = parent.trace_state().header();
        if !state.is_empty() {
            headers.push((TRACESTATE, state));
        }
        headers
    }

    /// The `traceparent` header naming `span` as the parent (version 00).
    pub(super) fn traceparent(span: &SpanContext) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            span.trace_id(),
            span.span_id(),
            span.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
        )
    }

    /// Makes the trace in `headers` (if any, and well formed) the parent of `span`.
    pub(super) fn adopt_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
        let Some(parent) = headers.get(TRACEPARENT).and_then(|h| parse_traceparent(h)) else {
            return;
        };
        let state = headers
            .get(TRACESTATE)
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        let parent = SpanContext::new(
            parent.trace_id(),
            parent.span_id(),
            parent.trace_flags(),
            true,
            state,
        );
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to join.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }

    /// Reads a W3C `traceparent`: `version-traceid-parentid-flags`, lowercase hex; None when
    /// malformed, of version `ff`, or naming an all-zero trace or span. A later version's
    /// extra fields are ignored, as the specification asks.
    pub(super) fn parse_traceparent(header: &str) -> Option<SpanContext> {
        let mut parts = header.trim().split('-');
        let version = parts.next().filter(|v| is_hex(v, 2) && *v != "ff")?;
        let trace = parts.next().filter(|t| is_hex(t, 32))?;
        let span = parts.next().filter(|s| is_hex(s, 16))?;
        let flags = parts.next().filter(|f| is_hex(f, 2))?;
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let context = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
            true,
            TraceState::default(),
        );
        context.is_valid().then_some(context)
    }

    fn is_hex(text: &str, len: usize) -> bool {
        text.len() == len
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_traceparent_round_trips_and_malformed_ones_are_ignored() {
            let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let parsed = parse_traceparent(header).expect("valid");
            assert!(parsed.is_sampled() && parsed.is_remote());
            assert_eq!(traceparent(&parsed), header);
            let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
            assert!(!parse_traceparent(unsampled).expect("valid").is_sampled());
            // A later version may add fields; version 00 may not.
            assert!(parse_traceparent(&format!("01{}-extra", &header[2..])).is_some());
            for bad in [
                "",
                "garbage",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",
            ] {
                assert!(parse_traceparent(bad).is_none(), "{bad}");
            }
        }
    }
}
