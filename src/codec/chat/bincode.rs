//! The bincode dialect: every frame is a 4-byte big-endian length, then one
//! enum encoded with bincode 2's serde support and
//! [`bincode::config::standard()`]: little-endian, variable-length integers
//! (values below 251 take one byte), the variant's index as a varint, strings
//! as a varint length and UTF-8 bytes. Decoding reads no more than the
//! frame, which is at most `max_frame` bytes (see [`DECODE_CONFIG`]).
//!
//! Client to server: [`ClientMsg`] (`Hello{name}`, `Say{text}`, `Who`,
//! `Bye`). Server to client: [`ServerMsg`]. Variant order and field types
//! are the wire format: the golden-byte tests below pin them, and a change
//! that breaks them breaks every deployed client.
//!
//! Decoding borrows strings from the frame, so a length inside a frame that
//! claims more than the frame holds fails without allocating.

use ::bincode::config::{self, Configuration};
use ::bincode::enc::write::Writer;
use ::bincode::error::EncodeError;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::chat::{ClientMsg, Event};
use crate::codec::{Codec, Frame, FrameError, FrameReader};

use super::DecodeError;

/// The bincode configuration of the wire format. Changing it changes the
/// wire format.
const CONFIG: Configuration = config::standard();

/// [`CONFIG`] with bincode's byte limit, for decoding.
///
/// How many bytes a payload may hold is `max_frame`, known at run time, and
/// it is enforced before bincode runs: the 4-byte prefix is checked against
/// `max_frame` before the payload is buffered, and bincode decodes from a
/// slice of exactly that payload, so it reads nothing past it. bincode's
/// own limit cannot be `max_frame`: it is a compile-time constant, and it
/// counts what decoding claims, each integer at its full width (a one-byte
/// varint for a u64 claims 8), not bytes read. So it is [`DECODE_LIMIT`],
/// the most that decoding the largest frame the prefix can announce can
/// claim: it never refuses a frame that fits, and refuses a length inside a
/// frame that claims more than any frame could hold, by bincode's own count
/// and before looking at the bytes. (Nothing is allocated from such a length
/// either way: strings borrow from the frame, and a roster's list grows one
/// decoded name at a time.) A limit leaves the bytes on the wire as they are.
const DECODE_CONFIG: Configuration<
    ::bincode::config::LittleEndian,
    ::bincode::config::Varint,
    ::bincode::config::Limit<DECODE_LIMIT>,
> = CONFIG.with_limit::<DECODE_LIMIT>();

/// The largest payload a prefix can announce, times the most one byte of it
/// can claim (8: a one-byte varint decoding to a u64).
const DECODE_LIMIT: usize = (u32::MAX as usize).saturating_mul(8);

/// The length prefix's size.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Frames with a 4-byte big-endian length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LengthPrefixCodec {
    /// The longest payload accepted, in bytes.
    pub max_frame: usize,
}

