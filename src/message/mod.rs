//! SIP messages as received bytes: the scanner, header names, typed views of the few headers
//! the proxy reads, and the editor that writes a forwarded copy.

pub mod edit;
pub mod names;
pub mod scan;
pub mod uri;
pub mod value;
pub mod via;

pub use names::HeaderName;
pub use scan::{scan, Header, Method, ScanError, ScanLimits, Scanned, StartLine};
pub use via::{Transport, Via};

/// A scanned message together with its bytes and header table.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub buf: &'a [u8],
    pub scanned: &'a Scanned,
    pub headers: &'a [Header],
}

impl<'a> Message<'a> {
    /// Returns the first header of a kind.
    pub fn first(&self, name: HeaderName) -> Option<&'a Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Returns the value bytes of the first header of a kind.
    pub fn value(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.first(name).map(|h| &self.buf[h.value.clone()])
    }

    /// Returns every header of a kind, in order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// Returns the value bytes of a header.
    pub fn bytes(&self, header: &Header) -> &'a [u8] {
        &self.buf[header.value.clone()]
    }

    /// Returns the `tag` parameter of From or To.
    pub fn tag(&self, name: HeaderName) -> Option<&'a [u8]> {
        value::header_param(self.value(name)?, b"tag").filter(|t| !t.is_empty())
    }

    pub fn method(&self) -> Option<Method> {
        match self.scanned.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Returns the CSeq number and method token.
    pub fn cseq(&self) -> Option<(u32, &'a [u8])> {
        let value = self.value(HeaderName::CSeq)?;
        let value = value::trim_slice(value);
        let split = value
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
        let digits = &value[..split];
        let method = value::trim_slice(&value[split..]);
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
        if method.is_empty() || !method.iter().all(|b| scan::is_token_byte(*b)) {
            return None;
        }
        Some((number, method))
    }

    /// Returns the first value of the first Via header, with its range in the buffer.
    pub fn top_via(&self) -> Option<(Via<'a>, std::ops::Range<usize>)> {
        let header = self.first(HeaderName::Via)?;
        let value = &self.buf[header.value.clone()];
        let end = value::first_element_end(value);
        let range = value::trim(self.buf, header.value.start..header.value.start + end);
        Some((Via::parse(&self.buf[range.clone()])?, range))
    }

    /// Counts Via values across all Via headers.
    pub fn via_count(&self) -> usize {
        self.all(HeaderName::Via)
            .map(|h| value::elements(self.bytes(h)).count())
            .sum()
    }
}
