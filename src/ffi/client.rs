//! The one-shot clients: TCP echo, UDP echo and count, into caller-owned
//! buffers.

use std::ffi::{c_char, c_int, c_void};

use super::{
    Error, addr_arg, bytes_arg, copy_out, guard, header_len_arg, millis, netlab_client_options,
    netlab_status, out_arg, out_buf_arg, str_arg,
};
use crate::client::{self, CountFraming};

/// Asked while a blocking call waits: non-zero means "give up". `data` is
/// the pointer given to `netlab_set_interrupt_check`.
pub type netlab_interrupt_check = Option<unsafe extern "C" fn(data: *mut c_void) -> c_int>;

/// Sets the calling thread's interrupt check: while a blocking call made by
/// this thread waits (`netlab_tcp_echo`, `netlab_udp_echo`, `netlab_count`,
/// `netlab_chat_connect`, `_send` and `_recv`), it calls `check(data)` at
/// least every 100 ms and whenever a signal interrupts the wait, on this
/// thread; a non-zero answer ends the call with `NETLAB_ERR_INTERRUPTED`.
/// How a program learns of Ctrl-C (a flag set by its SIGINT handler, say)
/// is up to the check. A NULL `check` removes it; without one, calls wait
/// out their timeouts in one piece.
///
/// `data` is borrowed until the check is replaced or removed, or the
/// thread ends; netlab never dereferences it. `check` must not unwind.
#[unsafe(no_mangle)]
pub extern "C" fn netlab_set_interrupt_check(
    check: netlab_interrupt_check,
    data: *mut c_void,
) -> netlab_status {
    guard(|| {
        let check = check.map(|check| -> crate::client::interrupt::InterruptCheck {
            // The pointer is the caller's, handed back to its own function.
            let data = data as usize;
            // SAFETY: the caller promises a function that can be called
            // with its data on this thread while the check is set.
            Box::new(move || unsafe { check(data as *mut c_void) } != 0)
        });
        crate::client::interrupt::set_interrupt_check(check);
        Ok(())
    })
}

/// How the count client frames a message and reads the count back, as the
/// count service's `framing` option.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum netlab_count_framing {
    /// The message is one line (it must not contain '\n'); the reply is `N\n`.
    NETLAB_COUNT_FRAMING_LINE = 0,
    /// A fixed-width ASCII length header both ways (`header_len` bytes).
    NETLAB_COUNT_FRAMING_HEADER = 1,
    /// The message is sent raw and the write side closed; the reply is the
    /// bare number (seed 001's server).
    NETLAB_COUNT_FRAMING_CHUNK = 2,
}

/// Sends `message` (`message_len` bytes) to the TCP echo server at `addr`
/// ("127.0.0.1:7007", "[::1]:7007" or "localhost:7007"), half-closes, and
/// copies everything it sends back into `reply` (`reply_cap` bytes),
/// writing the reply's length into `*reply_len`.
///
/// Each blocking step (connect, every read and write) gives up after
/// `timeout_ms` milliseconds (`NETLAB_ERR_TIMEOUT`; 0 is invalid).
///
/// The reply is read up to a bound: the larger of `reply_cap` and twice
/// `message_len` plus 64 KiB. A reply longer than `reply_cap` but within
/// that bound gives `NETLAB_ERR_BUFFER_TOO_SMALL`, leaves `reply` untouched
/// and writes the size needed into `*reply_len`, so the call can be made
/// again with a buffer that size. A reply longer than the bound cannot be
/// the echo of the message (a server that never stops sending, such as
/// chargen): reading stops there, with `NETLAB_ERR_PROTOCOL` and
/// `*reply_len` untouched, so memory and time stay bounded.
///
/// Every pointer is borrowed for the duration of the call; `message` and
/// `reply` may be NULL when their length is 0. A NULL `reply` with a
/// non-zero `reply_cap` gives `NETLAB_ERR_NULL` before anything is sent.
///
/// # Safety
/// `addr` must be NULL or NUL-terminated; `message` NULL or readable for
/// `message_len` bytes; `reply` NULL or writable for `reply_cap` bytes;
/// `reply_len` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_tcp_echo(
    addr: *const c_char,
    message: *const u8,
    message_len: usize,
    timeout_ms: u32,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> netlab_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        netlab_tcp_echo_with(
            addr,
            message,
            message_len,
            timeout_ms,
            std::ptr::null(),
            reply,
            reply_cap,
            reply_len,
        )
    }
}

