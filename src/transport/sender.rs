//! The [`Sender`]: non-blocking sends over UDP from the listening sockets, and over TCP through
//! the connection registry.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use socket2::{SockAddr, Socket};

use super::limiter::LogLimiter;
use super::stats::{SendErrorKind, TransportStats};
use super::tcp::Registry;
use super::MessageHandler;
use crate::message::Transport;

/// A message that could not be sent. The message is dropped and counted in
/// [`TransportStats::send_errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot send to {dest} over {}: {}", .transport.as_str(), .kind.as_str())]
pub struct SendError {
    pub kind: SendErrorKind,
    pub transport: Transport,
    pub dest: SocketAddr,
}

/// The UDP sockets of one listening address, one per worker, all bound to `local`.
#[derive(Debug)]
pub(crate) struct UdpAddress {
    pub local: SocketAddr,
    pub sockets: Vec<Arc<Socket>>,
}

static NEXT_LISTENERS_ID: AtomicUsize = AtomicUsize::new(1);

/// The UDP socket a worker thread receives on.
struct WorkerSocket {
    listeners_id: usize,
    local: SocketAddr,
    socket: Arc<Socket>,
}

thread_local! {
    /// Set on UDP worker threads, so replies sent from a worker leave through the socket the
    /// request came in on, without taking the lock on the shared socket list.
    static CURRENT_WORKER: RefCell<Option<WorkerSocket>> = const { RefCell::new(None) };
}

pub(crate) struct Shared {
    id: usize,
    /// Emptied at shutdown, so the sockets close even while clones of the sender live on.
    udp: RwLock<Vec<UdpAddress>>,
    pub tcp: Option<Registry>,
    pub stats: Arc<TransportStats>,
    pub handler: Arc<dyn MessageHandler>,
    pub log_limiter: LogLimiter,
}

/// Sends messages over the listeners' sockets. Cheap to clone and usable from any thread. A
/// send never waits for the network: UDP uses MSG_DONTWAIT and TCP only queues.
#[derive(Clone)]
pub struct Sender {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("listeners_id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub(crate) fn new(
        udp: Vec<UdpAddress>,
        tcp: Option<Registry>,
        stats: Arc<TransportStats>,
        handler: Arc<dyn MessageHandler>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_LISTENERS_ID.fetch_add(1, Ordering::Relaxed),
                udp: RwLock::new(udp),
                tcp,
                stats,
                handler,
                log_limiter: LogLimiter::default(),
            }),
        }
    }

    /// Sends `bytes` to `dest` without blocking.
    ///
    /// UDP leaves from a listening socket, so the source port is the proxy's SIP port: the
    /// calling worker's own socket when called on a UDP worker thread, else the first listening
    /// address of the destination's family. TCP goes over the open connection to `dest`
    /// (accepted or outbound, looked up by peer address), or over a new outbound connection
    /// opened in the background. A TCP message that is queued but cannot be written later
    /// (connect failure, closed connection) is counted in the stats, not returned here.
    pub fn send(
        &self,
        transport: Transport,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> Result<(), SendError> {
        let result = match transport {
            Transport::Udp => self.send_udp(dest, &bytes),
            Transport::Tcp => match &self.shared.tcp {
                Some(registry) => registry.send(self, dest, bytes),
                None => Err(SendErrorKind::NoSocket),
            },
        };
        result.map_err(|kind| {
            self.shared.stats.count_send_error(kind);
            SendError {
                kind,
                transport,
                dest,
            }
        })
    }

    fn send_udp(&self, dest: SocketAddr, bytes: &[u8]) -> Result<(), SendErrorKind> {
        let sent = CURRENT_WORKER.with_borrow(|worker| {
            let own = worker.as_ref().filter(|w| {
                w.listeners_id == self.shared.id && w.local.is_ipv4() == dest.is_ipv4()
            });
            own.map(|w| send_to(&w.socket, dest, bytes))
        });
        let sent = match sent {
            Some(result) => result,
            None => {
                let udp = self.shared.udp.read().unwrap_or_else(|e| e.into_inner());
                let address = udp.iter().find(|a| a.local.is_ipv4() == dest.is_ipv4());
                let socket = address.and_then(|a| a.sockets.first());
                send_to(socket.ok_or(SendErrorKind::NoSocket)?, dest, bytes)
            }
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(SendErrorKind::UdpWouldBlock)
            }
            Err(e) => {
                if self.shared.log_limiter.allow(dest.ip()) {
                    tracing::warn!(%dest, len = bytes.len(), error = %e, "UDP send failed");
                }
                Err(SendErrorKind::UdpIo)
            }
        }
    }

    /// Marks the calling thread as the receive loop of `socket`, or clears the mark with
    /// `None` when the loop ends.
    pub(crate) fn set_udp_worker(&self, socket: Option<(SocketAddr, Arc<Socket>)>) {
        let worker = socket.map(|(local, socket)| WorkerSocket {
            listeners_id: self.shared.id,
            local,
            socket,
        });
        CURRENT_WORKER.set(worker);
    }

    /// Closes the shared UDP sockets and removes every TCP connection from the registry.
    pub(crate) fn close(&self) {
        self.shared
            .udp
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(registry) = &self.shared.tcp {
            registry.clear();
        }
    }
}

fn send_to(socket: &Socket, dest: SocketAddr, bytes: &[u8]) -> std::io::Result<usize> {
    socket.send_to_with_flags(bytes, &SockAddr::from(dest), libc::MSG_DONTWAIT)
}
