//! Traces across the async boundary: W3C trace context from the HTTP command through
//! the append, the outbox, the Kafka headers, the consumers and the sink.
//!
//! Every event carries a `traceparent` (in its metadata and as a Kafka header). When
//! a process exports spans (`sluice up --otlp <endpoint>` installs the
//! OpenTelemetry layer and calls [`enable`]), each hop opens a span whose parent is
//! the context it received and hands on its own:
//!
//! - `http`: a request to a component, child of the caller's `traceparent` header
//!   (or a new trace); the command's events store this span's context, so the
//!   append (`append`) and everything downstream hang below it;
//! - `publish`: the relay sending one event, child of the event's stored context; the
//!   Kafka header carries the publish span's context;
//! - `consume`: a projection or reactor applying one event, child of the header's;
//! - `load`: the sink loading one event into the warehouse, child of the header's.
//!
//! Without [`enable`] none of these spans is created and every `traceparent` passes
//! through unchanged, as it did before tracing was on.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Spans are exported: hops open their spans and hand on their own context.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The remote context a W3C `traceparent` names (`00-<trace>-<span>-<flags>`).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    Some(SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

/// The W3C `traceparent` of a span context.
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Makes `span` a child of `traceparent` (when it names a valid context).
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

/// The `traceparent` of `span`, to hand on; `None` while spans are not exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| format(&span_context))
}

/// One span per event of a batch, each a child of its event's `traceparent`, open
/// until the batch is done (dropped): its duration is the hop's. Empty while spans
/// are not exported.
pub struct HopSpans(Vec<tracing::Span>);

impl HopSpans {
    /// `hop` is `publish`, `consume` or `load`; `component` the one doing it.
    pub fn open<'a>(
        hop: &'static str,
        component: &str,
        parents: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Self {
        if !enabled() {
            return HopSpans(Vec::new());
        }
        let spans = parents
            .into_iter()
            .map(|parent| {
                let span = tracing::info_span!(
                    target: "sluice::trace",
                    "hop",
                    otel.name = format!("{component} {hop}"),
                    otel.kind = if hop == "publish" { "producer" } else { "consumer" },
                    sluice.component = component,
                    sluice.hop = hop,
                );
                follow(&span, parent);
                span
            })
            .collect();
        HopSpans(spans)
    }

    /// The `traceparent` of the `i`-th event's span, to hand on.
    pub fn traceparent(&self, i: usize) -> Option<String> {
        self.0.get(i).and_then(traceparent_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_malformed_ones_are_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse(tp).unwrap();
        assert_eq!(format(&context), tp);
        assert!(context.is_remote());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_export_no_span_is_opened_and_nothing_is_handed_on() {
        let spans = HopSpans::open(
            "consume",
            "order_view",
            [Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        );
        assert!(spans.0.is_empty());
        assert_eq!(spans.traceparent(0), None);
    }
}
