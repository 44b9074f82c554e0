//! The `netlab` binary against small servers run by the test itself on
//! 127.0.0.1:0: exit codes, output, and the bench's numbers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// No run of the binary in these tests may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `netlab ARGS` with `stdin`, killing it if it outlives [`RUN_LIMIT`].
/// Pipes are fed and drained on their own threads so a large output cannot
/// block the child while the test waits for it.
fn netlab(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netlab");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for netlab") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netlab {args:?} ran longer than {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("netlab exited by a signal")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A TCP server that runs `handle` on each connection, on its own thread.
/// Its threads end with the test process.
fn tcp_server(handle: fn(TcpStream) -> io::Result<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || handle(stream));
        }
    });
    addr
}

fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

/// Echoes, but changes every `x` into `y`: a broken echo server.
fn corrupting_echo_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for b in &mut buf[..n] {
            if *b == b'x' || *b == 7 {
                *b += 1;
            }
        }
        stream.write_all(&buf[..n])?;
    }
}

/// A count server with line framing: replies `N\n` for each line.
fn count_lines_connection(stream: TcpStream) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        writeln!(writer, "{}", line?.chars().count())?;
    }
    Ok(())
}

/// A count server with seed 001's framing: read all, reply the bare count.
fn count_chunk_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    write!(stream, "{}", String::from_utf8_lossy(&got).chars().count())
}

/// A count server with a 10-byte length header both ways.
fn count_header_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut header = [0u8; 10];
    stream.read_exact(&mut header)?;
    let len: usize = String::from_utf8_lossy(&header)
        .trim()
        .parse()
        .map_err(io::Error::other)?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    let count = String::from_utf8_lossy(&payload)
        .chars()
        .count()
        .to_string();
    write!(stream, "{:<10}{count}", count.len())
}

fn udp_echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local address");
    thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// A UDP echo server that loses every 10th datagram and answers every 7th
/// twice, as a lossy, duplicating network would.
fn lossy_udp_echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local address");
    thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        let mut received = 0u64;
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            received += 1;
            if received.is_multiple_of(10) {
                continue;
            }
            let _ = socket.send_to(&buf[..n], from);
            if received.is_multiple_of(7) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    addr
}

/// Reads one numeric field from the bench's one-line JSON.
fn json_number(json: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pattern.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

#[test]
fn echo_that_comes_back_unchanged_exits_0() {
    let addr = tcp_server(echo_connection).to_string();
    let out = netlab(&["echo", &addr, "hello", "netlab"], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello netlab\n");
}

#[test]
fn echo_reads_the_message_from_stdin_when_none_is_given() {
    let addr = tcp_server(echo_connection).to_string();
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let out = netlab(&["echo", &addr], &message);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == message, "stdout is not the 200 kB message");
}

#[test]
fn echo_that_differs_exits_1_and_says_so() {
    let addr = tcp_server(corrupting_echo_connection).to_string();
    let out = netlab(&["echo", &addr, "xyz"], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out), "yyz\n");
    assert!(stderr(&out).contains("differs"), "{}", stderr(&out));
}

/// Sends without end and never reads, as chargen or `yes | nc -l` do
/// (up to 64 MiB, so that a client that reads it all fails the test
/// rather than the machine).
fn endless_connection(mut stream: TcpStream) -> io::Result<()> {
    let chunk = [b'y'; 4096];
    for _ in 0..(64 << 20) / chunk.len() {
        stream.write_all(&chunk)?;
    }
    Ok(())
}

