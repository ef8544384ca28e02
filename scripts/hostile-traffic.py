#!/usr/bin/env python3
"""Hostile traffic for a sipstamp load run: malformed messages and one flooding source.

    scripts/hostile-traffic.py --port PORT --seconds N [--flood-pps N] [--malformed-pps N]

Sends over UDP to loopback only: --flood-pps (default 2000, at most 5000) OPTIONS requests
per second from one socket to [::1]:PORT, so the proxy sees the flood from a source address
other than the SIPp calls on 127.0.0.1 (the requests name the proxy itself, so the ones under
the limit are answered by the proxy and never reach the SIPp UAS), plus --malformed-pps (default 200, at most 1000)
malformed datagrams per second to 127.0.0.1:PORT. Stops by itself after N seconds (at most
600) and prints key=value counters.
"""

import argparse
import socket
import sys
import time

MALFORMED = [
    b"\x00\x01\x02\xff binary",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP",
    b"INVITE sip:x@127.0.0.1 SIP/7.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKh\r\n\r\n",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999999999\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKforeign\r\n\r\n",
    b"OPTIONS  sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKh2\r\n"
    b"From: <sip:h@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: h\r\nCSeq: 1 OPTIONS\r\n\r\n",
    b"BYE sip:x@127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"y" * 9000 + b"\r\n\r\n",
    b"\r\n\r\n",
]


def options(local_port, port, n):
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP [::1]:{local_port};branch=z9hG4bK-flood-{n}\r\n"
        f"From: <sip:flood@[::1]>;tag=f{n}\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: flood-{n}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Max-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--flood-pps", type=int, default=2000)
    parser.add_argument("--malformed-pps", type=int, default=200)
    args = parser.parse_args()
    seconds = min(max(args.seconds, 0.0), 600.0)
    flood_pps = min(max(args.flood_pps, 0), 5000)
    malformed_pps = min(max(args.malformed_pps, 0), 1000)
    target = ("127.0.0.1", args.port)
    flood_target = ("::1", args.port)

    flooder = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    flooder.bind(("::1", 0))
    flooder.setblocking(False)
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.bind(("127.0.0.1", 0))
    junk.setblocking(False)
    flood_port = flooder.getsockname()[1]

    sent_flood = sent_malformed = replies = 0
    started = time.monotonic()
    tick = 0.01
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due_flood = int(elapsed * flood_pps) - sent_flood
        due_junk = int(elapsed * malformed_pps) - sent_malformed
        for _ in range(max(due_flood, 0)):
            try:
                flooder.sendto(options(flood_port, args.port, sent_flood), flood_target)
            except BlockingIOError:
                pass
            sent_flood += 1
        for _ in range(max(due_junk, 0)):
            try:
                junk.sendto(MALFORMED[sent_malformed % len(MALFORMED)], target)
            except BlockingIOError:
                pass
            sent_malformed += 1
        for sock in (flooder, junk):
            while True:
                try:
                    sock.recv(65535)
                    replies += 1
                except (BlockingIOError, ConnectionRefusedError):
                    break
        time.sleep(tick)

    print(f"hostile_flood_sent={sent_flood} hostile_malformed_sent={sent_malformed} "
          f"hostile_replies={replies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
