//! UDP: per configured address, one SO_REUSEPORT socket per worker, each served by a blocking
//! receive loop on its own thread with one reused 64 KiB buffer and one [`Scratch`].
//!
//! A blocking loop was chosen over a current-thread tokio runtime per worker because it costs
//! less CPU per datagram. `examples/udp_receive_loops.rs` (debug build, 2-vCPU VM, loopback echo
//! of 500-byte datagrams, three rounds) measured about 2.1 µs against 2.7 µs of server CPU per
//! datagram with 32 in flight, and 1.7 to 1.9 µs against 2.2 µs with one in flight.

use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::sender::UdpAddress;
use super::{MessageHandler, Sender, TransportError};
use crate::message::Transport;
use crate::proxy::{Inbound, Scratch};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Requested SO_RCVBUF and SO_SNDBUF. Linux caps it at net.core.rmem_max / wmem_max, so raise
/// those too for bursts of tens of thousands of messages per second.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// How often a blocked receive wakes up to check for shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The sockets bound for one configured address.
pub(super) struct BoundAddress {
    local: SocketAddr,
    sockets: Vec<Arc<Socket>>,
}

impl BoundAddress {
    pub fn shared(&self) -> UdpAddress {
        UdpAddress {
            local: self.local,
            sockets: self.sockets.clone(),
        }
    }
}

/// Binds `workers` sockets on every address. With port 0, the first socket picks the port and
/// the others join it.
pub(super) fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> Result<Vec<BoundAddress>, TransportError> {
    let mut out = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let bind_error = |source| TransportError::Bind {
            transport: "UDP",
            addr,
            source,
        };
        if addr.port() != 0 {
            ensure_unshared(addr).map_err(bind_error)?;
        }
        let first = bind_one(addr).map_err(bind_error)?;
        let local = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let mut sockets = vec![Arc::new(first)];
        for _ in 1..workers {
            sockets.push(Arc::new(bind_one(local).map_err(bind_error)?));
        }
        out.push(BoundAddress { local, sockets });
    }
    Ok(out)
}

/// Fails with `AddrInUse` when another socket is bound to `addr`. The worker sockets set
/// SO_REUSEPORT, which would let a second sipstamp of the same user join the port silently and
/// take a share of the responses meant for the first. A socket without that option cannot
/// join, so binding one and closing it again shows whether the port is free.
fn ensure_unshared(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into())
}

fn bind_one(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // The kernel may grant less than requested; that only costs burst capacity.
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(%addr, error = %e, "cannot set SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(%addr, error = %e, "cannot set SO_SNDBUF");
    }
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// The running UDP worker threads.
pub(super) struct UdpWorkers {
    local: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    pub fn spawn(
        bound: Vec<BoundAddress>,
        handler: Arc<dyn MessageHandler>,
        sender: &Sender,
    ) -> Result<Self, TransportError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = UdpWorkers {
            local: bound.iter().map(|b| b.local).collect(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for b in bound {
            for (worker, socket) in b.sockets.into_iter().enumerate() {
                let start_error = |source| TransportError::Start {
                    component: "UDP worker thread",
                    source,
                };
                let receiver: UdpSocket = socket.try_clone().map_err(start_error)?.into();
                let loop_state = WorkerLoop {
                    local: b.local,
                    socket: receiver,
                    shared_socket: socket,
                    handler: handler.clone(),
                    sender: sender.clone(),
                    stop: stop.clone(),
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("sip-udp-{worker}"))
                    .spawn(move || loop_state.run(worker));
                match spawned {
                    Ok(thread) => workers.threads.push(thread),
                    Err(e) => return Err(start_error(e)),
                }
            }
        }
        Ok(workers)
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local.clone()
    }
}

impl Drop for UdpWorkers {
    /// Stops every worker within one poll interval and waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct WorkerLoop {
    local: SocketAddr,
    /// A duplicate descriptor of `shared_socket`, for the standard receive call.
    socket: UdpSocket,
    shared_socket: Arc<Socket>,
    handler: Arc<dyn MessageHandler>,
    sender: Sender,
    stop: Arc<AtomicBool>,
}

impl WorkerLoop {
    fn run(self, worker: usize) {
        let local = self.local;
        self.sender
            .set_udp_worker(Some((local, self.shared_socket.clone())));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut scratch = Scratch::default();
        tracing::debug!(%local, worker, "UDP worker started");

        while !self.stop.load(Ordering::Relaxed) {
            let (len, source) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => {
                    // ICMP port-unreachable from an earlier send shows up here as
                    // ConnectionRefused on Linux; it concerns that send, not this socket.
                    if self.sender.shared.log_limiter.allow(local.ip()) {
                        tracing::debug!(%local, error = %e, "UDP receive failed");
                    }
                    continue;
                }
            };
            if len == 0 {
                continue;
            }
            let inbound = Inbound {
                now: Instant::now(),
                source,
                transport: Transport::Udp,
                bytes: &buf[..len],
            };
            // A panicking handler must not take the worker, and with it this socket, down.
            let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.handler.on_message(inbound, &mut scratch, &self.sender)
            }));
            if handled.is_err() {
                if self.sender.shared.log_limiter.allow(source.ip()) {
                    tracing::error!(%local, %source, len, "message handler panicked; message dropped");
                }
                scratch = Scratch::default();
            }
        }
        self.sender.set_udp_worker(None);
        tracing::debug!(%local, worker, "UDP worker stopped");
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