#[test]
fn echo_from_a_server_that_never_stops_sending_exits_1_promptly() {
    let addr = tcp_server(endless_connection).to_string();
    let started = Instant::now();
    let out = netlab(&["echo", &addr, "hello"], b"");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "printed {} bytes", out.stdout.len());
    assert!(
        stderr(&out).contains(&format!(
            "read from {addr}: the reply is longer than 65546 bytes, so it is not an echo of the 5 bytes sent"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn echo_over_udp() {
    let addr = udp_echo_server().to_string();
    let out = netlab(&["echo", "--udp", &addr, "datagram"], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "datagram\n");
}

#[test]
fn silent_udp_peer_times_out_with_exit_3() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("local address").to_string();
    let started = Instant::now();
    let out = netlab(
        &[
            "echo",
            "--udp",
            "--timeout",
            "200ms",
            "--retries",
            "1",
            &addr,
            "anyone?",
        ],
        b"",
    );
    let took = started.elapsed();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("no reply from {addr} after 2 tries of 200ms")),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(silent);
}

/// Nobody on the UDP port: refused at once (ICMP port unreachable), exit 4,
/// not three timeouts and exit 3.
#[test]
fn udp_echo_to_a_closed_port_exits_4_at_once() {
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let out = netlab(&["echo", "--udp", &addr, "hello"], b"");
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no UDP service at"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// stdin is read up to a bound, so `netlab echo < /dev/zero` ends: one
/// datagram's worth for UDP, 64 MiB for TCP. Refused before any traffic.
#[test]
fn echo_refuses_a_message_on_stdin_beyond_its_bound() {
    let out = netlab(&["echo", "--udp", "127.0.0.1:9"], &vec![b'x'; 65_537]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than 65536 bytes"),
        "{}",
        stderr(&out)
    );
    let out = netlab(&["echo", "127.0.0.1:9"], &vec![b'x'; 64 * 1024 * 1024 + 1]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than 67108864 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn refused_connection_exits_4() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address").to_string()
    };
    let out = netlab(&["echo", &addr, "hi"], b"");
    assert_eq!(code(&out), 4);
    assert!(
        stderr(&out).contains(&format!("connect {addr}: connection refused")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&netlab(&["echo", "no-port-here", "hi"], b"")), 2);
    assert_eq!(
        code(&netlab(&["echo", "127.0.0.1:7", "--timeout", "5"], b"")),
        2
    );
    assert_eq!(code(&netlab(&["count", "127.0.0.1:7"], b"")), 2);
    assert_eq!(
        code(&netlab(&["bench", "echo", "127.0.0.1:7", "-c", "0"], b"")),
        2
    );
    // Refused before anything is sent: line framing cannot carry a newline.
    assert_eq!(
        code(&netlab(&["count", "127.0.0.1:7", "two\nlines"], b"")),
        2
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let out = netlab(&["echo", "--help"], b"");
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("3  timeout"), "{}", stdout(&out));
}

#[test]
fn count_in_each_framing() {
    let line = tcp_server(count_lines_connection).to_string();
    let out = netlab(&["count", &line, "héllo", "world"], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "11\n");

    let chunk = tcp_server(count_chunk_connection).to_string();
    let out = netlab(&["count", "--framing", "chunk", &chunk, "seed 001"], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "8\n");

    let header = tcp_server(count_header_connection).to_string();
    let out = netlab(
        &[
            "count",
            "--framing",
            "header",
            "--header-len",
            "10",
            &header,
            "abc",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\n");
}

#[test]
fn count_with_a_malformed_reply_exits_4() {
    // An echo server is no count server: "hello\n" comes back, not a number.
    let addr = tcp_server(echo_connection).to_string();
    let out = netlab(&["count", &addr, "hello"], b"");
    assert_eq!(code(&out), 4);
    assert!(
        stderr(&out).contains("not a decimal number"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_echo_over_tcp_reports_numbers() {
    let addr = tcp_server(echo_connection).to_string();
    let out = netlab(
        &[
            "bench",
            "echo",
            &addr,
            "--connections",
            "4",
            "--size",
            "64",
            "--duration",
            "1",
            "--warmup",
            "200ms",
            "--threads",
            "2",
            "--json",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = stdout(&out);
    assert_eq!(json.lines().count(), 1, "{json}");
    let requests = json_number(&json, "requests");
    let rate = json_number(&json, "requests_per_s");
    assert!(requests > 0.0, "{json}");
    // One second measured: the rate is the count.
    assert!((rate - requests).abs() < 1.0, "{json}");
    let expected_mb = rate * 64.0 / 1e6;
    assert!(
        (json_number(&json, "mb_per_s_each_way") - expected_mb).abs() < 0.01,
        "{json}"
    );
    let p50 = json_number(&json, "p50_us");
    let p99 = json_number(&json, "p99_us");
    let p999 = json_number(&json, "p999_us");
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{json}");
    assert_eq!(json_number(&json, "errors"), 0.0, "{json}");
    assert_eq!(json_number(&json, "connections"), 4.0, "{json}");
}

#[test]
fn bench_text_report_names_its_units() {
    let addr = tcp_server(echo_connection).to_string();
    let out = netlab(
        &[
            "bench", "echo", &addr, "-c", "2", "-d", "300ms", "--warmup", "0",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["/s)", "MB/s each way", "p50", "p99.9", "errors      0"] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

#[test]
fn bench_counts_wrong_echoes_as_errors_and_exits_1() {
    // The payload pattern contains byte 7, which this server changes.
    let addr = tcp_server(corrupting_echo_connection).to_string();
    let out = netlab(
        &[
            "bench", "echo", &addr, "-c", "2", "-s", "64", "-d", "500ms", "--warmup", "0", "--json",
        ],
        b"",
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        json_number(&stdout(&out), "errors") > 0.0,
        "{}",
        stdout(&out)
    );
}

#[test]
fn bench_echo_over_udp_reports_numbers() {
    let addr = udp_echo_server().to_string();
    let out = netlab(
        &[
            "bench", "echo", &addr, "--udp", "-c", "4", "-s", "32", "-d", "1", "--warmup", "100ms",
            "--json",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = stdout(&out);
    assert!(json.contains("\"transport\":\"udp\""), "{json}");
    assert!(json_number(&json, "requests") > 0.0, "{json}");
    assert!(json_number(&json, "p50_us") > 0.0, "{json}");
}

#[test]
fn bench_against_nothing_exits_4() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address").to_string()
    };
    let out = netlab(&["bench", "echo", &addr, "-d", "1"], b"");
    assert_eq!(code(&out), 4);
    assert!(
        stderr(&out).contains("connection refused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_over_udp_resends_lost_datagrams_and_skips_duplicates() {
    let addr = lossy_udp_echo_server().to_string();
    let out = netlab(
        &[
            "bench",
            "echo",
            &addr,
            "--udp",
            "-c",
            "4",
            "-s",
            "64",
            "-d",
            "1",
            "--warmup",
            "0",
            "--loss-timeout",
            "20ms",
            "--json",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = stdout(&out);
    assert!(json_number(&json, "requests") > 0.0, "{json}");
    assert!(json_number(&json, "lost") > 0.0, "{json}");
    // Late duplicates are recognised by their sequence number, not miscounted.
    assert_eq!(json_number(&json, "errors"), 0.0, "{json}");
}
