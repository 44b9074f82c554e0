//! The servers a daemon runs, and how a reload changes them: all or
//! nothing. Added and changed servers are bound before anything is stopped;
//! if one cannot be, nothing changes. A changed or removed server's
//! listening sockets go to the server that takes its address, so the port
//! never stops listening; the old one drains its connections meanwhile.
//! Unchanged servers, and every connection on them, are left alone.

use std::thread::JoinHandle;
use std::time::Duration;

use netlab::config::{Config, ServerConfig, Transport};
use netlab::server::{BoundServer, RunningServer, Stopper};
use socket2::Socket;

use super::activation::Assignment;

/// Binds every server of `config`; passed sockets (socket activation) are
/// used where assigned.
pub fn bind_all(config: &Config, mut passed: Assignment) -> Result<Vec<BoundServer>, String> {
    let mut bound = Vec::with_capacity(config.servers.len());
    for (si, server) in config.servers.iter().enumerate() {
        let mut slots = std::mem::take(&mut passed[si]).into_iter();
        let b = BoundServer::bind_using(server, |_| slots.next().flatten().into_iter().collect())
            .map_err(|e| e.to_string())?;
        bound.push(b);
    }
    Ok(bound)
}

pub struct Supervisor {
    running: Vec<RunningServer>,
    /// Servers removed or replaced by a reload, finishing their connections.
    draining: Vec<(Stopper, JoinHandle<()>)>,
    grace: Duration,
}

/// What a reload did, for the log.
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Listeners of unchanged servers whose certificates were read anew.
    pub tls_reloaded: usize,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &Vec<String>| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "added {}; removed {}; restarted {}; {} unchanged",
            list(&self.added),
            list(&self.removed),
            list(&self.changed),
            self.unchanged
        )?;
        if self.tls_reloaded > 0 {
            write!(
                f,
                " (certificates read anew for {} TLS listener(s))",
                self.tls_reloaded
            )?;
        }
        Ok(())
    }
}

impl Supervisor {
    /// Starts bound servers; on failure the ones started are stopped.
    pub fn start(bound: Vec<BoundServer>, grace: Duration) -> Result<Supervisor, String> {
        let mut sup = Supervisor {
            running: Vec::new(),
            draining: Vec::new(),
            grace,
        };
        for b in bound {
            match netlab::host::start(b) {
                Ok(s) => {
                    announce(&s);
                    sup.running.push(s);
                }
                Err(e) => {
                    sup.stop(Duration::ZERO);
                    return Err(e.to_string());
                }
            }
        }
        Ok(sup)
    }

    /// "N servers, M connections open", for `STATUS=`.
    pub fn status(&mut self) -> String {
        self.draining.retain(|(_, t)| !t.is_finished());
        let open: usize = self.running.iter().map(|s| s.stats().open).sum();
        let draining = if self.draining.is_empty() {
            String::new()
        } else {
            format!(", {} draining", self.draining.len())
        };
        format!(
            "{} servers, {open} connections open{draining}",
            self.running.len()
        )
    }

    /// Moves to `config`; on error nothing has changed.
    pub fn reload(&mut self, config: &Config) -> Result<Changes, String> {
        let mut changes = Changes::default();
        let mut keep = Vec::new();
        let mut replace = Vec::new();
        let mut add = Vec::new();
        for new in &config.servers {
            match self.running.iter().position(|s| s.name() == new.name) {
                Some(i) if self.running[i].config() == new => keep.push((i, new)),
                Some(i) => {
                    replace.push(i);
                    add.push(new);
                    changes.changed.push(new.name.clone());
                }
                None => {
                    add.push(new);
                    changes.added.push(new.name.clone());
                }
            }
        }
        let leaving: Vec<usize> = (0..self.running.len())
            .filter(|i| !keep.iter().any(|(k, _)| k == i))
            .collect();
        for &i in &leaving {
            if !replace.contains(&i) {
                changes.removed.push(self.running[i].name().to_owned());
            }
        }
        changes.unchanged = keep.len();

        // Bind what is new, taking over the leaving servers' sockets where
        // the address is the same. Nothing has stopped yet: on error,
        // dropping what was bound closes only copies.
        let mut bound = Vec::with_capacity(add.len());
        for server in &add {
            let take = |l: &netlab::config::ListenConfig| -> Vec<Socket> {
                leaving
                    .iter()
                    .map(|&i| &self.running[i])
                    .filter(|s| s.config().transport == server.transport)
                    .map(|s| s.listener_copies(l.addr))
                    .find(|copies| !copies.is_empty())
                    .unwrap_or_default()
            };
            let b = BoundServer::bind_using(server, take).map_err(|e| {
                if e.source.kind() == std::io::ErrorKind::AddrInUse
                    && let Some(hint) = self.overlap_hint(server)
                {
                    format!("{e}; {hint}")
                } else {
                    e.to_string()
                }
            })?;
            bound.push(b);
        }

        // Start the new servers while the leaving ones still serve: for a
        // moment both accept on the sockets they share, which loses nothing.
        // If one cannot start, those started are stopped and the old ones
        // were never touched: the reload changes nothing, as promised (and
        // what the started ones accepted meanwhile is let finish).
        let grace = config.daemon.shutdown_grace;
        let mut started: Vec<RunningServer> = Vec::with_capacity(bound.len());
        for b in bound {
            match netlab::host::start(b) {
                Ok(s) => started.push(s),
                Err(e) => {
                    for s in started {
                        self.drain(s, grace);
                    }
                    return Err(e.to_string());
                }
            }
        }

        // Commit. The servers kept take the certificates read anew with
        // the configuration (checked with it, so all or nothing); the
        // leaving ones drain, under the new grace; the new ones take
        // their place.
        for &(i, new) in &keep {
            let tls = new
                .listen
                .iter()
                .map(|l| l.tls.as_ref().map(|t| t.loaded.clone()))
                .collect();
            changes.tls_reloaded += self.running[i].replace_tls(tls);
        }
        let mut leaving_servers = Vec::new();
        for i in leaving.into_iter().rev() {
            leaving_servers.push(self.running.remove(i));
        }
        for s in leaving_servers {
            self.drain(s, grace);
        }
        for s in started {
            announce(&s);
            self.running.push(s);
        }
        Ok(changes)
    }

