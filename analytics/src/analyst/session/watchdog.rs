//! The statement timeout and cancel requests: a task that interrupts the
//! session's DuckDB connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::InterruptHandle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the watchdog repeats its interrupt: DuckDB clears the flag when a
/// query starts executing, so a single interrupt can be lost.
const INTERRUPT_REPEAT: Duration = Duration::from_millis(50);

/// Interrupts the connection once the statement timeout has passed or a cancel
/// request came, repeatedly (DuckDB clears the flag when a query starts
/// executing), until stopped.
pub(super) struct Watchdog {
    /// Whether the statement still runs. The watchdog interrupts only while
    /// holding this lock and seeing `true`, so once [`Watchdog::stop`] returns no
    /// interrupt can reach the statements that follow (the ROLLBACK).
    running: Arc<Mutex<bool>>,
    done: CancellationToken,
}

impl Watchdog {
    /// `why`: set to `true` when the timeout passes, and when a cancel comes.
    pub(super) fn start(
        interrupt: Arc<InterruptHandle>,
        timeout: Duration,
        cancel: Arc<Notify>,
        why: [Arc<AtomicBool>; 2],
    ) -> Self {
        let running = Arc::new(Mutex::new(true));
        let done = CancellationToken::new();
        let (gate, stopped) = (running.clone(), done.clone());
        let [timed_out, cancelled] = why;
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tokio::time::sleep(timeout) => timed_out.store(true, Ordering::SeqCst),
                _ = cancel.notified() => cancelled.store(true, Ordering::SeqCst),
            }
            loop {
                {
                    let running = gate.lock().unwrap_or_else(|e| e.into_inner());
                    if !*running {
                        return;
                    }
                    interrupt.interrupt();
                }
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tokio::time::sleep(INTERRUPT_REPEAT) => {}
                }
            }
        });
        Watchdog { running, done }
    }

    /// Stops interrupting; returns once no interrupt can follow.
    pub(super) fn stop(&self) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.done.cancel();
    }
}

impl Drop for Watchdog {
    /// However the statement ended.
    fn drop(&mut self) {
        self.stop();
    }
}
