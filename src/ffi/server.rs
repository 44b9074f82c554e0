//! `netlab_server`: any server the daemon can run, started from TOML text.

use std::ffi::c_char;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};

use super::{Error, guard, guard_void, millis, netlab_status, out_arg, str_arg};
use crate::config::ServerConfig;
use crate::server::{BoundServer, RunningServer, StatsReader, Stopper};

/// A running (or stopped) server. Opaque: created by
/// `netlab_server_start`, and must eventually be freed by
/// `netlab_server_free`.
///
/// Its functions may be called from any thread, and from several threads at
/// once, until `netlab_server_free`.
pub struct netlab_server {
    running: Mutex<Option<RunningServer>>,
    /// Begins or shortens the stop while another thread waits in it.
    stopper: Stopper,
    /// The counters, readable after the stop too.
    stats: StatsReader,
    /// Set once a stop has finished; `done` wakes the other stoppers.
    stopped: Mutex<bool>,
    done: Condvar,
    addrs: Vec<SocketAddr>,
    /// The process that started it: the only one where its threads run.
    owner: u32,
}

/// A server's counters, as `netlab_server_get_stats` reads them.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct netlab_server_stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections refused by a limit or the access list; for UDP,
    /// datagrams the access list refused.
    pub refused: u64,
    /// Connections open now.
    pub open: u64,
    /// Datagrams answered (UDP).
    pub datagrams: u64,
    /// Datagrams dropped by `drop_source_ports` (UDP).
    pub dropped: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or did not finish within
    /// `handshake_timeout`.
    pub tls_failures: u64,
}

impl netlab_server {
    /// # Safety
    /// `ptr` is NULL or a live handle from `netlab_server_start`.
    unsafe fn from_ptr<'a>(ptr: *const netlab_server) -> Result<&'a netlab_server, Error> {
        if ptr.is_null() {
            return Err(Error::null("server"));
        }
        // SAFETY: a live handle, as the caller promises.
        Ok(unsafe { &*ptr })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RunningServer>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this is a forked child of the process that started it.
    fn inherited(&self) -> bool {
        std::process::id() != self.owner
    }

    fn addr(&self, index: usize) -> Result<SocketAddr, Error> {
        self.addrs.get(index).copied().ok_or_else(|| {
            Error::invalid(format!(
                "listener index {index} is out of range: the server has {} listener(s)",
                self.addrs.len()
            ))
        })
    }
}

/// Starts a server from TOML text, the same text a `[[server]]` table of
/// `netlabd.toml` holds (the `[[server]]` line itself may be left out): any
/// service, transport and model the daemon can run. Listen on port 0 to
/// let the kernel choose, then ask `netlab_server_port`.
///
/// Every listener is bound before anything is served: if one cannot be
/// (`NETLAB_ERR_ADDR_IN_USE`, `NETLAB_ERR_IO`), nothing starts and the last
/// error names the address. An invalid configuration gives
/// `NETLAB_ERR_CONFIG`, with every problem and its line and column.
///
/// `config` is borrowed for the duration of the call. On success `*out`
/// receives a new handle, which must eventually be freed by
/// `netlab_server_free`.
///
/// # Safety
/// `config` must be NULL or a NUL-terminated string; `out` NULL or valid for
/// writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_start(
    config: *const c_char,
    out: *mut *mut netlab_server,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let text = unsafe { str_arg(config, "config")? };
        // SAFETY: forwarded from the caller.
        let out = unsafe { out_arg(out, "out")? };
        let config = ServerConfig::parse(text, "<config>")?;
        let running = crate::host::start(BoundServer::bind(&config)?)?;
        let addrs = running.local_addrs().to_vec();
        out.write(Box::into_raw(Box::new(netlab_server {
            stopper: running.stopper(),
            stats: running.stats_reader(),
            running: Mutex::new(Some(running)),
            stopped: Mutex::new(false),
            done: Condvar::new(),
            addrs,
            owner: std::process::id(),
        })));
        Ok(())
    })
}

/// Writes into `*count` how many listeners (addresses in `listen`) the
/// server has. `server` is borrowed for the duration of the call.
///
/// # Safety
/// `server` must be NULL or a live handle; `count` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_listener_count(
    server: *const netlab_server,
    count: *mut usize,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let server = unsafe { netlab_server::from_ptr(server)? };
        // SAFETY: forwarded from the caller.
        let count = unsafe { out_arg(count, "count")? };
        count.write(server.addrs.len());
        Ok(())
    })
}

