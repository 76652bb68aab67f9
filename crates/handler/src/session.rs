//! One run of a handler, from the first hello to the `bye`: a single task reacting to the server's
//! messages, finished calls, the link's timer and shutdown requests.

use schedulezero_protocol::native::{CallResult, FromHandler, FromServer, Hello, encode};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use futures::StreamExt;

use crate::calls::Calls;
use crate::error::RunError;
use crate::link::{Due, Link, LinkState};
use crate::method::Methods;
use crate::shutdown::Requests;
use crate::socket::{Incoming, Socket};

/// What one run works with.
struct Session {
    /// The hello, encoded once: it is sent again after every server restart.
    hello: [Vec<u8>; 2],
    /// The handler's id and instance id, for logs.
    who: String,
    socket: Socket,
    link: Link,
    calls: Calls,
    /// Where [`LinkState`] changes are published.
    status: watch::Sender<LinkState>,
    /// The server's endpoint, for logs.
    endpoint: String,
    /// Since when hellos have gone unanswered (none while registered), and when to say so next:
    /// a wrong endpoint or a server that is down would otherwise look like a silent hang.
    unanswered: Option<(Instant, Instant)>,
}

/// How long hellos may go unanswered before the handler says so (then every [`SILENCE_REPEAT`]).
const SILENCE_WARNING: std::time::Duration = std::time::Duration::from_secs(5);
const SILENCE_REPEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves calls from the server at `endpoint` until shut down: the first shutdown request drains
/// (goodbye, refuse new calls, finish the calls in flight), a second one closes at once.
pub(crate) async fn run(
    hello: &Hello,
    methods: Methods,
    endpoint: &str,
    status: watch::Sender<LinkState>,
    mut shutdown: Requests<'_>,
) -> Result<(), RunError> {
    let (socket, mut inbox) = Socket::connect(endpoint)?;
    let mut s = Session {
        hello: encode(&FromHandler::Hello(hello.clone())),
        who: format!("{}/{}", hello.handler_id, hello.instance_id),
        socket,
        link: Link::new(Instant::now()),
        calls: Calls::new(methods, hello.capacity),
        status,
        endpoint: endpoint.to_string(),
        unanswered: None,
    };
    tracing::info!("{} connecting to {endpoint}", s.who);
    s.status.send_replace(s.link.state());
    s.on_timer();
    let timer = sleep_until(s.link.next_due());
    tokio::pin!(timer);
    let outcome = loop {
        if timer.deadline() != s.link.next_due() {
            timer.as_mut().reset(s.link.next_due());
        }
        tokio::select! {
            biased;
            Some(()) = shutdown.next() => {
                if s.link.is_draining() {
                    tracing::warn!("{} closing now: {} call(s) in flight get no result", s.who, s.calls.in_flight());
                    s.calls.abort_all();
                    break Ok(());
                }
                s.start_draining();
            }
            Some(result) = s.calls.next_done(), if s.calls.in_flight() > 0 => s.send_result(result),
            incoming = inbox.recv() => match incoming {
                Some(incoming) => s.on_message(incoming),
                None => break Err(RunError::SocketStopped),
            },
            () = &mut timer => s.on_timer(),
        }
        s.publish();
        if s.link.is_draining() && s.calls.in_flight() == 0 {
            tracing::info!("{} drained", s.who);
            break Ok(());
        }
    };
    s.send(&FromHandler::Bye);
    s.socket.close().await;
    s.status.send_replace(LinkState::Closed);
    outcome
}

impl Session {
    fn on_message(&mut self, Incoming { received, msg }: Incoming) {
        match msg {
            FromServer::Call(call) => {
                tracing::debug!(run_id = %call.run_id, attempt = call.attempt, method = %call.method, "call");
                let received = Instant::from_std(received);
                if let Some(answer) = self.calls.start(call, received, self.link.is_draining()) {
                    self.send_result(answer);
                }
            }
            FromServer::Cancel { run_id, attempt } => {
                if !self.calls.cancel(run_id, attempt) {
                    tracing::debug!(%run_id, attempt, "cancel for a call not running");
                }
            }
            FromServer::Welcome { heartbeat_ms, max_frame_bytes, server } => {
                tracing::info!("{} registered with {server} (heartbeat every {heartbeat_ms} ms)", self.who);
                self.unanswered = None;
                self.link.welcomed(heartbeat_ms, max_frame_bytes, Instant::now());
                if self.link.is_draining() {
                    self.send_goodbye();
                }
            }
            FromServer::HelloAgain => {
                if self.link.forgotten(Instant::now()) {
                    tracing::info!(
                        "{}: the server does not know this instance; saying hello again",
                        self.who
                    );
                    self.socket.send(self.hello.clone());
                }
            }
            FromServer::Refused { error } => {
                tracing::warn!("{}: the server refused the hello: {error}; retrying", self.who);
                self.link.refused();
            }
            FromServer::Error { error } => tracing::warn!("{}: the server reports: {error}", self.who),
        }
    }

    /// Sends the hello or heartbeat the link's timer says is due.
    fn on_timer(&mut self) {
        match self.link.due(Instant::now()) {
            Some(Due::Hello) => {
                self.socket.send(self.hello.clone());
                let now = Instant::now();
                let (since, warn_at) = *self.unanswered.get_or_insert((now, now + SILENCE_WARNING));
                if now >= warn_at {
                    tracing::warn!(
                        "{}: no answer from {} for {} s; is a ScheduleZero server listening there? (still trying)",
                        self.who,
                        self.endpoint,
                        (now - since).as_secs()
                    );
                    self.unanswered = Some((since, now + SILENCE_REPEAT));
                }
            }
            Some(Due::Heartbeat) => {
                let in_flight = u32::try_from(self.calls.in_flight()).unwrap_or(u32::MAX);
                self.send(&FromHandler::Heartbeat { in_flight });
            }
            None => {}
        }
    }

    fn start_draining(&mut self) {
        tracing::info!("{} draining: {} call(s) in flight", self.who, self.calls.in_flight());
        self.link.start_draining();
        self.send_goodbye();
    }

    fn send_goodbye(&self) {
        self.send(&FromHandler::Goodbye { reason: Some("shutting down".into()) });
    }

    /// Sends a call's result; one too big for the server is replaced by an error saying so.
    fn send_result(&self, result: CallResult) {
        let (run_id, attempt) = (result.run_id, result.attempt);
        let mut frames = encode(&FromHandler::Result(result));
        let limit = self.link.max_frame_bytes();
        if frames[1].len() > limit {
            let error =
                format!("the result is {} bytes; the server accepts at most {limit}", frames[1].len());
            tracing::warn!(%run_id, attempt, "{error}");
            let failure = CallResult {
                run_id,
                attempt,
                success: false,
                result: None,
                error: Some(error),
                refused: false,
            };
            frames = encode(&FromHandler::Result(failure));
        }
        self.socket.send(frames);
    }

    fn send(&self, msg: &FromHandler) {
        self.socket.send(encode(msg));
    }

    fn publish(&self) {
        let now = self.link.state();
        self.status.send_if_modified(|state| std::mem::replace(state, now) != now);
    }
}