impl Codec for LengthPrefixCodec {
    fn decode(&self, buf: &[u8]) -> Result<Frame, FrameError> {
        let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_LEN>() else {
            return Err(FrameError::Incomplete);
        };
        let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
        if len > self.max_frame {
            return Err(FrameError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        // Compared after the prefix, not as prefix + len: that sum could
        // wrap where usize is 32 bits and max_frame is usize::MAX.
        if buf.len() - LENGTH_PREFIX_LEN < len {
            return Err(FrameError::Incomplete);
        }
        let end = LENGTH_PREFIX_LEN + len;
        Ok(Frame {
            payload: LENGTH_PREFIX_LEN..end,
            len: end,
        })
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let too_long = FrameError::TooLong {
            len: payload.len(),
            max: self.max_frame,
        };
        if payload.len() > self.max_frame {
            return Err(too_long);
        }
        let len = u32::try_from(payload.len()).map_err(|_| too_long)?;
        out.reserve(LENGTH_PREFIX_LEN + payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// Client to server, on the wire. Mirrors [`ClientMsg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum WireClientMsg<'a> {
    Hello { name: &'a str },
    Say { text: &'a str },
    Who,
    Bye,
}

impl<'a> From<WireClientMsg<'a>> for ClientMsg<'a> {
    fn from(msg: WireClientMsg<'a>) -> ClientMsg<'a> {
        match msg {
            WireClientMsg::Hello { name } => ClientMsg::Hello { name },
            WireClientMsg::Say { text } => ClientMsg::Say { text },
            WireClientMsg::Who => ClientMsg::Who,
            WireClientMsg::Bye => ClientMsg::Bye,
        }
    }
}

impl<'a> From<ClientMsg<'a>> for WireClientMsg<'a> {
    fn from(msg: ClientMsg<'a>) -> WireClientMsg<'a> {
        match msg {
            ClientMsg::Hello { name } => WireClientMsg::Hello { name },
            ClientMsg::Say { text } => WireClientMsg::Say { text },
            ClientMsg::Who => WireClientMsg::Who,
            ClientMsg::Bye => WireClientMsg::Bye,
        }
    }
}

/// Server to client, on the wire, with strings borrowed from the frame (or
/// from the [`Event`] being encoded). `code` is an
/// [`ErrorCode`](crate::chat::ErrorCode) number; a client keeps
/// codes it does not know as numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg<'a> {
    Welcome {
        id: u64,
        addr: &'a str,
        online: u32,
    },
    Message {
        from: &'a str,
        text: &'a str,
    },
    Joined {
        name: &'a str,
        addr: &'a str,
        online: u32,
    },
    Left {
        name: &'a str,
        online: u32,
    },
    Roster {
        #[serde(borrow, deserialize_with = "deserialize_names")]
        names: Vec<&'a str>,
    },
    Error {
        code: u16,
        reason: &'a str,
    },
    /// News about the room itself (a cluster's link down or back). Added
    /// after the others, so the earlier variants keep their numbers.
    Notice {
        text: &'a str,
    },
}

impl<'a> ServerMsg<'a> {
    /// The wire form of `event`. Only a roster allocates (its list).
    pub fn from_event(event: &'a Event) -> ServerMsg<'a> {
        match event {
            Event::Welcome {
                id, addr, online, ..
            } => ServerMsg::Welcome {
                id: *id,
                addr,
                online: *online,
            },
            Event::Message { from, text } => ServerMsg::Message { from, text },
            // A member of another node: its `addr` says which (the hub
            // writes "ADDR on NODE"); `Left` has no field for it.
            Event::Joined {
                name, addr, online, ..
            } => ServerMsg::Joined {
                name,
                addr,
                online: *online,
            },
            Event::Left { name, online, .. } => ServerMsg::Left {
                name,
                online: *online,
            },
            Event::Roster { names } => ServerMsg::Roster {
                names: names.iter().map(|n| &**n).collect(),
            },
            Event::Error { code, reason } => ServerMsg::Error {
                code: code.code(),
                reason,
            },
            Event::Notice { text } => ServerMsg::Notice { text },
        }
    }
}

/// A roster's names, grown as they decode: serde would reserve room for as
/// many names as the frame claims (up to a megabyte) before reading one.
fn deserialize_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'de str>, D::Error> {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<&'de str>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of names")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<&'de str>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element()? {
                names.push(name);
            }
            Ok(names)
        }
    }
    d.deserialize_seq(Names)
}

/// The bincode dialect's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BincodeChat {
    /// The longest frame a client may send, length prefix excluded.
    pub max_frame: usize,
}

impl BincodeChat {
    pub fn new(max_frame: usize) -> BincodeChat {
        BincodeChat { max_frame }
    }

    pub fn decoder(&self) -> BincodeChatDecoder {
        BincodeChatDecoder {
            reader: FrameReader::new(LengthPrefixCodec {
                max_frame: self.max_frame,
            }),
        }
    }

