//! Status codes, the thread's last error message, and the panic boundary.

use std::cell::RefCell;
use std::ffi::{c_char, c_int};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::client::{ClientError, ErrorKind};
use crate::config::ConfigErrors;
use crate::server::ServerError;

/// What a call returns. The values are stable: a program may store them.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum netlab_status {
    /// Success.
    NETLAB_OK = 0,
    /// A required pointer argument was NULL.
    NETLAB_ERR_NULL = 1,
    /// An argument was out of range or malformed (an enum value, an index,
    /// an address, a string that is not UTF-8, a zero timeout).
    NETLAB_ERR_INVALID = 2,
    /// A socket call failed (refused, reset, unreachable, ...).
    NETLAB_ERR_IO = 3,
    /// The peer did not answer in time.
    NETLAB_ERR_TIMEOUT = 4,
    /// The peer closed the connection, or the handle's connection is closed.
    NETLAB_ERR_CLOSED = 5,
    /// netlab panicked; the message is the last error. The handle involved
    /// may be unusable, but memory is safe and it may still be freed.
    NETLAB_ERR_PANIC = 6,
    /// The caller's buffer is too short; the length out-parameter receives
    /// the size needed.
    NETLAB_ERR_BUFFER_TOO_SMALL = 7,
    /// The configuration text is invalid; the last error has every problem,
    /// each with its line and column.
    NETLAB_ERR_CONFIG = 8,
    /// An address to listen on is already in use; the last error names it.
    NETLAB_ERR_ADDR_IN_USE = 9,
    /// The peer sent something that is not valid in the protocol, or bytes
    /// fed to a decoder do not frame.
    NETLAB_ERR_PROTOCOL = 10,
    /// The thread's interrupt check (`netlab_set_interrupt_check`) asked a
    /// blocking call to give up before its timeout.
    NETLAB_ERR_INTERRUPTED = 11,
    /// TLS refused the connection (the server's certificate, the client's,
    /// no common version), or a TLS file could not be used; the last error
    /// says which and why.
    NETLAB_ERR_TLS = 12,
}

use netlab_status::*;

impl netlab_status {
    fn describe(self) -> &'static CStrLit {
        match self {
            NETLAB_OK => c"ok",
            NETLAB_ERR_NULL => c"a required pointer argument was NULL",
            NETLAB_ERR_INVALID => c"invalid argument",
            NETLAB_ERR_IO => c"socket error",
            NETLAB_ERR_TIMEOUT => c"timed out",
            NETLAB_ERR_CLOSED => c"connection closed",
            NETLAB_ERR_PANIC => c"internal error (panic) in netlab",
            NETLAB_ERR_BUFFER_TOO_SMALL => c"buffer too small",
            NETLAB_ERR_CONFIG => c"invalid configuration",
            NETLAB_ERR_ADDR_IN_USE => c"address already in use",
            NETLAB_ERR_PROTOCOL => c"protocol error",
            NETLAB_ERR_INTERRUPTED => c"interrupted",
            NETLAB_ERR_TLS => c"TLS refused",
        }
    }

    fn from_int(value: c_int) -> Option<netlab_status> {
        const ALL: [netlab_status; 13] = [
            NETLAB_OK,
            NETLAB_ERR_NULL,
            NETLAB_ERR_INVALID,
            NETLAB_ERR_IO,
            NETLAB_ERR_TIMEOUT,
            NETLAB_ERR_CLOSED,
            NETLAB_ERR_PANIC,
            NETLAB_ERR_BUFFER_TOO_SMALL,
            NETLAB_ERR_CONFIG,
            NETLAB_ERR_ADDR_IN_USE,
            NETLAB_ERR_PROTOCOL,
            NETLAB_ERR_INTERRUPTED,
            NETLAB_ERR_TLS,
        ];
        ALL.into_iter().find(|s| *s as c_int == value)
    }
}

type CStrLit = std::ffi::CStr;

/// A failed call: its status and the detailed message for
/// [`netlab_last_error`].
#[derive(Debug)]
pub(crate) struct Error {
    pub status: netlab_status,
    pub message: String,
}

