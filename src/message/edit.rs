//! Writes the forwarded copy of a message: the received bytes with the proxy's own insertions,
//! removals and replacements spliced in, everything else byte for byte.

use std::ops::Range;

/// One change to the received bytes. Insertions use an empty range.
#[derive(Debug, Clone)]
struct Splice {
    range: Range<usize>,
    text: Range<usize>,
}

/// Collects splices against a message and renders the result into an output buffer.
///
/// Inserted text is kept in one reusable arena, so planning an edit allocates nothing once the
/// buffers have grown to their working size.
#[derive(Debug, Default)]
pub struct Editor {
    splices: Vec<Splice>,
    arena: Vec<u8>,
}

impl Editor {
    pub fn clear(&mut self) {
        self.splices.clear();
        self.arena.clear();
    }

    /// Inserts text at an offset of the original message.
    pub fn insert(&mut self, at: usize, parts: &[&[u8]]) {
        self.replace(at..at, parts);
    }

    /// Removes a range of the original message.
    pub fn remove(&mut self, range: Range<usize>) {
        self.replace(range, &[]);
    }

    /// Replaces a range of the original message with the concatenation of `parts`.
    pub fn replace(&mut self, range: Range<usize>, parts: &[&[u8]]) {
        let start = self.arena.len();
        for part in parts {
            self.arena.extend_from_slice(part);
        }
        self.splices.push(Splice {
            range,
            text: start..self.arena.len(),
        });
    }

    /// Returns a writer for text assembled piece by piece, inserted at `at` when dropped.
    pub fn insert_with(&mut self, at: usize) -> InsertWriter<'_> {
        self.replace_with(at..at)
    }

    /// Returns a writer for text assembled piece by piece, which replaces `range` of the
    /// original message when dropped.
    pub fn replace_with(&mut self, range: Range<usize>) -> InsertWriter<'_> {
        let start = self.arena.len();
        InsertWriter {
            editor: self,
            range,
            start,
        }
    }

    /// Renders the edited message into `out` (cleared first).
    ///
    /// Splices apply in order of their start offset; several insertions at one offset keep the
    /// order in which they were added. Overlapping removals are a caller bug and are skipped.
    pub fn render(&mut self, original: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(original.len() + self.arena.len());
        self.splices.sort_by_key(|s| s.range.start);
        let mut pos = 0;
        for splice in &self.splices {
            if splice.range.start < pos {
                debug_assert!(false, "overlapping splices");
                continue;
            }
            out.extend_from_slice(&original[pos..splice.range.start]);
            out.extend_from_slice(&self.arena[splice.text.clone()]);
            pos = splice.range.end;
        }
        out.extend_from_slice(&original[pos..]);
    }
}

/// Text being assembled for one insertion or replacement; see [`Editor::insert_with`] and
/// [`Editor::replace_with`].
pub struct InsertWriter<'a> {
    editor: &'a mut Editor,
    range: Range<usize>,
    start: usize,
}

impl InsertWriter<'_> {
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.editor.arena.extend_from_slice(bytes);
        self
    }

    pub fn push_display(&mut self, value: impl std::fmt::Display) -> &mut Self {
        use std::io::Write;
        let _ = write!(self.editor.arena, "{value}");
        self
    }
}

impl Drop for InsertWriter<'_> {
    fn drop(&mut self) {
        let end = self.editor.arena.len();
        self.editor.splices.push(Splice {
            range: self.range.clone(),
            text: self.start..end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_offset_order_and_stable_for_equal_offsets() {
        let original = b"abcdefgh";
        let mut editor = Editor::default();
        editor.remove(6..8);
        editor.insert(2, &[b"1"]);
        editor.insert(2, &[b"2", b"3"]);
        editor.replace(4..5, &[b"XY"]);
        editor.insert_with(8).push(b"!").push_display(42);
        editor.replace_with(0..1).push(b"A").push_display(0);
        let mut out = Vec::new();
        editor.render(original, &mut out);
        assert_eq!(out, b"A0b123cdXYf!42");
    }

    #[test]
    fn no_splices_copies_the_original() {
        let mut editor = Editor::default();
        let mut out = vec![1, 2, 3];
        editor.render(b"same", &mut out);
        assert_eq!(out, b"same");
    }
}
