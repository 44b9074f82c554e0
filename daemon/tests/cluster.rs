//! A chat room across netlabd processes through a real redis-server, started
//! here on a free loopback port without persistence: users of every node
//! talk to each other in every dialect (seed 004's own client among them),
//! names are unique across nodes, a killed node's members are announced
//! gone within its presence_ttl, and chat goes on through an outage of
//! Redis, with the link's down and up told once each.

mod common;
#[path = "../../tests/common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netlab::chat::Dialect;
use netlab::client::{ChatClient, ChatEvent};

use common::*;

const T: Duration = Duration::from_secs(10);

/// A redis-server of the test's own, killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: TempDir,
    tls: bool,
}

impl Redis {
    /// Starts redis-server on a free loopback port with `extra` options
    /// (installing it first when it is missing).
    fn start(extra: &[&str]) -> Redis {
        need("redis-server", "redis-server");
        let port = free_port();
        let tls = extra.contains(&"--tls-port");
        let dir = TempDir::new();
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["--dir".into(), dir.0.display().to_string()]);
        args.extend([
            "--logfile".into(),
            dir.path("redis.log").display().to_string(),
        ]);
        if tls {
            args.extend(["--port".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| s.replace("PORT", &port.to_string())));
        if !tls {
            args.extend(["--port".into(), port.to_string()]);
        }
        let mut redis = Redis {
            child: None,
            port,
            args,
            dir,
            tls,
        };
        redis.restart();
        redis
    }

    /// Starts it again, on the same port.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running already");
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until it answers (a PING, or a TLS listener's accept).
    fn wait_ready(&mut self) {
        let until = Instant::now() + T;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.path("redis.log")).unwrap_or_default();
                panic!("redis-server exited ({status}):\n{log}");
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls {
                    return;
                }
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut reply = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut reply).is_ok_and(|n| n > 0)
                    && (reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "redis-server did not answer within {T:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A netlabd with one chat server, `node` of the room "lobby" on `redis`,
/// with a line listener first and `more` listeners after it; returns it
/// once it is linked, with its listeners' addresses.
fn node(
    redis: &str,
    node: &str,
    ttl: &str,
    more: &[&str],
    ca: Option<&Path>,
) -> (Daemon, Vec<SocketAddr>) {
    let dir = TempDir::new();
    let ca = ca.map_or(String::new(), |ca| {
        std::fs::copy(ca, dir.path("ca.pem")).unwrap();
        ", ca = \"ca.pem\"".to_owned()
    });
    let mut listen = vec!["\"127.0.0.1:0\"".to_owned()];
    listen.extend(
        more.iter()
            .map(|l| format!("{{ addr = \"127.0.0.1:0\", {l} }}")),
    );
    let config = format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"chat\"\nservice = \"chat\"\nlisten = [{}]\n\
         cluster = {{ redis = \"{redis}\", room = \"lobby\", node = \"{node}\", presence_ttl = \"{ttl}\"{ca} }}\n",
        listen.join(", ")
    );
    let path = dir.write("netlabd.toml", &config);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path);
    let (mut d, bound) = Daemon::spawn(cmd, dir, 1 + more.len());
    // The link may come up before the listeners are said to listen.
    if !d.seen.iter().any(|l| l.contains("linked through")) {
        d.wait_for_line("linked through", T);
    }
    (d, bound.into_iter().map(|(_, a)| a).collect())
}

