//! The chat client (library and `netlab chat`) and `netlab bench chat`
//! against a real netlabd on loopback ports chosen by the kernel. Every
//! child process is killed when its guard drops, so a failed test leaves
//! nothing running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use netlab::client::{ChatClient, ChatEvent, Dialect, ErrorKind};

const STEP: Duration = Duration::from_secs(5);
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A child process, killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A netlabd serving one chat room on four listeners: line, header (10),
/// bincode, and header with seed 004's width (100), in that order.
struct Netlabd {
    _child: Guard,
    _dir: TempDir,
    line: SocketAddr,
    header: SocketAddr,
    bincode: SocketAddr,
    header100: SocketAddr,
    websocket: SocketAddr,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn netlabd() -> Netlabd {
    let dir = std::env::temp_dir().join(format!(
        "netlab-cli-chat-{}-{:?}",
        std::process::id(),
        thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("netlabd.toml");
    std::fs::write(
        &config,
        r#"
[[server]]
name = "chat"
service = "chat"
listen = [ { addr = "127.0.0.1:0", dialect = "line" },
           { addr = "127.0.0.1:0", dialect = "header", header_len = 10 },
           { addr = "127.0.0.1:0", dialect = "bincode" },
           { addr = "127.0.0.1:0", dialect = "header", header_len = 100 },
           { addr = "127.0.0.1:0", dialect = "websocket" } ]
"#,
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netlabd"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netlabd");
    let stderr = child.stderr.take().expect("stderr is piped");
    let child = Guard(child);
    let (tx, rx) = mpsc::channel();
    // Reads the log to the end, so netlabd never blocks on a full pipe.
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some((_, addr)) = line.split_once("listening on ")
                && let Ok(addr) = addr.trim().parse::<SocketAddr>()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let mut addrs = Vec::new();
    for _ in 0..5 {
        addrs.push(
            rx.recv_timeout(STEP)
                .expect("netlabd announces its listeners"),
        );
    }
    Netlabd {
        _child: child,
        _dir: TempDir(dir),
        line: addrs[0],
        header: addrs[1],
        bincode: addrs[2],
        header100: addrs[3],
        websocket: addrs[4],
    }
}

/// Receives events until one matches, failing after [`STEP`].
fn expect_event(client: &mut ChatClient, wanted: impl Fn(&ChatEvent) -> bool) -> ChatEvent {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the expected event did not come");
        if let Some(event) = client.recv(left).expect("receive")
            && wanted(&event)
        {
            return event;
        }
    }
}

#[test]
fn clients_of_different_dialects_talk_through_the_room() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    assert_eq!(ayu.online_at_welcome(), 1);
    let mut rafi = ChatClient::connect(server.bincode, "Rafi", Dialect::Bincode, STEP).unwrap();
    assert_eq!(rafi.online_at_welcome(), 2);
    assert!(rafi.seen_as().is_some_and(|ip| ip.is_loopback()));
    let mut dian = ChatClient::connect(
        server.header,
        "Dian",
        Dialect::Header { header_len: 10 },
        STEP,
    )
    .unwrap();

    let joined = expect_event(&mut ayu, |e| matches!(e, ChatEvent::Joined { .. }));
    assert_eq!(
        joined,
        ChatEvent::Joined {
            name: "Rafi".into(),
            online: 2
        }
    );
    rafi.send("Hello World, naïve 語").unwrap();
    for client in [&mut ayu, &mut dian] {
        let got = expect_event(client, |e| matches!(e, ChatEvent::Message { .. }));
        assert_eq!(
            got,
            ChatEvent::Message {
                from: "Rafi".into(),
                text: "Hello World, naïve 語".into()
            }
        );
    }

    for client in [&mut ayu, &mut rafi, &mut dian] {
        client.who().unwrap();
        let roster = expect_event(client, |e| matches!(e, ChatEvent::Roster { .. }));
        assert_eq!(
            roster,
            ChatEvent::Roster {
                names: vec!["Ayu".into(), "Dian".into(), "Rafi".into()]
            }
        );
    }

    dian.quit().unwrap();
    let left = expect_event(&mut rafi, |e| matches!(e, ChatEvent::Left { .. }));
    assert_eq!(
        left,
        ChatEvent::Left {
            name: "Dian".into(),
            online: 2
        }
    );
    // Nothing else is pending, so a short wait times out quietly.
    assert!(
        ayu.recv(Duration::from_millis(50))
            .unwrap()
            .is_none_or(|e| matches!(e, ChatEvent::Joined { .. } | ChatEvent::Left { .. }))
    );
}

#[test]
fn a_taken_name_is_refused_with_the_servers_reason() {
    let server = netlabd();
    let _ayu = ChatClient::connect(
        server.header,
        "Ayu",
        Dialect::Header { header_len: 10 },
        STEP,
    )
    .unwrap();
    for (addr, dialect) in [
        (server.line, Dialect::Line),
        (server.header, Dialect::Header { header_len: 10 }),
        (server.bincode, Dialect::Bincode),
    ] {
        let err = ChatClient::connect(addr, "Ayu", dialect.clone(), STEP).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{dialect}: {err}");
        assert!(
            err.to_string().contains("name is taken"),
            "{dialect}: {err}"
        );
    }
}

/// Seed 004's client uses a 100-byte header; the library's client speaks
/// that width to a listener configured with it, both ways.
#[test]
fn a_client_with_the_seeds_100_byte_header_talks_through_the_room() {
    let server = netlabd();
    let seed = Dialect::Header { header_len: 100 };
    let mut dian = ChatClient::connect(server.header100, "Dian", seed.clone(), STEP).unwrap();
    assert_eq!(dian.dialect(), seed);
    let mut ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    expect_event(
        &mut dian,
        |e| matches!(e, ChatEvent::Joined { name, .. } if name == "Ayu"),
    );
    dian.send("Hello World").unwrap();
    assert_eq!(
        expect_event(&mut ayu, |e| matches!(e, ChatEvent::Message { .. })),
        ChatEvent::Message {
            from: "Dian".into(),
            text: "Hello World".into()
        }
    );
    // Longer than 99 bytes: its length takes three of the header's digits.
    let long = "x".repeat(1000);
    ayu.send(&long).unwrap();
    assert_eq!(
        expect_event(&mut dian, |e| matches!(e, ChatEvent::Message { .. })),
        ChatEvent::Message {
            from: "Ayu".into(),
            text: long
        }
    );
    dian.who().unwrap();
    assert_eq!(
        expect_event(&mut dian, |e| matches!(e, ChatEvent::Roster { .. })),
        ChatEvent::Roster {
            names: vec!["Ayu".into(), "Dian".into()]
        }
    );
    dian.quit().unwrap();
}

/// `netlab ARGS` with piped stdio; stdout lines arrive on a channel.
struct Cli {
    child: Guard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: thread::JoinHandle<String>,
}

fn netlab_chat(args: &[&str]) -> Cli {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netlab");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Cli {
        child: Guard(child),
        stdin,
        lines,
        stderr,
    }
}

