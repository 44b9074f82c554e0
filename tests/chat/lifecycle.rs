//! Limits and endings: max_clients, idle_timeout, and a graceful stop.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netlab::chat::ErrorCode;

use crate::client::*;
use crate::common::*;

const SHUTDOWN: &str = "the server is shutting down";

/// max_clients = 3: a fourth client, in any dialect, is turned away (closed,
/// told nothing but perhaps that the room is full) while the three notice
/// nothing; once one leaves, a newcomer gets in.
#[test]
fn max_clients_holds() {
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "max_clients = 3");
    let addrs = server.local_addrs().to_vec();
    let mut a = Client::join(addrs[0], Dialect::Line, "a");
    let mut b = Client::join(addrs[1], Dialect::Header { header_len: 10 }, "b");
    let mut c = Client::join(addrs[2], Dialect::Bincode, "c");
    a.recv_until(|g| *g == Got::joined("c", 3));
    b.recv_until(|g| *g == Got::joined("c", 3));

    for (i, &dialect) in dialects.iter().enumerate() {
        let mut extra = Client::connect(addrs[i], dialect);
        extra.name = format!("fourth ({dialect:?})");
        let mut hello = Vec::new();
        dialect
            .codec()
            .encode_client_msg(netlab::chat::ClientMsg::Hello { name: "d" }, &mut hello);
        // The server may have closed it already: the write may fail.
        let _ = extra.s.write_all(&hello);
        let got = extra.expect_closed(Duration::from_secs(2));
        // The connection limit leaves room beyond max_clients, so the hub
        // refuses the name and says why, in the client's dialect.
        assert!(
            got == error_bytes(dialect, ErrorCode::RoomFull, "the room is full"),
            "{dialect:?}: refused with {:?}",
            String::from_utf8_lossy(&got)
        );
        eprintln!(
            "max_clients: a fourth {dialect:?} client was closed and told {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // Refused by the room, not at accept.
    assert_eq!(server.stats().refused, 0, "{:?}", server.stats());
    a.expect_quiet(Duration::from_millis(50));
    b.expect_quiet(Duration::from_millis(10));
    c.expect_quiet(Duration::from_millis(10));

    // b leaves; its place is free at once.
    b.quit();
    assert_eq!(b.expect_closed(IO_TIMEOUT), b"");
    a.expect_bytes(b"* b left (2 online)\n");
    c.expect(Got::left("b", 2));
    let mut d = Client::join(addrs[1], Dialect::Header { header_len: 10 }, "d");
    assert_eq!(d.welcomed_online, 3);
    a.expect_bytes(b"* d joined (3 online)\n");
    c.expect(Got::joined("d", 3));
    d.say("in");
    a.expect_bytes(b"[d] in\n");
    server.stop(Duration::from_millis(300));
}

/// max_connections caps a room's connections, named or not, at accept:
/// with max_clients = 2 and max_connections = 3, a fourth connection is
/// closed at once and counted as refused, and the room notices nothing.
#[test]
fn max_connections_caps_the_rooms_connections_at_accept() {
    let server = chat_server(&[Dialect::Line], "max_clients = 2\nmax_connections = 3");
    let at = server.local_addrs()[0];
    let mut a = Client::join(at, Dialect::Line, "a");
    let _b = Client::join(at, Dialect::Line, "b");
    a.expect_bytes(b"* b joined (2 online)\n");
    let _unnamed = Client::connect(at, Dialect::Line);
    let mut fourth = Client::connect(at, Dialect::Line);
    fourth.name = "fourth".into();
    assert_eq!(fourth.expect_closed(Duration::from_secs(2)), b"");
    assert_eq!(server.stats().refused, 1, "{:?}", server.stats());
    a.expect_quiet(Duration::from_millis(50));
    server.stop(Duration::from_millis(300));
}

/// idle_timeout = "300ms": a client that says nothing is closed and the
/// room is told; one that keeps talking stays. A connection that never sends
/// a name is closed too, and nobody is told.
#[test]
fn idle_timeout_closes_an_idle_client_and_the_room_is_told() {
    let server = chat_server(
        &[Dialect::Line, Dialect::Header { header_len: 10 }],
        "idle_timeout = \"300ms\"",
    );
    let [line_at, head_at] = server.local_addrs()[..] else {
        unreachable!()
    };
    let mut active = Client::join(line_at, Dialect::Line, "active");
    let mut unnamed = Client::connect(line_at, Dialect::Line);
    unnamed.name = "unnamed".into();
    let mut idle = Client::join(head_at, Dialect::Header { header_len: 10 }, "idle");
    let idle_since = Instant::now();
    active.expect_bytes(b"* idle joined (2 online)\n");

    // The active client sends empty lines (which say nothing to anyone)
    // every 50 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let stop = stop.clone();
        let mut s = active.s.try_clone().unwrap();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(5);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                s.write_all(b"\n").unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    active.expect_bytes(b"* idle left (1 online)\n");
    let took = idle_since.elapsed();
    let told = idle.expect_closed(Duration::from_secs(1));
    eprintln!(
        "idle client closed after {took:?}, told {:?}",
        String::from_utf8_lossy(&told)
    );
    assert!(
        told.is_empty() || told == seed_pair(10, "*", "error: idle for too long"),
        "the idle client was told {:?}",
        String::from_utf8_lossy(&told)
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "closed after {took:?} for a timeout of 300 ms"
    );
    // A connection that never named itself is closed too, told why.
    let told_unnamed = unnamed.expect_closed(Duration::from_secs(1));
    assert_eq!(
        told_unnamed,
        b"* error: idle for too long\n",
        "{:?}",
        String::from_utf8_lossy(&told_unnamed)
    );

    // The active one outlived several timeouts, and is still in.
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::SeqCst);
    keeper.join().expect("keeper");
    active.who();
    active.expect_bytes(b"* online (1): active\n");
    // And once it too is quiet, it goes, told why.
    assert_eq!(
        active.expect_closed(Duration::from_secs(2)),
        b"* error: idle for too long\n"
    );
    server.stop(Duration::from_millis(300));
}

