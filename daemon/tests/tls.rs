//! TLS from outside: netlabd with `tls` on its listeners, reached by
//! `netlab --tls`, `openssl s_client`, `ncat --ssl` and `socat OPENSSL:`,
//! and its certificates reloaded on SIGHUP, all or nothing.

mod common;
#[path = "../../tests/common/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlab::chat::Dialect;
use netlab::client::{self, ChatClient, ChatEvent, ClientOptions, ErrorKind, TlsClient};
use netlab::tls::ClientFiles;

use common::*;
use pki::Pki;

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const T: Duration = Duration::from_secs(10);

fn trusting(ca: &Path) -> ClientOptions {
    let files = ClientFiles {
        ca: Some(ca.to_owned()),
        ..ClientFiles::default()
    };
    ClientOptions::new(Duration::from_secs(5)).with_tls(TlsClient::new(&files).unwrap())
}

/// netlabd with a TLS echo (event model), count and line chat listener,
/// the certificate files copied next to the configuration and named
/// relative to it.
fn daemon(pki: &Pki) -> (Daemon, SocketAddr, SocketAddr, SocketAddr) {
    let dir = TempDir::new();
    std::fs::copy(&pki.server_cert, dir.path("cert.pem")).unwrap();
    std::fs::copy(&pki.server_key, dir.path("key.pem")).unwrap();
    let tls = r#"tls = { cert = "cert.pem", key = "key.pem" }"#;
    let config = format!(
        "[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [{{ addr = \"127.0.0.1:0\", {tls} }}]\n\
         [[server]]\nname = \"count\"\nservice = \"count\"\nlisten = [{{ addr = \"127.0.0.1:0\", {tls} }}]\n\
         [[server]]\nname = \"chat\"\nservice = \"chat\"\nlisten = [{{ addr = \"127.0.0.1:0\", dialect = \"line\", {tls} }}]\n"
    );
    let path = dir.write("netlabd.toml", &config);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path);
    let (d, bound) = Daemon::spawn(cmd, dir, 3);
    let at = |name: &str| bound.iter().find(|(n, _)| n == name).unwrap().1;
    let (echo, count, chat) = (at("echo"), at("count"), at("chat"));
    (d, echo, count, chat)
}

fn netlab(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(NETLAB)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = wait_output(child, T);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The child's output, or a failed test (and a killed child) after `within`.
fn wait_output(mut child: std::process::Child, within: Duration) -> std::process::Output {
    let until = Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {within:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn netlab_speaks_tls_to_netlabd() {
    let pki = Pki::new();
    let (_d, echo, count, chat) = daemon(&pki);
    let ca = pki.ca.display().to_string();
    let (code, out, err) = netlab(
        &[
            "echo",
            "--tls",
            "--ca",
            &ca,
            &echo.to_string(),
            "hello",
            "tls",
        ],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "hello tls\n"), "{err}");
    let (code, out, err) = netlab(
        &["count", "--tls", "--ca", &ca, &count.to_string(), "héllo"],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "5\n"), "{err}");
    let (code, out, err) = netlab(
        &[
            "echo",
            "--tls",
            "--ca",
            &ca,
            "--servername",
            "localhost",
            &echo.to_string(),
            "named",
        ],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "named\n"), "{err}");

    // Someone already in the room hears what `netlab chat --tls` says.
    let mut ayu = ChatClient::connect_with(chat, "ayu", Dialect::Line, &trusting(&pki.ca)).unwrap();
    let (code, _, err) = netlab(
        &[
            "chat",
            "--tls",
            "--ca",
            &ca,
            "--name",
            "rafi",
            &chat.to_string(),
        ],
        "halo ayu\n/quit\n",
    );
    assert_eq!(code, 0, "{err}");
    let mut heard = Vec::new();
    while let Ok(Some(event)) = ayu.recv(Duration::from_secs(2)) {
        heard.push(event);
        if matches!(heard.last(), Some(ChatEvent::Left { .. })) {
            break;
        }
    }
    assert!(
        heard.contains(&ChatEvent::Message {
            from: "rafi".into(),
            text: "halo ayu".into()
        }),
        "{heard:?}"
    );

    // A CA that did not sign the server's certificate: a clear error, exit 4.
    let other = pki.other_ca.display().to_string();
    let (code, _, err) = netlab(
        &["echo", "--tls", "--ca", &other, &echo.to_string(), "x"],
        "",
    );
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not signed by a CA this client trusts"),
        "{err}"
    );
    // --ca without --tls is a usage error.
    let (code, _, err) = netlab(&["echo", "--ca", &ca, &echo.to_string(), "x"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn netlab_bench_echo_over_tls_reports_requests_and_handshakes() {
    let pki = Pki::new();
    let (_d, echo, _, _) = daemon(&pki);
    let ca = pki.ca.display().to_string();
    let addr = echo.to_string();
    let base = [
        "bench", "echo", &addr, "--tls", "--ca", &ca, "-c", "4", "-d", "1", "--warmup", "0.2",
        "--json",
    ];
    let (code, out, err) = netlab(&base, "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"transport\":\"tls\""), "{out}");
    assert!(!out.contains("\"requests\":0,"), "{out}");
    assert!(out.contains("\"errors\":0,"), "{out}");
    let mut handshakes = base.to_vec();
    handshakes.push("--handshakes");
    let (code, out, err) = netlab(&handshakes, "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("\"handshakes_per_s\":0.0"), "{out}");
}

