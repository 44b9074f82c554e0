//! TLS on TCP listeners: every service under every model it runs on, every
//! chat dialect, client certificates, the client's errors for bad server
//! certificates, the configuration's errors for bad files, and clients that
//! never begin their handshake. Certificates are made by each test (see
//! `common/pki.rs`).

#[path = "common/mod.rs"]
mod common;
#[path = "common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlab::chat::Dialect;
use netlab::client::{
    self, ChatClient, ChatEvent, ClientError, ClientOptions, CountFraming, ErrorKind, TlsClient,
};
use netlab::config::Config;
use netlab::server::RunningServer;
use netlab::tls::ClientFiles;

use common::*;
use pki::Pki;

/// Client options that trust the test CA, with a client certificate when
/// `with_cert`.
fn options(pki: &Pki, with_cert: bool) -> ClientOptions {
    let files = ClientFiles {
        ca: Some(pki.ca.clone()),
        cert: with_cert.then(|| pki.client_cert.clone()),
        key: with_cert.then(|| pki.client_key.clone()),
    };
    ClientOptions::new(IO_TIMEOUT).with_tls(TlsClient::new(&files).unwrap())
}

fn tls_server(service: &str, model: Model, tls: &str, extra: &str) -> RunningServer {
    let model = model.name();
    start(&format!(
        "name = \"tls\"\nservice = \"{service}\"\nmodel = \"{model}\"\nlisten = [{{ addr = \"127.0.0.1:0\", tls = {tls} }}]\n{extra}\n"
    ))
}

const MODELS: [Model; 3] = [Model::Event, Model::Thread, Model::Fork];

#[test]
fn echo_over_tls_under_every_model() {
    let pki = Pki::new();
    let opts = options(&pki, false);
    for model in MODELS {
        let _guard = model_guard(model);
        let server = tls_server("echo", model, &pki.server_tls(), "");
        let addr = addr(&server);
        for message in [&b"hello over TLS"[..], b"", &vec![7u8; 3 << 20]] {
            let reply = client::tcp_echo_with(addr, message, &opts, 2 * message.len() + 64)
                .unwrap_or_else(|e| panic!("{model:?}, {} bytes: {e}", message.len()));
            assert!(
                reply == message,
                "{model:?}: {} bytes came back",
                reply.len()
            );
        }
        // The fork model counts a child's handshake once it has reaped it.
        assert!(
            eventually(IO_TIMEOUT, || server.stats().tls_handshakes == 3),
            "{model:?}: {:?}",
            server.stats()
        );
        assert_eq!(server.stats().tls_failures, 0, "{model:?}");
        server.stop(Duration::from_millis(500));
    }
}

#[test]
fn count_over_tls_in_every_framing_and_model() {
    let pki = Pki::new();
    let opts = options(&pki, false);
    for model in MODELS {
        let _guard = model_guard(model);
        for (framing, setting) in [
            (CountFraming::Line, ""),
            (
                CountFraming::Header { header_len: 10 },
                "framing = \"header\"",
            ),
            (CountFraming::Chunk, "framing = \"chunk\""),
        ] {
            let server = tls_server("count", model, &pki.server_tls(), setting);
            let n = client::count_with(addr(&server), "héllo wörld".as_bytes(), framing, &opts)
                .unwrap_or_else(|e| panic!("{model:?} {framing:?}: {e}"));
            assert_eq!(n, 11, "{model:?} {framing:?}");
            server.stop(Duration::from_millis(500));
        }
    }
}

