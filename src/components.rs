//! The components this build can run, by registry name.

use sluice_platform::registry::{Component, Registry};
use sluice_platform::service::WriteService;

/// Every write service of the reference domain.
pub const WRITE_SERVICES: [WriteService; 3] = [
    sluice_orders::SERVICE,
    sluice_payments::SERVICE,
    sluice_shipping::SERVICE,
];

/// A runnable component of this build.
#[derive(Clone, Copy)]
pub enum Runnable {
    /// A write service's HTTP API.
    Service(WriteService),
    /// A write service's outbox relay.
    Relay(WriteService),
}

impl Runnable {
    pub fn name(&self) -> String {
        match self {
            Runnable::Service(s) => s.name.to_owned(),
            Runnable::Relay(s) => format!("relay {}", s.name),
        }
    }
}

/// The write service named `name`, if this build has it.
pub fn write_service(name: &str) -> Option<WriteService> {
    WRITE_SERVICES.iter().find(|s| s.name == name).copied()
}

/// What this build runs for a registry component, if anything.
pub fn runnable(component: &Component) -> Option<Runnable> {
    WRITE_SERVICES
        .iter()
        .find(|s| s.name == component.name)
        .map(|s| Runnable::Service(*s))
}

/// The registry's components this build can run, and the names of those it cannot
/// (yet): registered components whose implementation is not part of this build.
pub fn partition(registry: &Registry) -> (Vec<(&Component, Runnable)>, Vec<&str>) {
    let mut run = Vec::new();
    let mut missing = Vec::new();
    for component in registry.components() {
        match runnable(component) {
            Some(r) => run.push((component, r)),
            None => missing.push(component.name.as_str()),
        }
    }
    (run, missing)
}