    /// Appends `event` as one [`ServerMsg`] frame. Server frames are not
    /// held to `max_frame`: a roster of a big room can be longer than what a
    /// client may send, and clients should accept more than they send.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        push_frame(&ServerMsg::from_event(event), out);
    }
}

/// Appends one [`ClientMsg`] frame: what a client sends.
pub fn encode_client_msg(msg: ClientMsg<'_>, out: &mut Vec<u8>) {
    push_frame(&WireClientMsg::from(msg), out);
}

/// Appends `value` encoded, behind its length. Encoding into memory only
/// fails for a value over 4 GiB; then nothing is appended.
fn push_frame<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    let encoded = ::bincode::serde::encode_into_writer(value, VecWriter(out), CONFIG);
    let len = u32::try_from(out.len() - start - LENGTH_PREFIX_LEN);
    match (encoded, len) {
        (Ok(()), Ok(len)) => {
            if let Some(prefix) = out.get_mut(start..start + LENGTH_PREFIX_LEN) {
                prefix.copy_from_slice(&len.to_be_bytes());
            }
        }
        _ => out.truncate(start),
    }
}

/// Bincode's writer over the caller's buffer: no intermediate copy.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes one whole payload, all of it.
fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    let (value, used) = ::bincode::serde::borrow_decode_from_slice(payload, DECODE_CONFIG)
        .map_err(|e| DecodeError::bad_frame(describe(&e)))?;
    if used != payload.len() {
        let extra = payload.len() - used;
        return Err(DecodeError::bad_frame(format!(
            "bincode frame has {extra} byte{} after its message",
            if extra == 1 { "" } else { "s" }
        )));
    }
    Ok(value)
}

/// Bincode's error, said for people: its own `Display` is its `Debug`
/// (`InvalidIntegerType { expected: U32, found: Reserved }`).
fn describe(e: &::bincode::error::DecodeError) -> String {
    use ::bincode::error::DecodeError as E;
    let what = match e {
        E::UnexpectedEnd { .. } => "it ends inside a value".to_owned(),
        E::Utf8 { inner } => format!("a string is not valid UTF-8 (byte {})", inner.valid_up_to()),
        E::InvalidIntegerType { expected, found } => {
            let (byte, announces) = varint_marker(found);
            format!(
                "a number that must fit in {} starts with byte {byte}, which announces {announces}",
                integer_width(expected)
            )
        }
        E::OutsideUsizeRange(n) => format!("a length of {n} is larger than memory can hold"),
        E::LimitExceeded => "a length in it is more than any frame holds".to_owned(),
        E::InvalidBooleanValue(b) => format!("{b} is not a boolean (0 or 1)"),
        E::InvalidCharEncoding(_) => "a character is not valid UTF-8".to_owned(),
        E::UnexpectedVariant {
            type_name, found, ..
        } => {
            format!("{found} is not a variant of {type_name}")
        }
        // serde's own messages are sentences already ("invalid value:
        // integer `9`, expected variant index 0 <= i < 4").
        E::OtherString(reason) => reason.clone(),
        E::Other(reason) => (*reason).to_owned(),
        _ => "it is not a message of the bincode dialect".to_owned(),
    };
    format!("undecodable bincode frame: {what}")
}

/// How wide an integer of type `t` is, in words.
fn integer_width(t: &::bincode::error::IntegerType) -> &'static str {
    use ::bincode::error::IntegerType as T;
    match t {
        T::U8 | T::I8 => "8 bits",
        T::U16 | T::I16 => "16 bits",
        T::U32 | T::I32 => "32 bits",
        T::U64 | T::I64 | T::Usize | T::Isize => "64 bits",
        _ => "128 bits",
    }
}

