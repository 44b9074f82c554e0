//! The C ABI: every `extern "C"` function of `libnetlab`, written out one by
//! one so that cbindgen reads them straight into `include/netlab.h`.
//!
//! The conventions, which every function follows and the header repeats:
//!
//! - Every fallible function returns a [`netlab_status`]; results go through
//!   out-parameters, written only when the call returns `NETLAB_OK` (the one
//!   exception, `NETLAB_ERR_BUFFER_TOO_SMALL`, writes the size needed).
//! - Every body runs inside one panic boundary ([`guard`]): a panic becomes
//!   `NETLAB_ERR_PANIC` with its message as the last error, never an unwind
//!   into C.
//! - A NULL pointer where one is required gives `NETLAB_ERR_NULL`; a byte
//!   pointer may be NULL when its length is 0.
//! - [`netlab_last_error`] copies the calling thread's message about the last
//!   call that failed. Every call clears it first, so after `NETLAB_OK` it is
//!   empty.
//! - Handles are opaque; `_free(NULL)` is a no-op.
//!
//! Loading the library does nothing global: no signal handler, no thread, no
//! allocation until a function is called.

#![allow(non_camel_case_types)]

mod chat;
mod client;
mod codec;
mod error;
mod options;
mod server;

pub use chat::*;
pub use client::*;
pub use codec::*;
pub use error::*;
pub use options::*;
pub use server::*;

use std::ffi::{CStr, c_char};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|e| Error::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Borrows a byte buffer argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that outlive `'a`.
unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Checks an output buffer before any work is done: NULL is allowed only
/// with a capacity of 0, which can take nothing but an empty result.
fn out_buf_arg(ptr: *const u8, cap: usize, what: &str) -> Result<(), Error> {
    if ptr.is_null() && cap > 0 {
        return Err(Error::null(what));
    }
    Ok(())
}

/// Checks that an out-parameter is not NULL, and returns it as a reference.
///
/// # Safety
/// `ptr` is NULL or valid for writes of one `T`.
unsafe fn out_arg<'a, T>(
    ptr: *mut T,
    what: &str,
) -> Result<&'a mut std::mem::MaybeUninit<T>, Error> {
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL and, as the caller promises, valid for writes.
    Ok(unsafe { &mut *ptr.cast::<std::mem::MaybeUninit<T>>() })
}

/// Parses `host:port` (`127.0.0.1:7`, `[::1]:7`, `localhost:7`).
fn addr_arg(text: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| {
        Error::invalid(format!(
            "address {text:?} is not host:port or cannot be resolved: {e}"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| Error::invalid(format!("address {text:?} resolves to nothing")))
}

use crate::codec::HeaderCodec;

/// The widest length header accepted, the same as in configurations.
const MAX_HEADER_LEN: usize = HeaderCodec::MAX_HEADER_LEN;

/// A `header_len` argument: 0 means the default (10).
fn header_len_arg(header_len: usize) -> Result<usize, Error> {
    match header_len {
        0 => Ok(crate::config::defaults::HEADER_LEN),
        1..=MAX_HEADER_LEN => Ok(header_len),
        _ => Err(Error::invalid(format!(
            "header_len {header_len} is wider than the {MAX_HEADER_LEN} bytes allowed"
        ))),
    }
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// Copies `data` into the caller's buffer, or says how much room it needs.
///
/// # Safety
/// `buf` is NULL or valid for writes of `cap` bytes; `out_len` as [`out_arg`].
unsafe fn copy_out(
    data: &[u8],
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    what: &str,
) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    let out_len = unsafe { out_arg(out_len, "length out-parameter")? };
    if data.len() > cap {
        out_len.write(data.len());
        return Err(Error::new(
            netlab_status::NETLAB_ERR_BUFFER_TOO_SMALL,
            format!(
                "{what} of {} bytes does not fit in a buffer of {cap} bytes",
                data.len()
            ),
        ));
    }
    if !data.is_empty() {
        if buf.is_null() {
            return Err(Error::null("buffer"));
        }
        // SAFETY: `buf` has room for `cap >= data.len()` bytes; the caller's
        // buffer cannot overlap memory that Rust owns.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    }
    out_len.write(data.len());
    Ok(())
}
