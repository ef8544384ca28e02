//! Listener tests over real loopback sockets, with a handler that echoes every message back to
//! its source. Timeouts are shortened to milliseconds; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::message::Transport;

const WAIT: Duration = Duration::from_secs(5);
const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
/// A datagram that makes the test handler panic.
const PANIC: &[u8] = b"PANIC";
const MESSAGE: &[u8] = b"MESSAGE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK2\r\nl: 5\r\n\r\nhello";

/// One message as the handler received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    source: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
}

/// Records every message and sends it back to its source over the same transport.
struct EchoHandler {
    received: Mutex<mpsc::Sender<Received>>,
}

impl MessageHandler for EchoHandler {
    fn on_message(&self, inbound: Inbound<'_>, scratch: &mut Scratch, sender: &Sender) {
        assert_ne!(inbound.bytes, PANIC, "handler panic requested by the test");
        scratch.out.clear();
        scratch.out.extend_from_slice(inbound.bytes);
        let _ = self.received.lock().unwrap().send(Received {
            source: inbound.source,
            transport: inbound.transport,
            bytes: inbound.bytes.to_vec(),
        });
        // A failed echo is counted in the stats; the tests that need the echo read it.
        let _ = sender.send(inbound.transport, inbound.source, scratch.out.clone());
    }
}

struct Harness {
    listeners: Option<Listeners>,
    received: mpsc::Receiver<Received>,
}

impl Harness {
    fn start(adjust: impl FnOnce(&mut TcpSettings)) -> Self {
        let mut config = Config::load(None).expect("default config");
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        config.sip.udp = vec![local];
        config.sip.tcp = vec![local];
        config.sip.workers = 2;
        let mut settings = TcpSettings::from_config(&config);
        settings.connect_timeout = Duration::from_millis(500);
        adjust(&mut settings);

        let (tx, received) = mpsc::channel();
        let handler = Arc::new(EchoHandler {
            received: Mutex::new(tx),
        });
        let listeners = Listeners::start_with(&config, settings, handler).expect("start");
        Harness {
            listeners: Some(listeners),
            received,
        }
    }

    fn listeners(&self) -> &Listeners {
        self.listeners.as_ref().expect("running")
    }

    fn tcp_addr(&self) -> SocketAddr {
        self.listeners().tcp_addrs()[0]
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.tcp_addr()).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    fn next_message(&self) -> Received {
        self.received
            .recv_timeout(WAIT)
            .expect("a message within 5 s")
    }

    fn stats(&self) -> Arc<TransportStats> {
        self.listeners().stats()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(listeners) = self.listeners.take() {
            listeners.shutdown();
        }
    }
}

fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).expect("read echoed bytes");
    buf
}

/// Returns true when the peer closed the connection (EOF or reset) within the read timeout.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Polls `condition` every 10 ms for up to five seconds.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn udp_datagram_echoed_from_sip_port() {
    let harness = Harness::start(|_| {});
    let listen = harness.listeners().udp_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();

    client.send_to(OPTIONS, listen).unwrap();

    let mut buf = [0u8; 2048];
    let (len, from) = client.recv_from(&mut buf).expect("echo within 5 s");
    assert_eq!(&buf[..len], OPTIONS);
    assert_eq!(from, listen);
    let received = harness.next_message();
    assert_eq!(received.transport, Transport::Udp);
    assert_eq!(received.source, client.local_addr().unwrap());
}

#[test]
fn udp_worker_survives_handler_panic() {
    let harness = Harness::start(|_| {});
    let listen = harness.listeners().udp_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();

    // Datagrams from one source reach the same SO_REUSEPORT socket, so the same worker.
    client.send_to(PANIC, listen).unwrap();
    client.send_to(OPTIONS, listen).unwrap();

    let mut buf = [0u8; 2048];
    let (len, _) = client.recv_from(&mut buf).expect("echo within 5 s");
    assert_eq!(&buf[..len], OPTIONS);
}

#[test]
fn udp_send_from_other_thread() {
    let harness = Harness::start(|_| {});
    let listen = harness.listeners().udp_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();

    harness
        .listeners()
        .sender()
        .send(
            Transport::Udp,
            client.local_addr().unwrap(),
            MESSAGE.to_vec(),
        )
        .expect("send");

    let mut buf = [0u8; 2048];
    let (len, from) = client.recv_from(&mut buf).expect("datagram within 5 s");
    assert_eq!(&buf[..len], MESSAGE);
    assert_eq!(from, listen);
}

