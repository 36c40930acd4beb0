//! What a supervisor knows about the parts of a component, process-wide.
//!
//! A component can run as several parts in one process: a write service's HTTP API,
//! its relay and its reactor. Whoever runs them (the supervisor of `sluice up`)
//! reports each part's state here; the component's `/health/ready` answers 503
//! while any of its parts is not running, and `/metrics` carries
//! `sluice_component_up{component, part}` and
//! `sluice_component_restarts_total{component, part}` for `sluice status`.
//!
//! A component run on its own (`sluice run orders`) reports nothing: its readiness is
//! its database's.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// The state of one supervised part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    /// Started, not yet failed.
    Running,
    /// Failed; started again after a backoff.
    Restarting {
        /// Why it stopped last, one line.
        error: String,
        /// Restarts so far.
        restarts: u32,
    },
}

type Parts = BTreeMap<(String, String), PartState>;

fn parts() -> &'static Mutex<Parts> {
    static PARTS: OnceLock<Mutex<Parts>> = OnceLock::new();
    PARTS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Records the state of `part` (`api`, `relay`, `reactor`, …) of `component`.
pub fn report(component: &str, part: &str, state: PartState) {
    let up = matches!(state, PartState::Running);
    let labels = [
        ("component", component.to_owned()),
        ("part", part.to_owned()),
    ];
    metrics::gauge!("sluice_component_up", &labels).set(if up { 1.0 } else { 0.0 });
    if let PartState::Restarting { .. } = state {
        metrics::counter!("sluice_component_restarts_total", &labels).increment(1);
    }
    parts()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert((component.to_owned(), part.to_owned()), state);
}

/// The parts of `component` that are not running, as `part: why` lines.
pub fn unhealthy_parts(component: &str) -> Vec<String> {
    parts()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|((c, _), _)| c == component)
        .filter_map(|((_, part), state)| match state {
            PartState::Running => None,
            PartState::Restarting { error, restarts } => Some(format!(
                "{part} restarting (restart {restarts}) after: {error}"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarting_part_makes_its_component_unhealthy_until_it_runs_again() {
        report("health-test", "api", PartState::Running);
        report("health-test", "relay", PartState::Running);
        assert!(unhealthy_parts("health-test").is_empty());
        report(
            "health-test",
            "relay",
            PartState::Restarting {
                error: "connection reset".into(),
                restarts: 1,
            },
        );
        assert_eq!(
            unhealthy_parts("health-test"),
            ["relay restarting (restart 1) after: connection reset"]
        );
        assert!(unhealthy_parts("other-component").is_empty());
        report("health-test", "relay", PartState::Running);
        assert!(unhealthy_parts("health-test").is_empty());
    }
}