/// The first byte of a varint that announces an integer of type `t`
/// (values below 251 are themselves), and what it announces.
fn varint_marker(t: &::bincode::error::IntegerType) -> (u8, &'static str) {
    use ::bincode::error::IntegerType as T;
    match t {
        T::U16 | T::I16 => (251, "a 16-bit integer"),
        T::U32 | T::I32 => (252, "a 32-bit integer"),
        T::U64 | T::I64 | T::Usize | T::Isize => (253, "a 64-bit integer"),
        T::U128 | T::I128 => (254, "a 128-bit integer"),
        // 255 is reserved: no encoder writes it.
        _ => (255, "nothing (it is reserved)"),
    }
}

/// One connection's decoder, on the server: [`ClientMsg`]s.
#[derive(Debug)]
pub struct BincodeChatDecoder {
    reader: FrameReader<LengthPrefixCodec>,
}

impl BincodeChatDecoder {
    /// Buffers bytes read from the client.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reader.extend(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed. A
    /// length over `max_frame` is refused as soon as its 4 bytes are in; a
    /// payload that does not decode, or has bytes left over, is an error.
    pub fn next_msg(&mut self) -> Result<Option<ClientMsg<'_>>, DecodeError> {
        let Some(payload) = self.reader.next_frame()? else {
            return Ok(None);
        };
        decode_payload::<WireClientMsg<'_>>(payload).map(|msg| Some(msg.into()))
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> &[u8] {
        self.reader.pending()
    }
}

/// A client's decoder: [`ServerMsg`]s from a server.
#[derive(Debug)]
pub struct BincodeServerDecoder {
    reader: FrameReader<LengthPrefixCodec>,
}

impl BincodeServerDecoder {
    /// `max_frame` should allow for a roster of the whole room (about 33
    /// bytes a name), so more than a server accepts from a client.
    pub fn new(max_frame: usize) -> BincodeServerDecoder {
        BincodeServerDecoder {
            reader: FrameReader::new(LengthPrefixCodec { max_frame }),
        }
    }

    /// Buffers bytes read from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reader.extend(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_msg(&mut self) -> Result<Option<ServerMsg<'_>>, DecodeError> {
        let Some(payload) = self.reader.next_frame()? else {
            return Ok(None);
        };
        decode_payload::<ServerMsg<'_>>(payload).map(Some)
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> &[u8] {
        self.reader.pending()
    }
}

#[cfg(test)]
mod tests {
    /// The longest frame in these tests, as configurations default to.
    const MAX: usize = 64 * 1024;

    use std::sync::Arc;

    use super::*;
    use crate::chat::ErrorCode;
    use crate::codec::chat::ChatCodec;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    /// A frame: the 4-byte big-endian length, then `payload`.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// A `Say` frame whose text claims `len` bytes, and holds one.
    fn say_claiming(len: usize) -> Vec<u8> {
        let mut payload = vec![1, 253];
        payload.extend_from_slice(&(len as u64).to_le_bytes());
        payload.push(b'x');
        frame(&payload)
    }

    /// `parts` concatenated: tags and integers as bytes, strings as bytes.
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn decode_client(stream: &[u8]) -> Result<Vec<String>, DecodeError> {
        let mut decoder = BincodeChat::new(4096).decoder();
        decoder.extend(stream);
        let mut got = Vec::new();
        while let Some(msg) = decoder.next_msg()? {
            got.push(format!("{msg:?}"));
        }
        Ok(got)
    }

    fn decode_server(stream: &[u8]) -> Result<Vec<String>, DecodeError> {
        let mut decoder = BincodeServerDecoder::new(4096);
        decoder.extend(stream);
        let mut got = Vec::new();
        while let Some(msg) = decoder.next_msg()? {
            got.push(format!("{msg:?}"));
        }
        Ok(got)
    }

