use proptest::prelude::*;

use super::*;

const LIMITS: FrameLimits = FrameLimits {
    max_head_bytes: 1024,
    max_body_bytes: 512,
    max_message_bytes: 1200,
};

const OPTIONS: &[u8] = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
const INVITE: &[u8] = b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK2\r\nl : 5\r\n\r\nhello";

/// Frames a stream the way a connection reader does: bytes arrive in `chunks`, and every frame
/// that can be taken from the buffer is taken before the next chunk. Stops at the first
/// `Invalid` frame. Checks that resumed framing returns the same frames as fresh framing.
fn frames_over(chunks: &[&[u8]]) -> Vec<Frame> {
    let resumed = frames_with(chunks, true);
    let from_scratch = frames_with(chunks, false);
    assert_eq!(resumed, from_scratch, "resumed and fresh framing differ");
    resumed
}

/// Frames `chunks` with [`next_frame_resumed`] when `resume` is set, else with [`next_frame`].
fn frames_with(chunks: &[&[u8]], resume: bool) -> Vec<Frame> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut progress = Progress::default();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let frame = if resume {
                next_frame_resumed(&buf, &LIMITS, &mut progress)
            } else {
                next_frame(&buf, &LIMITS)
            };
            match frame {
                Frame::Incomplete => break,
                Frame::KeepAlive { len, .. } | Frame::Message { len } => {
                    out.push(frame);
                    buf.drain(..len);
                    progress = Progress::default();
                }
                Frame::Invalid { .. } => {
                    out.push(frame);
                    return out;
                }
            }
        }
    }
    out
}

fn message(len: usize) -> Frame {
    Frame::Message { len }
}

#[test]
fn single_message_framed() {
    assert_eq!(next_frame(OPTIONS, &LIMITS), message(OPTIONS.len()));
    assert_eq!(next_frame(INVITE, &LIMITS), message(INVITE.len()));
}

#[test]
fn two_messages_in_one_buffer() {
    let stream = [OPTIONS, INVITE].concat();
    assert_eq!(
        frames_over(&[&stream]),
        vec![message(OPTIONS.len()), message(INVITE.len())]
    );
}

#[test]
fn every_split_point_same_frames() {
    let stream = [b"\r\n\r\n".as_slice(), OPTIONS, b"\r\n", INVITE].concat();
    let expected = frames_over(&[&stream]);
    assert_eq!(
        expected,
        vec![
            Frame::KeepAlive { len: 4, ping: true },
            message(OPTIONS.len()),
            Frame::KeepAlive {
                len: 2,
                ping: false
            },
            message(INVITE.len()),
        ]
    );
    for split in 0..=stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(frames_over(&[a, b]), expected, "split at {split}");
    }
}

#[test]
fn byte_by_byte_same_frames() {
    let stream = [OPTIONS, INVITE].concat();
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        frames_over(&chunks),
        vec![message(OPTIONS.len()), message(INVITE.len())]
    );
}

#[test]
fn incomplete_head_and_body() {
    assert_eq!(next_frame(b"", &LIMITS), Frame::Incomplete);
    assert_eq!(
        next_frame(&OPTIONS[..OPTIONS.len() - 1], &LIMITS),
        Frame::Incomplete
    );
    assert_eq!(
        next_frame(&INVITE[..INVITE.len() - 1], &LIMITS),
        Frame::Incomplete
    );
}

