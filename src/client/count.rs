//! The count client: sends one message, reads back how many characters the
//! server counted in it, in any of the count service's three framings.

use std::net::SocketAddr;
use std::time::Duration;

use super::link::Link;
use super::{ClientError, ClientOptions, tcp};
use crate::codec::{Codec, FrameError, FrameReader, HeaderCodec, LineCodec};

/// The longest reply that can hold a `u64` (20 digits), with room for a
/// `\r\n` or blanks around it.
const MAX_REPLY_LEN: usize = 32;

/// How a message and its count travel: the count service's `framing`.
pub use crate::service::CountFraming;

/// Asks the count server at `addr` how many characters `message` has.
///
/// Each blocking step (connect, every read and write) gives up after
/// `timeout`. A reply that is not a decimal number is a
/// [`ClientError::Protocol`]; a connection closed before the whole reply is
/// [`ClientError::Closed`].
pub fn count(
    addr: SocketAddr,
    message: &[u8],
    framing: CountFraming,
    timeout: Duration,
) -> Result<u64, ClientError> {
    count_with(addr, message, framing, &ClientOptions::new(timeout))
}

/// [`count`] with `options`: over TLS when they say so.
pub fn count_with(
    addr: SocketAddr,
    message: &[u8],
    framing: CountFraming,
    options: &ClientOptions,
) -> Result<u64, ClientError> {
    let timeout = options.timeout;
    tcp::check_timeout(timeout)?;
    let request = encode_request(message, framing)?;
    let link = Link::open(addr, options)?;
    link.write_all(&request, timeout)?;
    let reply = match framing {
        CountFraming::Line => read_frame(&link, LineCodec::new(MAX_REPLY_LEN), timeout)?,
        CountFraming::Header { header_len } => {
            read_frame(&link, HeaderCodec::new(header_len, MAX_REPLY_LEN), timeout)?
        }
        CountFraming::Chunk => {
            link.finish_writing(timeout)?;
            link.read_to_end(MAX_REPLY_LEN, timeout)?
        }
    };
    parse_count(&reply).ok_or_else(|| ClientError::Protocol {
        context: format!("count reply from {addr}"),
        detail: format!(
            "{:?} is not a decimal number",
            String::from_utf8_lossy(&reply)
        ),
    })
}

fn encode_request(message: &[u8], framing: CountFraming) -> Result<Vec<u8>, ClientError> {
    let mut request = Vec::with_capacity(message.len() + 16);
    match framing {
        CountFraming::Line => {
            if message.contains(&b'\n') {
                return Err(ClientError::invalid(
                    "a message sent with line framing cannot contain a newline",
                ));
            }
            request.extend_from_slice(message);
            request.push(b'\n');
        }
        CountFraming::Header { header_len } => {
            if header_len == 0 {
                return Err(ClientError::invalid("header length must be at least 1"));
            }
            HeaderCodec::new(header_len, usize::MAX)
                .encode(message, &mut request)
                .map_err(|e| {
                    ClientError::invalid(format!(
                        "message of {} bytes cannot be framed with a {header_len}-byte header: {e}",
                        message.len()
                    ))
                })?;
        }
        CountFraming::Chunk => {
            if message.is_empty() {
                // An empty chunk is no read at all for the server: nothing would come back.
                return Err(ClientError::invalid(
                    "chunk framing cannot send an empty message",
                ));
            }
            request.extend_from_slice(message);
        }
    }
    Ok(request)
}

/// Reads until one whole frame has arrived and returns its payload.
fn read_frame<C: Codec>(link: &Link, codec: C, timeout: Duration) -> Result<Vec<u8>, ClientError> {
    let mut reader = FrameReader::new(codec);
    let mut buf = [0u8; 256];
    loop {
        match reader.next_frame() {
            Ok(Some(payload)) => return Ok(payload.to_vec()),
            Ok(None) => {}
            Err(e) => return Err(malformed(link.peer(), &e)),
        }
        let n = link.read_some(&mut buf, timeout)?;
        if n == 0 {
            return Err(ClientError::Closed {
                context: format!("count reply from {}", link.peer()),
            });
        }
        reader.extend(&buf[..n]);
    }
}

fn malformed(peer: SocketAddr, e: &FrameError) -> ClientError {
    ClientError::Protocol {
        context: format!("count reply from {peer}"),
        detail: e.to_string(),
    }
}

