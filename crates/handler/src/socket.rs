//! The socket actor: a std thread that owns the DEALER connected to the server (libzmq sockets are
//! blocking and not `Sync`). Tokio code sends through an inproc PAIR socket (the [`Socket`]
//! handle), which also wakes the thread; the thread polls both sockets, forwards outgoing
//! messages to the DEALER and decoded incoming ones to a tokio channel. No timers, no polling
//! interval: every hop is woken by the message itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use schedulezero_protocol::limits::{MAX_FRAME_BYTES, MAX_RECONNECT};
use schedulezero_protocol::native::{FromServer, SIGNATURE, decode_from_server};
use tokio::sync::{mpsc, oneshot};

use crate::error::RunError;

/// Every inproc pipe gets its own name (one per run; they live in the run's own context anyway).
static PIPE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// libzmq's reconnection: first retry after 100 ms, backing off to [`MAX_RECONNECT`].
const RECONNECT_IVL_MS: i32 = 100;
/// ZMTP heartbeats, so libzmq drops a dead server connection and reconnects.
const ZMTP_HEARTBEAT_IVL_MS: i32 = 1000;
const ZMTP_HEARTBEAT_TIMEOUT_MS: i32 = 3000;
const ZMTP_HEARTBEAT_TTL_MS: i32 = 3000;
/// How long closing waits for the last messages (the `bye`) to get out.
const CLOSING_LINGER_MS: i32 = 1000;
/// How long [`Socket::close`] waits for the thread (the linger, and some slack).
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How long the thread waits for the pipe after the stop message (it follows at once).
const HAND_BACK_WAIT: Duration = Duration::from_secs(1);

/// A message from the server, with when it arrived (calls' deadlines count from then).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) received: Instant,
    pub(crate) msg: FromServer,
}

/// The tokio side of the socket actor: sends messages to the server. Closing it (or dropping
/// it) stops the thread, which then closes every socket itself so that terminating the context,
/// which waits for the linger, never blocks a runtime thread.
pub(crate) struct Socket {
    /// The inproc PAIR end the thread listens to; `None` once handed back to the thread. A
    /// `Mutex` only to make the handle `Sync`: one task sends, so it is never contended.
    pipe: Mutex<Option<zmq::Socket>>,
    /// Where the pipe goes back to the thread, right after the stop message.
    hand_back: std_mpsc::Sender<zmq::Socket>,
    /// Fires when the thread has closed its sockets.
    stopped: Option<oneshot::Receiver<()>>,
}

impl Socket {
    /// Connects a DEALER to `endpoint` and starts its thread. Messages from the server arrive on
    /// the returned channel; it closes if the thread stops.
    pub(crate) fn connect(endpoint: &str) -> Result<(Socket, mpsc::UnboundedReceiver<Incoming>), RunError> {
        let socket_err = |source| RunError::Socket { endpoint: endpoint.to_string(), source };
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).map_err(socket_err)?;
        configure(&dealer).map_err(socket_err)?;
        dealer.connect(endpoint).map_err(socket_err)?;

        let name = format!("inproc://sz-handler-{}", PIPE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let pipe = pair(&ctx).map_err(socket_err)?;
        pipe.bind(&name).map_err(socket_err)?;
        let far_end = pair(&ctx).map_err(socket_err)?;
        far_end.connect(&name).map_err(socket_err)?;

        let (inbox, incoming) = mpsc::unbounded_channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let (hand_back, handed_back) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("sz-handler-socket".into())
            .spawn(move || {
                let stop_asked = actor(&dealer, &far_end, &inbox);
                // The pipe's other end follows a stop message at once.
                let pipe = stop_asked.then(|| handed_back.recv_timeout(HAND_BACK_WAIT).ok()).flatten();
                // The last socket closed terminates the context, which waits for the linger.
                drop((pipe, far_end, dealer));
                let _ = stopped_tx.send(());
            })
            .map_err(RunError::Thread)?;
        Ok((Socket { pipe: Mutex::new(Some(pipe)), hand_back, stopped: Some(stopped) }, incoming))
    }

    /// Queues one message (its two frames) for the server. Never blocks.
    pub(crate) fn send(&self, frames: [Vec<u8>; 2]) {
        let pipe = self.pipe.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(pipe) = pipe.as_ref() else { return };
        if let Err(e) = pipe.send_multipart(frames, zmq::DONTWAIT) {
            tracing::error!("cannot hand a message to the socket thread: {e}");
        }
    }

    /// Stops the thread once it has passed on everything sent before, giving the last messages up
    /// to a second to get out, and waits for it.
    pub(crate) async fn close(mut self) {
        self.stop();
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, stopped).await;
        }
    }

    /// Sends the stop message, then hands the pipe back to the thread.
    fn stop(&mut self) {
        let pipe = self.pipe.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(pipe) = pipe else { return };
        if let Err(e) = pipe.send(zmq::Message::new(), zmq::DONTWAIT) {
            tracing::error!("cannot stop the socket thread: {e}");
        }
        // If the thread is gone already, the pipe comes back here and closes here.
        let _ = self.hand_back.send(pipe);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.stop();
    }
}

