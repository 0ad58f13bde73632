//! Message body framing (RFC 9112 §6): where a body ends.
//!
//! A [`BodyDecoder`] is fed the bytes that follow a message head, in any
//! split, and answers with [`Segment`]s: runs of body *data* or of chunked
//! *framing* (sizes, extensions, CRLFs, trailers), and whether the body is
//! complete. It never looks past the end of the body, so the bytes of a
//! pipelined request behind it are never taken as body.
//!
//! The decoder is pure: no I/O, no clock, no allocation. Its state is a few
//! integers, so a connection can carry one per direction.
//!
//! Limits the parser must enforce itself (httparse leaves them to us):
//! chunk-size digits ([`MAX_CHUNK_SIZE_DIGITS`]), chunk-extension length
//! ([`MAX_CHUNK_EXTENSION`]), trailer section size ([`MAX_TRAILER_BYTES`]).
//!
//! In the course (docs/learn): chapter 5 (Content-Length, chunked,
//! close-delimited), sans-IO.

use std::fmt;

/// 16 hex digits hold any `u64`; more is an attack or a bug.
pub const MAX_CHUNK_SIZE_DIGITS: u32 = 16;
/// Chunk extensions are almost never used; a bound stops a peer from
/// making us scan forever for a CRLF.
pub const MAX_CHUNK_EXTENSION: u32 = 4096;
/// Bound on the whole trailer section of a chunked body.
pub const MAX_TRAILER_BYTES: u32 = 8192;

/// How a message says its body is delimited, decided from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (GET without Content-Length, HEAD responses, 204, 304…).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response that ends when the upstream closes the connection.
    UntilClose,
}

/// Why a body's framing is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// A chunk-size line that is not hex digits, or overflows.
    ChunkSize,
    /// A chunk extension longer than [`MAX_CHUNK_EXTENSION`] or with bad bytes.
    ChunkExtension,
    /// Chunk data not followed by CRLF, or a bare LF / CR in framing.
    LineEnding,
    /// A trailer section over [`MAX_TRAILER_BYTES`] or with bad bytes.
    Trailer,
    /// The connection ended before the body did.
    Truncated,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramingError::ChunkSize => "invalid chunk size",
            FramingError::ChunkExtension => "invalid or oversized chunk extension",
            FramingError::LineEnding => "chunk framing without CRLF",
            FramingError::Trailer => "invalid or oversized trailer section",
            FramingError::Truncated => "connection closed before the body ended",
        })
    }
}

/// What the decoder found at the front of the bytes it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Whether these bytes are body data (as opposed to chunk framing).
    pub is_data: bool,
    /// How many bytes the segment spans; may be 0 only when `complete`.
    pub len: usize,
    /// True when the body ends with this segment.
    pub complete: bool,
    /// Framing only: the CRLF that ends a chunk's data is in this segment.
    pub chunk_end: bool,
    /// Framing only: the segment ends with a chunk-size line, and the
    /// chunk's data of this many bytes follows (0: no chunk starts here;
    /// a chunk of size 0 is the last chunk, reported as `complete`).
    pub chunk_start: u64,
}

impl Segment {
    fn data(len: usize, complete: bool) -> Segment {
        Segment {
            is_data: true,
            len,
            complete,
            chunk_end: false,
            chunk_start: 0,
        }
    }
}

