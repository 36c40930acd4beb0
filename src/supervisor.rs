//! The supervisor of `sluice up`: every part of every component runs in a task of
//! its own; a part that fails (an error, a panic, or stopping by itself) is logged
//! with its reason and started again after a backoff, while the others keep serving.
//! Each part's state goes to [`sluice_platform::health`], so the component's
//! `/health/ready` answers 503 while one of its parts is down, and `/metrics` (read by
//! `sluice status`) shows it.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use sluice_platform::health::{self, PartState};
use sluice_platform::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long to wait before starting a failed part again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure.
    pub initial: Duration,
    /// Doubled per failure up to this.
    pub max: Duration,
    /// A part that ran this long before failing starts again after `initial`.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    fn next(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.max)
    }
}

/// How long a restarted part must run before it is shown running again.
const RESTART_GRACE: Duration = Duration::from_secs(2);

/// Runs parts until `shutdown`, restarting those that fail.
pub struct Supervisor {
    shutdown: CancellationToken,
    backoff: Backoff,
    tasks: JoinSet<()>,
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken, backoff: Backoff) -> Self {
        Supervisor {
            shutdown,
            backoff,
            tasks: JoinSet::new(),
        }
    }

    /// Supervises `part` of `component`: `run` is called with a token cancelled at
    /// shutdown, once at first and again after each failure.
    pub fn spawn<F, Fut>(&mut self, component: &str, part: &'static str, run: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (component, shutdown, backoff) =
            (component.to_owned(), self.shutdown.clone(), self.backoff);
        self.tasks.spawn(async move {
            supervise(&component, part, run, shutdown, backoff).await;
        });
    }

    /// Waits until every part has stopped (after shutdown).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn supervise<F, Fut>(
    component: &str,
    part: &'static str,
    run: F,
    shutdown: CancellationToken,
    backoff: Backoff,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut restarts = 0u32;
    let mut delay = backoff.initial;
    loop {
        // A first start counts as running at once. A restarted part stays shown as
        // restarting until it has run for RESTART_GRACE: one that fails again at
        // once (its database still refusing it) never looks up in between.
        if restarts == 0 {
            health::report(component, part, PartState::Running);
        }
        let started = Instant::now();
        // A part stopping itself (a projection cancels its own token when one of its
        // halves fails) must not stop the platform: each run has a child token.
        let token = shutdown.child_token();
        let mut handle = tokio::spawn(run(token.clone()));
        let outcome = if restarts == 0 {
            (&mut handle).await
        } else {
            tokio::select! {
                outcome = &mut handle => outcome,
                _ = tokio::time::sleep(RESTART_GRACE) => {
                    health::report(component, part, PartState::Running);
                    (&mut handle).await
                }
            }
        };
        token.cancel();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) if e.is_panic() => {
                Some(format!("it panicked: {}", panic_message(e.into_panic())))
            }
            Err(e) => Some(format!("its task ended: {e}")),
        };
        if shutdown.is_cancelled() {
            if let Some(why) = failure {
                tracing::warn!(component, part, error = %why, "failed while stopping");
            }
            return;
        }
        let why = failure.unwrap_or_else(|| "it stopped by itself".to_owned());
        if started.elapsed() >= backoff.stable {
            delay = backoff.initial;
        }
        restarts += 1;
        tracing::warn!(
            component,
            part,
            restarts,
            retry_in_seconds = delay.as_secs_f64(),
            error = %why,
            "component failed; the others keep serving, and it starts again after a backoff"
        );
        let line = why.lines().next().unwrap_or_default().to_owned();
        health::report(
            component,
            part,
            PartState::Restarting {
                error: line,
                restarts,
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = backoff.next(delay);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The registry's components in start order: each after everything it
/// `depends_on`, as waves of components whose dependencies are all in earlier
/// waves (the registry refuses unknown dependencies and cycles at load).
pub fn start_waves(registry: &Registry) -> Vec<Vec<String>> {
    let mut wave_of: BTreeMap<&str, usize> = BTreeMap::new();
    let components = registry.components();
    // At most one pass per component settles every depth of an acyclic graph.
    for _ in 0..=components.len() {
        let mut changed = false;
        for c in components {
            let depth = c
                .depends_on
                .iter()
                .map(|d| wave_of.get(d.as_str()).map_or(1, |w| w + 1))
                .max()
                .unwrap_or(0);
            if wave_of.get(c.name.as_str()) != Some(&depth) {
                wave_of.insert(c.name.as_str(), depth);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut waves: Vec<Vec<String>> = Vec::new();
    // Within a wave, the platform's own components first, then shared, then domain.
    let mut components: Vec<_> = components.iter().collect();
    components.sort_by_key(|c| (c.layer, c.name.clone()));
    for c in components {
        let w = wave_of[c.name.as_str()];
        if waves.len() <= w {
            waves.resize(w + 1, Vec::new());
        }
        waves[w].push(c.name.clone());
    }
    waves.retain(|w| !w.is_empty());
    waves
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn components_start_after_what_they_depend_on() {
        let registry = crate::components::reference_registry();
        let waves = start_waves(&registry);
        assert_eq!(waves[0], ["orders", "payments", "shipping"]);
        assert_eq!(
            waves[1],
            ["analytics", "customer_summary", "order_view", "sku_sales"]
        );
        let layers: Vec<_> = waves[1]
            .iter()
            .map(|n| registry.component(n).unwrap().layer)
            .collect();
        assert!(layers.is_sorted(), "{layers:?}");
        assert_eq!(waves.len(), 2);
    }

    #[tokio::test]
    async fn a_failing_part_is_restarted_with_backoff_and_shows_unhealthy_meanwhile() {
        let shutdown = CancellationToken::new();
        let backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            stable: Duration::from_secs(60),
        };
        let mut supervisor = Supervisor::new(shutdown.clone(), backoff);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.spawn("supervisor-test", "relay", move |token| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => anyhow::bail!("connection to server was lost"),
                    1 => panic!("a bug"),
                    _ => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        let healthy = Arc::new(AtomicU32::new(0));
        let seen = healthy.clone();
        supervisor.spawn("supervisor-test-other", "api", move |token| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                token.cancelled().await;
                Ok(())
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "never restarted twice");
            if runs.load(Ordering::SeqCst) >= 1 {
                // Between runs it is unhealthy (and says why), never for the other.
                assert!(health::unhealthy_parts("supervisor-test-other").is_empty());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The third run stays up: the part is healthy again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !health::unhealthy_parts("supervisor-test").is_empty() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(healthy.load(Ordering::SeqCst), 1, "the other part ran once");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor.wait())
            .await
            .expect("every part stops at shutdown");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_restarting_part_says_why() {
        let shutdown = CancellationToken::new();
        let backoff = Backoff {
            initial: Duration::from_secs(30),
            ..Backoff::default()
        };
        let mut supervisor = Supervisor::new(shutdown.clone(), backoff);
        supervisor.spawn("supervisor-why", "reactor", |_| async {
            anyhow::bail!("database \"sluice_orders\" does not exist\nmore detail")
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let parts = health::unhealthy_parts("supervisor-why");
            if !parts.is_empty() {
                assert_eq!(
                    parts,
                    ["reactor restarting (restart 1) after: database \"sluice_orders\" does not exist"]
                );
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Shutdown does not wait for the backoff.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), supervisor.wait())
            .await
            .expect("shutdown interrupts the backoff");
    }
}
