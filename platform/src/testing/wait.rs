//! Waiting in a test for something that happens in the background: poll a
//! condition until it holds, with a bound that only guards against a hang.

use std::fmt::Display;
use std::ops::AsyncFnMut;
use std::time::{Duration, Instant};

/// Polls `probe` every `every` until it returns `Ok`, and returns that value. Once
/// `within` has passed it panics with `what` and the probe's last `Err`: what it
/// saw instead.
pub async fn until<T, E: Display>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// [`until`] for a probe that has nothing to say while it waits: polls until it
/// returns `Some`.
pub async fn until_some<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    until(what, within, every, async || probe().await.ok_or("not yet")).await
}

/// [`until`] while `child` runs: panics as soon as the probe has not succeeded and
/// `child` has exited on its own.
pub async fn until_while_running<T, E: Display>(
    child: &mut std::process::Child,
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    until(what, within, every, async || {
        let seen = probe().await;
        if seen.is_err() {
            if let Some(status) = child.try_wait().expect("the child's status") {
                panic!("exited on its own ({status}) before {what}");
            }
        }
        seen
    })
    .await
}

/// `n` seconds, for a wait's bound.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds, for a wait's polling interval.
pub const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}