impl Cli {
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to netlab's stdin");
        stdin.flush().expect("flush netlab's stdin");
    }

    /// Waits for a stdout line containing `text`.
    fn expect_line(&self, text: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("netlab printed no line containing {text:?}"),
            }
        }
    }

    /// Closes stdin (end of input) and waits for the exit.
    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for netlab") {
                break status;
            }
            assert!(started.elapsed() < RUN_LIMIT, "netlab did not exit");
            thread::sleep(Duration::from_millis(10));
        };
        let stderr = self.stderr.join().expect("stderr reader");
        (status, stderr)
    }
}

#[test]
fn netlab_chat_sends_typed_lines_prints_the_room_and_leaves_on_end_of_input() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(
        server.header,
        "Ayu",
        Dialect::Header { header_len: 10 },
        STEP,
    )
    .unwrap();
    let addr = server.line.to_string();
    let mut cli = netlab_chat(&["chat", &addr, "--name", "Bima"]);
    cli.expect_line("joined");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Joined { name, .. } if name == "Bima"),
    );

    cli.type_line("hello Ayu");
    let got = expect_event(&mut ayu, |e| matches!(e, ChatEvent::Message { .. }));
    assert_eq!(
        got,
        ChatEvent::Message {
            from: "Bima".into(),
            text: "hello Ayu".into()
        }
    );
    // Control characters from a peer cannot reach the terminal raw.
    ayu.send("hi Bima\u{1b}[2J").unwrap();
    assert_eq!(cli.expect_line("[Ayu]"), "[Ayu] hi Bima\u{fffd}[2J");
    cli.type_line("/who");
    assert_eq!(cli.expect_line("online"), "* online (2): Ayu, Bima");

    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Left { name, .. } if name == "Bima"),
    );
}

