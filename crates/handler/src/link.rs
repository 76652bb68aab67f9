//! The handler's registration with the server, as a small state machine with one timer: say hello
//! (again, with backoff, until welcomed), then heartbeat at the interval the server chose. No I/O:
//! the session sends what this says is due.

use std::time::Duration;

use schedulezero_protocol::limits::{MAX_FRAME_BYTES, MAX_RECONNECT};
use tokio::time::Instant;

/// Where the handler stands with the server, as [`Handler::status`](crate::Handler::status)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Saying hello; not (or no longer) known to the server. Calls may still arrive and run.
    Connecting,
    /// Welcomed: the server may send calls.
    Registered,
    /// Shutting down: new calls are refused; calls in flight finish and their results are sent.
    Draining,
    /// Done: `bye` was sent and the run returned.
    Closed,
}

/// The first wait before saying hello again when no welcome came; it doubles up to
/// [`MAX_RECONNECT`].
const FIRST_HELLO_RETRY: Duration = Duration::from_millis(250);

/// A heartbeat interval below this from a server is taken as this (a zero would spin).
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// What the link's timer says to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Hello,
    Heartbeat,
}

/// What the server told this connection in its welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Welcome {
    heartbeat: Duration,
    max_frame_bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Link {
    /// Set by a welcome; cleared when the server says it does not know us (`hello_again`) or
    /// refuses the hello.
    welcome: Option<Welcome>,
    /// Shutting down (goodbye sent).
    draining: bool,
    /// When the next hello (not welcomed) or heartbeat (welcomed) is due.
    next: Instant,
    /// The wait before the next unanswered hello is repeated.
    hello_retry: Duration,
}

impl Link {
    /// A link with its first hello due now.
    pub(crate) fn new(now: Instant) -> Self {
        Link { welcome: None, draining: false, next: now, hello_retry: FIRST_HELLO_RETRY }
    }

    pub(crate) fn state(&self) -> LinkState {
        match (self.draining, self.welcome) {
            (true, _) => LinkState::Draining,
            (false, Some(_)) => LinkState::Registered,
            (false, None) => LinkState::Connecting,
        }
    }

    /// When the timer next needs attention.
    pub(crate) fn next_due(&self) -> Instant {
        self.next
    }

    /// What is due at `now`, if anything, and reschedules the timer as if it was sent.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Due> {
        if now < self.next {
            return None;
        }
        Some(match self.welcome {
            Some(w) => {
                self.next = now + w.heartbeat;
                Due::Heartbeat
            }
            None => {
                self.hello_sent(now);
                Due::Hello
            }
        })
    }

    /// A hello went out at `now`: repeat it later unless a welcome comes.
    pub(crate) fn hello_sent(&mut self, now: Instant) {
        self.next = now + self.hello_retry;
        self.hello_retry = (self.hello_retry * 2).min(MAX_RECONNECT);
    }

    /// The server welcomed us: heartbeat from now on. A `max_frame_bytes` of 0 is taken as not
    /// stated.
    pub(crate) fn welcomed(&mut self, heartbeat_ms: u64, max_frame_bytes: u64, now: Instant) {
        let heartbeat = Duration::from_millis(heartbeat_ms).max(MIN_HEARTBEAT);
        let max_frame_bytes = match max_frame_bytes {
            0 => MAX_FRAME_BYTES,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        self.welcome = Some(Welcome { heartbeat, max_frame_bytes });
        self.hello_retry = FIRST_HELLO_RETRY;
        self.next = now + heartbeat;
    }

    /// The server refused the hello: keep trying (the timer already holds the backed-off retry).
    pub(crate) fn refused(&mut self) {
        self.welcome = None;
    }

    /// The server does not know this connection. True when a hello should go out now; false when
    /// one is already on its way (so a burst of `hello_again`s, one per heartbeat queued while the
    /// server was down, costs one hello).
    pub(crate) fn forgotten(&mut self, now: Instant) -> bool {
        if self.welcome.take().is_none() {
            return false;
        }
        self.hello_retry = FIRST_HELLO_RETRY;
        self.hello_sent(now);
        true
    }

    pub(crate) fn start_draining(&mut self) {
        self.draining = true;
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining
    }

    /// The largest frame the server accepts (ours until it says otherwise).
    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.welcome.map_or(MAX_FRAME_BYTES, |w| w.max_frame_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn hello_is_repeated_with_backoff_capped_at_one_second_until_welcomed() {
        let t0 = Instant::now();
        let mut link = Link::new(t0);
        assert_eq!(link.state(), LinkState::Connecting);
        assert_eq!(link.due(t0), Some(Due::Hello));
        assert_eq!(link.due(t0 + 249 * MS), None);
        let mut at = t0;
        let mut waits = vec![];
        for _ in 0..5 {
            let next = link.next_due();
            waits.push((next - at).as_millis());
            at = next;
            assert_eq!(link.due(at), Some(Due::Hello));
        }
        assert_eq!(waits, [250, 500, 1000, 1000, 1000]);
    }

    #[test]
    fn welcome_switches_to_heartbeats_at_the_servers_interval() {
        let t0 = Instant::now();
        let mut link = Link::new(t0);
        link.due(t0);
        link.welcomed(100, 1024, t0 + 5 * MS);
        assert_eq!(link.state(), LinkState::Registered);
        assert_eq!(link.max_frame_bytes(), 1024);
        assert_eq!(link.next_due(), t0 + 105 * MS);
        assert_eq!(link.due(t0 + 105 * MS), Some(Due::Heartbeat));
        assert_eq!(link.next_due(), t0 + 205 * MS);
        link.welcomed(0, 0, t0);
        assert_eq!(link.next_due(), t0 + MIN_HEARTBEAT);
        assert_eq!(link.max_frame_bytes(), MAX_FRAME_BYTES);
    }

    #[test]
    fn hello_again_asks_for_one_hello_then_waits_for_the_welcome() {
        let t0 = Instant::now();
        let mut link = Link::new(t0);
        link.due(t0);
        link.welcomed(100, 1024, t0);
        assert!(link.forgotten(t0 + MS));
        assert_eq!(link.state(), LinkState::Connecting);
        assert!(!link.forgotten(t0 + 2 * MS), "a hello is already on its way");
        assert_eq!(link.next_due(), t0 + MS + FIRST_HELLO_RETRY);
        assert_eq!(link.max_frame_bytes(), MAX_FRAME_BYTES);
    }

    #[test]
    fn draining_wins_over_registration() {
        let t0 = Instant::now();
        let mut link = Link::new(t0);
        link.welcomed(100, 1024, t0);
        link.start_draining();
        assert_eq!(link.state(), LinkState::Draining);
        link.refused();
        assert_eq!(link.state(), LinkState::Draining);
    }
}
