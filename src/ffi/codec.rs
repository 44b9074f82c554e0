//! The chat dialects' framing on its own, for C programs that do their own
//! I/O: encode one frame, and a decoder that is fed bytes and yields whole
//! frames.

use std::ffi::c_int;

use super::{
    Error, bytes_arg, copy_out, guard, guard_void, header_len_arg, netlab_status, out_arg,
};
use crate::codec::chat::bincode::LengthPrefixCodec;
use crate::codec::{Codec, FrameError, FrameReader, HeaderCodec, LineCodec};
use crate::config::defaults;

/// A chat dialect, and so a framing (but for the websocket dialect).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum netlab_dialect {
    /// A frame is a line: the payload, then '\n' (a '\r' before it is
    /// dropped when decoding).
    NETLAB_DIALECT_LINE = 0,
    /// The payload's length in decimal ASCII, left-justified and padded with
    /// spaces to `header_len` bytes, then the payload (seed 004's format).
    NETLAB_DIALECT_HEADER = 1,
    /// A 4-byte big-endian length, then the payload (the bincode dialect's
    /// framing; the payload is one bincode-encoded message).
    NETLAB_DIALECT_BINCODE = 2,
    /// RFC 6455 WebSocket after an HTTP upgrade at `/ws`, one JSON object
    /// per text message, as the listener's page speaks it in a browser.
    /// For `netlab_chat_connect` only: its frames need the upgrade and a
    /// client's masks, so the framing functions refuse it.
    NETLAB_DIALECT_WEBSOCKET = 3,
}

pub(crate) fn dialect_arg(dialect: c_int) -> Result<netlab_dialect, Error> {
    match dialect {
        0 => Ok(netlab_dialect::NETLAB_DIALECT_LINE),
        1 => Ok(netlab_dialect::NETLAB_DIALECT_HEADER),
        2 => Ok(netlab_dialect::NETLAB_DIALECT_BINCODE),
        3 => Ok(netlab_dialect::NETLAB_DIALECT_WEBSOCKET),
        other => Err(Error::invalid(format!(
            "dialect {other} is not a netlab_dialect (0 line, 1 header, 2 bincode, 3 websocket)"
        ))),
    }
}

/// The framing functions' refusal of the websocket dialect.
fn not_a_framing() -> Error {
    Error::invalid(
        "NETLAB_DIALECT_WEBSOCKET is a chat dialect, not a framing: its frames need the HTTP upgrade and a client's masks (netlab_chat_connect speaks it)",
    )
}

fn or_default(value: usize, default: usize) -> usize {
    if value == 0 { default } else { value }
}

enum Reader {
    Line(FrameReader<LineCodec>),
    Header(FrameReader<HeaderCodec>),
    Bincode(FrameReader<LengthPrefixCodec>),
}

fn framing_error(e: FrameError) -> Error {
    Error::new(
        netlab_status::NETLAB_ERR_PROTOCOL,
        format!("cannot decode: {e}"),
    )
}

/// Encodes `payload` (`payload_len` bytes) as one frame of `dialect` (a
/// `netlab_dialect` value) into `out` (`out_cap` bytes), and writes the
/// frame's length into `*out_len`.
///
/// `header_len` is used by `NETLAB_DIALECT_HEADER` only (0 means the
/// default, 10; at most 1024). A payload that the framing cannot carry (a line with a
/// '\n' in it, a length with more digits than the header has room for)
/// gives `NETLAB_ERR_INVALID`. A frame longer than
/// `out_cap` gives `NETLAB_ERR_BUFFER_TOO_SMALL`, leaves `out` untouched
/// and writes the size needed into `*out_len`.
///
/// Every pointer is borrowed for the duration of the call; `payload` and
/// `out` may be NULL when their length is 0.
///
/// # Safety
/// `payload` must be NULL or readable for `payload_len` bytes; `out` NULL or
/// writable for `out_cap` bytes; `out_len` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_frame_encode(
    dialect: c_int,
    header_len: usize,
    payload: *const u8,
    payload_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> netlab_status {
    guard(|| {
        let dialect = dialect_arg(dialect)?;
        // SAFETY (both): forwarded from the caller.
        let payload = unsafe { bytes_arg(payload, payload_len, "payload")? };
        unsafe { out_arg(out_len, "out_len")? };
        if dialect == netlab_dialect::NETLAB_DIALECT_LINE && payload.contains(&b'\n') {
            return Err(Error::invalid(
                "a line frame's payload cannot contain a newline",
            ));
        }
        let mut frame = Vec::new();
        let encoded = match dialect {
            netlab_dialect::NETLAB_DIALECT_LINE => {
                LineCodec::new(usize::MAX).encode(payload, &mut frame)
            }
            netlab_dialect::NETLAB_DIALECT_HEADER => {
                HeaderCodec::new(header_len_arg(header_len)?, usize::MAX)
                    .encode(payload, &mut frame)
            }
            netlab_dialect::NETLAB_DIALECT_BINCODE => LengthPrefixCodec {
                max_frame: usize::MAX,
            }
            .encode(payload, &mut frame),
            netlab_dialect::NETLAB_DIALECT_WEBSOCKET => return Err(not_a_framing()),
        };
        encoded.map_err(|e| Error::invalid(format!("cannot frame the payload: {e}")))?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(&frame, out, out_cap, out_len, "the frame") }
    })
}

