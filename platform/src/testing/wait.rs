//! Waiting in a test for something that happens in the background.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `attempt` every `every` until it answers `Ok`, and returns that answer.
/// `Err` says what it found instead: once `timeout` has passed, the test fails
/// with it. The timeout only guards against a hang; nothing waits for it.
pub async fn eventually<T, F, Fut>(timeout: Duration, every: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(found) => assert!(Instant::now() < deadline, "{found}"),
        }
        tokio::time::sleep(every).await;
    }
}