#[test]
fn content_length_name_forms() {
    let heads: [&[u8]; 6] = [
        b"X sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc",
        b"X sip:a SIP/2.0\r\ncontent-length:3\r\n\r\nabc",
        b"X sip:a SIP/2.0\r\nCONTENT-LENGTH \t:\t 3 \r\n\r\nabc",
        b"X sip:a SIP/2.0\r\nl:3\r\n\r\nabc",
        b"X sip:a SIP/2.0\r\nL  :  3\r\n\r\nabc",
        b"X sip:a SIP/2.0\r\nContent-Length:\r\n  3\r\n\r\nabc",
    ];
    for head in heads {
        assert_eq!(
            next_frame(head, &LIMITS),
            message(head.len()),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn bare_lf_line_endings() {
    let text = b"X sip:a SIP/2.0\nl: 2\n\nab";
    assert_eq!(next_frame(text, &LIMITS), message(text.len()));
}

#[test]
fn other_headers_ignored() {
    let text =
        b"X sip:a SIP/2.0\r\nSubject: l: 9\r\n Content-Length: 9\r\nLength: 7\r\nl: 1\r\n\r\nz";
    assert_eq!(next_frame(text, &LIMITS), message(text.len()));
}

#[test]
fn missing_content_length_returns_head() {
    let text = b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\nbody";
    assert_eq!(
        next_frame(text, &LIMITS),
        Frame::Invalid {
            reason: FramingError::MissingContentLength,
            head_len: Some(text.len() - 4),
        }
    );
}

#[test]
fn bad_content_length_values() {
    for value in ["", "abc", "-1", "1 2", "0x10", "3;x"] {
        let text = format!("X sip:a SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            next_frame(text.as_bytes(), &LIMITS),
            Frame::Invalid {
                reason: FramingError::BadContentLength,
                head_len: Some(text.len()),
            },
            "value {value:?}"
        );
    }
}

#[test]
fn conflicting_content_lengths() {
    let text = b"X sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
    assert_eq!(
        next_frame(text, &LIMITS),
        Frame::Invalid {
            reason: FramingError::BadContentLength,
            head_len: Some(text.len() - 2),
        }
    );
    let same = b"X sip:a SIP/2.0\r\nContent-Length: 2\r\nl: 02\r\n\r\nab";
    assert_eq!(next_frame(same, &LIMITS), message(same.len()));
}

#[test]
fn huge_content_length_too_large() {
    for value in ["513", "99999999999999999999999999"] {
        let text = format!("X sip:a SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            next_frame(text.as_bytes(), &LIMITS),
            Frame::Invalid {
                reason: FramingError::BodyTooLarge,
                head_len: Some(text.len()),
            },
            "value {value}"
        );
    }
}

#[test]
fn head_plus_body_over_message_limit() {
    let padding = "a".repeat(800);
    let text = format!("X sip:a SIP/2.0\r\nX-Pad: {padding}\r\nl: 500\r\n\r\n");
    assert_eq!(
        next_frame(text.as_bytes(), &LIMITS),
        Frame::Invalid {
            reason: FramingError::BodyTooLarge,
            head_len: Some(text.len()),
        }
    );
}

#[test]
fn head_too_large() {
    let padding = "a".repeat(1100);
    let open = format!("X sip:a SIP/2.0\r\nX-Pad: {padding}");
    assert_eq!(
        next_frame(open.as_bytes(), &LIMITS),
        Frame::Invalid {
            reason: FramingError::HeadTooLarge,
            head_len: None,
        }
    );
    let complete = format!("{open}\r\nl: 0\r\n\r\n");
    assert_eq!(
        next_frame(complete.as_bytes(), &LIMITS),
        Frame::Invalid {
            reason: FramingError::HeadTooLarge,
            head_len: Some(complete.len()),
        }
    );
}

#[test]
fn head_at_limit_accepted() {
    let head = b"X sip:a SIP/2.0\r\nl: 0\r\n\r\n";
    let limits = FrameLimits {
        max_head_bytes: head.len(),
        ..LIMITS
    };
    assert_eq!(next_frame(head, &limits), message(head.len()));
    assert_eq!(
        next_frame(&head[..head.len() - 1], &limits),
        Frame::Incomplete
    );
}

#[test]
fn leading_line_endings() {
    let cases: [(&[u8], Frame); 7] = [
        (b"\r", Frame::Incomplete),
        (b"\r\n", Frame::Incomplete),
        (b"\r\n\r", Frame::Incomplete),
        (b"\r\n\r\n", Frame::KeepAlive { len: 4, ping: true }),
        (
            b"\r\nOPTIONS",
            Frame::KeepAlive {
                len: 2,
                ping: false,
            },
        ),
        (
            b"\nOPTIONS",
            Frame::KeepAlive {
                len: 1,
                ping: false,
            },
        ),
        (
            b"\rX",
            Frame::KeepAlive {
                len: 1,
                ping: false,
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(next_frame(input, &LIMITS), expected, "{input:?}");
    }
}

#[test]
fn pings_between_messages() {
    let stream = [b"\r\n\r\n\r\n\r\n".as_slice(), OPTIONS, b"\r\n\r\n"].concat();
    assert_eq!(
        frames_over(&[&stream]),
        vec![
            Frame::KeepAlive { len: 4, ping: true },
            Frame::KeepAlive { len: 4, ping: true },
            message(OPTIONS.len()),
            Frame::KeepAlive { len: 4, ping: true },
        ]
    );
}

#[test]
fn limits_from_config() {
    let limits = FrameLimits::from_config(&crate::config::Limits::default());
    assert_eq!(limits.max_head_bytes, 65_535);
    assert_eq!(limits.max_body_bytes, 32_768);
    assert_eq!(limits.max_message_bytes, 65_535);
}

/// Splits `len` bytes at the given cut points, sorted and clamped.
fn split_points(len: usize, cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.windows(2).map(|w| w[0]..w[1]).collect()
}

proptest! {
    #[test]
    fn random_splits_same_frames(
        parts in prop::collection::vec(0usize..4, 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let pieces: [&[u8]; 4] = [OPTIONS, INVITE, b"\r\n\r\n", b"\r\n"];
        let stream: Vec<u8> = parts.iter().flat_map(|p| pieces[*p].iter().copied()).collect();
        let expected = frames_over(&[&stream]);
        let chunks: Vec<&[u8]> = split_points(stream.len(), &cuts)
            .into_iter()
            .map(|r| &stream[r])
            .collect();
        prop_assert_eq!(frames_over(&chunks), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        match next_frame(&bytes, &LIMITS) {
            Frame::KeepAlive { len, .. } | Frame::Message { len } => {
                prop_assert!(len > 0 && len <= bytes.len());
            }
            Frame::Invalid { head_len: Some(len), .. } => prop_assert!(len <= bytes.len()),
            Frame::Invalid { head_len: None, .. } | Frame::Incomplete => {}
        }
    }
}

#[test]
fn progress_remembers_head_and_body() {
    let mut progress = Progress::default();
    let partial_head = &INVITE[..30];
    assert_eq!(
        next_frame_resumed(partial_head, &LIMITS, &mut progress),
        Frame::Incomplete
    );
    assert_eq!(progress.head_searched, partial_head.len());
    assert_eq!(progress.message_len, None);

    let partial_body = &INVITE[..INVITE.len() - 2];
    assert_eq!(
        next_frame_resumed(partial_body, &LIMITS, &mut progress),
        Frame::Incomplete
    );
    assert_eq!(progress.message_len, Some(INVITE.len()));

    assert_eq!(
        next_frame_resumed(INVITE, &LIMITS, &mut progress),
        message(INVITE.len())
    );
}