/// stop(grace): every named client is told, in its dialect, that the server
/// is going away, and every client is closed at once (well within the
/// grace); nobody is told that the others left. The listeners are closed.
#[test]
fn stop_tells_every_dialect_and_closes_within_the_grace() {
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "");
    let addrs = server.local_addrs().to_vec();
    let mut clients: Vec<Client> = ["l", "h", "b"]
        .iter()
        .enumerate()
        .map(|(i, name)| Client::join(addrs[i], dialects[i], name))
        .collect();
    for c in &mut clients[..2] {
        c.recv_until(|g| *g == Got::joined("b", 3));
    }
    let mut unnamed = Client::connect(addrs[0], Dialect::Line);
    unnamed.name = "unnamed".into();
    unnamed.send_raw(b"half a na");
    assert!(eventually(Duration::from_secs(2), || server.stats().open == 4));

    let grace = Duration::from_secs(3);
    let started = Instant::now();
    let stopper = std::thread::spawn(move || server.stop(grace));
    for c in &mut clients {
        c.expect_error(ErrorCode::ServerShutdown, SHUTDOWN);
        assert_eq!(c.expect_closed(Duration::from_secs(1)), b"", "{}", c.name);
    }
    assert_eq!(unnamed.expect_closed(Duration::from_secs(1)), b"");
    let closed = started.elapsed();
    stopper.join().expect("stop");
    let stopped = started.elapsed();
    eprintln!("stop: clients closed after {closed:?}, stop returned after {stopped:?}");
    assert!(closed < Duration::from_secs(1), "closed after {closed:?}");
    assert!(
        stopped < grace,
        "stop took {stopped:?}: it waited out the grace"
    );
    for &at in &addrs {
        assert_refused(at, "after stop");
    }
}

/// login_timeout = "300ms", and no idle_timeout: a connection that gives
/// no name is closed, told why in its dialect, and the room hears nothing;
/// a client that named itself stays however quiet it is.
#[test]
fn login_timeout_closes_a_connection_that_gives_no_name() {
    let server = chat_server(
        &[Dialect::Line, Dialect::Header { header_len: 10 }],
        "login_timeout = \"300ms\"",
    );
    let [line_at, head_at] = server.local_addrs()[..] else {
        unreachable!()
    };
    let mut named = Client::join(line_at, Dialect::Line, "named");
    let since = Instant::now();
    let mut silent = Client::connect(line_at, Dialect::Line);
    let mut silent_header = Client::connect(head_at, Dialect::Header { header_len: 10 });
    assert_eq!(
        silent.expect_closed(Duration::from_secs(2)),
        b"* error: no name given in time\n"
    );
    let took = since.elapsed();
    assert_eq!(
        silent_header.expect_closed(Duration::from_secs(1)),
        seed_pair(10, "*", "error: no name given in time")
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "closed after {took:?} for a login timeout of 300 ms"
    );
    std::thread::sleep(Duration::from_millis(400));
    named.who();
    named.expect_bytes(b"* online (1): named\n");
    server.stop(Duration::from_millis(300));
}

