//! `/metrics` over HTTP/1.1, on a thread of its own with a mio loop, no
//! async runtime. Every request is bounded: in size ([`MAX_REQUEST`]), in
//! time ([`REQUEST_TIMEOUT`] from accept to the last byte of the answer),
//! and in number ([`MAX_CLIENTS`] at once); one answer per connection, then
//! it closes. A scraper that trickles its request or reads its answer
//! slowly holds one slot until its time is up, and never a server's
//! worker. httparse parses the request; anything but `GET /metrics` (or
//! `HEAD`) gets 404 or 405.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use netlab::metrics::{Format, Registry};

/// The largest request taken: a request line and headers.
pub const MAX_REQUEST: usize = 16 * 1024;
/// From accept to the end of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CLIENTS: usize = 64;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(usize::MAX);

/// The endpoint's socket, bound (before privileges are dropped) but not
/// yet served (threads start after daemonizing).
pub struct Bound {
    listener: std::net::TcpListener,
}

impl Bound {
    pub fn bind(addr: SocketAddr) -> io::Result<Bound> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        socket.set_nonblocking(true)?;
        Ok(Bound {
            listener: socket.into(),
        })
    }

    /// Serves `registry` until [`MetricsServer::stop`].
    pub fn serve(self, registry: Registry) -> io::Result<MetricsServer> {
        let addr = self.listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = TcpListener::from_std(self.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut endpoint = Endpoint {
            poll,
            listener,
            clients: slab::Slab::new(),
            registry,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || endpoint.run())?;
        log::info!("metrics served at http://{addr}/metrics");
        Ok(MetricsServer {
            thread: Some(thread),
            waker,
            stop,
        })
    }
}

/// The running endpoint; dropping it stops it.
pub struct MetricsServer {
    thread: Option<JoinHandle<()>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct Client {
    stream: TcpStream,
    deadline: Instant,
    request: Vec<u8>,
    /// The answer, once there is one, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
}

struct Endpoint {
    poll: Poll,
    listener: TcpListener,
    clients: slab::Slab<Client>,
    registry: Registry,
    stop: Arc<AtomicBool>,
}

impl Endpoint {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Acquire) {
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("metrics: poll failed, /metrics is no longer served: {e}");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(t) => self.serve(t - 1),
                }
            }
            self.sweep();
        }
    }

    fn accept(&mut self) {
        while self.clients.len() < MAX_CLIENTS {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.clients.vacant_entry();
                    let token = Token(entry.key() + 1);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(Client {
                            stream,
                            deadline: Instant::now() + REQUEST_TIMEOUT,
                            request: Vec::new(),
                            answer: None,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("metrics: accept: {e}");
                    return;
                }
            }
        }
        // Full: the rest wait in the backlog until a slot frees (the
        // listener is edge-triggered, so the sweep looks again).
    }

    /// Reads what the client sent, answers once the request is whole, and
    /// writes the answer as the socket takes it.
    fn serve(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.answer.is_none() {
            let mut buf = [0u8; 4096];
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => {
                        // Closed before its request was whole.
                        self.close(key);
                        return;
                    }
                    Ok(n) => {
                        let room = MAX_REQUEST + 1 - client.request.len().min(MAX_REQUEST + 1);
                        client.request.extend_from_slice(&buf[..n.min(room)]);
                        if client.request.len() > MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.close(key);
                        return;
                    }
                }
            }
            match answer(&client.request, &self.registry) {
                None => return,
                Some(bytes) => {
                    client.answer = Some((bytes, 0));
                    let token = Token(key + 1);
                    let _ = self.poll.registry().reregister(
                        &mut client.stream,
                        token,
                        Interest::WRITABLE,
                    );
                }
            }
        }
        let Some((bytes, written)) = &mut client.answer else {
            return;
        };
        while *written < bytes.len() {
            match client.stream.write(&bytes[*written..]) {
                Ok(0) => break,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(key);
    }

    fn close(&mut self, key: usize) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Closes clients past their time; accepts those the limit held back.
    fn sweep(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(k, _)| k)
            .collect();
        for key in late {
            log::debug!("metrics: closing a client that took longer than {REQUEST_TIMEOUT:?}");
            self.close(key);
        }
        if self.clients.len() < MAX_CLIENTS {
            self.accept();
        }
    }
}

/// The answer to `request`, or `None` while it is incomplete.
fn answer(request: &[u8], registry: &Registry) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(request);
    let too_large = request.len() > MAX_REQUEST;
    match parsed {
        Ok(httparse::Status::Partial) if !too_large => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Some(response(
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                &[],
                format!(
                    "the request is larger than {MAX_REQUEST} bytes or has more than 64 headers\n"
                )
                .as_bytes(),
                true,
            ));
        }
        Err(e) => {
            return Some(response(
                "400 Bad Request",
                "text/plain; charset=utf-8",
                &[],
                format!("not an HTTP request: {e}\n").as_bytes(),
                true,
            ));
        }
        Ok(httparse::Status::Complete(_)) => {}
    }
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let head = method == "HEAD";
    if path != "/metrics" && path != "/" {
        return Some(response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            &[],
            b"not found; netlabd serves /metrics\n",
            !head,
        ));
    }
    if method != "GET" && !head {
        return Some(response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET, HEAD")],
            b"only GET and HEAD\n",
            true,
        ));
    }
    if path == "/" {
        return Some(response(
            "200 OK",
            "text/html; charset=utf-8",
            &[],
            b"<html><head><title>netlabd</title></head><body><p><a href=\"/metrics\">/metrics</a></p></body></html>\n",
            !head,
        ));
    }
    let accept = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("accept"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let format = Format::from_accept(accept);
    let body = registry.encode(format);
    Some(response(
        "200 OK",
        format.content_type(),
        &[],
        body.as_bytes(),
        !head,
    ))
}

fn response(
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(answer: &[u8]) -> String {
        let text = String::from_utf8_lossy(answer);
        text.lines().next().unwrap_or("").to_owned()
    }

    #[test]
    fn requests_are_answered_by_path_method_and_size() {
        let r = Registry::new();
        assert_eq!(
            answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", &r),
            None,
            "partial"
        );
        let ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r).unwrap();
        assert_eq!(status(&ok), "HTTP/1.1 200 OK");
        assert!(String::from_utf8_lossy(&ok).contains("version=0.0.4"));
        assert!(String::from_utf8_lossy(&ok).contains("netlab_build_info"));
        let om = answer(
            b"GET /metrics?x=1 HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
            &r,
        )
        .unwrap();
        let om = String::from_utf8_lossy(&om);
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("# EOF\n"));
        let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &r).unwrap();
        assert!(String::from_utf8_lossy(&head).ends_with("\r\n\r\n"));
        assert_eq!(
            status(&answer(b"GET /nope HTTP/1.1\r\n\r\n", &r).unwrap()),
            "HTTP/1.1 404 Not Found"
        );
        let post = answer(b"POST /metrics HTTP/1.1\r\n\r\n", &r).unwrap();
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(String::from_utf8_lossy(&post).contains("Allow: GET, HEAD"));
        assert_eq!(
            status(&answer(b"\x16\x03\x01 hello\r\n\r\n", &r).unwrap()),
            "HTTP/1.1 400 Bad Request"
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(
            status(&answer(&big, &r).unwrap()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }
}