/// An incremental decoder of one dialect's frames. Opaque: created by
/// `netlab_decoder_new`, and must eventually be freed by
/// `netlab_decoder_free`. Not for use by two threads at once.
pub struct netlab_decoder {
    reader: Reader,
    failed: Option<String>,
}

impl netlab_decoder {
    /// # Safety
    /// `ptr` is NULL or a live handle.
    unsafe fn from_ptr<'a>(ptr: *mut netlab_decoder) -> Result<&'a mut netlab_decoder, Error> {
        if ptr.is_null() {
            return Err(Error::null("decoder"));
        }
        // SAFETY: a live handle not used elsewhere, as the caller promises.
        Ok(unsafe { &mut *ptr })
    }
}

/// Creates a decoder of `dialect`'s frames (a `netlab_dialect` value).
///
/// `header_len` is used by `NETLAB_DIALECT_HEADER` only (0 means 10, at
/// most 1024);
/// `max_frame` is the longest payload accepted, in bytes (0 means 64 KiB):
/// a longer frame is an error before any of it is buffered. Any value is
/// safe: `SIZE_MAX` means no limit but memory, and then the decoder buffers
/// whatever it is fed until a frame is whole, however long its header or
/// line says it is. A peer that is not trusted should get a real limit.
///
/// On success `*out` receives a new handle, which must eventually be freed
/// by `netlab_decoder_free`.
///
/// # Safety
/// `out` must be NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_decoder_new(
    dialect: c_int,
    header_len: usize,
    max_frame: usize,
    out: *mut *mut netlab_decoder,
) -> netlab_status {
    guard(|| {
        let dialect = dialect_arg(dialect)?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { out_arg(out, "out")? };
        let max_frame = or_default(max_frame, defaults::MAX_FRAME);
        let reader = match dialect {
            netlab_dialect::NETLAB_DIALECT_LINE => {
                Reader::Line(FrameReader::new(LineCodec::new(max_frame)))
            }
            netlab_dialect::NETLAB_DIALECT_HEADER => Reader::Header(FrameReader::new(
                HeaderCodec::new(header_len_arg(header_len)?, max_frame),
            )),
            netlab_dialect::NETLAB_DIALECT_BINCODE => {
                Reader::Bincode(FrameReader::new(LengthPrefixCodec { max_frame }))
            }
            netlab_dialect::NETLAB_DIALECT_WEBSOCKET => return Err(not_a_framing()),
        };
        out.write(Box::into_raw(Box::new(netlab_decoder {
            reader,
            failed: None,
        })));
        Ok(())
    })
}

/// Gives the decoder `len` more bytes read from the peer; they are copied,
/// so `bytes` is borrowed for the duration of the call only (and may be
/// NULL when `len` is 0). Frames found in them come out of
/// `netlab_decoder_next`. Feeding invalidates the frame the last
/// `netlab_decoder_next` returned.
///
/// # Safety
/// `decoder` must be NULL or a live handle; `bytes` NULL or readable for
/// `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_decoder_feed(
    decoder: *mut netlab_decoder,
    bytes: *const u8,
    len: usize,
) -> netlab_status {
    guard(|| {
        // SAFETY (both): forwarded from the caller.
        let decoder = unsafe { netlab_decoder::from_ptr(decoder)? };
        let bytes = unsafe { bytes_arg(bytes, len, "bytes")? };
        match &mut decoder.reader {
            Reader::Line(r) => r.extend(bytes),
            Reader::Header(r) => r.extend(bytes),
            Reader::Bincode(r) => r.extend(bytes),
        }
        Ok(())
    })
}