    /// Why an address of `server` may be in use by netlabd itself: a
    /// running server holds an overlapping one (127.0.0.1:7 and 0.0.0.0:7),
    /// which a reload cannot hand over.
    fn overlap_hint(&self, server: &ServerConfig) -> Option<String> {
        let overlaps = |a: std::net::SocketAddr, b: std::net::SocketAddr| {
            a.port() == b.port()
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        server.listen.iter().find_map(|l| {
            self.running.iter().find_map(|r| {
                let held = r
                    .local_addrs()
                    .iter()
                    .copied()
                    .find(|&a| a != l.addr && overlaps(a, l.addr))?;
                Some(format!(
                    "server {} holds {held}, which overlaps {}: a reload cannot hand it over; move one of them to another port first, or restart netlabd",
                    r.name(),
                    l.addr
                ))
            })
        })
    }

    /// Stops `server` within `grace` in the background; a later stop of
    /// the daemon can still shorten that.
    fn drain(&mut self, server: RunningServer, grace: Duration) {
        server.begin_stop(grace);
        let stopper = server.stopper();
        let name = server.name().to_owned();
        match std::thread::Builder::new()
            .name(format!("drain-{name}"))
            .spawn(move || server.join())
        {
            Ok(t) => self.draining.push((stopper, t)),
            Err(e) => {
                log::error!("server {name}: cannot drain in the background ({e}); it was stopped")
            }
        }
    }

    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Stops every server at once, so their grace periods run side by side,
    /// and waits for them and for those still draining.
    pub fn stop(&mut self, grace: Duration) {
        for s in &self.running {
            s.begin_stop(grace);
        }
        // Those draining since a reload end within this grace too.
        for (stopper, _) in &self.draining {
            stopper.begin_stop(grace);
        }
        for s in self.running.drain(..) {
            s.join();
        }
        for (_, t) in self.draining.drain(..) {
            let _ = t.join();
        }
    }
}

fn announce(server: &RunningServer) {
    let c: &ServerConfig = server.config();
    let transport = match c.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let model = format!("{:?}", c.model).to_lowercase();
    let service = format!("{:?}", c.service.kind()).to_lowercase();
    for addr in server.local_addrs() {
        log::info!(
            "server {} ({service}/{transport}, {model}) listening on {addr}",
            c.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlab::config::ServerConfig;

    fn server(toml: &str) -> ServerConfig {
        ServerConfig::parse(toml, "test").unwrap()
    }

    /// Moving a server from 127.0.0.1:P to 0.0.0.0:P cannot be one reload:
    /// the refusal says which server holds what, not just "address in use".
    /// (Computed only: nothing binds the unspecified address.)
    #[test]
    fn an_overlapping_address_held_by_a_running_server_is_named() {
        let echo = server("name = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]");
        let bound = BoundServer::bind(&echo).unwrap();
        let mut sup = Supervisor::start(vec![bound], Duration::ZERO).unwrap();
        let held = sup.running[0].local_addrs()[0];
        let port = held.port();

        let moved = server(&format!(
            "name = \"echo\"\nservice = \"echo\"\nlisten = [\"0.0.0.0:{port}\"]"
        ));
        let hint = sup.overlap_hint(&moved).expect("a hint");
        assert!(
            hint.starts_with(&format!(
                "server echo holds {held}, which overlaps 0.0.0.0:{port}"
            )),
            "{hint}"
        );
        // The same address is handed over, and another port is no overlap.
        let same = server(&format!(
            "name = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]"
        ));
        assert_eq!(sup.overlap_hint(&same), None);
        let other = server("name = \"echo\"\nservice = \"echo\"\nlisten = [\"0.0.0.0:1\"]");
        assert_eq!(sup.overlap_hint(&other), None);
        sup.stop(Duration::ZERO);
    }
}
