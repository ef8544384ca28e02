//! TCP: accept loops, the connection registry keyed by peer address, and per connection a
//! reader task that frames the stream and a writer task that drains a bounded queue.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dashmap::DashMap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use super::framing::{next_frame_resumed, Frame, Progress};
use super::stats::{SendErrorKind, TransportStats};
use super::{Sender, TcpSettings, TransportError};
use crate::message::Transport;
use crate::proxy::{Inbound, Scratch};

/// Bytes requested per read; a read never allocates unless the buffer has less room than this.
const READ_CHUNK: usize = 16 * 1024;
const WRITE_BUFFER: usize = 64 * 1024;
/// Time a closing connection gets to write what is still queued, such as an error response.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
const LISTEN_BACKLOG: i32 = 1024;
/// The single CRLF sent in response to a double-CRLF ping (RFC 5626 section 4.4.1).
const PONG: &[u8] = b"\r\n";

/// Listening sockets bound but not yet accepting, and the runtime that will serve them.
pub(super) struct Bound {
    runtime: Runtime,
    listeners: Vec<std::net::TcpListener>,
    local: Vec<SocketAddr>,
}

/// Binds every address, then builds the runtime that will serve them. The sockets come first
/// because a runtime dropped on an error path inside the caller's async context would panic.
pub(super) fn bind_all(addrs: &[SocketAddr], workers: usize) -> Result<Bound, TransportError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    let mut local = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let listener = bind_one(addr).map_err(|source| TransportError::Bind {
            transport: "TCP",
            addr,
            source,
        })?;
        local.push(listener.local_addr().unwrap_or(addr));
        listeners.push(listener);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("sip-tcp")
        .enable_all()
        .build()
        .map_err(|source| TransportError::Start {
            component: "TCP runtime",
            source,
        })?;
    Ok(Bound {
        runtime,
        listeners,
        local,
    })
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