#[test]
fn tcp_message_split_across_writes() {
    let harness = Harness::start(|_| {});
    let mut stream = harness.connect();

    for part in [&OPTIONS[..10], &OPTIONS[10..40], &OPTIONS[40..]] {
        stream.write_all(part).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(read_exact(&mut stream, OPTIONS.len()), OPTIONS);
    let received = harness.next_message();
    assert_eq!(received.bytes, OPTIONS);
    assert_eq!(received.transport, Transport::Tcp);
    assert_eq!(received.source, stream.local_addr().unwrap());
}

#[test]
fn tcp_two_messages_one_write() {
    let harness = Harness::start(|_| {});
    let mut stream = harness.connect();

    stream.write_all(&[OPTIONS, MESSAGE].concat()).unwrap();

    let echoed = read_exact(&mut stream, OPTIONS.len() + MESSAGE.len());
    assert_eq!(echoed, [OPTIONS, MESSAGE].concat());
    assert_eq!(harness.next_message().bytes, OPTIONS);
    assert_eq!(harness.next_message().bytes, MESSAGE);
}

#[test]
fn tcp_ping_answered_with_pong() {
    let harness = Harness::start(|_| {});
    let mut stream = harness.connect();

    stream.write_all(b"\r\n\r\n").unwrap();

    assert_eq!(read_exact(&mut stream, 2), b"\r\n");
    stream.write_all(OPTIONS).unwrap();
    assert_eq!(read_exact(&mut stream, OPTIONS.len()), OPTIONS);
    // The ping itself never reaches the handler.
    assert_eq!(harness.next_message().bytes, OPTIONS);
    assert_eq!(harness.stats().tcp_pings.load(Ordering::Relaxed), 1);
}

#[test]
fn tcp_idle_connection_closed() {
    let harness = Harness::start(|s| s.idle_timeout = Duration::from_millis(200));
    let mut stream = harness.connect();

    assert!(closed_by_peer(&mut stream));
    assert!(eventually(|| harness
        .stats()
        .tcp_idle_timeouts
        .load(Ordering::Relaxed)
        == 1));
    assert!(eventually(|| harness
        .stats()
        .tcp_connections
        .load(Ordering::Relaxed)
        == 0));
}

#[test]
fn tcp_slow_header_closed() {
    let harness = Harness::start(|s| {
        s.idle_timeout = Duration::from_secs(30);
        s.header_timeout = Duration::from_millis(300);
    });
    let mut stream = harness.connect();

    // One byte every 50 ms keeps the connection busy but never completes the head.
    let writer = stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for byte in OPTIONS.iter().take(40) {
            if writer.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    assert!(closed_by_peer(&mut stream));
    trickle.join().unwrap();
    assert_eq!(
        harness.stats().tcp_header_timeouts.load(Ordering::Relaxed),
        1
    );
    assert_eq!(harness.stats().tcp_idle_timeouts.load(Ordering::Relaxed), 0);
}

#[test]
fn tcp_total_connection_limit() {
    let harness = Harness::start(|s| s.max_connections = 2);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = harness.connect();
        stream.write_all(b"\r\n\r\n").unwrap();
        assert_eq!(read_exact(&mut stream, 2), b"\r\n");
        open.push(stream);
    }

    let mut third = harness.connect();
    assert!(closed_by_peer(&mut third));
    assert_eq!(harness.stats().tcp_rejected.load(Ordering::Relaxed), 1);

    // Closing one frees its place.
    drop(open.pop());
    assert!(eventually(|| harness
        .stats()
        .tcp_connections
        .load(Ordering::Relaxed)
        == 1));
    let mut fourth = harness.connect();
    fourth.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_exact(&mut fourth, 2), b"\r\n");
}

#[test]
fn tcp_per_source_connection_limit() {
    let harness = Harness::start(|s| s.max_connections_per_source = 1);
    let mut first = harness.connect();
    first.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_exact(&mut first, 2), b"\r\n");

    let mut second = harness.connect();
    assert!(closed_by_peer(&mut second));
    assert_eq!(harness.stats().tcp_rejected.load(Ordering::Relaxed), 1);
}

#[test]
fn tcp_send_over_accepted_connection() {
    let harness = Harness::start(|_| {});
    let mut stream = harness.connect();
    stream.write_all(OPTIONS).unwrap();
    assert_eq!(read_exact(&mut stream, OPTIONS.len()), OPTIONS);
    harness.next_message();

    let peer = stream.local_addr().unwrap();
    harness
        .listeners()
        .sender()
        .send(Transport::Tcp, peer, MESSAGE.to_vec())
        .expect("send");

    assert_eq!(read_exact(&mut stream, MESSAGE.len()), MESSAGE);
    assert_eq!(harness.stats().tcp_connected.load(Ordering::Relaxed), 0);
}