fn configure(dealer: &zmq::Socket) -> zmq::Result<()> {
    dealer.set_linger(0)?;
    dealer.set_reconnect_ivl(RECONNECT_IVL_MS)?;
    dealer.set_reconnect_ivl_max(MAX_RECONNECT.as_millis() as i32)?;
    dealer.set_heartbeat_ivl(ZMTP_HEARTBEAT_IVL_MS)?;
    dealer.set_heartbeat_timeout(ZMTP_HEARTBEAT_TIMEOUT_MS)?;
    dealer.set_heartbeat_ttl(ZMTP_HEARTBEAT_TTL_MS)?;
    dealer.set_maxmsgsize(MAX_FRAME_BYTES as i64)?;
    Ok(())
}

/// One end of the inproc pipe; unbounded, so handing a message over never blocks nor fails.
fn pair(ctx: &zmq::Context) -> zmq::Result<zmq::Socket> {
    let s = ctx.socket(zmq::PAIR)?;
    s.set_linger(0)?;
    s.set_sndhwm(0)?;
    s.set_rcvhwm(0)?;
    Ok(s)
}

/// The thread's loop. Returns true when told to stop (the DEALER then lingers for the last
/// messages), false when nobody listens to incoming messages any more or libzmq failed.
fn actor(dealer: &zmq::Socket, pipe: &zmq::Socket, inbox: &mpsc::UnboundedSender<Incoming>) -> bool {
    loop {
        let mut items = [dealer.as_poll_item(zmq::POLLIN), pipe.as_poll_item(zmq::POLLIN)];
        match zmq::poll(&mut items, -1) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                tracing::error!("socket thread stops: poll failed: {e}");
                return false;
            }
        }
        if items[0].is_readable() && !receive_all(dealer, inbox) {
            return false;
        }
        if items[1].is_readable() && !forward_all(pipe, dealer) {
            if let Err(e) = dealer.set_linger(CLOSING_LINGER_MS) {
                tracing::warn!("cannot set the closing linger: {e}");
            }
            return true;
        }
    }
}

/// Reads every message waiting on the DEALER into the inbox. False when the inbox is closed.
fn receive_all(dealer: &zmq::Socket, inbox: &mpsc::UnboundedSender<Incoming>) -> bool {
    loop {
        let frames = match dealer.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(zmq::Error::EAGAIN) => return true,
            Err(e) => {
                tracing::warn!("cannot receive from the server: {e}");
                return true;
            }
        };
        let received = Instant::now();
        let Some(msg) = decode(&frames) else { continue };
        if inbox.send(Incoming { received, msg }).is_err() {
            return false;
        }
    }
}

/// The server's message in `frames`, or `None` (logged) if they are not one.
fn decode(frames: &[Vec<u8>]) -> Option<FromServer> {
    match frames {
        [signature, body] if signature.as_slice() == SIGNATURE => match decode_from_server(body) {
            Ok(msg) => Some(msg),
            Err(e) => {
                tracing::warn!("ignoring a malformed message from the server: {e}");
                None
            }
        },
        _ => {
            tracing::warn!(
                frames = frames.len(),
                "ignoring a message from the server without the {} signature",
                String::from_utf8_lossy(SIGNATURE)
            );
            None
        }
    }
}

/// Forwards every message waiting on the pipe to the DEALER. False when told to stop (a
/// one-frame message).
fn forward_all(pipe: &zmq::Socket, dealer: &zmq::Socket) -> bool {
    loop {
        let frames = match pipe.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(zmq::Error::EAGAIN) => return true,
            Err(e) => {
                tracing::error!("cannot read the pipe from tokio: {e}");
                return false;
            }
        };
        if frames.len() < 2 {
            return false;
        }
        // Without a connection libzmq queues messages for when it reconnects, up to the
        // high-water mark; past it, dropping beats blocking the thread.
        if let Err(e) = dealer.send_multipart(frames, zmq::DONTWAIT) {
            tracing::warn!("dropping a message to the server: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_well_formed_messages_are_decoded() {
        let ok = vec![SIGNATURE.to_vec(), br#"{"type":"hello_again"}"#.to_vec()];
        assert_eq!(decode(&ok), Some(FromServer::HelloAgain));
        assert_eq!(decode(&[b"SZ2".to_vec(), br#"{"type":"hello_again"}"#.to_vec()]), None);
        assert_eq!(decode(&[SIGNATURE.to_vec(), b"{not json".to_vec()]), None);
        assert_eq!(decode(&[SIGNATURE.to_vec(), br#"{"type":"launch"}"#.to_vec()]), None);
        assert_eq!(decode(&[SIGNATURE.to_vec()]), None);
    }

    #[test]
    fn a_malformed_endpoint_is_an_error_naming_it() {
        let err = Socket::connect("not-an-endpoint").err().unwrap();
        assert!(err.to_string().contains("not-an-endpoint"), "{err}");
    }
}
