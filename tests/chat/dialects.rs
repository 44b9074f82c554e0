//! One room, three dialects: what each client receives, byte for byte in the
//! text dialects; seed 004's wire format by hand, and by a Python client
//! written the seed's way.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlab::chat::ErrorCode;

use crate::client::*;
use crate::common::*;

const WELCOME_TAIL: &str = "online; /who lists them, /quit leaves";

/// Line, bincode and header clients join, talk, ask who is there and leave;
/// each sees the others' messages and every join and leave, in order.
#[test]
fn three_dialects_share_one_room() {
    let server = chat_server(
        &[
            Dialect::Line,
            Dialect::Bincode,
            Dialect::Header { header_len: 10 },
        ],
        "",
    );
    let [line_at, bin_at, head_at] = server.local_addrs()[..] else {
        unreachable!()
    };

    // Lina, on the line listener, is alone.
    let mut lina = Client::connect(line_at, Dialect::Line);
    lina.hello("Lina");
    lina.expect_bytes(format!("* welcome Lina, 1 {WELCOME_TAIL}\n").as_bytes());

    // Bima, in bincode, is welcomed with its own address as the server saw it.
    let mut bima = Client::join(bin_at, Dialect::Bincode, "Bima");
    assert_eq!(bima.welcomed_online, 2);
    let bima_addr = bima.s.local_addr().unwrap().to_string();
    assert_eq!(bima.last_addr.as_deref(), Some(&*bima_addr));
    lina.expect_bytes(b"* Bima joined (2 online)\n");

    // Hadi, in the header dialect (width 10).
    let mut hadi = Client::connect(head_at, Dialect::Header { header_len: 10 });
    hadi.hello("Hadi");
    hadi.expect_bytes(&seed_pair(
        10,
        "*",
        &format!("welcome Hadi, 3 {WELCOME_TAIL}"),
    ));
    lina.expect_bytes(b"* Hadi joined (3 online)\n");
    bima.expect(Got::joined("Hadi", 3));
    let hadi_addr = hadi.s.local_addr().unwrap().to_string();
    assert_eq!(bima.last_addr.as_deref(), Some(&*hadi_addr));

    // Each speaks; the two others hear it, the speaker hears nothing back.
    lina.say("hello from a line, naïve 語");
    hadi.expect_bytes(&seed_pair(10, "Lina", "hello from a line, naïve 語"));
    bima.expect(Got::msg("Lina", "hello from a line, naïve 語"));

    hadi.say("hello from a header");
    lina.expect_bytes(b"[Hadi] hello from a header\n");
    bima.expect(Got::msg("Hadi", "hello from a header"));

    bima.say("hello from bincode");
    lina.expect_bytes(b"[Bima] hello from bincode\n");
    hadi.expect_bytes(&seed_pair(10, "Bima", "hello from bincode"));

    // Who is online, sorted by name, in each dialect.
    lina.who();
    lina.expect_bytes(b"* online (3): Bima, Hadi, Lina\n");
    hadi.who();
    hadi.expect_bytes(&seed_pair(10, "*", "online (3): Bima, Hadi, Lina"));
    bima.who();
    bima.expect(Got::Roster(vec![
        "Bima".into(),
        "Hadi".into(),
        "Lina".into(),
    ]));

    // Bima says goodbye (Bye), and is closed without another word.
    bima.quit();
    assert_eq!(bima.expect_closed(IO_TIMEOUT), b"");
    lina.expect_bytes(b"* Bima left (2 online)\n");
    hadi.expect_bytes(&seed_pair(10, "*", "Bima left (2 online)"));

    // Hadi just goes away.
    drop(hadi);
    lina.expect_bytes(b"* Hadi left (1 online)\n");

    // Lina types /quit: closed, nothing more said.
    lina.send_raw(b"/quit\r\n");
    assert_eq!(lina.expect_closed(IO_TIMEOUT), b"");

    assert!(
        eventually(Duration::from_secs(2), || server.stats().open == 0),
        "{:?}",
        server.stats()
    );
    assert_eq!(server.stats().accepted, 3);
    server.stop(Duration::from_millis(300));
}

/// Seed 004's bytes, written by hand: Dian on a header_len 10 listener,
/// Rafi on a header_len 100 one. Each receives the other's message as the
/// seed's server sends it: `user['header'] + user['data'] +
/// message['header'] + message['data']`, in the receiver's width.
#[test]
fn seed_004_wire_bytes_by_hand() {
    let server = chat_server(
        &[
            Dialect::Header { header_len: 10 },
            Dialect::Header { header_len: 100 },
        ],
        "",
    );
    let [ten, hundred] = server.local_addrs()[..] else {
        unreachable!()
    };
    let mut dian = Client::connect(ten, Dialect::Header { header_len: 10 });
    dian.name = "Dian".into();
    dian.send_raw(b"4         Dian");
    dian.expect_bytes(
        b"1         *53        welcome Dian, 1 online; /who lists them, /quit leaves",
    );

    let mut rafi = Client::connect(hundred, Dialect::Header { header_len: 100 });
    rafi.name = "Rafi".into();
    let mut name = b"4".to_vec();
    name.extend([b' '; 99]);
    name.extend(b"Rafi");
    rafi.send_raw(&name);
    let mut welcome = b"1".to_vec();
    welcome.extend([b' '; 99]);
    welcome.extend(b"*53");
    welcome.extend([b' '; 98]);
    welcome.extend(b"welcome Rafi, 2 online; /who lists them, /quit leaves");
    rafi.expect_bytes(&welcome);
    dian.expect_bytes(b"1         *22        Rafi joined (2 online)");

    // Dian's message, in two writes split inside the header.
    dian.send_raw(b"11    ");
    std::thread::sleep(Duration::from_millis(20));
    dian.send_raw(b"    Hello World");
    let mut want = b"4".to_vec();
    want.extend([b' '; 99]);
    want.extend(b"Dian11");
    want.extend([b' '; 98]);
    want.extend(b"Hello World");
    rafi.expect_bytes(&want);

    // Rafi's, with its 100-byte headers, reaches Dian in 10-byte ones.
    let mut msg = b"11".to_vec();
    msg.extend([b' '; 98]);
    msg.extend(b"Hello World");
    rafi.send_raw(&msg);
    dian.expect_bytes(b"4         Rafi11        Hello World");

    // The seed's client pads its header with spaces; Python's int() would
    // also take leading blanks, so the server does.
    dian.send_raw(b"   2      hi");
    rafi.expect_bytes(&seed_pair(100, "Dian", "hi"));

    // Nothing else was sent to either.
    dian.expect_quiet(Duration::from_millis(100));
    rafi.expect_quiet(Duration::from_millis(100));
    server.stop(Duration::from_millis(300));
}

