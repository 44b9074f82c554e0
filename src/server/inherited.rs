//! What a forked child does with a server it inherited: its threads did not
//! come along (fork copies only the thread that called it), so the server
//! cannot be stopped or joined there. The child can only let go of its
//! copies of the server's sockets, so that it holds neither the port nor a
//! connection the parent means to close.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Closes this process's descriptors of sockets bound to one of `addrs`:
/// the listeners (every worker's copy) and the connections they accepted,
/// which share the listener's local address. Other descriptors are left
/// alone. Returns how many were closed.
///
/// For a process that inherited a server by `fork`, never for the one
/// running it: the threads there own these descriptors.
pub fn close_inherited_sockets(addrs: &[SocketAddr]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    // Listed first, closed after: the listing's own descriptor is open
    // while it is read.
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut closed = 0;
    for fd in fds {
        if bound_to_one_of(fd, addrs) {
            // SAFETY: a descriptor of this process that nothing running
            // here owns: its owner is a thread the fork left behind.
            unsafe { libc::close(fd) };
            closed += 1;
        }
    }
    closed
}

/// Whether `fd` is a socket whose local address is one of `addrs`.
fn bound_to_one_of(fd: RawFd, addrs: &[SocketAddr]) -> bool {
    // SAFETY: an all-zero sockaddr_storage is valid; getsockname writes at
    // most `len` bytes into it and fails on anything but a socket.
    let local = unsafe {
        SockAddr::try_init(|storage, len| {
            if libc::getsockname(fd, storage.cast(), len) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    match local {
        Ok(((), local)) => local
            .as_socket()
            .is_some_and(|local| addrs.iter().any(|a| serves(*a, local))),
        Err(_) => false,
    }
}

/// Whether a socket at `local` belongs to a server listening on `addr`: the
/// same address, or, for a wildcard listener, any of its family on that port
/// (where its connections are).
fn serves(addr: SocketAddr, local: SocketAddr) -> bool {
    addr.port() == local.port()
        && (addr.ip() == local.ip()
            || (addr.ip().is_unspecified() && addr.is_ipv4() == local.is_ipv4()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::IntoRawFd;

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only asks about the descriptor.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    }

    /// The listener, a copy of it and an accepted connection go; a client
    /// socket of the same test and another listener stay.
    #[test]
    fn closes_the_servers_sockets_and_only_those() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let copy = listener.try_clone().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();

        let ours = [
            listener.into_raw_fd(),
            copy.into_raw_fd(),
            accepted.into_raw_fd(),
            udp.into_raw_fd(),
        ];
        assert_eq!(close_inherited_sockets(&[addr, udp_addr]), ours.len());
        for fd in ours {
            assert!(!is_open(fd), "{fd} is still open");
        }
        use std::os::fd::AsRawFd;
        assert!(is_open(client.as_raw_fd()));
        assert!(is_open(other.as_raw_fd()));
    }
}
