//! Sockets between the network and the proxy core: UDP worker threads, TCP listeners with
//! stream framing and a connection registry, and a [`Sender`] that any thread can use.
//!
//! Each UDP address gets one socket per worker, all bound with SO_REUSEPORT to the same address,
//! and each worker runs a blocking receive loop on its own thread with its own [`Scratch`]. TCP
//! runs on a separate tokio runtime: one accept loop per address, and per connection a reader
//! task that frames the stream and a writer task that drains a bounded queue.

pub mod framing;
mod limiter;
mod sender;
mod stats;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use framing::{next_frame, next_frame_resumed, Frame, FrameLimits, FramingError, Progress};
pub use sender::{SendError, Sender};
pub use stats::{SendErrorKind, TransportStats};

use crate::config::Config;
use crate::proxy::{Inbound, Scratch};

/// The receiver of every framed message: the proxy driver implements it.
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one framed message. It is called on a UDP worker thread or a TCP runtime thread,
    /// and sends whatever it wants through `sender`.
    ///
    /// NOTE: on TCP it runs inside a tokio task, so a long blocking wait stalls the other
    /// connections served by the same runtime thread.
    fn on_message(&self, inbound: Inbound<'_>, scratch: &mut Scratch, sender: &Sender);
}

/// Errors starting the listeners.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {transport} listener on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start {component}: {source}")]
    Start {
        component: &'static str,
        source: std::io::Error,
    },
}

/// Settings of the TCP side, taken from the configuration. Tests shorten the timeouts.
#[derive(Debug, Clone)]
pub(crate) struct TcpSettings {
    pub frame_limits: FrameLimits,
    /// Limit on accepted connections, and separately on outbound ones.
    pub max_connections: usize,
    /// Limit on accepted connections from one source IP address.
    pub max_connections_per_source: usize,
    /// A connection with no complete message for this long is closed. Only received traffic
    /// counts, so an outbound connection whose peer never writes is closed and reopened by the
    /// next send.
    pub idle_timeout: Duration,
    /// A message (head and body) must arrive completely within this time of its first byte.
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    /// Messages queued for one connection before further sends are dropped.
    pub write_queue: usize,
}

/// Time allowed to open an outbound connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages queued per connection. At 10000 calls/s with about six messages per call, the
/// upstream connection carries an estimated 30000 messages/s, so 1024 messages is about 30 ms.
const WRITE_QUEUE_MESSAGES: usize = 1024;

impl TcpSettings {
    pub fn from_config(config: &Config) -> Self {
        let limits = &config.limits;
        Self {
            frame_limits: FrameLimits::from_config(limits),
            max_connections: limits.max_tcp_connections,
            max_connections_per_source: limits.max_tcp_connections_per_source,
            idle_timeout: Duration::from_secs(limits.tcp_idle_timeout_secs),
            header_timeout: Duration::from_secs(limits.tcp_header_timeout_secs),
            connect_timeout: CONNECT_TIMEOUT,
            write_queue: WRITE_QUEUE_MESSAGES,
        }
    }
}

/// The running listeners. Dropping them does the same as [`Listeners::shutdown`].
pub struct Listeners {
    sender: Sender,
    udp: udp::UdpWorkers,
    tcp: Option<tcp::TcpListeners>,
    stats: Arc<TransportStats>,
}

impl Listeners {
    /// Binds every address in `config.sip.udp` and `config.sip.tcp` and starts receiving.
    pub fn start(
        config: &Config,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Listeners, TransportError> {
        Self::start_with(config, TcpSettings::from_config(config), handler)
    }

    pub(crate) fn start_with(
        config: &Config,
        tcp_settings: TcpSettings,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Listeners, TransportError> {
        let workers = match config.sip.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let stats = Arc::new(TransportStats::default());
        let udp_sockets = udp::bind_all(&config.sip.udp, workers)?;
        let tcp_bound = if config.sip.tcp.is_empty() {
            None
        } else {
            Some(tcp::bind_all(&config.sip.tcp, workers)?)
        };

        let sender = Sender::new(
            udp_sockets.iter().map(|s| s.shared()).collect(),
            tcp_bound.as_ref().map(|t| t.registry(tcp_settings.clone())),
            stats.clone(),
            handler.clone(),
        );
        let tcp = tcp_bound.map(|bound| bound.run(&sender)).transpose()?;
        let udp = udp::UdpWorkers::spawn(udp_sockets, handler, &sender)?;
        tracing::info!(
            udp = %address_list(&udp.local_addrs()),
            tcp = %address_list(tcp.as_ref().map_or(&[], |t| t.local_addrs())),
            workers,
            "SIP listeners started"
        );
        Ok(Listeners {
            sender,
            udp,
            tcp,
            stats,
        })
    }

    /// Returns a sender over these listeners' sockets.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Returns the counters shared by the listeners and every sender.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }

    /// Returns the bound UDP addresses, one per configured address, in configuration order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.local_addrs()
    }

    /// Returns the bound TCP addresses, one per configured address, in configuration order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .as_ref()
            .map(|t| t.local_addrs().to_vec())
            .unwrap_or_default()
    }

    /// Stops receiving, closes every socket and connection, and waits for the worker threads.
    /// It blocks for up to about a second; inside an async runtime, call it through
    /// `spawn_blocking`.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        // The fields drop after this: the UDP workers stop, then the TCP runtime.
        self.sender.close();
        tracing::info!("SIP listeners stopping");
    }
}

/// Formats addresses for a log field: comma-separated, or `none`.
fn address_list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    let text: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    text.join(",")
}

#[cfg(test)]
mod tests;