/// Incremental decoder for one message body. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
    /// Body data bytes seen so far (not counting chunk framing).
    data_seen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `remaining` data bytes to go (Content-Length, or inside a chunk).
    Length {
        remaining: u64,
    },
    /// Until the connection closes.
    UntilClose,
    /// Reading hex digits of a chunk size.
    ChunkSize {
        size: u64,
        digits: u32,
    },
    /// After the size: chunk extensions up to CR. `len` bounds the whole
    /// extension part; `at` says where in the grammar the line is.
    ChunkExtension {
        size: u64,
        len: u32,
        at: Extension,
    },
    /// Saw CR after a size line; LF must follow.
    ChunkSizeLf {
        size: u64,
    },
    /// Inside chunk data.
    ChunkData {
        remaining: u64,
    },
    /// After chunk data: CR then LF must follow.
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk: trailer field lines (`name: value`), then an
    /// empty line. `total` counts the section's bytes.
    Trailer {
        line: TrailerLine,
        total: u32,
    },
    Done,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::ChunkSize { size: 0, digits: 0 },
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyDecoder {
            state,
            data_seen: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Body data bytes decoded so far.
    pub fn data_seen(&self) -> u64 {
        self.data_seen
    }

    /// Whether the next bytes are body data (as opposed to chunk framing).
    pub fn at_data(&self) -> bool {
        matches!(
            self.state,
            State::Length { .. } | State::ChunkData { .. } | State::UntilClose
        )
    }

    /// Data bytes left in the current chunk (0 outside chunk data).
    pub fn chunk_remaining(&self) -> u64 {
        match self.state {
            State::ChunkData { remaining } => remaining,
            _ => 0,
        }
    }

    /// Whether the body is delimited by connection close.
    pub fn is_until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// The peer closed the connection: fine only for close-delimited bodies.
    pub fn finish_on_eof(&mut self) -> Result<(), FramingError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(FramingError::Truncated),
        }
    }

    /// Decodes the longest run of one kind (data or framing) at the front of
    /// `input` and advances past it. Returns a segment of `len == 0` only
    /// when the body is already complete or `input` is empty.
    pub fn decode(&mut self, input: &[u8]) -> Result<Segment, FramingError> {
        match self.state {
            State::Done => Ok(Segment::data(0, true)),
            State::UntilClose => {
                self.data_seen += input.len() as u64;
                Ok(Segment::data(input.len(), false))
            }
            State::Length { remaining } | State::ChunkData { remaining } => {
                let n = remaining.min(input.len() as u64);
                let left = remaining - n;
                self.data_seen += n;
                let chunked = matches!(self.state, State::ChunkData { .. });
                self.state = match (chunked, left) {
                    (false, 0) => State::Done,
                    (false, _) => State::Length { remaining: left },
                    (true, 0) => State::ChunkDataCr,
                    (true, _) => State::ChunkData { remaining: left },
                };
                Ok(Segment::data(n as usize, self.state == State::Done))
            }
            _ => self.decode_framing(input),
        }
    }

    /// Steps through chunk framing bytes until data starts, the body ends or
    /// the input runs out.
    fn decode_framing(&mut self, input: &[u8]) -> Result<Segment, FramingError> {
        let mut used = 0;
        let mut chunk_end = false;
        let mut chunk_start = 0;
        for &byte in input {
            used += 1;
            let before = self.state;
            self.state = framing_step(before, byte)?;
            match self.state {
                State::ChunkSize { digits: 0, .. } => chunk_end |= before == State::ChunkDataLf,
                State::ChunkData { remaining } => {
                    chunk_start = remaining;
                    break;
                }
                State::Done => break,
                _ => {}
            }
        }
        Ok(Segment {
            is_data: false,
            len: used,
            complete: self.state == State::Done,
            chunk_end,
            chunk_start,
        })
    }
}

/// Where a chunk line is within its extensions (RFC 9112 §7.1.1:
/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extension {
    /// After the size or a complete extension: whitespace, then `;` (another
    /// extension) or CR. `spaced`: whitespace was seen, so only `;` may
    /// follow (no trailing BWS).
    Gap { spaced: bool },
    /// After `;`: whitespace, then the name; `started` once it has begun.
    Name { started: bool },
    /// After the name and whitespace: `=` or `;`.
    NameEnd,
    /// After `=`: whitespace, then a token (`started`) or a quoted string.
    Value { started: bool },
    /// Inside a quoted value; `escaped` after a backslash.
    Quoted { escaped: bool },
}

/// What one byte of a chunk extension leads to.
enum ExtensionStep {
    Next(Extension),
    /// CR: the chunk line ends here.
    LineEnd,
}