/// Digits, with blanks around them tolerated (a chunk reply may end in `\n`).
fn parse_count(reply: &[u8]) -> Option<u64> {
    let digits = reply.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ErrorKind;
    use crate::client::test_servers::TcpServer;
    use std::io::{BufRead, BufReader, Read, Write};

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Counts characters as the count service does with `unit = "chars"`.
    fn chars(bytes: &[u8]) -> usize {
        String::from_utf8_lossy(bytes).chars().count()
    }

    fn line_server() -> TcpServer {
        TcpServer::start(|stream| {
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut writer = stream;
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line)? > 0 {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                writeln!(writer, "{}", chars(text))?;
                line.clear();
            }
            Ok(())
        })
    }

    #[test]
    fn line_framing() {
        let server = line_server();
        assert_eq!(
            count(server.addr, b"hello", CountFraming::Line, TIMEOUT).unwrap(),
            5
        );
        assert_eq!(
            count(
                server.addr,
                "héllo wörld".as_bytes(),
                CountFraming::Line,
                TIMEOUT
            )
            .unwrap(),
            11
        );
        assert_eq!(
            count(server.addr, b"", CountFraming::Line, TIMEOUT).unwrap(),
            0
        );
    }

    #[test]
    fn line_framing_refuses_a_newline_before_connecting() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err = count(addr, b"two\nlines", CountFraming::Line, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("newline"), "{err}");
    }

    #[test]
    fn header_framing() {
        let server = TcpServer::start(|mut stream| {
            // Reads one frame with a 5-byte header, answers in kind.
            let mut header = [0u8; 5];
            stream.read_exact(&mut header)?;
            let len: usize = std::str::from_utf8(&header)
                .ok()
                .and_then(|h| h.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other("bad header"))?;
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload)?;
            let n = chars(&payload).to_string();
            write!(stream, "{:<5}{n}", n.len())
        });
        let framing = CountFraming::Header { header_len: 5 };
        assert_eq!(
            count(server.addr, b"two\nlines ok", framing, TIMEOUT).unwrap(),
            12
        );
    }

    #[test]
    fn header_framing_rejects_messages_the_header_cannot_describe() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let framing = CountFraming::Header { header_len: 1 };
        let err = count(addr, &[b'a'; 10], framing, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let framing = CountFraming::Header { header_len: 0 };
        assert_eq!(
            count(addr, b"a", framing, TIMEOUT).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn chunk_framing_half_closes_and_reads_the_bare_number() {
        let server = TcpServer::start(|mut stream| {
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            write!(stream, "{}", chars(&got))
        });
        assert_eq!(
            count(server.addr, b"hello world", CountFraming::Chunk, TIMEOUT).unwrap(),
            11
        );
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        let server = TcpServer::start(|mut stream| {
            let mut line = [0u8; 64];
            let _ = stream.read(&mut line)?;
            stream.write_all(b"many\n")
        });
        let err = count(server.addr, b"x", CountFraming::Line, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("\"many\""), "{err}");
    }

    #[test]
    fn an_endless_reply_line_is_a_protocol_error() {
        let server = TcpServer::start(|mut stream| {
            let mut line = [0u8; 64];
            let _ = stream.read(&mut line)?;
            stream.write_all(&[b'7'; 100])
        });
        let err = count(server.addr, b"x", CountFraming::Line, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    }

    #[test]
    fn a_bad_reply_header_is_a_protocol_error() {
        let server = TcpServer::start(|mut stream| {
            let mut frame = [0u8; 64];
            let _ = stream.read(&mut frame)?;
            stream.write_all(b"xx        5")
        });
        let framing = CountFraming::Header { header_len: 10 };
        let err = count(server.addr, b"hello", framing, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    }

    #[test]
    fn a_reply_cut_short_is_closed() {
        let server = TcpServer::start(|mut stream| {
            let mut line = [0u8; 64];
            let _ = stream.read(&mut line)?;
            stream.write_all(b"12")
        });
        let err = count(server.addr, b"x", CountFraming::Line, TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    }

    #[test]
    fn parse_count_accepts_digits_only() {
        assert_eq!(parse_count(b"42"), Some(42));
        assert_eq!(parse_count(b" 42\r\n"), Some(42));
        assert_eq!(parse_count(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_count(b"18446744073709551616"), None);
        assert_eq!(parse_count(b"-1"), None);
        assert_eq!(parse_count(b"+1"), None);
        assert_eq!(parse_count(b""), None);
        assert_eq!(parse_count(b"4 2"), None);
    }
}