/// `netlab_tcp_echo`, connecting as `options` say (TLS, ...); NULL
/// `options` is plain TCP. `options` is borrowed for the duration of the
/// call, like every other pointer.
///
/// # Safety
/// As `netlab_tcp_echo`; `options` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_tcp_echo_with(
    addr: *const c_char,
    message: *const u8,
    message_len: usize,
    timeout_ms: u32,
    options: *const netlab_client_options,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> netlab_status {
    guard(|| {
        // SAFETY (all four): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let message = unsafe { bytes_arg(message, message_len, "message")? };
        unsafe { out_arg(reply_len, "reply_len")? };
        let options = unsafe { netlab_client_options::from_ptr(options) };
        // Refused before anything is sent, not after the exchange.
        out_buf_arg(reply, reply_cap, "reply")?;
        let options = netlab_client_options::with_timeout(options, millis(timeout_ms));
        // Whatever fits the caller's buffer is read, and beyond it as much
        // as lets BUFFER_TOO_SMALL say the size needed for a plausible echo.
        let limit = reply_cap.max(client::echo_reply_limit(message.len()));
        let echoed = client::tcp_echo_with(addr, message, &options, limit)?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(&echoed, reply, reply_cap, reply_len, "the reply") }
    })
}

/// Sends `message` as one UDP datagram to the echo server at `addr` and
/// copies the first reply from that address into `reply` (`reply_cap`
/// bytes), writing its length into `*reply_len`.
///
/// Waits `timeout_ms` milliseconds for the reply (0 is invalid), then
/// resends, up to `retries` more times; then gives `NETLAB_ERR_TIMEOUT`
/// ("no reply from ADDR after N tries of T"). A reply longer than
/// `reply_cap` gives `NETLAB_ERR_BUFFER_TOO_SMALL`, leaves `reply`
/// untouched and writes the size needed into `*reply_len`.
///
/// Every pointer is borrowed for the duration of the call; `message` and
/// `reply` may be NULL when their length is 0. A NULL `reply` with a
/// non-zero `reply_cap` gives `NETLAB_ERR_NULL` before anything is sent.
///
/// # Safety
/// As `netlab_tcp_echo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_udp_echo(
    addr: *const c_char,
    message: *const u8,
    message_len: usize,
    timeout_ms: u32,
    retries: u32,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> netlab_status {
    guard(|| {
        // SAFETY (all three): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let message = unsafe { bytes_arg(message, message_len, "message")? };
        unsafe { out_arg(reply_len, "reply_len")? };
        // Refused before anything is sent, not after the exchange.
        out_buf_arg(reply, reply_cap, "reply")?;
        let echoed = client::udp_echo(addr, message, millis(timeout_ms), retries)?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(&echoed, reply, reply_cap, reply_len, "the reply") }
    })
}

/// Asks the count server at `addr` how many characters `message` has and
/// writes the answer into `*count`.
///
/// `framing` is a `netlab_count_framing` value (another value gives
/// `NETLAB_ERR_INVALID`) and must match the server's `framing`;
/// `header_len` is used by `NETLAB_COUNT_FRAMING_HEADER` only (0 means the
/// default, 10; at most 1024). Each blocking step gives up after `timeout_ms`
/// milliseconds (`NETLAB_ERR_TIMEOUT`; 0 is invalid). A reply that is not a
/// number gives `NETLAB_ERR_PROTOCOL`.
///
/// Every pointer is borrowed for the duration of the call; `message` may be
/// NULL when `message_len` is 0.
///
/// # Safety
/// `addr` must be NULL or NUL-terminated; `message` NULL or readable for
/// `message_len` bytes; `count` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_count(
    addr: *const c_char,
    message: *const u8,
    message_len: usize,
    framing: c_int,
    header_len: usize,
    timeout_ms: u32,
    count: *mut u64,
) -> netlab_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        netlab_count_with(
            addr,
            message,
            message_len,
            framing,
            header_len,
            timeout_ms,
            std::ptr::null(),
            count,
        )
    }
}

