//! Header names the proxy reads or edits, recognised without regard to case and in their
//! compact forms (RFC 3261 section 7.3.3).

/// A header the proxy interprets. Every other header is `Other` and passes through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Route,
    RecordRoute,
    ContentLength,
    Contact,
    ProxyRequire,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    Privacy,
    Other,
}

impl HeaderName {
    /// Classifies a header name as received (any case, compact or full form).
    pub fn classify(name: &[u8]) -> Self {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Self::Via,
                b'f' => Self::From,
                b't' => Self::To,
                b'i' => Self::CallId,
                b'l' => Self::ContentLength,
                b'm' => Self::Contact,
                _ => Self::Other,
            };
        }
        let candidates: &[(&[u8], Self)] = match name.len() {
            2 => &[(b"To", Self::To)],
            3 => &[(b"Via", Self::Via)],
            4 => &[(b"From", Self::From), (b"CSeq", Self::CSeq)],
            5 => &[(b"Route", Self::Route)],
            7 => &[
                (b"Call-ID", Self::CallId),
                (b"Contact", Self::Contact),
                (b"Privacy", Self::Privacy),
            ],
            12 => &[
                (b"Max-Forwards", Self::MaxForwards),
                (b"Record-Route", Self::RecordRoute),
            ],
            13 => &[(b"Proxy-Require", Self::ProxyRequire)],
            14 => &[(b"Content-Length", Self::ContentLength)],
            15 => &[(b"Remote-Party-ID", Self::RemotePartyId)],
            19 => &[(b"P-Asserted-Identity", Self::PAssertedIdentity)],
            20 => &[(b"P-Preferred-Identity", Self::PPreferredIdentity)],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map_or(Self::Other, |(_, kind)| *kind)
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn full_and_compact_forms_any_case() {
        let cases: &[(&[u8], HeaderName)] = &[
            (b"Via", HeaderName::Via),
            (b"v", HeaderName::Via),
            (b"VIA", HeaderName::Via),
            (b"f", HeaderName::From),
            (b"from", HeaderName::From),
            (b"T", HeaderName::To),
            (b"i", HeaderName::CallId),
            (b"call-id", HeaderName::CallId),
            (b"l", HeaderName::ContentLength),
            (b"content-LENGTH", HeaderName::ContentLength),
            (b"MAX-FORWARDS", HeaderName::MaxForwards),
            (b"record-route", HeaderName::RecordRoute),
            (b"p-asserted-identity", HeaderName::PAssertedIdentity),
            (b"Remote-Party-Id", HeaderName::RemotePartyId),
            (b"X-Foo", HeaderName::Other),
            (b"k", HeaderName::Other),
            (b"Subject", HeaderName::Other),
        ];
        for (name, expected) in cases {
            assert_eq!(
                HeaderName::classify(name),
                *expected,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }
}
