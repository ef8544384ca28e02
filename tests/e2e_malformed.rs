//! Hand-written bad input sent to the real `sipstamp` binary over UDP and TCP. The proxy
//! must survive it and go on replying. These tests need no SIPp.

mod support;

use std::time::Duration;

use support::{
    free_port, options_request, status_code, Proxy, RawTcp, RawUdp, TcpReply, Transport,
};

const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Asserts that the proxy replies 200 to an OPTIONS over UDP.
fn assert_answers_options(proxy: &Proxy, call_id: &str) {
    let udp = RawUdp::new(proxy.sip_port);
    let request = options_request(udp.local_addr(), proxy.sip_port, Transport::Udp, call_id);
    let reply = udp
        .exchange(request.as_bytes(), REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no reply to OPTIONS {call_id}\n{}", proxy.log()));
    assert_eq!(status_code(&reply), Some(200), "reply to OPTIONS {call_id}");
}

#[test]
fn garbage_datagrams_leave_proxy_running() {
    let mut proxy = Proxy::start(free_port());
    let udp = RawUdp::new(proxy.sip_port);
    let oversized = vec![b'A'; 65_000];
    let inputs: [&[u8]; 8] = [
        b"",
        b"\r\n\r\n",
        b"\x00\xff\xfe binary",
        b"INVITE",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnone\r\n\r\n",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
        &oversized,
    ];
    for input in inputs {
        udp.send(input);
    }
    // Replies to garbage are not checked. The proxy only has to keep working.
    while udp.recv(Duration::from_millis(200)).is_some() {}
    assert!(
        proxy.is_running(),
        "sipstamp exited on bad datagrams\n{}",
        proxy.log()
    );
    assert_answers_options(&proxy, "after-garbage-udp");
}

#[test]
fn garbage_tcp_stream_leaves_proxy_running() {
    let mut proxy = Proxy::start(free_port());
    let inputs: [&[u8]; 4] = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: -5\r\n\r\n",
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9",
    ];
    for input in inputs {
        let mut tcp = RawTcp::connect(proxy.sip_port);
        // The proxy may close the connection at once, so a failed write is accepted.
        let _ = tcp.send(input);
        let _ = tcp.read_message(Duration::from_millis(500));
    }
    assert!(
        proxy.is_running(),
        "sipstamp exited on bad TCP input\n{}",
        proxy.log()
    );
    assert_answers_options(&proxy, "after-garbage-tcp");
}

#[test]
fn request_without_call_id_gets_400() {
    let proxy = Proxy::start(free_port());
    let udp = RawUdp::new(proxy.sip_port);
    let local = udp.local_addr();
    // RFC 3261 section 8.1.1 makes Call-ID mandatory. The Via is intact, so a reply can go back.
    let request = format!(
        "INVITE sip:service@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-no-call-id\r\n\
         From: <sip:+493055506000@edge.test>;tag=no-call-id\r\n\
         To: <sip:service@127.0.0.1:{port}>\r\n\
         CSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\
         \r\n",
        port = proxy.sip_port,
    );
    let reply = udp
        .exchange(request.as_bytes(), REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no reply to an INVITE without Call-ID\n{}", proxy.log()));
    assert_eq!(
        status_code(&reply),
        Some(400),
        "reply: {}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn tcp_reply_framing_keeps_second_message() {
    // Two OPTIONS in one write: the proxy must frame both and reply to each.
    let proxy = Proxy::start(free_port());
    let mut tcp = RawTcp::connect(proxy.sip_port);
    let local = tcp.local_addr();
    let mut both = options_request(local, proxy.sip_port, Transport::Tcp, "pipelined-1");
    both.push_str(&options_request(
        local,
        proxy.sip_port,
        Transport::Tcp,
        "pipelined-2",
    ));
    tcp.send(both.as_bytes()).expect("write two OPTIONS");
    for call_id in ["pipelined-1", "pipelined-2"] {
        match tcp.read_message(REPLY_TIMEOUT) {
            TcpReply::Message(reply) => {
                let text = String::from_utf8_lossy(&reply);
                assert_eq!(status_code(&reply), Some(200), "reply: {text}");
                assert!(
                    text.contains(call_id),
                    "reply out of order, expected {call_id}: {text}"
                );
            }
            other => panic!("no reply for {call_id}: {other:?}\n{}", proxy.log()),
        }
    }
}
