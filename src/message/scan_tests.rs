use super::*;

const LIMITS: ScanLimits = ScanLimits {
    max_message_bytes: 65_535,
    max_body_bytes: 32_768,
    max_headers: 64,
    max_header_bytes: 4_096,
};

fn scan_ok(buf: &[u8]) -> (Scanned, Vec<Header>) {
    let mut headers = Vec::new();
    let scanned = scan(buf, &LIMITS, &mut headers).expect("message scans");
    (scanned, headers)
}

fn scan_err(buf: &[u8]) -> ScanError {
    let mut headers = Vec::new();
    scan(buf, &LIMITS, &mut headers).expect_err("message is rejected")
}

#[test]
fn request_line_headers_and_body() {
    let buf = b"INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";
    let (scanned, headers) = scan_ok(buf);
    match &scanned.start {
        StartLine::Request { method, uri, .. } => {
            assert_eq!(*method, Method::Invite);
            assert_eq!(&buf[uri.clone()], b"sip:bob@192.0.2.2");
        }
        other => panic!("expected a request, got {other:?}"),
    }
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].name, HeaderName::Via);
    assert_eq!(
        &buf[headers[0].value.clone()],
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"
    );
    assert_eq!(&buf[scanned.body.clone()], b"body");
    assert_eq!(scanned.content_length, Some(4));
}

#[test]
fn response_status() {
    let (scanned, _) = scan_ok(b"SIP/2.0 180 Ringing\r\nl: 0\r\n\r\n");
    assert_eq!(scanned.start, StartLine::Response { status: 180 });
}

#[test]
fn folded_header_and_space_before_colon() {
    let buf =
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: first\r\n  second\r\nTO  :  <sip:a@b>  \r\n\r\n";
    let (_, headers) = scan_ok(buf);
    assert_eq!(&buf[headers[0].value.clone()], b"first\r\n  second");
    assert_eq!(
        &buf[headers[0].line.clone()],
        b"Subject: first\r\n  second\r\n"
    );
    assert_eq!(headers[1].name, HeaderName::To);
    assert_eq!(&buf[headers[1].value.clone()], b"<sip:a@b>");
}

#[test]
fn bare_lf_line_endings() {
    let (scanned, headers) = scan_ok(b"BYE sip:a@b SIP/2.0\nCall-ID: x\n\n");
    assert_eq!(headers.len(), 1);
    assert!(scanned.body.is_empty());
}

#[test]
fn empty_header_value_kept() {
    let buf = b"OPTIONS sip:a@b SIP/2.0\r\nX-Empty:\r\n\r\n";
    let (_, headers) = scan_ok(buf);
    assert!(headers[0].value.is_empty());
}

#[test]
fn body_cut_to_content_length() {
    let buf = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nabcd";
    let (scanned, _) = scan_ok(buf);
    assert_eq!(&buf[scanned.body.clone()], b"ab");
}

#[test]
fn rejects_with_the_right_error() {
    let cases: &[(&[u8], ScanError)] = &[
        (
            b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nshort",
            ScanError::Truncated,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nl: 1x\r\n\r\n",
            ScanError::BadContentLength,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nl: 99999999999999999999\r\n\r\n",
            ScanError::BadContentLength,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab",
            ScanError::BadContentLength,
        ),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", ScanError::BadVersion),
        (b"SIP/3.0 200 OK\r\n\r\n", ScanError::BadVersion),
        (b"INVITE  SIP/2.0\r\n\r\n", ScanError::BadStartLine),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", ScanError::BadStartLine),
        (b"SIP/2.0 20 OK\r\n\r\n", ScanError::BadStartLine),
        (
            b"INVITE sip:a@b SIP/2.0\r\nNoColonHere\r\n\r\n",
            ScanError::BadHeader,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\n continuation first\r\n\r\n",
            ScanError::BadHeader,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            ScanError::BadHeader,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n",
            ScanError::Unterminated,
        ),
        (b"", ScanError::Unterminated),
    ];
    for (buf, expected) in cases {
        assert_eq!(scan_err(buf), *expected, "{}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn limits_are_enforced() {
    let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for _ in 0..65 {
        many.extend_from_slice(b"X: y\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(scan_err(&many), ScanError::TooManyHeaders);

    let mut long = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(scan_err(&long), ScanError::HeaderTooLong);

    let mut folded = b"OPTIONS sip:a@b SIP/2.0\r\nX: a\r\n".to_vec();
    for _ in 0..1000 {
        folded.extend_from_slice(b" aaaa\r\n");
    }
    folded.extend_from_slice(b"\r\n");
    assert_eq!(scan_err(&folded), ScanError::HeaderTooLong);

    let mut huge = b"MESSAGE sip:a@b SIP/2.0\r\nl: 69000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 69_000));
    assert_eq!(scan_err(&huge), ScanError::MessageTooLarge);

    let mut headers = Vec::new();
    let version = b"INVITE sip:a@b SIP/3.0\r\nCall-ID: x\r\n\r\n";
    assert_eq!(
        scan(version, &LIMITS, &mut headers),
        Err(ScanError::BadVersion)
    );
    assert_eq!(
        headers.len(),
        1,
        "headers are scanned so a 505 can be built"
    );
}

#[test]
fn single_valued_header_repeated_rejected() {
    let cases: &[(&[u8], HeaderName)] = &[
        (
            b"From: <sip:a@b>;tag=1\r\nf: <sip:c@d>;tag=2",
            HeaderName::From,
        ),
        (b"t: <sip:a@b>\r\nTO: <sip:c@d>", HeaderName::To),
        (b"Call-ID: x\r\ni: y", HeaderName::CallId),
        (b"Call-ID: x\r\ncall-id: x", HeaderName::CallId),
        (b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE", HeaderName::CSeq),
        (
            b"Max-Forwards: 70\r\nmax-forwards: 1",
            HeaderName::MaxForwards,
        ),
    ];
    for (lines, name) in cases {
        let mut buf = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".to_vec();
        buf.extend_from_slice(lines);
        buf.extend_from_slice(b"\r\nl: 0\r\n\r\n");
        let error = scan_err(&buf);
        assert_eq!(
            error,
            ScanError::RepeatedHeader(*name),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        assert_eq!(error.status().0, 400);
        assert_eq!(error.as_str(), "repeated_header");

        // Responses fail the same way, and the core drops them.
        let mut response = b"SIP/2.0 200 OK\r\n".to_vec();
        response.extend_from_slice(&buf[buf.iter().position(|b| *b == b'\n').unwrap() + 1..]);
        assert_eq!(scan_err(&response), ScanError::RepeatedHeader(*name));
    }

    // List headers repeat freely, and equal Content-Length copies frame the message alike.
    scan_ok(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nv: SIP/2.0/UDP g\r\nRoute: <sip:r>\r\nRoute: <sip:s>\r\nl: 0\r\nContent-Length: 0\r\n\r\n");
}