/// Writes into `*port` the port that listener `index` (0 for the first
/// address in `listen`) is bound to: the one the kernel chose when the
/// configuration said port 0. An index out of range gives
/// `NETLAB_ERR_INVALID`. The port stays readable after
/// `netlab_server_stop`. `server` is borrowed for the duration of the call.
///
/// # Safety
/// `server` must be NULL or a live handle; `port` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_port(
    server: *const netlab_server,
    index: usize,
    port: *mut u16,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let server = unsafe { netlab_server::from_ptr(server)? };
        // SAFETY: forwarded from the caller.
        let port = unsafe { out_arg(port, "port")? };
        port.write(server.addr(index)?.port());
        Ok(())
    })
}

/// The size of a buffer that holds any address netlab writes, NUL
/// included: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
/// (a scoped IPv6 address with the largest scope id) is 59 bytes, and 64
/// leaves room for an interface name of up to 15 bytes in place of the id.
pub const NETLAB_ADDRESS_MAX: usize = 64;

/// Copies the address listener `index` is bound to, as text such as
/// "127.0.0.1:40123", "[::1]:40123" or "[fe80::1%2]:40123" with its NUL,
/// into `buf` (`len` bytes), and writes its length without the NUL into
/// `*out_len`. A buffer too short gives `NETLAB_ERR_BUFFER_TOO_SMALL` and
/// writes into `*out_len` the size needed, NUL included;
/// `NETLAB_ADDRESS_MAX` bytes are always enough.
///
/// `server` and `buf` are borrowed for the duration of the call.
///
/// # Safety
/// `server` must be NULL or a live handle; `buf` NULL or valid for writes of
/// `len` bytes; `out_len` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_address(
    server: *const netlab_server,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let server = unsafe { netlab_server::from_ptr(server)? };
        // SAFETY: forwarded from the caller.
        let out_len = unsafe { out_arg(out_len, "out_len")? };
        super::out_buf_arg(buf.cast(), len, "buf")?;
        let text = format!("{}\0", server.addr(index)?);
        if text.len() > len {
            out_len.write(text.len());
            return Err(Error::new(
                netlab_status::NETLAB_ERR_BUFFER_TOO_SMALL,
                format!(
                    "the address {:?} needs {} bytes, the buffer has {len}",
                    &text[..text.len() - 1],
                    text.len()
                ),
            ));
        }
        if buf.is_null() {
            return Err(Error::null("buf"));
        }
        // SAFETY: `buf` has room for `len >= text.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len()) };
        out_len.write(text.len() - 1);
        Ok(())
    })
}

/// Reads the server's counters into `*stats`. After `netlab_server_stop`
/// they keep their final values (with `open` 0) until the handle is freed.
/// `server` is borrowed for the duration of the call.
///
/// # Safety
/// `server` must be NULL or a live handle; `stats` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_get_stats(
    server: *const netlab_server,
    stats: *mut netlab_server_stats,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let server = unsafe { netlab_server::from_ptr(server)? };
        // SAFETY: forwarded from the caller.
        let stats = unsafe { out_arg(stats, "stats")? };
        let s = server.stats.snapshot();
        stats.write(netlab_server_stats {
            accepted: s.accepted,
            refused: s.refused,
            open: s.open as u64,
            datagrams: s.datagrams,
            dropped: s.dropped,
            tls_handshakes: s.tls_handshakes,
            tls_failures: s.tls_failures,
        });
        Ok(())
    })
}

/// Stops the server gracefully and waits until it has stopped: it stops
/// accepting at once, lets open connections finish for up to `grace_ms`
/// milliseconds, then closes them (a forked child is killed) and reaps
/// every child. Stopping a stopped server does nothing and returns
/// `NETLAB_OK`. Called while another thread's stop is under way, it may
/// shorten that stop's grace (never lengthen it) and waits for it too.
///
/// The handle stays valid, its ports readable, and it must still be freed
/// by `netlab_server_free`. `server` is borrowed for the duration of the
/// call.
///
/// # Safety
/// `server` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_stop(
    server: *mut netlab_server,
    grace_ms: u32,
) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let server = unsafe { netlab_server::from_ptr(server)? };
        if server.inherited() {
            return Err(Error::invalid(format!(
                "this server runs in process {}, and this is process {} (a fork of it): only that process can stop it; netlab_server_free here releases this process's copies of its sockets",
                server.owner,
                std::process::id()
            )));
        }
        // Begins the stop, or shortens one under way in another thread.
        server.stopper.begin_stop(millis(grace_ms));
        // Taken out, so the lock is not held for the grace period.
        let running = server.lock().take();
        let mut stopped = server.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = running {
            drop(stopped);
            running.join();
            stopped = server.stopped.lock().unwrap_or_else(|e| e.into_inner());
            *stopped = true;
            server.done.notify_all();
        } else {
            // Another thread is stopping it: wait for the end.
            while !*stopped {
                stopped = server.done.wait(stopped).unwrap_or_else(|e| e.into_inner());
            }
        }
        Ok(())
    })
}

