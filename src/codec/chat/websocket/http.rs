//! The one HTTP request a connection of the websocket dialect makes: `GET /`
//! for the chat page, `GET /ws` to upgrade (RFC 6455 section 4.2), and a
//! short refusal for anything else. httparse reads the request; each
//! connection asks once, and is closed after any answer but the upgrade.

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::chat::WebSocketSettings;

/// The longest request, headers included. Browsers send well under 2 KiB.
pub const MAX_REQUEST: usize = 8 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 40;

/// The chat page: one HTML file with its script and style.
pub const PAGE: &str = include_str!("chat.html");

/// Where the socket is, on the page's own host.
pub const SOCKET_PATH: &str = "/ws";

/// What the server answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `101 Switching Protocols`: frames from now on.
    Upgrade(Vec<u8>),
    /// Anything else, after which the connection is closed.
    Final(Cow<'static, [u8]>),
}

/// The page's response, made once.
static PAGE_RESPONSE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
         Connection: close\r\n\r\n",
        PAGE.len()
    )
    .into_bytes();
    r.extend_from_slice(PAGE.as_bytes());
    r
});

/// Looks for a whole request at the start of `buf`, of which the first
/// `seen` bytes were looked at before and held no end; `settings` say
/// which origins may upgrade. Returns the answer
/// and the request's length, or `None` while the request is incomplete.
pub fn read(buf: &[u8], seen: usize, settings: &WebSocketSettings) -> Option<(Answer, usize)> {
    // The end may straddle what was seen: look again from 3 bytes before.
    let from = seen.saturating_sub(3);
    let end = match memchr::memmem::find(&buf[from..], b"\r\n\r\n") {
        Some(at) => from + at + 4,
        None if buf.len() > MAX_REQUEST => return Some((too_large(), buf.len())),
        None => return None,
    };
    if end > MAX_REQUEST {
        return Some((too_large(), end));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let answer = match request.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => answer(&request, settings),
        Ok(httparse::Status::Partial) => refusal(400, "Bad Request", "the request ends early", &[]),
        Err(httparse::Error::TooManyHeaders) => refusal(
            431,
            "Request Header Fields Too Large",
            &format!("a request may have at most {MAX_HEADERS} headers"),
            &[],
        ),
        Err(e) => refusal(
            400,
            "Bad Request",
            &format!("the request does not read as HTTP/1.1: {e}"),
            &[],
        ),
    };
    Some((answer, end))
}

fn too_large() -> Answer {
    refusal(
        431,
        "Request Header Fields Too Large",
        &format!("a request may be at most {MAX_REQUEST} bytes"),
        &[],
    )
}

/// What the server answers a whole request, origins allowed by `settings`.
fn answer(request: &httparse::Request<'_, '_>, settings: &WebSocketSettings) -> Answer {
    if request.method != Some("GET") {
        return refusal(
            405,
            "Method Not Allowed",
            "only GET is served here",
            &["Allow: GET"],
        );
    }
    let path = request.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match path {
        "/" | "/index.html" => Answer::Final(Cow::Borrowed(&PAGE_RESPONSE)),
        SOCKET_PATH => upgrade(request, settings),
        _ => refusal(404, "Not Found", "nothing here: the chat page is at /", &[]),
    }
}

/// The upgrade of `GET /ws`, or why not.
fn upgrade(request: &httparse::Request<'_, '_>, settings: &WebSocketSettings) -> Answer {
    let upgrade_headers = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ];
    if !has_token(request, "upgrade", "websocket") || !has_token(request, "connection", "upgrade") {
        return refusal(
            426,
            "Upgrade Required",
            "this is the chat's WebSocket; the page is at /",
            &upgrade_headers,
        );
    }
    if request.version != Some(1) {
        return refusal(
            400,
            "Bad Request",
            "a WebSocket upgrade needs HTTP/1.1",
            &[],
        );
    }
    if header(request, "sec-websocket-version").map(str::trim) != Some("13") {
        return refusal(
            426,
            "Upgrade Required",
            "only WebSocket version 13 (RFC 6455) is spoken",
            &upgrade_headers,
        );
    }
    let key = match headers(request, "sec-websocket-key").as_slice() {
        [key] if key.trim().len() == 24 => key.trim(),
        _ => {
            return refusal(
                400,
                "Bad Request",
                "Sec-WebSocket-Key must be given once, 16 bytes in base64",
                &[],
            );
        }
    };
    if let Some(origin) = header(request, "origin")
        && !origin_allowed(origin, header(request, "host"), settings)
    {
        return refusal(
            403,
            "Forbidden",
            &format!("pages from {origin} may not open this socket"),
            &[],
        );
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Answer::Upgrade(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes(),
    )
}

/// Whether a page from `origin` may open the socket: the listener's own
/// page (its origin's host and port are the request's `Host`, whatever
/// the scheme, so a TLS proxy in front changes nothing), an origin listed,
/// or any with `"*"`.
pub fn origin_allowed(origin: &str, host: Option<&str>, settings: &WebSocketSettings) -> bool {
    let origin = origin.trim();
    if settings
        .allowed_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h.trim()))
}

/// A header's value, if given exactly once and as text.
fn header<'a>(request: &httparse::Request<'_, 'a>, name: &str) -> Option<&'a str> {
    match headers(request, name).as_slice() {
        [value] => Some(value),
        _ => None,
    }
}

fn headers<'a>(request: &httparse::Request<'_, 'a>, name: &str) -> Vec<&'a str> {
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .collect()
}

/// Whether a comma-separated header lists `token` (`Connection: keep-alive, Upgrade`).
fn has_token(request: &httparse::Request<'_, '_>, name: &str, token: &str) -> bool {
    headers(request, name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A refusal: status, a line of text saying why, and extra headers.
pub fn refusal(status: u16, title: &str, why: &str, extra: &[&str]) -> Answer {
    let body = format!("{status} {title}: {why}\n");
    let mut r = format!(
        "HTTP/1.1 {status} {title}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n",
        body.len()
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(&body);
    Answer::Final(Cow::Owned(r.into_bytes()))
}