/// Two clients time out in the same sweep, and the news that the first has
/// left overflows the queue of the second, which does not read, so the
/// second is dropped while the sweep is still walking its list of idle
/// clients. The room carries on: the others are told, newcomers are
/// welcomed. (The sweep used to look the dropped client up again, and the
/// panic took the whole room down while its listener kept accepting.)
#[test]
fn idle_sweep_survives_a_client_that_an_earlier_leaving_dropped() {
    const SIZE: usize = 8 * 1024 * 1024;
    let server = chat_server(
        &[Dialect::Line, Dialect::Header { header_len: 10 }],
        &format!(
            "idle_timeout = \"1s\"\nqueue_frames = 2\nqueue_bytes = {}\nmax_frame = {}",
            4 * SIZE,
            2 * SIZE
        ),
    );
    let [at, head_at] = server.local_addrs()[..] else {
        unreachable!()
    };
    // `early` holds the first place in the server's table, and gives it up
    // to `first` later, so that the sweep reaches `first` before `stalled`.
    let mut early = Client::join(at, Dialect::Line, "early");
    let mut stalled = Client::from_stream(connect_small_rcvbuf(at), Dialect::Line);
    stalled.hello("stalled");
    stalled.expect(Got::Welcome { online: 2 });
    // The talker's long message comes in a header frame: a line would be
    // scanned for its end, which a debug build on a busy machine takes
    // seconds to do.
    let mut talker = Client::join(head_at, Dialect::Header { header_len: 10 }, "talker");
    early.quit();
    talker.expect(Got::left("early", 2));
    // Until the test says otherwise, it does not time out.
    let stalled_keeper = KeepTalking::start(&stalled, b"\n");

    // One message bigger than the kernel's buffers for `stalled` (its
    // receive buffer and the server's send buffer, at most 4 MB): the rest
    // waits as one queued frame. The roster comes back once it is queued.
    let mut w = talker.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut frames = seed_frame(10, &"z".repeat(SIZE));
        frames.extend(seed_frame(10, "/who"));
        w.write_all(&frames).unwrap();
    });
    talker.expect(Got::Roster(vec!["stalled".into(), "talker".into()]));
    writer.join().unwrap();
    // Not before: its empty frames would land inside the long one.
    let talker_keeper = KeepTalking::start(&talker, &seed_frame(10, ""));

    // `stalled` says a last nothing and `first` names itself: both fall idle
    // now, together. `first joined` is the second frame queued for
    // `stalled`, which queue_frames allows; `first left` is one too many.
    stalled_keeper.stop();
    stalled.send_raw(b"\n");
    let mut first = Client::join(at, Dialect::Line, "first");
    assert_eq!(first.welcomed_online, 3);
    talker.expect(Got::joined("first", 3));

    let told = first.expect_closed(Duration::from_secs(3));
    assert!(
        told.starts_with(b"* error: idle for too long\n"),
        "{:?}",
        String::from_utf8_lossy(&told)
    );
    talker.expect(Got::left("first", 2));
    talker.expect(Got::left("stalled", 1));
    let mut a = Client::join(at, Dialect::Line, "a");
    assert_eq!(a.welcomed_online, 2);
    talker.expect(Got::joined("a", 2));
    a.say("still here");
    talker.expect(Got::msg("a", "still here"));
    talker_keeper.stop();
    server.stop(Duration::from_millis(300));
}

/// Sends `nothing`, an empty message in the client's dialect (which says
/// nothing to anyone), every 100 ms, so that a client does not time out
/// while the test needs it.
struct KeepTalking {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl KeepTalking {
    fn start(client: &Client, nothing: &[u8]) -> KeepTalking {
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = client.s.try_clone().unwrap();
        let nothing = nothing.to_vec();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(10);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    s.write_all(&nothing).unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        KeepTalking { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("keeper");
    }
}

/// A client that does not read holds up the stop until the grace ends,
/// then is closed; the one that reads is told and closed at once.
#[test]
fn stop_closes_a_client_that_does_not_read_when_the_grace_ends() {
    const SIZE: usize = 8 * 1024;
    const COUNT: usize = 1000;
    let server = chat_server(&[Dialect::Line], "queue_bytes = 16777216");
    let at = server.local_addrs()[0];
    let mut sender = Client::join(at, Dialect::Line, "sender");
    let mut stalled = Client::from_stream(connect_small_rcvbuf(at), Dialect::Line);
    stalled.hello("stalled");
    sender.expect_bytes(b"* stalled joined (2 online)\n");
    // 8 MB for the stalled client, more than the kernel's buffers (its
    // receive buffer and the server's send buffer, which grows to 4 MB) take.
    let text = "z".repeat(SIZE);
    let mut w = sender.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..COUNT {
            w.write_all(format!("{text}\n").as_bytes()).unwrap();
        }
        w.write_all(b"/who\n").unwrap();
    });
    // Once the roster is back, the server has queued every message.
    sender.expect_bytes(b"* online (2): sender, stalled\n");
    writer.join().unwrap();

    let grace = Duration::from_millis(700);
    let started = Instant::now();
    let stopper = std::thread::spawn(move || server.stop(grace));
    sender.expect_error(ErrorCode::ServerShutdown, SHUTDOWN);
    assert_eq!(sender.expect_closed(Duration::from_secs(1)), b"");
    assert!(started.elapsed() < grace, "the reader was held up");
    stopper.join().expect("stop");
    let stopped = started.elapsed();
    eprintln!("stop with a stalled client: returned after {stopped:?} (grace {grace:?})");
    assert!(
        stopped >= grace - Duration::from_millis(50) && stopped < grace + Duration::from_secs(1),
        "stop returned after {stopped:?} with a grace of {grace:?}"
    );
    // It gets what its socket held, then the end, not the whole queue.
    let got = stalled.expect_closed(IO_TIMEOUT);
    eprintln!("the stalled client got {} bytes", got.len());
    assert!(got.len() < COUNT * (SIZE + 10), "{} bytes", got.len());
}
