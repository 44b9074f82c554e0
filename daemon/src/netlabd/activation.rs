//! Socket activation: listeners the service manager passes in `LISTEN_FDS`
//! (fds 3 and up) go to the servers they belong to: by `LISTEN_FDNAMES`
//! (`FileDescriptorName=` in the socket unit) when a name is a server's,
//! else by address. A passed socket that no server can use is an error
//! that names it: silently leaving a port open that nobody serves is worse.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use netlab::config::{Config, ListenConfig, Transport};
use socket2::{Socket, Type};

/// A socket passed by the service manager.
pub struct Passed {
    pub fd: RawFd,
    pub name: String,
    pub addr: SocketAddr,
    pub transport: Transport,
    socket: Option<Socket>,
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(
            f,
            "fd {} ({t} {}, name {:?})",
            self.fd, self.addr, self.name
        )
    }
}

/// Takes the sockets passed to this process, and removes `LISTEN_*` from the
/// environment so that no child inherits them.
///
/// Must be called before any thread is started (it changes the environment).
pub fn take_from_env() -> Result<Vec<Passed>, String> {
    // SAFETY: called first thing in main, before any other thread exists.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .map_err(|e| format!("socket activation: {e}"))?;
    let mut passed = Vec::new();
    for (fd, name) in fds {
        // SAFETY: systemd passes these fds to us and nothing else owns them.
        let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("socket activation: fd {fd} ({name:?}) is not an IP socket"))?;
        let transport = match socket.r#type() {
            Ok(t) if t == Type::STREAM => Transport::Tcp,
            Ok(t) if t == Type::DGRAM => Transport::Udp,
            _ => {
                return Err(format!(
                    "socket activation: fd {fd} ({name:?}, {addr}) is neither TCP nor UDP"
                ));
            }
        };
        passed.push(Passed {
            fd,
            name,
            addr,
            transport,
            socket: Some(socket),
        });
    }
    Ok(passed)
}

/// Which passed socket each listen entry gets: `assigned[server][entry]`.
pub type Assignment = Vec<Vec<Option<Socket>>>;

/// Gives each passed socket to a listen entry, or says which cannot be used.
pub fn assign(mut passed: Vec<Passed>, config: &Config) -> Result<Assignment, String> {
    let mut assigned: Assignment = config
        .servers
        .iter()
        .map(|s| s.listen.iter().map(|_| None).collect())
        .collect();
    // First the sockets named after a server: its entry with that address,
    // else its first entry still free.
    for p in passed.iter_mut() {
        let Some(si) = config.servers.iter().position(|s| s.name == p.name) else {
            continue;
        };
        let server = &config.servers[si];
        if server.transport != p.transport {
            continue;
        }
        let slots = &mut assigned[si];
        let entry = server
            .listen
            .iter()
            .enumerate()
            .position(|(i, l)| slots[i].is_none() && same_addr(l, p.addr))
            .or_else(|| slots.iter().position(Option::is_none));
        if let Some(i) = entry {
            log::info!(
                "socket activation: {p} goes to server {} by name",
                server.name
            );
            slots[i] = p.socket.take();
        }
    }
    // Then the others, by address.
    for p in passed.iter_mut().filter(|p| p.socket.is_some()) {
        'servers: for (si, server) in config.servers.iter().enumerate() {
            if server.transport != p.transport {
                continue;
            }
            for (i, l) in server.listen.iter().enumerate() {
                if assigned[si][i].is_none() && same_addr(l, p.addr) {
                    log::info!(
                        "socket activation: {p} goes to server {} by address",
                        server.name
                    );
                    assigned[si][i] = p.socket.take();
                    break 'servers;
                }
            }
        }
    }
    let unused: Vec<String> = passed
        .iter()
        .filter(|p| p.socket.is_some())
        .map(|p| {
            format!(
                "socket activation: {p} matches no server: name it after a server (FileDescriptorName=) or use an address a server listens on"
            )
        })
        .collect();
    if unused.is_empty() {
        Ok(assigned)
    } else {
        Err(unused.join("\n"))
    }
}

/// IP and port; an IPv6 socket's flow info and scope do not matter here.
fn same_addr(l: &ListenConfig, addr: SocketAddr) -> bool {
    l.addr.ip() == addr.ip() && l.addr.port() == addr.port()
}