/// Takes the next whole frame from the bytes fed so far.
///
/// When there is one, `*found` receives true and `*frame` and `*frame_len`
/// its payload (without header or delimiter). The payload is borrowed from
/// the decoder until the next call on it (`feed`, `next` or `free`); copy
/// it to keep it. When more bytes are needed, `*found` receives false and
/// `*frame`, `*frame_len` are left alone.
///
/// Bytes that cannot be framed (a frame longer than `max_frame`, a header
/// that is not a number) give `NETLAB_ERR_PROTOCOL`, and every later call
/// on this decoder gives it again: the stream is beyond repair.
///
/// # Safety
/// `decoder` must be NULL or a live handle; the other pointers NULL or
/// valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_decoder_next(
    decoder: *mut netlab_decoder,
    frame: *mut *const u8,
    frame_len: *mut usize,
    found: *mut bool,
) -> netlab_status {
    guard(|| {
        // SAFETY (all four): forwarded from the caller.
        let decoder = unsafe { netlab_decoder::from_ptr(decoder)? };
        let frame = unsafe { out_arg(frame, "frame")? };
        let frame_len = unsafe { out_arg(frame_len, "frame_len")? };
        let found = unsafe { out_arg(found, "found")? };
        if let Some(reason) = &decoder.failed {
            return Err(Error::new(
                netlab_status::NETLAB_ERR_PROTOCOL,
                reason.clone(),
            ));
        }
        let next = match &mut decoder.reader {
            Reader::Line(r) => r.next_frame(),
            Reader::Header(r) => r.next_frame(),
            Reader::Bincode(r) => r.next_frame(),
        };
        match next {
            Ok(Some(payload)) => {
                frame.write(payload.as_ptr());
                frame_len.write(payload.len());
                found.write(true);
                Ok(())
            }
            Ok(None) => {
                found.write(false);
                Ok(())
            }
            Err(e) => {
                let e = framing_error(e);
                decoder.failed = Some(e.message.clone());
                Err(e)
            }
        }
    })
}

/// Writes into `*len` how many bytes the decoder holds that are not yet
/// part of a whole frame. `decoder` is borrowed for the duration of the
/// call.
///
/// # Safety
/// `decoder` must be NULL or a live handle; `len` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_decoder_pending(
    decoder: *const netlab_decoder,
    len: *mut usize,
) -> netlab_status {
    guard(|| {
        // SAFETY (both): forwarded from the caller.
        let decoder = unsafe { netlab_decoder::from_ptr(decoder.cast_mut())? };
        let decoder = &*decoder;
        let len = unsafe { out_arg(len, "len")? };
        len.write(match &decoder.reader {
            Reader::Line(r) => r.pending().len(),
            Reader::Header(r) => r.pending().len(),
            Reader::Bincode(r) => r.pending().len(),
        });
        Ok(())
    })
}

