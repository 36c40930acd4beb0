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
    Service(WriteService),
}

impl Runnable {
    pub fn name(&self) -> &'static str {
        match self {
            Runnable::Service(s) => s.name,
        }
    }
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