/// A typed line that is not UTF-8 (a Latin-1 terminal) is sent with U+FFFD
/// where it is invalid, and the lines after it are sent too: it is not
/// taken for the end of input.
#[test]
fn netlab_chat_sends_a_line_that_is_not_utf8_and_goes_on() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(
        server.header,
        "Ayu",
        Dialect::Header { header_len: 10 },
        STEP,
    )
    .unwrap();
    let addr = server.line.to_string();
    let mut cli = netlab_chat(&["chat", &addr, "--name", "Bima"]);
    cli.expect_line("joined");
    let stdin = cli.stdin.as_mut().expect("stdin");
    stdin.write_all(b"caf\xe9 latin1\nthird line\n").unwrap();
    stdin.flush().unwrap();
    for want in ["caf\u{fffd} latin1", "third line"] {
        let got = expect_event(&mut ayu, |e| matches!(e, ChatEvent::Message { .. }));
        assert_eq!(
            got,
            ChatEvent::Message {
                from: "Bima".into(),
                text: want.into()
            }
        );
    }
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn netlab_chat_quits_on_slash_quit_in_the_bincode_dialect() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    let addr = server.bincode.to_string();
    let mut cli = netlab_chat(&["chat", &addr, "--name", "Bima", "--dialect", "bincode"]);
    cli.expect_line("joined");
    cli.type_line("/quit");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Left { name, .. } if name == "Bima"),
    );
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn netlab_chat_speaks_the_websocket_dialect() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    let addr = server.websocket.to_string();
    let mut cli = netlab_chat(&["chat", &addr, "--name", "Web", "--dialect", "websocket"]);
    cli.expect_line("joined");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Joined { name, .. } if name == "Web"),
    );
    cli.type_line("hello from \"the\" web");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Message { from, text } if from == "Web" && text == "hello from \"the\" web"),
    );
    ayu.send("hi, web").unwrap();
    cli.expect_line("[Ayu] hi, web");
    cli.type_line("/quit");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Left { name, .. } if name == "Web"),
    );
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn netlab_chat_exits_non_zero_when_the_name_is_taken() {
    let server = netlabd();
    let _ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    let addr = server.header.to_string();
    let cli = netlab_chat(&["chat", &addr, "--name", "Ayu", "--dialect", "header"]);
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("refused: name is taken"), "{stderr}");
}