impl Bound {
    pub fn registry(&self, settings: TcpSettings) -> Registry {
        Registry {
            handle: self.runtime.handle().clone(),
            settings,
            connections: DashMap::new(),
            per_source: Mutex::new(HashMap::new()),
            accepted: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// Starts one accept loop per listening socket.
    pub fn run(self, sender: &Sender) -> Result<TcpListeners, TransportError> {
        let handle = self.runtime.handle().clone();
        // Owned by the result from here on, so an error below still stops the runtime safely.
        let running = TcpListeners {
            runtime: Some(self.runtime),
            local: self.local.clone(),
        };
        let _guard = handle.enter();
        for (std_listener, addr) in self.listeners.into_iter().zip(self.local) {
            let listener =
                TcpListener::from_std(std_listener).map_err(|source| TransportError::Bind {
                    transport: "TCP",
                    addr,
                    source,
                })?;
            handle.spawn(accept_loop(listener, addr, sender.clone()));
        }
        Ok(running)
    }
}

/// The running TCP side. Dropping it drops every task, which closes the listeners and
/// connections.
pub(super) struct TcpListeners {
    runtime: Option<Runtime>,
    local: Vec<SocketAddr>,
}

impl TcpListeners {
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
}

impl Drop for TcpListeners {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            // Blocking inside a runtime would panic, so the threads finish in the background.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Open connections by peer address, with the counts the limits are checked against.
pub(crate) struct Registry {
    handle: Handle,
    settings: TcpSettings,
    connections: DashMap<SocketAddr, Connection>,
    /// Accepted connections per source IP address.
    per_source: Mutex<HashMap<IpAddr, usize>>,
    /// Accepted and outbound connections are limited separately, so that a flood of accepted
    /// connections cannot stop the proxy from reaching the upstream.
    accepted: AtomicUsize,
    outbound: AtomicUsize,
    next_id: AtomicU64,
}

struct Connection {
    /// Tells this connection apart from a later one from the same peer address.
    id: u64,
    queue: mpsc::Sender<Vec<u8>>,
}

impl Registry {
    /// Queues `bytes` on the connection to `dest`, opening one when there is none.
    pub fn send(
        &self,
        sender: &Sender,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> Result<(), SendErrorKind> {
        let queue = self.connections.get(&dest).map(|c| c.queue.clone());
        match queue {
            Some(queue) => enqueue(&queue, bytes),
            None => self.connect(sender, dest, bytes),
        }
    }

    /// Registers an outbound connection with `bytes` as its first message and opens it in the
    /// background.
    fn connect(
        &self,
        sender: &Sender,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> Result<(), SendErrorKind> {
        let slot = self
            .reserve(sender, dest, false)
            .ok_or(SendErrorKind::ConnectionLimit)?;
        let (queue, receiver) = mpsc::channel(self.settings.write_queue);
        match self.connections.entry(dest) {
            dashmap::Entry::Occupied(existing) => {
                // Another thread opened it first.
                let queue = existing.get().queue.clone();
                drop(existing);
                drop(slot);
                return enqueue(&queue, bytes);
            }
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(Connection {
                    id: slot.id,
                    queue: queue.clone(),
                });
            }
        }
        let result = enqueue(&queue, bytes);
        self.handle
            .spawn(outbound(sender.clone(), dest, slot, queue, receiver));
        result
    }

    /// Takes a place within the connection limits, released when the returned slot drops.
    fn reserve(&self, sender: &Sender, peer: SocketAddr, inbound: bool) -> Option<Slot> {
        let total = self.total(inbound);
        if total.fetch_add(1, Ordering::Relaxed) >= self.settings.max_connections {
            total.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        if inbound {
            let mut per_source = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_source.entry(peer.ip()).or_default();
            if *count >= self.settings.max_connections_per_source {
                total.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            *count += 1;
        }
        TransportStats::add(&sender.shared.stats.tcp_connections);
        Some(Slot {
            sender: sender.clone(),
            peer,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inbound,
        })
    }

    fn total(&self, inbound: bool) -> &AtomicUsize {
        if inbound {
            &self.accepted
        } else {
            &self.outbound
        }
    }

    pub fn clear(&self) {
        self.connections.clear();
    }
}

fn enqueue(queue: &mpsc::Sender<Vec<u8>>, bytes: Vec<u8>) -> Result<(), SendErrorKind> {
    queue.try_send(bytes).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => SendErrorKind::QueueFull,
        mpsc::error::TrySendError::Closed(_) => SendErrorKind::Closed,
    })
}

fn registry(sender: &Sender) -> &Registry {
    sender
        .shared
        .tcp
        .as_ref()
        .expect("TCP tasks run only when the registry exists")
}

/// A connection's place in the limits and the registry; dropping it releases both.
struct Slot {
    sender: Sender,
    peer: SocketAddr,
    id: u64,
    inbound: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let registry = registry(&self.sender);
        registry
            .connections
            .remove_if(&self.peer, |_, c| c.id == self.id);
        if self.inbound {
            let mut per_source = registry
                .per_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = per_source.get_mut(&self.peer.ip()) {
                *count -= 1;
                if *count == 0 {
                    per_source.remove(&self.peer.ip());
                }
            }
        }
        registry.total(self.inbound).fetch_sub(1, Ordering::Relaxed);
        TransportStats::sub(&self.sender.shared.stats.tcp_connections);
    }
}

async fn accept_loop(listener: TcpListener, local: SocketAddr, sender: Sender) {
    let registry = registry(&sender);
    let stats = &sender.shared.stats;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors; back off instead of spinning.
                if sender.shared.log_limiter.allow(local.ip()) {
                    tracing::warn!(%local, error = %e, "TCP accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = registry.reserve(&sender, peer, true) else {
            TransportStats::add(&stats.tcp_rejected);
            if sender.shared.log_limiter.allow(peer.ip()) {
                tracing::warn!(%peer, %local, "TCP connection rejected: connection limit reached");
            }
            continue;
        };
        TransportStats::add(&stats.tcp_accepted);
        let (queue, receiver) = mpsc::channel(registry.settings.write_queue);
        registry.connections.insert(
            peer,
            Connection {
                id: slot.id,
                queue: queue.clone(),
            },
        );
        tracing::debug!(%peer, %local, "TCP connection accepted");
        tokio::spawn(run_connection(
            sender.clone(),
            stream,
            slot,
            queue,
            receiver,
        ));
    }
}

async fn outbound(
    sender: Sender,
    dest: SocketAddr,
    slot: Slot,
    queue: mpsc::Sender<Vec<u8>>,
    mut receiver: mpsc::Receiver<Vec<u8>>,
) {
    let connect_timeout = registry(&sender).settings.connect_timeout;
    let error = match timeout(connect_timeout, TcpStream::connect(dest)).await {
        Ok(Ok(stream)) => {
            TransportStats::add(&sender.shared.stats.tcp_connected);
            tracing::debug!(peer = %dest, "TCP connection opened");
            return run_connection(sender, stream, slot, queue, receiver).await;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };

    drop(slot);
    drop(queue);
    receiver.close();
    let mut dropped = 0;
    while receiver.try_recv().is_ok() {
        sender
            .shared
            .stats
            .count_send_error(SendErrorKind::ConnectFailed);
        dropped += 1;
    }
    if sender.shared.log_limiter.allow(dest.ip()) {
        tracing::warn!(peer = %dest, %error, dropped, "TCP connect failed; queued messages dropped");
    }
}

/// The reason a connection's reader stopped.
#[derive(Debug, Clone, Copy)]
enum Close {
    PeerClosed,
    ReadError,
    IdleTimeout,
    HeaderTimeout,
    Framing,
    WriterStopped,
}

async fn run_connection(
    sender: Sender,
    stream: TcpStream,
    slot: Slot,
    queue: mpsc::Sender<Vec<u8>>,
    receiver: mpsc::Receiver<Vec<u8>>,
) {
    let peer = slot.peer;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut writer = tokio::spawn(write_loop(write, receiver, sender.clone(), peer));

    let close = read_loop(&sender, read, peer, &queue, &mut writer).await;
    tracing::debug!(%peer, reason = ?close, "TCP connection closing");

    // Unregister, so the writer ends once the queue is drained.
    drop(slot);
    drop(queue);
    if !matches!(close, Close::WriterStopped) && timeout(FLUSH_TIMEOUT, &mut writer).await.is_err()
    {
        writer.abort();
    }
}

async fn read_loop(
    sender: &Sender,
    mut read: OwnedReadHalf,
    peer: SocketAddr,
    queue: &mpsc::Sender<Vec<u8>>,
    writer: &mut JoinHandle<()>,
) -> Close {
    let settings = &registry(sender).settings;
    let stats = &sender.shared.stats;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scratch = Scratch::default();
    let mut last_frame = Instant::now();
    let mut message_started: Option<Instant> = None;
    let mut progress = Progress::default();

    loop {
        loop {
            match next_frame_resumed(&buf, &settings.frame_limits, &mut progress) {
                Frame::Incomplete => break,
                Frame::KeepAlive { len, ping } => {
                    if ping {
                        TransportStats::add(&stats.tcp_pings);
                        let _ = enqueue(queue, PONG.to_vec());
                    }
                    buf.advance(len);
                    progress = Progress::default();
                    last_frame = Instant::now();
                }
                Frame::Message { len } => {
                    deliver(sender, peer, &buf[..len], &mut scratch);
                    buf.advance(len);
                    progress = Progress::default();
                    last_frame = Instant::now();
                    message_started = None;
                }
                Frame::Invalid { reason, head_len } => {
                    stats.count_framing_error(reason);
                    if sender.shared.log_limiter.allow(peer.ip()) {
                        tracing::warn!(%peer, reason = reason.as_str(), buffered = buf.len(), head_len, "TCP framing lost; closing connection");
                    }
                    if let Some(head_len) = head_len {
                        deliver(sender, peer, &buf[..head_len], &mut scratch);
                    }
                    return Close::Framing;
                }
            }
        }

        // Line endings alone are keep-alive traffic, not the start of a message.
        let partial = buf.iter().any(|b| !matches!(b, b'\r' | b'\n'));
        let idle_deadline = last_frame + settings.idle_timeout;
        let deadline = if partial {
            let started = *message_started.get_or_insert_with(Instant::now);
            idle_deadline.min(started + settings.header_timeout)
        } else {
            message_started = None;
            idle_deadline
        };

        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = read.read_buf(&mut buf) => match read {
                Ok(0) => return Close::PeerClosed,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TCP read failed");
                    return Close::ReadError;
                }
            },
            () = sleep_until(deadline) => {
                return if partial && deadline < idle_deadline {
                    TransportStats::add(&stats.tcp_header_timeouts);
                    Close::HeaderTimeout
                } else {
                    TransportStats::add(&stats.tcp_idle_timeouts);
                    Close::IdleTimeout
                };
            }
            _ = &mut *writer => return Close::WriterStopped,
        }
    }
}

fn deliver(sender: &Sender, peer: SocketAddr, bytes: &[u8], scratch: &mut Scratch) {
    let inbound = Inbound {
        now: std::time::Instant::now(),
        source: peer,
        transport: Transport::Tcp,
        bytes,
    };
    sender.shared.handler.on_message(inbound, scratch, sender);
}

async fn write_loop(
    write: OwnedWriteHalf,
    mut receiver: mpsc::Receiver<Vec<u8>>,
    sender: Sender,
    peer: SocketAddr,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, write);
    while let Some(bytes) = receiver.recv().await {
        let mut result = out.write_all(&bytes).await;
        // Gather whatever else is queued into the same flush.
        while result.is_ok() {
            match receiver.try_recv() {
                Ok(more) => result = out.write_all(&more).await,
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(out.flush().await) {
            sender.shared.stats.count_send_error(SendErrorKind::Closed);
            tracing::debug!(%peer, error = %e, "TCP write failed");
            return;
        }
    }
    let _ = out.shutdown().await;
}
