//! `netlab_client_options`: how a client call connects, beyond its timeout
//! (today: TLS), for the `_with` variants of the client calls.

use std::ffi::c_char;
use std::path::PathBuf;

use super::{Error, guard, guard_void, out_arg, str_arg};
use crate::client::{ClientOptions, TlsClient};
use crate::tls::ClientFiles;

/// Client options. Opaque: created by `netlab_client_options_new`, and
/// must eventually be freed by `netlab_client_options_free`.
///
/// Set it up from one thread; once set up, any number of calls on any
/// threads may use it at once (they only read it).
#[derive(Default)]
pub struct netlab_client_options {
    tls: Option<TlsClient>,
}

impl netlab_client_options {
    /// # Safety
    /// `ptr` is NULL or a live handle from `netlab_client_options_new`.
    pub(super) unsafe fn from_ptr<'a>(
        ptr: *const netlab_client_options,
    ) -> Option<&'a netlab_client_options> {
        // SAFETY: NULL or a live handle, as the caller promises.
        unsafe { ptr.as_ref() }
    }

    /// The call's options: these, with `timeout`.
    pub(super) fn with_timeout(
        options: Option<&netlab_client_options>,
        timeout: std::time::Duration,
    ) -> ClientOptions {
        ClientOptions {
            timeout,
            tls: options.and_then(|o| o.tls.clone()),
        }
    }
}

/// Makes options that change nothing: calls made with them are plain TCP.
/// On success `*out` receives a new handle, which must eventually be freed
/// by `netlab_client_options_free`.
///
/// # Safety
/// `out` must be NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_client_options_new(
    out: *mut *mut netlab_client_options,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { out_arg(out, "out")? };
        out.write(Box::into_raw(Box::default()));
        Ok(())
    })
}

/// Makes calls with these options use TLS: `ca_file` (PEM) holds the CA
/// certificates to trust, or is NULL for the system's; `cert_file` and
/// `key_file` (PEM) are a client certificate and its key, for servers that
/// ask for one, or both NULL. The files are read now: one that cannot be
/// used gives `NETLAB_ERR_TLS` with its path and why, and leaves the
/// options as they were.
///
/// Every argument is borrowed for the duration of the call.
///
/// # Safety
/// `options` must be NULL or a live handle; each path NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_client_options_set_tls(
    options: *mut netlab_client_options,
    ca_file: *const c_char,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> netlab_status {
    guard(|| {
        // SAFETY: NULL or a live handle, as the caller promises.
        let options = unsafe { options.as_mut() }.ok_or_else(|| Error::null("options"))?;
        let path = |ptr: *const c_char, what| -> Result<Option<PathBuf>, Error> {
            if ptr.is_null() {
                return Ok(None);
            }
            // SAFETY: non-NULL and NUL-terminated, as the caller promises.
            Ok(Some(PathBuf::from(unsafe { str_arg(ptr, what)? })))
        };
        let files = ClientFiles {
            ca: path(ca_file, "ca_file")?,
            cert: path(cert_file, "cert_file")?,
            key: path(key_file, "key_file")?,
        };
        let mut tls = TlsClient::new(&files)?;
        // A name set before stays.
        if let Some(old) = &options.tls {
            tls.server_name = old.server_name.clone();
        }
        options.tls = Some(tls);
        Ok(())
    })
}

/// With TLS: the name the server's certificate must carry, and which the
/// handshake asks for (SNI), instead of the address's IP. `name` is
/// borrowed for the duration of the call. Without TLS set first, gives
/// `NETLAB_ERR_INVALID`.
///
/// # Safety
/// `options` must be NULL or a live handle; `name` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_client_options_set_server_name(
    options: *mut netlab_client_options,
    name: *const c_char,
) -> netlab_status {
    guard(|| {
        // SAFETY: NULL or a live handle, as the caller promises.
        let options = unsafe { options.as_mut() }.ok_or_else(|| Error::null("options"))?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { str_arg(name, "name")? };
        let tls = options.tls.take().ok_or_else(|| {
            Error::invalid("set TLS first (netlab_client_options_set_tls), then its server name")
        })?;
        let restore = tls.clone();
        match tls.with_server_name(name) {
            Ok(tls) => {
                options.tls = Some(tls);
                Ok(())
            }
            Err(e) => {
                options.tls = Some(restore);
                Err(e.into())
            }
        }
    })
}

/// Frees options. `options` is consumed: it must not be used again, and no
/// call may be using it. `netlab_client_options_free(NULL)` does nothing.
///
/// # Safety
/// `options` must be NULL or a live handle that no call is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_client_options_free(options: *mut netlab_client_options) {
    guard_void(|| {
        if !options.is_null() {
            // SAFETY: a live handle from Box::into_raw, as the caller promises.
            drop(unsafe { Box::from_raw(options) });
        }
    });
}

use super::netlab_status;