/// One byte of a chunk extension, by the grammar.
fn extension_step(at: Extension, byte: u8) -> Result<ExtensionStep, FramingError> {
    use Extension::{Gap, Name, NameEnd, Quoted, Value};
    use ExtensionStep::{LineEnd, Next};
    let space = matches!(byte, b' ' | b'\t');
    Ok(match (at, byte) {
        (Gap { spaced: false }, b'\r') => LineEnd,
        (Gap { .. }, _) if space => Next(Gap { spaced: true }),
        (Gap { .. } | NameEnd, b';') => Next(Name { started: false }),
        (Name { .. }, _) if is_tchar(byte) => Next(Name { started: true }),
        (Name { started: false }, _) if space => Next(Name { started: false }),
        (Name { started: true }, b'\r') => LineEnd,
        (Name { started: true } | NameEnd, b'=') => Next(Value { started: false }),
        (Name { started: true }, b';') => Next(Name { started: false }),
        (Name { started: true } | NameEnd, _) if space => Next(NameEnd),
        (Value { .. }, _) if is_tchar(byte) => Next(Value { started: true }),
        (Value { started: false }, _) if space => Next(Value { started: false }),
        (Value { started: false }, b'"') => Next(Quoted { escaped: false }),
        (Value { started: true }, b'\r') => LineEnd,
        (Value { started: true }, b';') => Next(Name { started: false }),
        (Value { started: true }, _) if space => Next(Gap { spaced: true }),
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        (Quoted { escaped: true }, b'\t' | 0x20..=0x7e | 0x80..=0xff) => {
            Next(Quoted { escaped: false })
        }
        (Quoted { escaped: false }, b'\\') => Next(Quoted { escaped: true }),
        (Quoted { escaped: false }, b'"') => Next(Gap { spaced: false }),
        // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
        (Quoted { escaped: false }, b'\t' | 0x20..=0x7e | 0x80..=0xff) => {
            Next(Quoted { escaped: false })
        }
        (_, b'\n') => return Err(FramingError::LineEnding),
        _ => return Err(FramingError::ChunkExtension),
    })
}

/// Where a trailer field line is (RFC 9112 §7.1.2: trailer fields are
/// field lines, `token ":" OWS field-value OWS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrailerLine {
    /// At the start of a line: a field name, or CR for the empty line that
    /// ends the section. Whitespace here would be obs-fold: refused.
    Start,
    Name,
    Value,
    /// CR ended a field line; LF must follow.
    FieldLf,
    /// CR on an empty line; LF ends the body.
    EndLf,
}