/// `netlab_count`, connecting as `options` say (TLS, ...); NULL `options`
/// is plain TCP. `options` is borrowed for the duration of the call.
///
/// # Safety
/// As `netlab_count`; `options` NULL or a live handle.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn netlab_count_with(
    addr: *const c_char,
    message: *const u8,
    message_len: usize,
    framing: c_int,
    header_len: usize,
    timeout_ms: u32,
    options: *const netlab_client_options,
    count: *mut u64,
) -> netlab_status {
    guard(|| {
        // SAFETY (all four): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let message = unsafe { bytes_arg(message, message_len, "message")? };
        let count = unsafe { out_arg(count, "count")? };
        let options = unsafe { netlab_client_options::from_ptr(options) };
        let framing = match framing {
            0 => CountFraming::Line,
            1 => CountFraming::Header {
                header_len: header_len_arg(header_len)?,
            },
            2 => CountFraming::Chunk,
            other => {
                return Err(Error::invalid(format!(
                    "framing {other} is not a netlab_count_framing (0 line, 1 header, 2 chunk)"
                )));
            }
        };
        let options = netlab_client_options::with_timeout(options, millis(timeout_ms));
        count.write(client::count_with(addr, message, framing, &options)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::netlab_last_error;
    use std::ffi::CString;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// Serves `connections` connections on 127.0.0.1:0, one after the
    /// other, with `handle`; the thread ends after the last.
    fn serve(
        connections: usize,
        handle: fn(TcpStream) -> std::io::Result<()>,
    ) -> (CString, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().take(connections).flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let _ = handle(stream);
            }
        });
        (CString::new(addr.to_string()).unwrap(), thread)
    }

    fn echo(mut stream: TcpStream) -> std::io::Result<()> {
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        stream.write_all(&got)
    }

    /// Sends without end (up to 64 MiB, so that a client that reads it all
    /// fails the test rather than the machine) and never reads.
    fn endless(mut stream: TcpStream) -> std::io::Result<()> {
        let chunk = [b'y'; 4096];
        for _ in 0..(64 << 20) / chunk.len() {
            stream.write_all(&chunk)?;
        }
        Ok(())
    }

    fn last_error() -> String {
        let mut buf = vec![0 as c_char; 512];
        // SAFETY: the buffer has buf.len() bytes.
        let n = unsafe { netlab_last_error(buf.as_mut_ptr(), buf.len()) };
        assert!(n <= buf.len());
        // SAFETY: netlab_last_error NUL-terminated it.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// netlab_tcp_echo of `message` into a buffer of `cap` bytes: the status,
    /// the length written (or usize::MAX when none was) and the buffer.
    fn tcp_echo(addr: &CString, message: &[u8], cap: usize) -> (netlab_status, usize, Vec<u8>) {
        let mut reply = vec![0u8; cap];
        let mut len = usize::MAX;
        // SAFETY: every pointer is valid for the length given with it.
        let status = unsafe {
            netlab_tcp_echo(
                addr.as_ptr(),
                message.as_ptr(),
                message.len(),
                5000,
                reply.as_mut_ptr(),
                reply.len(),
                &mut len,
            )
        };
        (status, len, reply)
    }

    #[test]
    fn tcp_echo_of_a_server_that_never_stops_sending_is_a_protocol_error() {
        // A small buffer, then one larger than the default bound: either
        // way the call returns promptly, having read no more than its bound.
        for cap in [16, 1 << 20] {
            let (addr, server) = serve(1, endless);
            let started = Instant::now();
            let (status, len, reply) = tcp_echo(&addr, b"hello", cap);
            assert!(started.elapsed() < Duration::from_secs(3), "{cap}");
            assert_eq!(status, netlab_status::NETLAB_ERR_PROTOCOL, "{cap}");
            assert_eq!(len, usize::MAX, "{cap}: *reply_len was written");
            assert!(reply.iter().all(|&b| b == 0), "{cap}: reply was written");
            let bound = cap.max(client::echo_reply_limit(5));
            let message = last_error();
            assert!(
                message.contains(&format!("the reply is longer than {bound} bytes")),
                "{cap}: {message}"
            );
            server.join().unwrap();
        }
    }

    #[test]
    fn tcp_echo_still_reports_the_size_a_plausible_reply_needs() {
        let (addr, server) = serve(2, echo);
        let message = b"Test message. This will be echoed";
        let (status, len, reply) = tcp_echo(&addr, message, 4);
        assert_eq!(status, netlab_status::NETLAB_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, message.len());
        assert_eq!(reply, [0; 4]);
        let (status, len, reply) = tcp_echo(&addr, message, len);
        assert_eq!(status, netlab_status::NETLAB_OK, "{}", last_error());
        assert_eq!(&reply[..len], message);
        server.join().unwrap();
    }
}
