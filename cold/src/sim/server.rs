//! The accept loop every simulator shares: one thread per connection, a count of open
//! connections that drops only once a connection's socket is closed (even if its thread
//! panics), and a prompt stop.
//!
//! **Invariant:** a connection takes its one-shot fault baseline ([`Faults::seen_now`]) on the
//! acceptor thread, before it is counted as open. A fault raised once a client has its
//! connection (or once the count shows it) therefore reaches that connection, however late its
//! own thread starts: a baseline taken on that thread would count a fault raised before the
//! thread ran as one from before the connection existed, and ignore it.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::warn;

use super::faults::{Faults, Seen};

/// How long the acceptor waits between polls of its non-blocking listener.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long the acceptor backs off after an accept error (typically out of descriptors).
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// A simulator's shared state, as the accept loop needs it.
pub(crate) trait Served: Send + Sync + 'static {
    /// Venue name for thread names and logs (`sim-<name>-conn`).
    const NAME: &'static str;
    /// What the acceptor hands each connection thread (e.g. a connection number).
    type Ticket: Send + 'static;
    /// Whether the simulator is shutting down.
    fn stopping(&self) -> bool;
    /// The open-connection count.
    fn open(&self) -> &AtomicUsize;
    /// The simulator's faults, from which each accepted connection takes its baseline.
    fn faults(&self) -> &Faults;
    /// Called on the acceptor thread for each accepted connection, in accept order.
    fn accepted(&self) -> Self::Ticket;
    /// Serves one connection on its own thread until it ends; `seen` is the fault baseline
    /// taken when it was accepted, which the connection must act from.
    fn serve(&self, stream: TcpStream, peer: SocketAddr, ticket: Self::Ticket, seen: Seen);
    /// Called on the acceptor thread whenever no connection is waiting.
    fn idle(&self) {}
}

/// Decrements the open-connection count when a connection thread ends, even by panic.
struct OpenGuard<S: Served>(Arc<S>);

impl<S: Served> Drop for OpenGuard<S> {
    fn drop(&mut self) {
        // Release pairs with the Acquire load in each handle's `connections`.
        self.0.open().fetch_sub(1, Ordering::Release);
    }
}

/// Accepts connections until `shared.stopping()`, then joins every connection thread.
pub(crate) fn accept_loop<S: Served>(listener: &TcpListener, shared: &Arc<S>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, peer)) => {
                conns.retain(|c| !c.is_finished());
                let ticket = shared.accepted();
                // Before the count rises: a fault raised after `connections()` shows this
                // connection is newer than the baseline (the count's Release increment pairs
                // with the Acquire load in each handle's `connections`), so it is acted on.
                let seen = shared.faults().seen_now();
                shared.open().fetch_add(1, Ordering::Release);
                let guard = OpenGuard(Arc::clone(shared));
                let spawned = thread::Builder::new()
                    .name(format!("sim-{}-conn", S::NAME))
                    .spawn(move || {
                        let guard = guard;
                        guard.0.serve(stream, peer, ticket, seen);
                    });
                // On failure the closure, and with it the guard and the socket, is dropped.
                match spawned {
                    Ok(conn) => conns.push(conn),
                    Err(e) => warn!(%peer, error = %e, "sim-{}: cannot start a connection thread", S::NAME),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                shared.idle();
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                // Typically out of file descriptors; back off rather than spin.
                warn!(error = %e, "sim-{}: accept failed", S::NAME);
                thread::sleep(ERROR_BACKOFF);
            }
        }
    }
    for conn in conns {
        if conn.join().is_err() {
            warn!("sim-{} connection thread panicked", S::NAME);
        }
    }
}