#[test]
fn tcp_missing_content_length_closes() {
    let harness = Harness::start(|_| {});
    let mut stream = harness.connect();
    let head = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1\r\n\r\n";

    stream.write_all(head).unwrap();

    // The handler still gets the head, and its response is written before the close.
    assert_eq!(harness.next_message().bytes, head);
    assert_eq!(read_exact(&mut stream, head.len()), head);
    assert!(closed_by_peer(&mut stream));
    let stats = harness.stats();
    assert_eq!(stats.framing_errors(FramingError::MissingContentLength), 1);
}

#[test]
fn tcp_outbound_connection_delivers_replies() {
    let harness = Harness::start(|_| {});
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();

    harness
        .listeners()
        .sender()
        .send(Transport::Tcp, upstream_addr, OPTIONS.to_vec())
        .expect("send");

    let (mut accepted, _) = upstream.accept().expect("outbound connection");
    accepted.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_exact(&mut accepted, OPTIONS.len()), OPTIONS);

    accepted.write_all(MESSAGE).unwrap();
    let received = harness.next_message();
    assert_eq!(received.bytes, MESSAGE);
    assert_eq!(received.source, upstream_addr);
    assert_eq!(received.transport, Transport::Tcp);
    // The echo goes back over the same outbound connection.
    assert_eq!(read_exact(&mut accepted, MESSAGE.len()), MESSAGE);
    assert_eq!(harness.stats().tcp_connected.load(Ordering::Relaxed), 1);
}

#[test]
fn tcp_connect_failure_counted() {
    let harness = Harness::start(|_| {});
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);

    let sender = harness.listeners().sender();
    sender
        .send(Transport::Tcp, closed_addr, OPTIONS.to_vec())
        .expect("queued");

    let stats = harness.stats();
    assert!(eventually(|| stats
        .send_errors(SendErrorKind::ConnectFailed)
        == 1));
    assert!(eventually(
        || stats.tcp_connections.load(Ordering::Relaxed) == 0
    ));
}

#[test]
fn shutdown_closes_sockets() {
    let mut harness = Harness::start(|_| {});
    let tcp = harness.tcp_addr();
    let udp = harness.listeners().udp_addrs()[0];
    let mut stream = harness.connect();
    stream.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_exact(&mut stream, 2), b"\r\n");

    harness.listeners.take().unwrap().shutdown();

    assert!(closed_by_peer(&mut stream));
    assert!(TcpStream::connect(tcp).is_err());
    // The UDP port can be bound again, so no socket is left open on it.
    assert!(UdpSocket::bind(udp).is_ok());
}

#[test]
fn bind_error_names_address() {
    let in_use = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::load(None).expect("default config");
    config.sip.udp = Vec::new();
    config.sip.tcp = vec![in_use.local_addr().unwrap()];
    let handler = Arc::new(EchoHandler {
        received: Mutex::new(mpsc::channel().0),
    });

    let error = Listeners::start(&config, handler)
        .err()
        .expect("bind fails");

    let text = error.to_string();
    assert!(
        text.contains(&in_use.local_addr().unwrap().to_string()),
        "{text}"
    );
    assert!(text.contains("TCP"), "{text}");
}