/// One room, a listener of each dialect with TLS and a plain line one:
/// every client hears every other, whatever the dialect or the transport.
#[test]
fn chat_over_tls_in_every_dialect_sharing_a_room_with_plain_tcp() {
    let pki = Pki::new();
    let opts = options(&pki, false);
    let tls = pki.server_tls();
    let server = start(&format!(
        "name = \"room\"\nservice = \"chat\"\nlisten = [\
         {{ addr = \"127.0.0.1:0\", dialect = \"line\", tls = {tls} }}, \
         {{ addr = \"127.0.0.1:0\", dialect = \"header\", header_len = 100, tls = {tls} }}, \
         {{ addr = \"127.0.0.1:0\", dialect = \"bincode\", tls = {tls} }}, \
         {{ addr = \"127.0.0.1:0\", dialect = \"line\" }}]\n"
    ));
    let addrs = server.local_addrs().to_vec();
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 100 },
        Dialect::Bincode,
    ];
    let mut clients: Vec<ChatClient> = Vec::new();
    for (i, dialect) in dialects.into_iter().enumerate() {
        let name = format!("tls-{}", dialect.name());
        clients.push(
            ChatClient::connect_with(addrs[i], &name, dialect, &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    clients.push(ChatClient::connect(addrs[3], "plain", Dialect::Line, IO_TIMEOUT).unwrap());
    let names: Vec<String> = clients.iter().map(|c| c.name().to_owned()).collect();
    // Everyone hears the others join, then each says something.
    for i in 0..clients.len() {
        let text = format!("hello from {}", names[i]);
        clients[i].send(&text).unwrap();
        for (j, other) in clients.iter_mut().enumerate() {
            if i == j {
                continue;
            }
            loop {
                match other.recv(IO_TIMEOUT) {
                    Ok(Some(ChatEvent::Message { from, text: got })) => {
                        assert_eq!(
                            (from.as_str(), got.as_str()),
                            (names[i].as_str(), text.as_str())
                        );
                        break;
                    }
                    Ok(Some(ChatEvent::Joined { .. })) => {}
                    other => panic!("{} waiting for {text:?}: {other:?}", names[j]),
                }
            }
        }
    }
    assert_eq!(server.stats().tls_handshakes, 3);
    for c in clients {
        c.quit().unwrap();
    }
    server.stop(Duration::from_millis(500));
}

#[test]
fn client_certificates_none_refused_good_accepted_other_ca_refused() {
    let pki = Pki::new();
    let ca = pki.ca.display().to_string();
    for model in MODELS {
        let _guard = model_guard(model);
        let tls = pki.tls_table(
            &pki.server_cert,
            &pki.server_key,
            &format!(", client_ca = {ca:?}"),
        );
        let server = tls_server("echo", model, &tls, "");
        let addr = addr(&server);
        assert_eq!(
            client::tcp_echo_with(addr, b"with a good certificate", &options(&pki, true), 100)
                .unwrap(),
            b"with a good certificate"
        );
        let refused = client::tcp_echo_with(addr, b"x", &options(&pki, false), 100).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Tls, "{model:?}: {refused}");
        assert!(
            refused
                .to_string()
                .contains("requires a client certificate"),
            "{model:?}: {refused}"
        );
        let other = ClientFiles {
            ca: Some(pki.ca.clone()),
            cert: Some(pki.other_client_cert.clone()),
            key: Some(pki.other_client_key.clone()),
        };
        let other = ClientOptions::new(IO_TIMEOUT).with_tls(TlsClient::new(&other).unwrap());
        let refused = client::tcp_echo_with(addr, b"x", &other, 100).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Tls, "{model:?}: {refused}");
        assert!(
            refused
                .to_string()
                .contains("refused this client's certificate"),
            "{model:?}: {refused}"
        );
        assert!(
            eventually(IO_TIMEOUT, || server.stats().tls_failures == 2),
            "{model:?}: {:?}",
            server.stats()
        );
        server.stop(Duration::from_millis(500));
    }
}

/// What a client is told when the server's certificate is from a CA it
/// does not trust, expired, or for another name.
#[test]
fn bad_server_certificates_give_the_client_a_clear_error() {
    let pki = Pki::new();
    let opts = options(&pki, false);
    let cases = [
        (
            pki.tls_table(&pki.other_server_cert, &pki.other_server_key, ""),
            "not signed by a CA this client trusts",
        ),
        (
            pki.tls_table(&pki.expired_cert, &pki.expired_key, ""),
            "has expired",
        ),
        (
            pki.tls_table(&pki.wrong_name_cert, &pki.wrong_name_key, ""),
            "is not valid for 127.0.0.1",
        ),
    ];
    for (tls, says) in cases {
        let server = tls_server("echo", Model::Event, &tls, "");
        let e = client::tcp_echo_with(addr(&server), b"x", &opts, 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "TLS handshake with {}: the server's certificate",
                addr(&server)
            )) && text.contains(says),
            "{text}"
        );
        server.stop(Duration::ZERO);
    }
    // Asked for by a name the certificate carries, it is accepted.
    let server = tls_server("echo", Model::Event, &pki.server_tls(), "");
    let named = ClientOptions::new(IO_TIMEOUT).with_tls(
        TlsClient::new(&ClientFiles {
            ca: Some(pki.ca.clone()),
            ..ClientFiles::default()
        })
        .unwrap()
        .with_server_name("localhost")
        .unwrap(),
    );
    assert_eq!(
        client::tcp_echo_with(addr(&server), b"by name", &named, 100).unwrap(),
        b"by name"
    );
    // And a plain client on a TLS listener, or a TLS client on a plain one,
    // is told what is wrong rather than left hanging.
    let plain = start("name = \"plain\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    let e = client::tcp_echo_with(addr(&plain), b"x", &opts, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("does not speak TLS"), "{e}");
    server.stop(Duration::ZERO);
    plain.stop(Duration::ZERO);
}