/// Frees a server handle. A server still running is stopped first, at once
/// (no grace period: open connections are closed). `server` is consumed:
/// it must not be used again. `netlab_server_free(NULL)` does nothing.
///
/// In a process forked from the one that started the server, the handle
/// is a copy and the server is not stopped: the free closes this process's
/// copies of the server's sockets (its listeners and the connections it
/// had accepted at the fork) and nothing else, and the server goes on in
/// the process that started it. There `netlab_server_stop` gives
/// `NETLAB_ERR_INVALID`; the ports, addresses and stats can still be read
/// (the stats as they were at the fork).
///
/// # Safety
/// `server` must be NULL or a live handle from `netlab_server_start` that
/// no other thread is using; freeing it twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_server_free(server: *mut netlab_server) {
    guard_void(|| {
        if server.is_null() {
            return;
        }
        // SAFETY: a live handle from Box::into_raw, as the caller promises.
        let server = unsafe { Box::from_raw(server) };
        if server.inherited() {
            // Its threads stayed in the parent: nothing here can stop or
            // join them. Let go of this process's copies of its sockets,
            // and of nothing else: the memory is the parent's state as it
            // was at the fork, which the parent still uses.
            crate::server::close_inherited_sockets(&server.addrs);
            std::mem::forget(server);
        } else {
            drop(server);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    /// A handle shared by threads, as C callers share it.
    struct Shared(*mut netlab_server);
    // SAFETY: netlab_server's calls other than free may run on any thread.
    unsafe impl Send for Shared {}
    unsafe impl Sync for Shared {}

    /// The longest address text there is fits NETLAB_ADDRESS_MAX, NUL
    /// included: a scoped IPv6 address needs more than the 48 bytes the
    /// header once promised.
    #[test]
    fn the_longest_address_fits_netlab_address_max() {
        use std::net::{Ipv6Addr, SocketAddrV6};
        let longest = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from([0xffff; 8]),
            u16::MAX,
            0,
            u32::MAX,
        ));
        let text = longest.to_string();
        assert_eq!(
            text,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
        );
        assert!(text.len() + 1 > 48);
        assert!(text.len() < NETLAB_ADDRESS_MAX, "NUL included");
        // An interface name (IFNAMSIZ is 16, NUL included) in place of the id.
        let named = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%abcdefghijklmno]:65535";
        assert!(named.len() < NETLAB_ADDRESS_MAX, "NUL included");
    }

    /// A second stop, from another thread while the first waits out a long
    /// grace, shortens it and returns only once the server has stopped.
    #[test]
    fn a_second_stop_shortens_the_first_and_waits_for_the_end() {
        let mut server: *mut netlab_server = std::ptr::null_mut();
        let config = c"name = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]";
        // SAFETY: a valid C string and out-pointer.
        let status = unsafe { netlab_server_start(config.as_ptr(), &mut server) };
        assert_eq!(status, netlab_status::NETLAB_OK);
        let shared = std::sync::Arc::new(Shared(server));
        // SAFETY: a live handle.
        let addr = unsafe { &*server }.addrs[0];
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));

        let first = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                // SAFETY: a live handle, freed only after this thread ends.
                unsafe { netlab_server_stop(shared.0, 30_000) }
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        // SAFETY: a live handle.
        assert_eq!(
            unsafe { netlab_server_stop(shared.0, 0) },
            netlab_status::NETLAB_OK
        );
        // Returned once stopped: the idle connection is closed by now.
        idle.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 8];
        let closed = match idle.read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(closed, "the second stop returned before the server stopped");
        assert_eq!(first.join().unwrap(), netlab_status::NETLAB_OK);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // SAFETY: no other thread uses it now.
        unsafe { netlab_server_free(shared.0) };
    }
}
