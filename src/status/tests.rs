//! Unit tests of `status`.

use super::*;

#[test]
fn prometheus_text_is_parsed_with_its_labels() {
    let text = "# HELP x\n# TYPE sluice_consumer_lag_events gauge\n\
        sluice_consumer_lag_events{component=\"order_view\",topic=\"orders.events\",partition=\"0\"} 7\n\
        sluice_consumer_lag_events{component=\"order_view\",topic=\"orders.events\",partition=\"1\"} 3\n\
        sluice_relay_unpublished_events{service=\"a \\\"b\\\"\"} 2\n\
        sluice_sink_partitions 9\n";
    let m = Metrics(parse_metrics(text));
    assert_eq!(
        m.sum("sluice_consumer_lag_events", "component", "order_view"),
        Some(10.0)
    );
    assert_eq!(
        m.sum("sluice_relay_unpublished_events", "service", "a \"b\""),
        Some(2.0)
    );
    assert_eq!(m.sum("sluice_consumer_lag_events", "component", "x"), None);
    assert_eq!(m.0.last().unwrap().name, "sluice_sink_partitions");
}