impl Error {
    pub fn new(status: netlab_status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn null(what: &str) -> Error {
        Error::new(NETLAB_ERR_NULL, format!("{what} is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(NETLAB_ERR_INVALID, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        let status = match e.kind() {
            ErrorKind::Io => NETLAB_ERR_IO,
            ErrorKind::Timeout => NETLAB_ERR_TIMEOUT,
            ErrorKind::Closed => NETLAB_ERR_CLOSED,
            ErrorKind::Protocol => NETLAB_ERR_PROTOCOL,
            ErrorKind::Invalid => NETLAB_ERR_INVALID,
            ErrorKind::Interrupted => NETLAB_ERR_INTERRUPTED,
            ErrorKind::Tls => NETLAB_ERR_TLS,
        };
        Error::new(status, e.to_string())
    }
}

impl From<ServerError> for Error {
    fn from(e: ServerError) -> Error {
        let status = match e.source.kind() {
            std::io::ErrorKind::AddrInUse => NETLAB_ERR_ADDR_IN_USE,
            std::io::ErrorKind::InvalidInput => NETLAB_ERR_INVALID,
            _ => NETLAB_ERR_IO,
        };
        Error::new(status, e.to_string())
    }
}

impl From<ConfigErrors> for Error {
    fn from(e: ConfigErrors) -> Error {
        Error::new(NETLAB_ERR_CONFIG, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: &str) {
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        last.clear();
        last.push_str(message);
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic with no message");
    format!("netlab panicked: {what}")
}

/// The panic boundary of every function that returns a status: clears the
/// last error, runs `body`, and turns an error or a panic into a status and
/// a last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> netlab_status {
    set_last_error("");
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => NETLAB_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            set_last_error(&panic_message(&*payload));
            NETLAB_ERR_PANIC
        }
    }
}

/// The panic boundary of the functions that return nothing (`_free`): a
/// panic is recorded as the last error and goes no further.
pub(crate) fn guard_void(body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        set_last_error(&panic_message(&*payload));
    }
}

/// Returns a static, NUL-terminated description of a status code. Any
/// integer is accepted: one that is no `netlab_status` gives
/// "unknown status". The string is never freed.
#[unsafe(no_mangle)]
pub extern "C" fn netlab_status_str(status: c_int) -> *const c_char {
    catch_unwind(|| match netlab_status::from_int(status) {
        Some(s) => s.describe().as_ptr(),
        None => c"unknown status".as_ptr(),
    })
    .unwrap_or(c"unknown status".as_ptr())
}

/// Copies the calling thread's message about its last failed call into
/// `buf` (at most `len` bytes, always NUL-terminated when `len > 0`) and
/// returns the size the whole message needs, NUL included: a return value
/// greater than `len` means the copy was cut short. Call it with
/// `buf = NULL, len = 0` to learn the size first.
///
/// Every other netlab call clears the message first, so after a call that
/// returned `NETLAB_OK` the message is empty (and 1 is returned).
///
/// `buf` is borrowed for the duration of the call; it may be NULL only when
/// `len` is 0.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_last_error(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR.with(|last| {
            let last = last.borrow();
            let bytes = last.as_bytes();
            if !buf.is_null() && len > 0 {
                let n = bytes.len().min(len - 1);
                // SAFETY: `buf` has room for `len > n` bytes, as the caller promises.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            bytes.len() + 1
        })
    })
    .unwrap_or(1)
}

/// Returns netlab's version, e.g. "0.1.0", as a static NUL-terminated
/// string that is never freed.
#[unsafe(no_mangle)]
pub extern "C" fn netlab_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        // SAFETY: the buffer has 256 bytes.
        let n = unsafe { netlab_last_error(buf.as_mut_ptr(), buf.len()) };
        assert!(n <= buf.len());
        // SAFETY: netlab_last_error NUL-terminated it.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("on purpose"));
        assert_eq!(status, NETLAB_ERR_PANIC);
        assert_eq!(last_error(), "netlab panicked: on purpose");
        assert_eq!(guard(|| Ok(())), NETLAB_OK);
        assert_eq!(last_error(), "");
        guard_void(|| panic!("in free"));
        assert_eq!(last_error(), "netlab panicked: in free");
    }

    #[test]
    fn status_str_takes_any_integer() {
        for v in [-1, 0, 6, 10, 11, c_int::MAX, c_int::MIN] {
            let s = unsafe { std::ffi::CStr::from_ptr(netlab_status_str(v)) };
            assert!(!s.to_bytes().is_empty());
        }
        let s = unsafe { std::ffi::CStr::from_ptr(netlab_status_str(99)) };
        assert_eq!(s.to_str().unwrap(), "unknown status");
    }

    #[test]
    fn last_error_reports_the_size_it_needs_and_truncates() {
        guard(|| Err(Error::invalid("0123456789")));
        // SAFETY: NULL with length 0 is allowed.
        assert_eq!(unsafe { netlab_last_error(std::ptr::null_mut(), 0) }, 11);
        let mut buf = [1 as c_char; 4];
        assert_eq!(unsafe { netlab_last_error(buf.as_mut_ptr(), 4) }, 11);
        assert_eq!(buf.map(|c| c as u8), *b"012\0");
    }
}