/// A user of the line dialect, as `nc` would be.
struct User {
    name: String,
    s: TcpStream,
    buf: Vec<u8>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl User {
    fn connect(addr: SocketAddr, name: &str) -> User {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(format!("{name}\n").as_bytes()).unwrap();
        User {
            name: name.to_owned(),
            s,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Connects and waits for the welcome.
    fn join(addr: SocketAddr, name: &str) -> User {
        let mut u = User::connect(addr, name);
        u.expect(&format!("* welcome {name},"), T);
        u
    }

    fn say(&mut self, text: &str) {
        self.s.write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    /// The next line within `within`; `None` if none came, or the server
    /// closed.
    fn line(&mut self, within: Duration) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                self.seen.push(line.clone());
                return Some(line);
            }
            if Instant::now() >= until {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                // Closed by the server: a reset is a close too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{}: read: {e}", self.name),
            }
        }
    }

    /// Reads lines until one contains `needle`; returns it.
    fn expect(&mut self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.line(left) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!(
                    "{} did not get {needle:?} within {within:?}; got {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Every line that comes within `within`.
    fn drain(&mut self, within: Duration) {
        let until = Instant::now() + within;
        while self
            .line(until.saturating_duration_since(Instant::now()))
            .is_some()
        {}
    }

    /// Asks `/who` until the roster is `roster` (news from other nodes may
    /// still be on its way).
    fn roster_becomes(&mut self, roster: &str) {
        let until = Instant::now() + T;
        loop {
            self.say("/who");
            let line = self.expect("* online (", T);
            if line == roster {
                return;
            }
            assert!(
                Instant::now() < until,
                "{}: the roster stays {line:?}, not {roster:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }
}

/// Seed 004's client, as the seed wrote it, pointed at `port`.
fn seed_client(port: u16, dir: &TempDir) -> Child {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/chat_client_004.py");
    let text = std::fs::read_to_string(&seed).expect("seed 004's client");
    assert!(
        text.contains("TCP_PORT = 1234"),
        "the seed's port line moved"
    );
    let script = dir.write(
        "chat_client_004.py",
        &text.replace("TCP_PORT = 1234", &format!("TCP_PORT = {port}")),
    );
    need("python3", "python3");
    Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Kills a child process if the test fails before it ends.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn three_nodes_share_one_room_in_every_dialect() {
    // A password in the URL works.
    let redis = Redis::start(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let (_a, a) = node(&url, "node-a", "5s", &["dialect = \"header\""], None);
    let (_b, b) = node(&url, "node-b", "5s", &["dialect = \"bincode\""], None);
    let (_c, c) = node(&url, "node-c", "5s", &[], None);

    let mut ann = User::join(a[0], "ann");
    let mut ben = User::join(b[0], "ben");
    ann.expect("* ben joined on node-b (2 online)", T);
    let mut cat = User::join(c[0], "cat");
    ann.expect("* cat joined on node-c (3 online)", T);
    ben.expect("* cat joined on node-c (3 online)", T);

    // Everyone talks at once; each hears the two others, each in order.
    const N: usize = 30;
    for i in 0..N {
        for u in [&mut ann, &mut ben, &mut cat] {
            let text = format!("{} {i}", u.name);
            u.say(&text);
        }
    }
    for u in [&mut ann, &mut ben, &mut cat] {
        let mut next: Vec<(String, usize)> = ["ann", "ben", "cat"]
            .iter()
            .filter(|n| **n != u.name)
            .map(|n| ((*n).to_owned(), 0))
            .collect();
        while next.iter().any(|(_, i)| *i < N) {
            let line = u
                .line(T)
                .unwrap_or_else(|| panic!("{} stopped hearing: {:#?}", u.name, next));
            let Some(rest) = line.strip_prefix('[') else {
                continue;
            };
            let (from, text) = rest.split_once("] ").expect("[name] text");
            let (who, i) = text.split_once(' ').expect("name i");
            assert_eq!(who, from, "{line}");
            let (_, expected) = next
                .iter_mut()
                .find(|(n, _)| n == from)
                .unwrap_or_else(|| panic!("{} heard {from}, who is itself or unknown", u.name));
            assert_eq!(i.parse::<usize>().unwrap(), *expected, "{}: {line}", u.name);
            *expected += 1;
        }
    }
    for u in [&mut ann, &mut ben, &mut cat] {
        u.roster_becomes("* online (3): ann, ben, cat");
    }

    // Seed 004's own client on node A and a bincode client on node B.
    let mut rafi = ChatClient::connect(b[1], "Rafi", Dialect::Bincode, T).expect("bincode join");
    let dir = TempDir::new();
    let mut seed = Reap(seed_client(a[1].port(), &dir));
    let mut stdin = seed.0.stdin.take().unwrap();
    stdin.write_all(b"Dian\n").unwrap();
    let until = Instant::now() + T;
    loop {
        match rafi
            .recv(Duration::from_millis(200))
            .expect("rafi receives")
        {
            Some(ChatEvent::Joined { name, .. }) if name == "Dian" => break,
            _ => assert!(Instant::now() < until, "Rafi never saw Dian join"),
        }
    }
    rafi.send("Halo Dian").unwrap();
    ben.expect("[Rafi] Halo Dian", T);
    // The seed's client reads for a while after each line it sends.
    ann.expect("[Rafi] Halo Dian", T);
    stdin.write_all(b"Hello World\n").unwrap();
    drop(stdin);
    let mut out = String::new();
    seed.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains("Rafi > Halo Dian"),
        "the seed's client printed {out:?}"
    );
    let until = Instant::now() + T;
    loop {
        match rafi
            .recv(Duration::from_millis(200))
            .expect("rafi receives")
        {
            Some(ChatEvent::Message { from, text }) if from == "Dian" => {
                assert_eq!(text, "Hello World");
                break;
            }
            _ => assert!(Instant::now() < until, "Rafi never heard Dian"),
        }
    }
    cat.expect("[Dian] Hello World", T);
}

#[test]
fn a_name_taken_on_one_node_is_refused_on_another_until_its_owner_leaves() {
    let redis = Redis::start(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (_a, a) = node(&url, "node-a", "5s", &[], None);
    let (_b, b) = node(&url, "node-b", "5s", &[], None);
    let mut wen = User::join(b[0], "wen");
    let mut bob = User::join(a[0], "bob");
    wen.expect("* bob joined on node-a", T);

    // Refused exactly as a name taken on the same node is, then closed.
    let mut twin = User::connect(b[0], "bob");
    twin.expect("* error: name is taken", T);
    assert_eq!(twin.line(T), None, "closed after the refusal");
    let mut local_twin = User::connect(a[0], "bob");
    local_twin.expect("* error: name is taken", T);

    bob.say("/quit");
    wen.expect("* bob left on node-a (1 online)", T);
    let mut bob2 = User::join(b[0], "bob");
    bob2.roster_becomes("* online (2): bob, wen");
}

#[test]
fn a_killed_node_is_announced_gone_within_its_ttl_and_a_stopped_one_at_once() {
    let ttl = Duration::from_secs(4);
    let redis = Redis::start(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (mut a, a_addrs) = node(&url, "node-a", "4s", &[], None);
    let (_b, b) = node(&url, "node-b", "4s", &[], None);
    let mut wen = User::join(b[0], "wen");
    let _kai = User::join(a_addrs[0], "kai");
    wen.expect("* kai joined on node-a", T);

    // kill -9: not a word from it.
    let killed = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wen.expect("* kai left on node-a (1 online)", T);
    let after = killed.elapsed();
    assert!(
        after <= ttl,
        "announced {after:?} after the kill; presence_ttl is {ttl:?}"
    );
    // Its name is free within the TTL too.
    loop {
        let mut kai = User::connect(b[0], "kai");
        let line = kai.line(T);
        if line
            .as_deref()
            .is_some_and(|l| l.starts_with("* welcome kai,"))
        {
            break;
        }
        assert_eq!(
            line.as_deref(),
            Some("* error: name is taken"),
            "{:?}",
            kai.seen
        );
        assert!(
            killed.elapsed() <= ttl,
            "kai still taken {:?} after the kill",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A node that stops says so: its members are gone at once.
    let (mut c, c_addrs) = node(&url, "node-c", "4s", &[], None);
    let _cy = User::join(c_addrs[0], "cy");
    wen.expect("* cy joined on node-c", T);
    let stopped = Instant::now();
    c.signal(libc::SIGTERM);
    wen.expect("* cy left on node-c", T);
    assert!(
        stopped.elapsed() < ttl / 2,
        "a stopping node's members took {:?} to go",
        stopped.elapsed()
    );
    assert!(c.wait_exit(T).success(), "node-c exits 0");
    User::join(b[0], "cy");
}

#[test]
fn chat_goes_on_through_a_redis_outage_and_the_link_is_told_once_each_way() {
    let mut redis = Redis::start(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (mut da, a) = node(&url, "node-a", "3s", &[], None);
    let (mut db, b) = node(&url, "node-b", "3s", &[], None);
    let mut ann = User::join(a[0], "ann");
    let mut amy = User::join(a[0], "amy");
    let mut ben = User::join(b[0], "ben");
    ann.expect("* ben joined on node-b", T);
    amy.expect("* ben joined on node-b", T);
    ben.roster_becomes("* online (3): amy, ann, ben");

    let (ma, mb) = (da.metrics_addr(), db.metrics_addr());
    let link_up = |m| sample(&scrape(m), "netlab_chat_cluster_link_up{server=\"chat\"}");
    assert_eq!((link_up(ma), link_up(mb)), (Some(1.0), Some(1.0)));
    redis.stop();
    for u in [&mut ann, &mut amy, &mut ben] {
        u.expect("* cluster link down: chat continues on this node only", T);
    }
    assert_eq!((link_up(ma), link_up(mb)), (Some(0.0), Some(0.0)));
    // Each node's room goes on alone.
    ann.say("while down");
    amy.expect("[ann] while down", T);
    ben.say("only here");
    ben.say("/who");
    ben.expect("* online (3): amy, ann, ben", T);

    redis.restart();
    for u in [&mut ann, &mut amy, &mut ben] {
        u.expect("* cluster link back: chat reaches every node again", T);
    }
    ben.say("after");
    ann.expect("[ben] after", T);
    amy.expect("[ben] after", T);
    ann.say("after too");
    ben.expect("[ann] after too", T);
    for u in [&mut ann, &mut amy, &mut ben] {
        u.drain(Duration::from_millis(300));
        assert_eq!(u.count("cluster link down"), 1, "{}: {:#?}", u.name, u.seen);
        assert_eq!(u.count("cluster link back"), 1, "{}: {:#?}", u.name, u.seen);
    }
    // At most once: what was said during the outage stayed on its node,
    // and each node counted what it missed.
    assert_eq!(ben.count("while down"), 0, "{:#?}", ben.seen);
    assert_eq!(ann.count("only here") + amy.count("only here"), 0);
    db.wait_for_line("missed 1 event(s) of node \"node-a\"", T);
    da.wait_for_line("missed 1 event(s) of node \"node-b\"", T);
    for m in [ma, mb] {
        let body = scrape(m);
        let get = |name: &str| sample(&body, &format!("{name}{{server=\"chat\"}}"));
        assert_eq!(get("netlab_chat_cluster_link_up"), Some(1.0), "{body}");
        // One outage, one reconnect (the first link is no reconnect).
        assert_eq!(
            get("netlab_chat_cluster_reconnects_total"),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            get("netlab_chat_cluster_events_unpublished_total"),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            get("netlab_chat_cluster_events_missed_total"),
            Some(1.0),
            "{body}"
        );
        assert!(
            get("netlab_chat_cluster_events_published_total") >= Some(2.0),
            "{body}"
        );
        assert_eq!(
            get("netlab_chat_cluster_messages_dropped_total"),
            Some(0.0),
            "{body}"
        );
    }
}

#[test]
fn rediss_with_a_ca_of_its_own() {
    let pki = pki::Pki::new();
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let redis = Redis::start(&[
        "--tls-port",
        "PORT",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let (_a, a) = node(&url, "node-a", "5s", &[], Some(&pki.ca));
    let (_b, b) = node(&url, "node-b", "5s", &[], Some(&pki.ca));
    let mut ann = User::join(a[0], "ann");
    let mut ben = User::join(b[0], "ben");
    ann.expect("* ben joined on node-b", T);
    ann.say("over TLS");
    ben.expect("[ann] over TLS", T);
}

#[test]
fn bench_chat_spreads_its_readers_over_the_nodes() {
    let redis = Redis::start(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (_a, a) = node(&url, "node-a", "5s", &[], None);
    let (_b, b) = node(&url, "node-b", "5s", &[], None);
    let mut wen = User::join(b[0], "wen");
    let out = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(["bench", "chat", &a[0].to_string(), &b[0].to_string()])
        .args(["--clients", "7", "--senders", "1", "--size", "40"])
        .args(["--duration", "1", "--warmup", "0.2", "--json"])
        .output()
        .expect("run netlab bench chat");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("\"addr\":\"{},{}\"", a[0], b[0])),
        "{stdout}"
    );
    assert!(stdout.contains("\"lost\":0,"), "{stdout}");
    assert!(!stdout.contains("\"deliveries\":0,"), "{stdout}");
    // The sender and every other reader joined node A; three readers here.
    wen.drain(Duration::from_millis(300));
    let joined = |on_a: bool| {
        wen.seen
            .iter()
            .filter(|l| l.starts_with("* bench") && l.contains(" joined "))
            .filter(|l| l.contains(" joined on node-a ") == on_a)
            .count()
    };
    assert_eq!((joined(true), joined(false)), (4, 3), "{:#?}", wen.seen);
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn changing_the_cluster_on_reload_restarts_the_server_and_its_bridge() {
    let redis = Redis::start(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (mut d, addrs) = node(&url, "node-a", "5s", &[], None);
    let bridge = |d: &Daemon| {
        thread_names(d.child.id())
            .into_iter()
            .filter(|n| n.contains("redis"))
            .collect::<Vec<_>>()
    };
    assert_eq!(bridge(&d), ["chat-redis-pub", "chat-redis-sub"]);
    let mut ann = User::join(addrs[0], "ann");

    // The same configuration: nothing restarts, ann stays.
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded: added none; removed none; restarted none", T);
    ann.say("/who");
    ann.expect("* online (1): ann", T);

    // Another room: the server restarts on its port, with a bridge of its
    // own, and the old one's threads are gone.
    let path = d.dir.path("netlabd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("room = \"lobby\"", "room = \"hall\"")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_line("restarted chat", T);
    if !d.seen.iter().any(|l| l.contains("cluster room \"hall\"")) {
        d.wait_for_line("cluster room \"hall\": node \"node-a\" linked", T);
    }
    let until = Instant::now() + T;
    while bridge(&d) != ["chat-redis-pub", "chat-redis-sub"] {
        assert!(Instant::now() < until, "bridge threads: {:?}", bridge(&d));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its listener is bound anew (to port 0: another port).
    let listening = d
        .seen
        .iter()
        .rev()
        .find_map(|l| {
            l.split_once(" listening on ")
                .map(|(_, a)| a.trim().to_owned())
        })
        .expect("the restarted server's listener");
    User::join(listening.parse().unwrap(), "ben");
}