/// One byte of chunk framing (RFC 9112 §7.1):
///
/// ```text
/// chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
/// ext-val    = token / quoted-string
/// last-chunk = 1*("0") [ chunk-ext ] CRLF
/// trailer-section = *( field-line CRLF ) CRLF
/// ```
///
/// Anything else is an error, never passed on: chunk lines that two
/// implementations read differently (`2 junk`, `2;`, an unclosed quote in
/// an extension) are how requests are smuggled between a proxy and a
/// server. Whitespace is allowed only where the grammar's BWS is: before
/// `;` and around `=`, never at the end of the line.
fn framing_step(state: State, byte: u8) -> Result<State, FramingError> {
    use FramingError::{ChunkExtension, ChunkSize, LineEnding, Trailer};
    let ext = |len: u32| -> Result<u32, FramingError> {
        if len >= MAX_CHUNK_EXTENSION {
            Err(ChunkExtension)
        } else {
            Ok(len + 1)
        }
    };
    Ok(match state {
        State::ChunkSize { size, digits } => match (hex_value(byte), byte) {
            (Some(value), _) => {
                if digits >= MAX_CHUNK_SIZE_DIGITS {
                    return Err(ChunkSize);
                }
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(value)))
                    .ok_or(ChunkSize)?;
                State::ChunkSize {
                    size,
                    digits: digits + 1,
                }
            }
            _ if digits == 0 => return Err(ChunkSize),
            (None, b'\r') => State::ChunkSizeLf { size },
            (None, b';') => State::ChunkExtension {
                size,
                len: 1,
                at: Extension::Name { started: false },
            },
            (None, b' ' | b'\t') => State::ChunkExtension {
                size,
                len: 1,
                at: Extension::Gap { spaced: true },
            },
            (None, b'\n') => return Err(LineEnding),
            (None, _) => return Err(ChunkSize),
        },
        State::ChunkExtension { size, len, at } => match extension_step(at, byte)? {
            ExtensionStep::LineEnd => State::ChunkSizeLf { size },
            ExtensionStep::Next(at) => State::ChunkExtension {
                size,
                len: ext(len)?,
                at,
            },
        },
        State::ChunkSizeLf { size } => match byte {
            b'\n' if size == 0 => State::Trailer {
                line: TrailerLine::Start,
                total: 0,
            },
            b'\n' => State::ChunkData { remaining: size },
            _ => return Err(LineEnding),
        },
        State::ChunkDataCr => match byte {
            b'\r' => State::ChunkDataLf,
            _ => return Err(LineEnding),
        },
        State::ChunkDataLf => match byte {
            b'\n' => State::ChunkSize { size: 0, digits: 0 },
            _ => return Err(LineEnding),
        },
        State::Trailer { line, total } => {
            if total >= MAX_TRAILER_BYTES {
                return Err(Trailer);
            }
            let total = total + 1;
            let line = match (line, byte) {
                (TrailerLine::Start, b'\r') => TrailerLine::EndLf,
                (TrailerLine::Start | TrailerLine::Name, _) if is_tchar(byte) => TrailerLine::Name,
                (TrailerLine::Name, b':') => TrailerLine::Value,
                (TrailerLine::Value, b'\r') => TrailerLine::FieldLf,
                // field-value: visible bytes, spaces, tabs and obs-text.
                (TrailerLine::Value, b'\t' | 0x20..=0x7e | 0x80..=0xff) => TrailerLine::Value,
                (TrailerLine::FieldLf, b'\n') => TrailerLine::Start,
                (TrailerLine::EndLf, b'\n') => return Ok(State::Done),
                (_, b'\n') | (TrailerLine::FieldLf | TrailerLine::EndLf, _) => {
                    return Err(LineEnding)
                }
                _ => return Err(Trailer),
            };
            State::Trailer { line, total }
        }
        // Data and terminal states are handled by the caller.
        other => other,
    })
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token.
pub fn is_tchar(byte: u8) -> bool {
    matches!(byte,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split into pieces of `step` bytes; returns the data
    /// bytes, how many input bytes belong to the body, and the error if any.
    fn run(
        kind: BodyKind,
        input: &[u8],
        step: usize,
    ) -> (Vec<u8>, usize, Result<bool, FramingError>) {
        let mut decoder = BodyDecoder::new(kind);
        let mut data = Vec::new();
        let mut offset = 0;
        if decoder.is_complete() {
            return (data, 0, Ok(true));
        }
        while offset < input.len() {
            let end = (offset + step).min(input.len());
            let mut piece = &input[offset..end];
            while !piece.is_empty() {
                let segment = match decoder.decode(piece) {
                    Ok(segment) => segment,
                    // Where an error is noticed depends on the split; only
                    // the verdict must not.
                    Err(e) => return (Vec::new(), 0, Err(e)),
                };
                if segment.is_data {
                    data.extend_from_slice(&piece[..segment.len]);
                }
                piece = &piece[segment.len..];
                offset += segment.len;
                if segment.complete {
                    return (data, offset, Ok(true));
                }
            }
        }
        (data, offset, Ok(false))
    }

    /// Every split of the input gives the same answer as one big read.
    fn check_all_splits(
        kind: BodyKind,
        input: &[u8],
    ) -> (Vec<u8>, usize, Result<bool, FramingError>) {
        let whole = run(kind, input, input.len().max(1));
        for step in 1..input.len().max(2) {
            assert_eq!(run(kind, input, step), whole, "split every {step} bytes");
        }
        whole
    }

    macro_rules! body {
        ($name:ident, $kind:expr, $input:expr, |$data:ident, $used:ident, $result:ident| $check:block) => {
            #[test]
            fn $name() {
                let ($data, $used, $result) = check_all_splits($kind, $input);
                $check
            }
        };
    }

    // ===== Content-Length =====

    body!(
        length_stops_at_the_boundary,
        BodyKind::Length(5),
        b"helloGET / HTTP/1.1\r\n",
        |data, used, result| {
            assert_eq!(data, b"hello");
            assert_eq!(used, 5);
            assert_eq!(result, Ok(true));
        }
    );

    body!(
        length_zero_is_complete_at_once,
        BodyKind::Length(0),
        b"GET",
        |data, used, result| {
            assert!(data.is_empty());
            assert_eq!(used, 0);
            assert_eq!(result, Ok(true));
        }
    );

    body!(
        length_partial_wants_more,
        BodyKind::Length(10),
        b"abc",
        |data, used, result| {
            assert_eq!(data, b"abc");
            assert_eq!(used, 3);
            assert_eq!(result, Ok(false));
        }
    );

    // ===== chunked =====

    body!(
        chunked_simple,
        BodyKind::Chunked,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
        |data, used, result| {
            assert_eq!(data, b"hello world");
            assert_eq!(used, 26);
            assert_eq!(result, Ok(true));
        }
    );

    body!(
        chunked_with_extension_and_trailers,
        BodyKind::Chunked,
        b"A;name=\"v\"\r\n0123456789\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
        |data, used, result| {
            assert_eq!(data, b"0123456789");
            assert_eq!(used, 55);
            assert_eq!(result, Ok(true));
        }
    );

    body!(
        chunked_upper_hex,
        BodyKind::Chunked,
        b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
        |data, _used, result| {
            assert_eq!(data.len(), 31);
            assert_eq!(result, Ok(true));
        }
    );

    body!(
        chunked_rejects_bare_lf_after_size,
        BodyKind::Chunked,
        b"5\nhello\r\n0\r\n\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::LineEnding));
        }
    );

    body!(
        chunked_rejects_missing_crlf_after_data,
        BodyKind::Chunked,
        b"5\r\nhelloX\r\n0\r\n\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::LineEnding));
        }
    );

    body!(
        chunked_rejects_empty_size,
        BodyKind::Chunked,
        b"\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::ChunkSize));
        }
    );

    body!(
        chunked_rejects_signed_size,
        BodyKind::Chunked,
        b"-5\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::ChunkSize));
        }
    );

    body!(
        chunked_rejects_too_many_digits,
        BodyKind::Chunked,
        b"00000000000000001\r\nx",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::ChunkSize));
        }
    );

    body!(
        chunked_rejects_bare_lf_in_trailers,
        BodyKind::Chunked,
        b"0\r\nX: y\n\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::LineEnding));
        }
    );

    body!(
        chunked_rejects_control_bytes_in_trailers,
        BodyKind::Chunked,
        b"0\r\nX: \x00\r\n\r\n",
        |_d, _u, result| {
            assert_eq!(result, Err(FramingError::Trailer));
        }
    );

    /// Chunk lines and trailers that RFC 9112 §7.1 refuses: each is an
    /// error for every split of the input (issue 12: they used to pass).
    #[test]
    fn malformed_chunk_lines_and_trailers_are_refused() {
        for (input, error) in [
            (
                &b"2 junk\r\nab\r\n0\r\n\r\n"[..],
                FramingError::ChunkExtension,
            ),
            (b"2;\r\nab\r\n0\r\n\r\n", FramingError::ChunkExtension),
            (
                b"a \r\n0123456789\r\n0\r\n\r\n",
                FramingError::ChunkExtension,
            ),
            (b"25  \r\n", FramingError::ChunkExtension),
            (
                b"5;name=\"unclosed; quote\r\nhello\r\n0\r\n\r\n",
                FramingError::ChunkExtension,
            ),
            (
                b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
                FramingError::ChunkExtension,
            ),
            (
                b"5;a=b c\r\nhello\r\n0\r\n\r\n",
                FramingError::ChunkExtension,
            ),
            (b"5;a=\r\nhello\r\n0\r\n\r\n", FramingError::ChunkExtension),
            (b"5;=b\r\nhello\r\n0\r\n\r\n", FramingError::ChunkExtension),
            (b"5;a@b\r\nhello\r\n0\r\n\r\n", FramingError::ChunkExtension),
            (
                b"5;a\x01\r\nhello\r\n0\r\n\r\n",
                FramingError::ChunkExtension,
            ),
            (b"0\r\nX y\r\n\r\n", FramingError::Trailer),
            (b"0\r\n y\r\n\r\n", FramingError::Trailer),
            (b"0\r\n: y\r\n\r\n", FramingError::Trailer),
            (b"0\r\nX : y\r\n\r\n", FramingError::Trailer),
            (b"0\r\nX: y\r\n z\r\n\r\n", FramingError::Trailer),
        ] {
            assert_eq!(
                check_all_splits(BodyKind::Chunked, input).2,
                Err(error),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Extensions as the grammar allows them, BWS around `;` and `=`
    /// included, and trailers with any field value.
    #[test]
    fn well_formed_extensions_and_trailers_are_accepted() {
        for input in [
            &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
            b"5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
            b"5\t;a=\"q \\\" ;x\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\"\r\nhello\r\n0;last=1\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-Sum: a b\t\r\nY:\r\n\r\n",
        ] {
            let (data, used, result) = check_all_splits(BodyKind::Chunked, input);
            assert_eq!(result, Ok(true), "{}", String::from_utf8_lossy(input));
            assert_eq!(data, b"hello");
            assert_eq!(used, input.len());
        }
    }

    #[test]
    fn chunked_size_overflow_is_an_error() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(decoder.decode(b"ffffffffffffffff").map(|s| s.len), Ok(16));
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        // 16 digits fit only because u64 holds them; a 17th is refused.
        assert_eq!(
            decoder.decode(b"fffffffffffffffff"),
            Err(FramingError::ChunkSize)
        );
    }

    #[test]
    fn chunk_extension_is_bounded() {
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_CHUNK_EXTENSION as usize + 1));
        assert_eq!(
            run(BodyKind::Chunked, &input, 4096).2,
            Err(FramingError::ChunkExtension)
        );
    }

    #[test]
    fn trailer_section_is_bounded() {
        let mut input = b"0\r\n".to_vec();
        for _ in 0..1000 {
            input.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            run(BodyKind::Chunked, &input, 4096).2,
            Err(FramingError::Trailer)
        );
    }

    // ===== end of stream =====

    #[test]
    fn until_close_ends_only_on_eof() {
        let mut decoder = BodyDecoder::new(BodyKind::UntilClose);
        let segment = decoder.decode(b"abc").unwrap();
        assert_eq!((segment.len, segment.complete), (3, false));
        assert_eq!(decoder.finish_on_eof(), Ok(()));
        assert!(decoder.is_complete());
    }

    #[test]
    fn eof_inside_a_length_body_is_truncation() {
        let mut decoder = BodyDecoder::new(BodyKind::Length(10));
        decoder.decode(b"abc").unwrap();
        assert_eq!(decoder.finish_on_eof(), Err(FramingError::Truncated));
    }

    #[test]
    fn random_chunked_bodies_decode_the_same_for_any_split() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut encoded = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..(next() % 5) {
                let len = (next() % 40) as usize + 1;
                let chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                encoded.extend_from_slice(format!("{len:x}\r\n").as_bytes());
                encoded.extend_from_slice(&chunk);
                encoded.extend_from_slice(b"\r\n");
                expected.extend_from_slice(&chunk);
            }
            encoded.extend_from_slice(b"0\r\n\r\n");
            let total = encoded.len();
            encoded.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            for step in [1, 2, 3, 7, 64, 4096] {
                let (data, used, result) = run(BodyKind::Chunked, &encoded, step);
                assert_eq!(result, Ok(true));
                assert_eq!(used, total);
                assert_eq!(data, expected);
            }
        }
    }
}