    /// Client messages and their bytes, worked out by hand from bincode's
    /// standard configuration: variant index, then each string as a varint
    /// length (one byte below 251, else 251 and a little-endian u16) and its
    /// bytes.
    fn client_golden() -> Vec<(ClientMsg<'static>, Vec<u8>)> {
        let long = "x".repeat(300);
        let long: &'static str = Box::leak(long.into_boxed_str());
        vec![
            (
                ClientMsg::Hello { name: "Dian" },
                vec![0, 0, 0, 6, 0, 4, b'D', b'i', b'a', b'n'],
            ),
            (
                ClientMsg::Hello { name: "語" },
                vec![0, 0, 0, 5, 0, 3, 0xe8, 0xaa, 0x9e],
            ),
            (
                ClientMsg::Say {
                    text: "Hello World",
                },
                cat(&[&[0, 0, 0, 13, 1, 11], b"Hello World"]),
            ),
            (ClientMsg::Say { text: "" }, vec![0, 0, 0, 2, 1, 0]),
            (
                ClientMsg::Say { text: long },
                cat(&[&[0, 0, 0x01, 0x30, 1, 251, 0x2c, 0x01], long.as_bytes()]),
            ),
            (ClientMsg::Who, vec![0, 0, 0, 1, 2]),
            (ClientMsg::Bye, vec![0, 0, 0, 1, 3]),
        ]
    }

    /// Server events, the message a client decodes, and their bytes.
    fn server_golden() -> Vec<(Event, ServerMsg<'static>, Vec<u8>)> {
        vec![
            (
                Event::Welcome {
                    id: 7,
                    name: s("Dian"),
                    addr: s("127.0.0.1:5000"),
                    online: 2,
                },
                ServerMsg::Welcome {
                    id: 7,
                    addr: "127.0.0.1:5000",
                    online: 2,
                },
                cat(&[&[0, 0, 0, 18, 0, 7, 14], b"127.0.0.1:5000", &[2]]),
            ),
            (
                // Integers past one byte: 300 = 251 then u16 LE, 70000 =
                // 252 then u32 LE.
                Event::Welcome {
                    id: 300,
                    name: s("x"),
                    addr: s("a"),
                    online: 70000,
                },
                ServerMsg::Welcome {
                    id: 300,
                    addr: "a",
                    online: 70000,
                },
                vec![
                    0, 0, 0, 11, 0, 251, 0x2c, 0x01, 1, b'a', 252, 0x70, 0x11, 0x01, 0x00,
                ],
            ),
            (
                Event::Message {
                    from: s("Dian"),
                    text: s("Hello World"),
                },
                ServerMsg::Message {
                    from: "Dian",
                    text: "Hello World",
                },
                cat(&[&[0, 0, 0, 18, 1, 4], b"Dian", &[11], b"Hello World"]),
            ),
            (
                Event::Joined {
                    name: s("Ayu"),
                    addr: s("10.0.0.9:1"),
                    online: 3,
                    node: None,
                },
                ServerMsg::Joined {
                    name: "Ayu",
                    addr: "10.0.0.9:1",
                    online: 3,
                },
                cat(&[&[0, 0, 0, 17, 2, 3], b"Ayu", &[10], b"10.0.0.9:1", &[3]]),
            ),
            (
                Event::Left {
                    name: s("Ayu"),
                    online: 2,
                    node: None,
                },
                ServerMsg::Left {
                    name: "Ayu",
                    online: 2,
                },
                cat(&[&[0, 0, 0, 6, 3, 3], b"Ayu", &[2]]),
            ),
            (
                Event::Roster {
                    names: vec![s("Dian"), s("Rafi")],
                },
                ServerMsg::Roster {
                    names: vec!["Dian", "Rafi"],
                },
                cat(&[&[0, 0, 0, 12, 4, 2, 4], b"Dian", &[4], b"Rafi"]),
            ),
            (
                Event::Notice { text: s("link up") },
                ServerMsg::Notice { text: "link up" },
                cat(&[&[0, 0, 0, 9, 6, 7], b"link up"]),
            ),
            (
                Event::Roster { names: vec![] },
                ServerMsg::Roster { names: vec![] },
                vec![0, 0, 0, 2, 4, 0],
            ),
            (
                Event::error(ErrorCode::NameTaken, "name is taken"),
                ServerMsg::Error {
                    code: 1,
                    reason: "name is taken",
                },
                cat(&[&[0, 0, 0, 16, 5, 1, 13], b"name is taken"]),
            ),
            (
                Event::error(ErrorCode::ServerShutdown, ""),
                ServerMsg::Error {
                    code: 7,
                    reason: "",
                },
                vec![0, 0, 0, 3, 5, 7, 0],
            ),
        ]
    }

