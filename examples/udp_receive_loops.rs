//! Compares two receive loops for one UDP worker: a blocking `recv_from` loop and a
//! current-thread tokio runtime. A client on 127.0.0.1 keeps `WINDOW` datagrams (default 32)
//! of 500 bytes in flight against an echo server, and the server thread's CPU time per echoed
//! datagram is printed. Run with `cargo run --example udp_receive_loops`; set `WINDOW=1` for
//! the ping-pong case.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const DATAGRAMS: usize = 200_000;
const DATAGRAM_BYTES: usize = 500;
const STOP: &[u8] = b"STOP";
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

fn window() -> usize {
    std::env::var("WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(32)
}

/// Returns the CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn server_socket() -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .expect("create socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket.set_recv_buffer_size(4 << 20).expect("SO_RCVBUF");
    let local: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&local.into()).expect("bind 127.0.0.1");
    socket
}

/// Sends `DATAGRAMS` datagrams with `window` in flight and returns the wall time taken.
fn run_client(server: SocketAddr) -> Duration {
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    let datagram = vec![b'x'; DATAGRAM_BYTES];
    let mut buf = [0u8; 2048];
    let window = window();

    let start = Instant::now();
    for _ in 0..window {
        client.send_to(&datagram, server).expect("send");
    }
    let mut echoed = 0;
    while echoed < DATAGRAMS {
        match client.recv_from(&mut buf) {
            Ok(_) => {
                echoed += 1;
                if echoed + window <= DATAGRAMS {
                    client.send_to(&datagram, server).expect("send");
                }
            }
            // A datagram was lost: refill the window, unless the server has stopped responding.
            Err(_) if start.elapsed() > GIVE_UP_AFTER => panic!("echo server stopped responding"),
            Err(_) => {
                client.send_to(&datagram, server).expect("send");
            }
        }
    }
    let elapsed = start.elapsed();
    client.send_to(STOP, server).expect("send stop");
    elapsed
}

fn blocking_loop() -> (Duration, Duration) {
    let socket: UdpSocket = server_socket().into();
    let local = socket.local_addr().expect("local address");
    let server = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_535];
        let cpu_start = thread_cpu_time();
        loop {
            let (len, source) = socket.recv_from(&mut buf).expect("receive");
            if &buf[..len] == STOP {
                break;
            }
            let _ = socket.send_to(&buf[..len], source);
        }
        thread_cpu_time() - cpu_start
    });
    let wall = run_client(local);
    (wall, server.join().expect("server thread"))
}

fn tokio_loop() -> (Duration, Duration) {
    let socket = server_socket();
    socket.set_nonblocking(true).expect("non-blocking");
    let socket: UdpSocket = socket.into();
    let local = socket.local_addr().expect("local address");
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio socket");
            let mut buf = vec![0u8; 65_535];
            let cpu_start = thread_cpu_time();
            loop {
                let (len, source) = socket.recv_from(&mut buf).await.expect("receive");
                if &buf[..len] == STOP {
                    break;
                }
                let _ = socket.try_send_to(&buf[..len], source);
            }
            thread_cpu_time() - cpu_start
        })
    });
    let wall = run_client(local);
    (wall, server.join().expect("server thread"))
}

fn main() {
    type Measure = fn() -> (Duration, Duration);
    let loops: [(&str, Measure); 2] = [("blocking", blocking_loop), ("tokio", tokio_loop)];
    for round in 0..3 {
        for (name, measure) in loops {
            let (wall, cpu) = measure();
            println!(
                "round {round} {name:9} {:>8.0} datagrams/s, server CPU {:>5.0} ns per datagram",
                DATAGRAMS as f64 / wall.as_secs_f64(),
                cpu.as_nanos() as f64 / DATAGRAMS as f64
            );
        }
    }
}
