//! Per-message cost of the proxy core: scan, decide and write the forwarded bytes for an
//! initial INVITE (with identity derivation and stamping), its 200 OK and an in-dialog BYE.
//!
//! Run with `cargo bench --bench hot_path`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipstamp::config::Config;
use sipstamp::identity::TrustMap;
use sipstamp::message::Transport;
use sipstamp::proxy::{Core, Inbound, Outcome, Returning, Scratch};
use sipstamp::pseudonym::{KeyRing, TenantKeys};

const EDGE: &str = "192.0.2.10:5070";
const UPSTREAM: &str = "127.0.0.1:5090";

fn core() -> Core {
    let config = Config::parse(
        "[sip]\nudp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5060\"]\nupstream = \"127.0.0.1:5090\"\n\
         [[trunks]]\nid = \"carrier\"\ntrusted_cidrs = [\"192.0.2.0/24\"]\nregion = \"DE\"\n",
        "bench",
    )
    .expect("bench config is valid");
    let mut keys = HashMap::new();
    keys.insert(
        "default".to_owned(),
        TenantKeys {
            current: zeroize::Zeroizing::new(vec![9u8; 32]),
            previous: Vec::new(),
        },
    );
    let ring = KeyRing::from_tenant_keys(&config, &keys).expect("keys load");
    sipstamp::identity::warm_up();
    Core::new(&config, ring, TrustMap::from_config(&config))
}

fn invite(n: u64) -> String {
    format!(
        "INVITE sip:+4930555000@127.0.0.1:5090 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{n};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:03055501{n:04}@edge.example>;tag=f{n}\r\n\
To: <sip:+4930555000@127.0.0.1:5090>\r\n\
Call-ID: bench-{n}@edge\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@192.0.2.10:5070>\r\n\
P-Asserted-Identity: <sip:+49305550{n:04}@edge.example;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\r\n\
v=0\r\no=user1 53655765 2353687637 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn send(core: &Core, scratch: &mut Scratch, from: &str, bytes: &[u8]) -> Outcome {
    let inbound = Inbound {
        now: Instant::now(),
        source: from.parse().unwrap(),
        transport: Transport::Udp,
        bytes,
    };
    core.handle(inbound, scratch)
}

fn hot_path(c: &mut Criterion) {
    let core = core();
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));

    let invites: Vec<String> = (0..100_000).map(invite).collect();
    let mut next = 0usize;
    group.bench_function("initial_invite", |b| {
        b.iter(|| {
            let message = &invites[next % invites.len()];
            next += 1;
            let outcome = send(&core, &mut scratch, EDGE, message.as_bytes());
            if let Outcome::Forward {
                new_call: Some(new_call),
                ..
            } = &outcome
            {
                core.finish_new_call(new_call, &mut scratch.out, Returning::No);
            }
            black_box(&scratch.out);
        });
        core.tick(Instant::now() + std::time::Duration::from_secs(1_000_000));
    });

    // One call set up, then its 200 OK and BYE measured repeatedly.
    let first = invite(1);
    let outcome = send(&core, &mut scratch, EDGE, first.as_bytes());
    if let Outcome::Forward {
        new_call: Some(new_call),
        ..
    } = &outcome
    {
        core.finish_new_call(new_call, &mut scratch.out, Returning::No);
    }
    let forwarded = String::from_utf8(scratch.out.clone()).unwrap();
    let own_via = forwarded
        .lines()
        .find_map(|l| l.strip_prefix("Via: "))
        .unwrap()
        .to_owned();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {own_via}\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-1;rport=5070\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\nFrom: \"Caller\" <sip:0305550001@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: bench-1@edge\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:gw@127.0.0.1:5090>\r\nContent-Length: 0\r\n\r\n"
    );
    group.bench_function("response_200", |b| {
        b.iter(|| {
            black_box(send(&core, &mut scratch, UPSTREAM, ok.as_bytes()));
        })
    });
    let bye = "BYE sip:gw@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-b1;rport\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:0305550001@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: bench-1@edge\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    group.bench_function("in_dialog_bye", |b| {
        b.iter(|| {
            black_box(send(&core, &mut scratch, EDGE, bye.as_bytes()));
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