/// Seed 004's client, in Python as the seed wrote it (its OCR typos fixed,
/// its `input()` prompts replaced by fixed text, and its receive loop as the
/// tutorial it comes from has it), against a header_len 100 listener; a
/// line client in Rust, as `nc` would be, on the same server.
const SEED_CLIENT: &str = r#"
import socket, sys
HEADER_LENGTH = 100
TCP_IP, TCP_PORT = sys.argv[1], int(sys.argv[2])
my_username = "Dian"
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.settimeout(5)
client_socket.connect((TCP_IP, TCP_PORT))
username = my_username.encode('utf-8')
username_header = f"{len(username):<{HEADER_LENGTH}}".encode('utf-8')
client_socket.send(username_header + username)
message = "Hello World".encode('utf-8')
message_header = f"{len(message):<{HEADER_LENGTH}}".encode('utf-8')
client_socket.send(message_header + message)

def recv_exact(n):
    data = b""
    while len(data) < n:
        chunk = client_socket.recv(n - len(data))
        if not chunk:
            print("Connection closed by the server", flush=True)
            sys.exit(1)
        data += chunk
    return data

while True:
    username_header = recv_exact(HEADER_LENGTH)
    username_length = int(username_header.decode('utf-8').strip())
    username = recv_exact(username_length).decode('utf-8')
    message_header = recv_exact(HEADER_LENGTH)
    message_length = int(message_header.decode('utf-8').strip())
    message = recv_exact(message_length).decode('utf-8')
    print(f'{username} > {message}', flush=True)
    if username == 'Rafi':
        break
client_socket.close()
"#;

#[test]
fn seed_004_python_client_talks_with_a_line_client() {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!("skipped: python3 --version failed: {:?}", out.status);
            return;
        }
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    }
    let server = chat_server(&[Dialect::Header { header_len: 100 }, Dialect::Line], "");
    let [seed_at, line_at] = server.local_addrs()[..] else {
        unreachable!()
    };

    let mut rafi = Client::connect(line_at, Dialect::Line);
    rafi.name = "Rafi".into();
    rafi.send_raw(b"Rafi\n");
    rafi.expect_bytes(format!("* welcome Rafi, 1 {WELCOME_TAIL}\n").as_bytes());

    let mut python = Command::new("python3")
        .arg("-c")
        .arg(SEED_CLIENT)
        .arg(seed_at.ip().to_string())
        .arg(seed_at.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");

    // What the seed's client sends, as an nc user sees it.
    rafi.expect_bytes(b"* Dian joined (2 online)\n[Dian] Hello World\n");
    rafi.send_raw(b"Hello Dian\n");
    rafi.expect_bytes(b"* Dian left (1 online)\n");

    // Python has exited by now, or is killed.
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(status) = python.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = python.kill();
            let _ = python.wait();
            panic!("the Python client did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    python
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    python
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "python: {status:?}\n{stdout}\n{stderr}");
    // What the seed's client reads: the welcome notice, then Rafi's line.
    assert_eq!(
        stdout,
        format!("* > welcome Dian, 2 {WELCOME_TAIL}\nRafi > Hello Dian\n")
    );
    rafi.expect_quiet(Duration::from_millis(50));
    server.stop(Duration::from_millis(300));
}

/// A name that is taken is refused in the newcomer's dialect, and its
/// connection closed; the holder of the name notices nothing.
#[test]
fn duplicate_name_is_refused_in_each_dialect() {
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "");
    let addrs = server.local_addrs().to_vec();
    let mut dian = Client::join(addrs[0], Dialect::Line, "Dian");
    for (i, &dialect) in dialects.iter().enumerate() {
        let mut other = Client::connect(addrs[i], dialect);
        other.hello("Dian");
        other.expect_error(ErrorCode::NameTaken, "name is taken");
        assert_eq!(other.expect_closed(IO_TIMEOUT), b"", "{dialect:?}");
    }
    dian.expect_quiet(Duration::from_millis(100));
    // The first Dian is still Dian, and still in the room.
    let mut rafi = Client::join(addrs[2], Dialect::Bincode, "Rafi");
    assert_eq!(rafi.welcomed_online, 2);
    dian.expect_bytes(b"* Rafi joined (2 online)\n");
    rafi.say("still there?");
    dian.expect_bytes(b"[Rafi] still there?\n");
    dian.say("yes");
    rafi.expect(Got::msg("Dian", "yes"));
    dian.who();
    dian.expect_bytes(b"* online (2): Dian, Rafi\n");
    server.stop(Duration::from_millis(300));
}