#[test]
fn netlab_chat_speaks_the_seeds_100_byte_header() {
    let server = netlabd();
    let mut ayu = ChatClient::connect(server.line, "Ayu", Dialect::Line, STEP).unwrap();
    let addr = server.header100.to_string();
    let mut cli = netlab_chat(&[
        "chat",
        &addr,
        "--name",
        "Bima",
        "--dialect",
        "header",
        "--header-len",
        "100",
    ]);
    cli.expect_line("joined");
    expect_event(
        &mut ayu,
        |e| matches!(e, ChatEvent::Joined { name, .. } if name == "Bima"),
    );
    cli.type_line("hello from a 100-byte header");
    assert_eq!(
        expect_event(&mut ayu, |e| matches!(e, ChatEvent::Message { .. })),
        ChatEvent::Message {
            from: "Bima".into(),
            text: "hello from a 100-byte header".into()
        }
    );
    ayu.send("hi Bima").unwrap();
    assert_eq!(cli.expect_line("[Ayu]"), "[Ayu] hi Bima");
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn netlab_chat_refuses_a_header_wider_than_a_listener_can_be() {
    let server = netlabd();
    let addr = server.header100.to_string();
    let cli = netlab_chat(&[
        "chat",
        &addr,
        "--name",
        "Bima",
        "--dialect",
        "header",
        "--header-len",
        "1025",
    ]);
    let (status, stderr) = cli.finish();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("header_len 1025 is not between 1 and 1024"),
        "{stderr}"
    );
}

fn bench(args: &[&str]) -> (i32, String, String) {
    let cli = netlab_chat(args);
    let mut out = String::new();
    let (status, stderr) = {
        let lines = &cli.lines;
        let deadline = Instant::now() + RUN_LIMIT;
        // The report is one JSON line; read until the pipe closes.
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push_str(&line);
            out.push('\n');
        }
        cli.finish()
    };
    (status.code().unwrap_or(-1), out, stderr)
}

fn json_number(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    let end = json[at..].find([',', '}']).map_or(json.len(), |e| at + e);
    json[at..end].parse().expect("a number")
}

#[test]
fn bench_chat_measures_deliveries_in_every_dialect() {
    let server = netlabd();
    for (addr, dialect, header_len) in [
        (server.line, "line", "10"),
        (server.header, "header", "10"),
        (server.bincode, "bincode", "10"),
        (server.header100, "header", "100"),
        (server.websocket, "websocket", "10"),
    ] {
        let addr = addr.to_string();
        let (code, out, stderr) = bench(&[
            "bench",
            "chat",
            &addr,
            "--clients",
            "6",
            "--senders",
            "2",
            "--size",
            "40",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--dialect",
            dialect,
            "--header-len",
            header_len,
            "--json",
        ]);
        assert_eq!(code, 0, "{dialect}: {out}{stderr}");
        assert!(json_number(&out, "deliveries") > 0.0, "{dialect}: {out}");
        assert!(json_number(&out, "sent_per_s") > 0.0, "{dialect}: {out}");
        assert_eq!(json_number(&out, "lost"), 0.0, "{dialect}: {out}");
        assert_eq!(json_number(&out, "malformed"), 0.0, "{dialect}: {out}");
        assert!(json_number(&out, "p50_us") > 0.0, "{dialect}: {out}");
    }
}

#[test]
fn bench_chat_refuses_a_size_too_small_for_the_stamp() {
    let server = netlabd();
    let addr = server.line.to_string();
    let (code, _, stderr) = bench(&["bench", "chat", &addr, "--size", "10"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--size must be at least 29"), "{stderr}");
}

#[test]
fn bench_chat_streams_batches_below_the_window_and_refuses_an_empty_batch() {
    let server = netlabd();
    let addr = server.line.to_string();
    let (code, out, stderr) = bench(&[
        "bench",
        "chat",
        &addr,
        "--clients",
        "5",
        "--size",
        "40",
        "--window",
        "12",
        "--batch",
        "3",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{stderr}");
    assert_eq!(json_number(&out, "window"), 12.0, "{out}");
    assert_eq!(json_number(&out, "batch"), 3.0, "{out}");
    assert!(json_number(&out, "deliveries") > 0.0, "{out}");
    assert_eq!(json_number(&out, "lost"), 0.0, "{out}");
    assert_eq!(json_number(&out, "out_of_order"), 0.0, "{out}");

    let (code, _, stderr) = bench(&["bench", "chat", &addr, "--batch", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--batch must be at least 1"), "{stderr}");
}