/// A client certificate file without its key, or a CA file that is not
/// PEM, is refused before anything is sent.
#[test]
fn bad_client_files_are_refused_up_front() {
    let pki = Pki::new();
    let e = TlsClient::new(&ClientFiles {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: None,
    })
    .unwrap_err();
    assert!(e.to_string().contains("give both or neither"), "{e}");
    let e = TlsClient::new(&ClientFiles {
        ca: Some(pki.client_key.clone()),
        ..ClientFiles::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("no certificate in it"), "{e}");
    let e = TlsClient::new(&ClientFiles {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.other_client_key.clone()),
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("does not match the certificate"),
        "{e}"
    );
}

/// Every TLS file a listener names is read when the configuration is
/// checked; one that cannot be used is an error at the key that names it,
/// with the path and the reason.
#[test]
fn unusable_tls_files_are_configuration_errors_at_their_key() {
    let pki = Pki::new();
    let missing = pki.dir.join("missing.pem");
    let cases: [(String, &str, String); 5] = [
        (
            pki.tls_table(&missing, &pki.server_key, ""),
            "cert",
            format!("{}: cannot read it: No such file", missing.display()),
        ),
        (
            pki.tls_table(&pki.server_key, &pki.server_key, ""),
            "cert",
            "no certificate in it".into(),
        ),
        (
            pki.tls_table(&pki.server_cert, &pki.server_cert, ""),
            "key",
            "no private key in it".into(),
        ),
        (
            pki.tls_table(&pki.server_cert, &pki.client_key, ""),
            "key",
            "the key does not match the certificate".into(),
        ),
        (
            pki.tls_table(
                &pki.server_cert,
                &pki.server_key,
                &format!(", client_ca = {:?}", missing.display().to_string()),
            ),
            "client_ca",
            "cannot read it".into(),
        ),
    ];
    for (table, key, says) in cases {
        let text = format!(
            "[[server]]\nname = \"t\"\nservice = \"echo\"\nlisten = [\n  {{ addr = \"127.0.0.1:0\", tls = {table} }}\n]\n"
        );
        let errors = Config::parse(&text, "t.toml").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        let line = text.lines().nth(e.location.line - 1).unwrap();
        let at = &line[line.char_indices().nth(e.location.column - 1).unwrap().0..];
        assert!(at.starts_with(&format!("{:?}", "")[..0]), "{at}");
        // The column points into the value of the key at fault.
        let before = &line[..line.len() - at.len()];
        assert!(
            before.trim_end().ends_with(&format!("{key} =")),
            "{key}: error at {}:{} (`{at}`): {}",
            e.location.line,
            e.location.column,
            e.message
        );
        assert!(e.message.contains(&says), "{key}: {}", e.message);
    }
    // TLS on UDP is refused, and says why.
    let text = format!(
        "[[server]]\nname = \"u\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [{{ addr = \"127.0.0.1:0\", tls = {} }}]\n",
        pki.server_tls()
    );
    let e = Config::parse(&text, "u.toml").unwrap_err();
    assert!(e.to_string().contains("no DTLS"), "{e}");
}

/// Relative paths in a file are relative to the file.
#[test]
fn relative_tls_paths_are_relative_to_the_configuration_file() {
    let pki = Pki::new();
    let path = pki.dir.join("netlabd.toml");
    std::fs::write(
        &path,
        "[[server]]\nname = \"t\"\nservice = \"echo\"\nlisten = [{ addr = \"127.0.0.1:0\", tls = { cert = \"server.pem\", key = \"server.key\" } }]\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let tls = config.servers[0].listen[0].tls.as_ref().unwrap();
    assert_eq!(tls.files.cert, pki.server_cert);
}

/// Clients that open TCP and never begin the handshake cost a good client
/// nothing, and are closed once handshake_timeout has passed.
#[test]
fn stalled_handshakes_do_not_slow_a_good_client_and_time_out() {
    let _crowd = crowd();
    let pki = Pki::new();
    let opts = options(&pki, false);
    for model in MODELS {
        let _guard = model_guard(model);
        let server = tls_server(
            "echo",
            model,
            &pki.server_tls(),
            "handshake_timeout = \"1500ms\"",
        );
        let addr = addr(&server);
        let mut stalled: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
        assert!(
            eventually(IO_TIMEOUT, || server.stats().open == 200),
            "{model:?}: {:?}",
            server.stats()
        );
        let began = Instant::now();
        assert_eq!(
            client::tcp_echo_with(addr, b"served meanwhile", &opts, 100).unwrap(),
            b"served meanwhile",
            "{model:?}"
        );
        // Well before the stalled ones time out.
        assert!(
            began.elapsed() < Duration::from_millis(1500),
            "{model:?}: {:?}",
            began.elapsed()
        );
        for s in &mut stalled {
            let closed = closed_within(s, Duration::from_secs(10));
            assert!(
                closed.is_some(),
                "{model:?}: a stalled client is still open"
            );
        }
        assert!(
            eventually(IO_TIMEOUT, || server.stats().tls_failures == 200),
            "{model:?}: {:?}",
            server.stats()
        );
        server.stop(Duration::from_millis(500));
    }
}

/// A TLS listener says nothing to a client that sends garbage, counts it,
/// and goes on serving.
#[test]
fn garbage_instead_of_a_handshake_is_refused_and_counted() {
    let pki = Pki::new();
    let opts = options(&pki, false);
    for model in MODELS {
        let _guard = model_guard(model);
        let server = tls_server("echo", model, &pki.server_tls(), "");
        let addr: SocketAddr = addr(&server);
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        // At most a TLS alert record (content type 21), never the bytes echoed.
        assert!(got.is_empty() || got[0] == 21, "{model:?}: {got:?}");
        assert!(
            eventually(IO_TIMEOUT, || server.stats().tls_failures == 1),
            "{model:?}: {:?}",
            server.stats()
        );
        assert_eq!(
            client::tcp_echo_with(addr, b"still", &opts, 100).unwrap(),
            b"still"
        );
        server.stop(Duration::from_millis(500));
    }
}

/// Errors carry their kind for callers that map them.
#[test]
fn a_tls_error_is_of_kind_tls() {
    let e = ClientError::Tls {
        context: "c".into(),
        reason: "r".into(),
    };
    assert_eq!(e.kind(), ErrorKind::Tls);
    assert_eq!(e.to_string(), "c: r");
}

/// The README's TLS example is a working file, its certificates in place.
#[test]
fn the_readme_tls_example_loads() {
    // The README names server.pem, server.key and ca.pem: the files a Pki makes.
    let pki = Pki::new();
    assert_eq!(pki.server_cert, pki.dir.join("server.pem"));
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let block = readme
        .split_once("## TLS")
        .and_then(|(_, after)| after.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a toml block in the README's TLS section")
        .0;
    let path = pki.dir.join("netlabd.toml");
    std::fs::write(&path, block).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("the README's TLS example:\n{e}"));
    let tls = config.servers[1].listen[1].tls.as_ref().unwrap();
    assert_eq!(tls.files.alpn, ["netlab"]);
    assert_eq!(tls.files.client_ca.as_deref(), Some(pki.ca.as_path()));
}

/// `alpn` is what the server offers: a client asking for one of them gets
/// it, and one asking for another is refused.
#[test]
fn alpn_is_negotiated() {
    use std::sync::Arc;
    let pki = Pki::new();
    let tls = pki.tls_table(
        &pki.server_cert,
        &pki.server_key,
        ", alpn = [\"netlab\", \"h2\"]",
    );
    let server = tls_server("echo", Model::Event, &tls, "");
    let roots = netlab::tls::roots(&pki.ca).unwrap();
    for (asked, agreed) in [(&b"netlab"[..], Some(&b"netlab"[..])), (b"other", None)] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![asked.to_vec()];
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut sock = connect(addr(&server));
        let done = conn.complete_io(&mut sock);
        match agreed {
            Some(p) => {
                done.unwrap();
                assert_eq!(conn.alpn_protocol(), Some(p));
            }
            None => assert!(done.is_err(), "an ALPN protocol not offered was agreed"),
        }
    }
    server.stop(Duration::ZERO);
}
