//! Termination signals shared by the supervisor and the processes it starts.

use std::future::Future;
use tokio::signal::unix::{SignalKind, signal};

/// Installs SIGINT (Ctrl-C) and SIGTERM handlers *now*, and returns a future that completes on
/// the first of them. Installing before the work starts means a signal that arrives early is
/// not lost to the default action (which would kill the process without cleanup).
///
/// # Panics
/// Outside a Tokio runtime, or if the handlers cannot be installed.
pub(crate) fn terminated() -> impl Future<Output = ()> + Send + 'static {
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}
