//! [`Handler`]: a declared handler, ready to serve its methods to a ScheduleZero server.

use std::future::Future;

use schedulezero_protocol::native::Hello;
use tokio::sync::watch;

use crate::builder::HandlerBuilder;
use crate::error::RunError;
use crate::link::LinkState;
use crate::method::Methods;
use crate::{session, shutdown};

/// A handler instance: its declaration and methods. Build one with [`Handler::builder`], watch
/// it with [`Handler::status`], serve with [`Handler::run`] or [`Handler::run_until`].
pub struct Handler {
    /// What the hello declares (validated by the builder).
    hello: Hello,
    /// The functions behind the declared methods.
    methods: Methods,
    /// Publishes the link's state to [`Handler::status`] receivers.
    status: watch::Sender<LinkState>,
}

impl Handler {
    /// Starts declaring the handler `handler_id` (the pool of instances jobs target).
    pub fn builder(handler_id: impl Into<String>) -> HandlerBuilder {
        HandlerBuilder::new(handler_id.into())
    }

    pub(crate) fn new(hello: Hello, methods: Methods) -> Self {
        Handler { hello, methods, status: watch::Sender::new(LinkState::Connecting) }
    }

    /// The handler id jobs target.
    pub fn handler_id(&self) -> &str {
        &self.hello.handler_id
    }

    /// This instance's id, as the server sees it.
    pub fn instance_id(&self) -> &str {
        &self.hello.instance_id
    }

    /// The hello this instance sends.
    #[cfg(test)]
    pub(crate) fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The link's state as it changes: `Connecting`, `Registered` (and back to `Connecting` when
    /// the server restarts), `Draining`, then `Closed` once a run has returned. Take it before
    /// running: `run` consumes the handler.
    pub fn status(&self) -> watch::Receiver<LinkState> {
        self.status.subscribe()
    }

    /// Connects to the server's ROUTER `endpoint` (e.g. `tcp://127.0.0.1:4242`) and serves calls
    /// until SIGTERM or SIGINT; then drains: says goodbye, refuses new calls, lets the calls in
    /// flight finish (each is bounded by its deadline plus a 2 s grace), sends their results,
    /// says bye and returns `Ok`. A second signal during the drain closes at once.
    ///
    /// A server that is down, or restarts, is not an error: the handler reconnects and says hello
    /// again (every second at most), for as long as it runs.
    pub async fn run(self, endpoint: &str) -> Result<(), RunError> {
        let requests = shutdown::os_signals().map_err(RunError::Signals)?;
        session::run(&self.hello, self.methods, endpoint, self.status, requests).await
    }

    /// Like [`run`](Handler::run), but drains when `shutdown` completes instead of on signals.
    pub async fn run_until<F>(self, endpoint: &str, shutdown: F) -> Result<(), RunError>
    where
        F: Future<Output = ()> + Send,
    {
        session::run(&self.hello, self.methods, endpoint, self.status, shutdown::when(shutdown)).await
    }
}
