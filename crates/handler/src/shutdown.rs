//! Requests to shut down, as a stream: the first starts the drain, a second cuts it short.

use std::future::Future;
use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt};

/// Shutdown requests, in the order they come.
pub(crate) type Requests<'a> = Pin<Box<dyn Stream<Item = ()> + Send + 'a>>;

/// One request when `shutdown` completes, never another.
pub(crate) fn when<'a, F>(shutdown: F) -> Requests<'a>
where
    F: Future<Output = ()> + Send + 'a,
{
    Box::pin(stream::once(shutdown).chain(stream::pending()))
}

/// One request per SIGTERM or SIGINT.
#[cfg(unix)]
pub(crate) fn os_signals() -> std::io::Result<Requests<'static>> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate())?;
    let interrupt = signal(SignalKind::interrupt())?;
    Ok(Box::pin(stream::unfold((terminate, interrupt), |(mut terminate, mut interrupt)| async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        Some(((), (terminate, interrupt)))
    })))
}

/// One request per Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn os_signals() -> std::io::Result<Requests<'static>> {
    Ok(Box::pin(stream::unfold((), |()| async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
        Some(((), ()))
    })))
}