#[test]
fn tcp_oversized_head_closes_without_delivery() {
    let harness = Harness::start(|s| s.frame_limits.max_head_bytes = 512);
    let mut stream = harness.connect();

    stream
        .write_all(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nX-Pad: ")
        .unwrap();
    stream.write_all(&[b'a'; 600]).unwrap();

    assert!(closed_by_peer(&mut stream));
    let stats = harness.stats();
    assert_eq!(stats.framing_errors(FramingError::HeadTooLarge), 1);
    assert!(harness.received.try_recv().is_err());
}

#[test]
fn tcp_full_write_queue_drops_and_reader_continues() {
    let harness = Harness::start(|s| s.write_queue = 2);
    let mut stream = harness.connect();
    stream.write_all(OPTIONS).unwrap();
    harness.next_message();
    let peer = stream.local_addr().unwrap();

    // The client never reads, so the socket buffers fill and then the queue does.
    let sender = harness.listeners().sender();
    let large = vec![b'x'; 64 * 1024];
    let full = (0..1000).any(|_| {
        let result = sender.send(Transport::Tcp, peer, large.clone());
        matches!(
            result,
            Err(SendError {
                kind: SendErrorKind::QueueFull,
                ..
            })
        )
    });
    assert!(full, "queue never filled within 1000 sends of 64 KiB");
    assert!(harness.stats().send_errors(SendErrorKind::QueueFull) >= 1);

    // The blocked writer does not stop the reader.
    stream.write_all(MESSAGE).unwrap();
    assert_eq!(harness.next_message().bytes, MESSAGE);
}

#[test]
fn udp_send_without_matching_family() {
    let harness = Harness::start(|_| {});
    let dest: SocketAddr = "[::1]:5060".parse().unwrap();

    let error = harness
        .listeners()
        .sender()
        .send(Transport::Udp, dest, OPTIONS.to_vec())
        .expect_err("no IPv6 listener");

    assert_eq!(error.kind, SendErrorKind::NoSocket);
    assert_eq!(harness.stats().send_errors(SendErrorKind::NoSocket), 1);
}

#[test]
fn ipv6_loopback_udp_and_tcp() {
    // Skipped where the host has no IPv6 loopback.
    let Ok(client) = UdpSocket::bind("[::1]:0") else {
        return;
    };
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut config = Config::load(None).expect("default config");
    let local: SocketAddr = "[::1]:0".parse().unwrap();
    config.sip.udp = vec![local];
    config.sip.tcp = vec![local];
    config.sip.workers = 1;
    let (tx, received) = mpsc::channel();
    let handler = Arc::new(EchoHandler {
        received: Mutex::new(tx),
    });
    let listeners = Listeners::start(&config, handler).expect("start on ::1");

    client.send_to(OPTIONS, listeners.udp_addrs()[0]).unwrap();
    let mut buf = [0u8; 2048];
    let (len, from) = client.recv_from(&mut buf).expect("echo within 5 s");
    assert_eq!(&buf[..len], OPTIONS);
    assert_eq!(from, listeners.udp_addrs()[0]);

    let mut stream = TcpStream::connect(listeners.tcp_addrs()[0]).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(MESSAGE).unwrap();
    assert_eq!(read_exact(&mut stream, MESSAGE.len()), MESSAGE);
    assert_eq!(
        received.recv_timeout(WAIT).unwrap().transport,
        Transport::Udp
    );
    assert_eq!(
        received.recv_timeout(WAIT).unwrap().transport,
        Transport::Tcp
    );
    listeners.shutdown();
}

#[test]
fn outbound_limit_separate_from_accepted() {
    let harness = Harness::start(|s| s.max_connections = 1);
    let mut accepted = harness.connect();
    accepted.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_exact(&mut accepted, 2), b"\r\n");
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let sender = harness.listeners().sender();

    // The accepted connection uses the whole inbound budget; the outbound one still opens.
    sender
        .send(
            Transport::Tcp,
            upstream.local_addr().unwrap(),
            OPTIONS.to_vec(),
        )
        .expect("outbound send");
    let (mut outbound, _) = upstream.accept().expect("outbound connection");
    outbound.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_exact(&mut outbound, OPTIONS.len()), OPTIONS);

    let error = sender
        .send(
            Transport::Tcp,
            other.local_addr().unwrap(),
            OPTIONS.to_vec(),
        )
        .expect_err("second outbound connection over the limit");
    assert_eq!(error.kind, SendErrorKind::ConnectionLimit);
}

/// Starts listeners on `udp` and `tcp` from inside a tokio runtime, as `sipstamp run` does,
/// and returns the error text.
fn start_error_in_runtime(udp: Vec<SocketAddr>, tcp: Vec<SocketAddr>) -> String {
    let mut config = Config::load(None).expect("default config");
    config.sip.udp = udp;
    config.sip.tcp = tcp;
    config.sip.workers = 2;
    let (tx, _received) = mpsc::channel();
    let handler = Arc::new(EchoHandler {
        received: Mutex::new(tx),
    });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        match Listeners::start(&config, handler) {
            Ok(_) => panic!("listeners started on an address in use"),
            Err(error) => error.to_string(),
        }
    })
}

#[test]
fn tcp_address_in_use_errors() {
    let occupant = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = occupant.local_addr().unwrap();
    let error = start_error_in_runtime(Vec::new(), vec![addr]);
    assert!(
        error.contains(&format!("TCP listener on {addr}")),
        "{error}"
    );
}

#[test]
fn udp_port_of_another_proxy_is_refused() {
    // The first proxy's workers share their port through SO_REUSEPORT, which a second proxy
    // with the same option could join.
    let first = Harness::start(|_| {});
    let addr = first.listeners().udp_addrs()[0];
    let error = start_error_in_runtime(vec![addr], Vec::new());
    assert!(
        error.contains(&format!("UDP listener on {addr}")),
        "{error}"
    );
    // The first proxy still receives what is sent to the port.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(OPTIONS, addr).unwrap();
    assert_eq!(first.next_message().bytes, OPTIONS);
}