/// Installs a Debian package when its command is missing (CI runs as root
/// with apt-get); says why and fails when it cannot.
fn need(command: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    eprintln!("{command} is missing; installing {package} with apt-get");
    let installed = Command::new("sh")
        .args([
            "-c",
            // Another test binary (or a person) may be installing too:
            // wait for dpkg's lock rather than fail on it.
            &format!("apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq {package} >/dev/null 2>&1"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "{command} is needed for this test and could not be installed (apt-get install {package}); install it and run again"
    );
}

/// Starts `cmd`, writes `input`, and reads its stdout until `want` shows up.
fn talk(mut cmd: Command, input: &[u8], want: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            got.push_str(&line);
            line.clear();
            let _ = tx.send(got.clone());
        }
    });
    let until = Instant::now() + T;
    let mut got = String::new();
    while !got.contains(want) && Instant::now() < until {
        if let Ok(more) = rx.recv_timeout(Duration::from_millis(100)) {
            got = more;
        }
    }
    drop(stdin);
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let _ = child.wait();
    assert!(
        got.contains(want),
        "no {want:?} from {cmd:?}; got {got:?}; stderr {err}"
    );
    got
}

#[test]
fn openssl_ncat_and_socat_reach_tls_listeners() {
    need("openssl", "openssl");
    need("ncat", "ncat");
    need("socat", "socat");
    let pki = Pki::new();
    let (_d, echo, _, chat) = daemon(&pki);
    let ca = pki.ca.display().to_string();

    let s_client = |addr: SocketAddr| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-quiet",
        ]);
        cmd
    };
    talk(s_client(echo), b"echoed by openssl\n", "echoed by openssl");
    // TLS 1.2 too.
    let mut v12 = s_client(echo);
    v12.arg("-tls1_2");
    talk(v12, b"over TLS 1.2\n", "over TLS 1.2");
    // The chat room, from s_client, with someone in it.
    let mut ayu = ChatClient::connect_with(chat, "ayu", Dialect::Line, &trusting(&pki.ca)).unwrap();
    let out = talk(s_client(chat), b"openssl\nhello ayu\n", "welcome openssl");
    assert!(out.contains("* welcome openssl"), "{out}");
    loop {
        match ayu.recv(T) {
            Ok(Some(ChatEvent::Message { from, text })) => {
                assert_eq!((from.as_str(), text.as_str()), ("openssl", "hello ayu"));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    let mut ncat = Command::new("ncat");
    // ncat checks the certificate against a host name (not an address):
    // localhost, which the certificate carries, over IPv4 as listened on.
    ncat.args([
        "-4",
        "--ssl",
        "--ssl-trustfile",
        &ca,
        "localhost",
        &echo.port().to_string(),
    ]);
    talk(ncat, b"echoed by ncat\n", "echoed by ncat");

    let mut socat = Command::new("socat");
    socat.args([
        "-",
        &format!("OPENSSL:127.0.0.1:{},cafile={ca},verify=1", echo.port()),
    ]);
    talk(socat, b"echoed by socat\n", "echoed by socat");
}

/// SIGHUP reads the certificates anew: new handshakes use the new pair,
/// open connections go on; a bad pair changes nothing and is logged.
#[test]
fn sighup_reloads_certificates_all_or_nothing() {
    let pki = Pki::new();
    let (mut d, echo, _, chat) = daemon(&pki);
    let old = trusting(&pki.ca);
    let new = trusting(&pki.other_ca);
    assert_eq!(client::tcp_echo_with(echo, b"a", &old, 10).unwrap(), b"a");
    let mut open = ChatClient::connect_with(chat, "open", Dialect::Line, &old).unwrap();

    // Another CA's certificate and key for the same names.
    std::fs::copy(&pki.other_server_cert, d.dir.path("cert.pem")).unwrap();
    std::fs::copy(&pki.other_server_key, d.dir.path("key.pem")).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_for_line("reloaded", T);
    assert!(
        line.contains("certificates read anew for 3 TLS listener(s)"),
        "{line}"
    );
    assert_eq!(client::tcp_echo_with(echo, b"b", &new, 10).unwrap(), b"b");
    let e = client::tcp_echo_with(echo, b"b", &old, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // The connection made before goes on, with what it began with.
    let mut later = ChatClient::connect_with(chat, "later", Dialect::Line, &new).unwrap();
    open.send("still here").unwrap();
    loop {
        match later.recv(T) {
            Ok(Some(ChatEvent::Message { from, text })) => {
                assert_eq!((from.as_str(), text.as_str()), ("open", "still here"));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    // A key that does not match: refused, and the pair in use stays.
    std::fs::copy(&pki.server_key, d.dir.path("key.pem")).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_for_line("reload refused", T);
    assert!(line.contains("reload refused, nothing changed"), "{line}");
    let why = d.wait_for_line("does not match", T);
    assert!(why.contains("key.pem"), "{why}");
    assert_eq!(client::tcp_echo_with(echo, b"c", &new, 10).unwrap(), b"c");
    open.send("and still").unwrap();
    loop {
        match later.recv(T) {
            Ok(Some(ChatEvent::Message { text, .. })) => {
                assert_eq!(text, "and still");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