/// Frees a decoder, and the frame it last returned. `decoder` is consumed:
/// it must not be used again. `netlab_decoder_free(NULL)` does nothing.
///
/// # Safety
/// `decoder` must be NULL or a live handle from `netlab_decoder_new`;
/// freeing it twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_decoder_free(decoder: *mut netlab_decoder) {
    guard_void(|| {
        if !decoder.is_null() {
            // SAFETY: a live handle from Box::into_raw, as the caller promises.
            drop(unsafe { Box::from_raw(decoder) });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    /// A decoder from `netlab_decoder_new`, freed on drop.
    struct Decoder(*mut netlab_decoder);

    impl Decoder {
        fn new(dialect: netlab_dialect, header_len: usize, max_frame: usize) -> Decoder {
            let mut d = ptr::null_mut();
            // SAFETY: `d` is valid for writes.
            let status =
                unsafe { netlab_decoder_new(dialect as c_int, header_len, max_frame, &mut d) };
            assert_eq!(status, netlab_status::NETLAB_OK);
            assert!(!d.is_null());
            Decoder(d)
        }

        fn feed(&mut self, bytes: &[u8]) {
            // SAFETY: a live handle; `bytes` is readable for its length.
            let status = unsafe { netlab_decoder_feed(self.0, bytes.as_ptr(), bytes.len()) };
            assert_eq!(status, netlab_status::NETLAB_OK);
        }

        /// The next frame, copied; `Ok(None)` when more bytes are needed.
        fn next(&mut self) -> Result<Option<Vec<u8>>, netlab_status> {
            let (mut frame, mut len, mut found) = (ptr::null(), 0usize, false);
            // SAFETY: a live handle; the out-parameters are valid for writes.
            let status = unsafe { netlab_decoder_next(self.0, &mut frame, &mut len, &mut found) };
            if status != netlab_status::NETLAB_OK {
                return Err(status);
            }
            // SAFETY: on found, `frame` points to `len` bytes owned by the decoder.
            Ok(found.then(|| unsafe { std::slice::from_raw_parts(frame, len) }.to_vec()))
        }

        fn pending(&self) -> usize {
            let mut len = 0;
            // SAFETY: a live handle; `len` is valid for writes.
            let status = unsafe { netlab_decoder_pending(self.0, &mut len) };
            assert_eq!(status, netlab_status::NETLAB_OK);
            len
        }
    }

    impl Drop for Decoder {
        fn drop(&mut self) {
            // SAFETY: a live handle from netlab_decoder_new, freed once.
            unsafe { netlab_decoder_free(self.0) };
        }
    }

    /// The raw-pointer paths of encoding and decoding, for Miri (which
    /// runs this crate's pure tests; the C tests cover the same from C):
    /// nothing is written outside the caller's buffer or through a NULL
    /// out-parameter, and a frame handed out points into the decoder.
    #[test]
    fn pointers_are_written_only_within_what_the_caller_gave() {
        let header = netlab_dialect::NETLAB_DIALECT_HEADER as c_int;
        let mut len = 0usize;
        // SAFETY: a NULL payload and buffer, each with length 0.
        let status =
            unsafe { netlab_frame_encode(header, 0, ptr::null(), 0, ptr::null_mut(), 0, &mut len) };
        assert_eq!(status, netlab_status::NETLAB_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, 10);
        let mut out = [0xaa_u8; 13];
        for (cap, want) in [
            (11, netlab_status::NETLAB_ERR_BUFFER_TOO_SMALL),
            (12, netlab_status::NETLAB_OK),
        ] {
            // SAFETY: the payload has 2 bytes; `out` has at least `cap`.
            let status = unsafe {
                netlab_frame_encode(
                    header,
                    0,
                    b"hi".as_ptr(),
                    2,
                    out.as_mut_ptr(),
                    cap,
                    &mut len,
                )
            };
            assert_eq!((status, len), (want, 12), "cap {cap}");
        }
        assert_eq!(&out, b"2         hi\xaa");

        let mut d = Decoder::new(netlab_dialect::NETLAB_DIALECT_LINE, 0, 0);
        d.feed(b"one\ntwo\n");
        let (mut frame, mut found) = (ptr::null(), false);
        // SAFETY: a live handle; NULL for frame_len, which must be refused
        // before anything is written.
        let status = unsafe { netlab_decoder_next(d.0, &mut frame, ptr::null_mut(), &mut found) };
        assert_eq!(status, netlab_status::NETLAB_ERR_NULL);
        assert!(frame.is_null() && !found);
        assert_eq!(d.next(), Ok(Some(b"one".to_vec())));
        assert_eq!(d.next(), Ok(Some(b"two".to_vec())));
        // SAFETY: NULL bytes with length 0 are allowed.
        let status = unsafe { netlab_decoder_feed(d.0, ptr::null(), 0) };
        assert_eq!(status, netlab_status::NETLAB_OK);
        assert_eq!(d.next(), Ok(None));
    }

    #[test]
    fn a_size_max_max_frame_decodes_lines() {
        let mut d = Decoder::new(netlab_dialect::NETLAB_DIALECT_LINE, 0, usize::MAX);
        d.feed(b"hello\nwor");
        assert_eq!(d.next(), Ok(Some(b"hello".to_vec())));
        assert_eq!(d.next(), Ok(None));
        d.feed(b"ld\r\n");
        assert_eq!(d.next(), Ok(Some(b"world".to_vec())));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_size_max_max_frame_decodes_headers_and_waits_for_huge_ones() {
        let mut d = Decoder::new(netlab_dialect::NETLAB_DIALECT_HEADER, 20, usize::MAX);
        d.feed(format!("{:<20}hello", 5).as_bytes());
        assert_eq!(d.next(), Ok(Some(b"hello".to_vec())));
        // 20 + usize::MAX wraps to 19: this used to panic ("slice index
        // starts at 20 but ends at 19") and leave the decoder advanced.
        let header = format!("{:<20}", usize::MAX);
        d.feed(header.as_bytes());
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.pending(), 20);
        d.feed(b"more");
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.pending(), 24);
    }

    #[test]
    fn a_size_max_max_frame_decodes_length_prefixes() {
        let mut d = Decoder::new(netlab_dialect::NETLAB_DIALECT_BINCODE, 0, usize::MAX);
        d.feed(&[0, 0, 0, 2, b'h', b'i', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next(), Ok(Some(b"hi".to_vec())));
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.pending(), 4);
    }
}