    #[test]
    fn client_messages_golden_bytes() {
        for (msg, bytes) in client_golden() {
            let mut out = Vec::new();
            encode_client_msg(msg, &mut out);
            assert_eq!(out, bytes, "encoding {msg:?}");
            let mut decoder = BincodeChat::new(MAX).decoder();
            decoder.extend(&bytes);
            assert_eq!(decoder.next_msg(), Ok(Some(msg)), "decoding {msg:?}");
            assert_eq!(decoder.next_msg(), Ok(None));
        }
    }

    #[test]
    fn server_messages_golden_bytes() {
        for (event, msg, bytes) in server_golden() {
            let mut out = Vec::new();
            BincodeChat::new(MAX).encode(&event, &mut out);
            assert_eq!(out, bytes, "encoding {event:?}");
            let mut decoder = BincodeServerDecoder::new(4096);
            decoder.extend(&bytes);
            assert_eq!(
                decoder.next_msg(),
                Ok(Some(msg.clone())),
                "decoding {event:?}"
            );
            assert_eq!(decoder.next_msg(), Ok(None));
        }
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let stream: Vec<u8> = client_golden().into_iter().flat_map(|(_, b)| b).collect();
        let whole = decode_client(&stream).unwrap();
        assert_eq!(whole.len(), 7);
        for cut in 0..=stream.len() {
            let mut decoder = BincodeChat::new(4096).decoder();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                decoder.extend(part);
                while let Some(msg) = decoder.next_msg().unwrap() {
                    got.push(format!("{msg:?}"));
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }

        let stream: Vec<u8> = server_golden()
            .into_iter()
            .flat_map(|(_, _, b)| b)
            .collect();
        let whole = decode_server(&stream).unwrap();
        assert_eq!(whole.len(), 10);
        let mut decoder = BincodeServerDecoder::new(4096);
        let mut got = Vec::new();
        for byte in stream.chunks(1) {
            decoder.extend(byte);
            while let Some(msg) = decoder.next_msg().unwrap() {
                got.push(format!("{msg:?}"));
            }
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn oversized_lengths_are_refused_from_the_prefix_alone() {
        for (prefix, len) in [([0, 0, 0x10, 0x01], 4097u64), ([0xff; 4], 0xffff_ffff)] {
            let mut decoder = BincodeChat::new(4096).decoder();
            decoder.extend(&prefix);
            let e = decoder.next_msg().unwrap_err();
            assert_eq!(e.code(), ErrorCode::FrameTooLarge);
            assert_eq!(
                e.reason(),
                format!("frame of {len} bytes is longer than the maximum of 4096")
            );
        }
        // Exactly the maximum is a frame like any other (here, a bad one).
        let mut exact = vec![0, 0, 0, 3, 1, 1, b'x'];
        let mut decoder = BincodeChat::new(3).decoder();
        decoder.extend(&exact);
        assert_eq!(decoder.next_msg(), Ok(Some(ClientMsg::Say { text: "x" })));
        exact[3] = 4;
        let mut decoder = BincodeChat::new(3).decoder();
        decoder.extend(&exact);
        assert_eq!(
            decoder.next_msg().unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn malformed_frames_are_refused_with_their_reason() {
        for (stream, reason) in [
            (
                frame(&[]),
                "undecodable bincode frame: it ends inside a value",
            ),
            (
                frame(&[9]),
                "undecodable bincode frame: invalid value: integer `9`, expected variant index 0 <= i < 4",
            ),
            // A string that claims more than the frame holds.
            (
                frame(&[0, 5, b'a']),
                "undecodable bincode frame: it ends inside a value",
            ),
            // ... by far, more than any frame holds: refused by bincode's
            // own limit, without allocating for it.
            (
                frame(&[1, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
                "undecodable bincode frame: a length in it is more than any frame holds",
            ),
            // The limit is exactly the most any frame can claim: the variant
            // (a u32, 4) and the length (a u64, 8), then the string.
            (
                say_claiming(DECODE_LIMIT - 12),
                "undecodable bincode frame: it ends inside a value",
            ),
            (
                say_claiming(DECODE_LIMIT - 11),
                "undecodable bincode frame: a length in it is more than any frame holds",
            ),
            (
                frame(&[1, 2, b'a', 0xff]),
                "undecodable bincode frame: a string is not valid UTF-8 (byte 1)",
            ),
            (
                frame(&[255]),
                "undecodable bincode frame: a number that must fit in 32 bits starts with byte 255, which announces nothing (it is reserved)",
            ),
            (
                frame(&[253, 0, 0, 0, 0, 0, 0, 0, 0]),
                "undecodable bincode frame: a number that must fit in 32 bits starts with byte 253, which announces a 64-bit integer",
            ),
            (frame(&[2, 0]), "bincode frame has 1 byte after its message"),
            (
                frame(&[0, 1, b'a', b'b', b'c']),
                "bincode frame has 2 bytes after its message",
            ),
        ] {
            let e = decode_client(&stream).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadFrame, "{stream:?}");
            assert_eq!(e.reason(), reason, "{stream:?}");
        }
        // A roster claiming billions of names in a few bytes.
        let e = decode_server(&frame(&[4, 252, 0xff, 0xff, 0xff, 0xff, 1, b'a'])).unwrap_err();
        assert!(
            e.reason() == "undecodable bincode frame: it ends inside a value",
            "{e}"
        );
    }

    /// Whatever is wrong with a frame is said in words, never in Rust's
    /// debug notation: every one- and two-byte payload, both directions.
    #[test]
    fn every_refusal_is_said_in_words() {
        let mut payloads: Vec<Vec<u8>> = (0..=255u8).map(|a| vec![a]).collect();
        for a in 0..=255u8 {
            for b in [0, 1, 127, 250, 251, 252, 253, 254, 255] {
                payloads.push(vec![a, b]);
            }
        }
        for payload in payloads {
            for reason in [
                decode_client(&frame(&payload)),
                decode_server(&frame(&payload)),
            ]
            .into_iter()
            .filter_map(Result::err)
            .map(|e| e.reason().to_owned())
            {
                assert!(
                    !reason.contains('{') && !reason.contains("::"),
                    "{payload:?}: {reason}"
                );
            }
        }
    }

    #[test]
    fn the_event_form_and_the_wire_form_encode_alike() {
        // ServerMsg encoded directly (as another implementation would) and
        // an Event through the dialect give the same bytes.
        for (event, msg, bytes) in server_golden() {
            let mut direct = Vec::new();
            push_frame(&msg, &mut direct);
            assert_eq!(direct, bytes, "{event:?}");
        }
    }

    #[test]
    fn errors_encode_as_server_error_messages() {
        let mut out = Vec::new();
        ChatCodec::new(crate::chat::Dialect::Bincode, MAX)
            .encode_error(&DecodeError::bad_frame("no"), &mut out);
        assert_eq!(out, [0, 0, 0, 5, 5, 4, 2, b'n', b'o']);
    }

    #[test]
    fn length_prefix_codec_refuses_what_it_would_refuse_to_decode() {
        let codec = LengthPrefixCodec { max_frame: 3 };
        let mut out = Vec::new();
        codec.encode(b"abc", &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
        assert!(codec.encode(b"abcd", &mut out).is_err());
        assert_eq!(out.len(), 7);
    }
}
