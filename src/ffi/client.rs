//! The one-shot clients: TCP echo, UDP echo and count, into caller-owned
//! buffers.

use std::ffi::{c_char, c_int};

use super::{
    Error, addr_arg, bytes_arg, copy_out, guard, header_len_arg, millis, netlab_status, out_arg,
    str_arg,
};
use crate::client::{self, CountFraming};

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
/// `timeout_ms` milliseconds (`NETLAB_ERR_TIMEOUT`; 0 is invalid). A reply
/// longer than `reply_cap` gives `NETLAB_ERR_BUFFER_TOO_SMALL`, leaves
/// `reply` untouched and writes the size needed into `*reply_len`.
///
/// Every pointer is borrowed for the duration of the call; `message` and
/// `reply` may be NULL when their length is 0.
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
    guard(|| {
        // SAFETY (all three): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let message = unsafe { bytes_arg(message, message_len, "message")? };
        unsafe { out_arg(reply_len, "reply_len")? };
        let echoed = client::tcp_echo(addr, message, millis(timeout_ms))?;
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
/// `reply` may be NULL when their length is 0.
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
    guard(|| {
        // SAFETY (all three): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let message = unsafe { bytes_arg(message, message_len, "message")? };
        let count = unsafe { out_arg(count, "count")? };
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
        count.write(client::count(addr, message, framing, millis(timeout_ms))?);
        Ok(())
    })
}
