//! The room under load: a client that never reads is dropped without
//! costing the others a message or much time, and 200 clients join at once.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlab::chat::ClientMsg;

use crate::client::*;
use crate::common::*;

const MESSAGES: usize = 1000;

/// Message `i` of a run, `size` bytes long.
fn numbered(i: usize, size: usize) -> String {
    let head = format!("{i:04} ");
    format!("{head}{}", "m".repeat(size - head.len()))
}

/// Writes `texts` as `dialect` messages on `s`.
fn write_all_msgs(s: &std::net::TcpStream, dialect: Dialect, texts: impl Iterator<Item = String>) {
    let mut s = s.try_clone().unwrap();
    let codec = dialect.codec();
    let mut bytes = Vec::new();
    for (i, text) in texts.enumerate() {
        bytes.clear();
        codec.encode_client_msg(ClientMsg::Say { text: &text }, &mut bytes);
        s.write_all(&bytes)
            .unwrap_or_else(|e| panic!("sender: writing message {i}: {e}"));
    }
}

/// Receives until every message of the sender is in and `until` was seen;
/// checks the messages came in order, counts them in `progress`, and
/// returns what else was received.
fn collect_run(
    c: &mut Client,
    from: &str,
    expect: impl Fn(usize) -> String,
    until: &Got,
    progress: &AtomicUsize,
) -> Vec<Got> {
    let mut n = 0;
    let mut seen = false;
    let mut others = Vec::new();
    while n < MESSAGES || !seen {
        match c.recv() {
            Got::Message { from: f, text } if f == from => {
                assert!(n < MESSAGES, "{}: more than {MESSAGES} messages", c.name);
                if text != expect(n) {
                    panic!(
                        "{}: message {n} is not the one expected; it starts {:?} ({} bytes)",
                        c.name,
                        &text[..text.len().min(16)],
                        text.len()
                    );
                }
                n += 1;
                progress.store(n, Ordering::SeqCst);
            }
            g => {
                if g == *until {
                    assert!(!seen, "{}: {until:?} twice", c.name);
                    seen = true;
                }
                others.push(g);
            }
        }
    }
    others
}

/// `queue_bytes` = 64 KiB and 1,000 messages of 8 KiB (8 MB, more than the
/// kernel's buffers on loopback hold): the client that never reads is
/// dropped and the room told; the readers, in every dialect, get all 1,000
/// in order and nothing else but that notice; the sender stays.
///
/// The sender writes in bursts of 4 messages (32 KiB, half the queue) and
/// waits for the readers to have them before the next: the readers plainly
/// keep up, so any of them dropped is the server's fault, whatever else
/// runs on the machine. (A burst bigger than the queue is the next test.)
#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_get_all_1000() {
    const SIZE: usize = 8 * 1024;
    const BURST: usize = 4;
    let _crowd = crowd();
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "queue_bytes = 65536");
    let addrs = server.local_addrs().to_vec();
    let mut sender = Client::join(addrs[0], Dialect::Line, "sender");
    let mut readers: Vec<Client> = [("r-line", 0), ("r-head", 1), ("r-bin", 2)]
        .into_iter()
        .map(|(name, i)| Client::join(addrs[i], dialects[i], name))
        .collect();
    let mut stalled = Client::from_stream(connect_small_rcvbuf(addrs[0]), Dialect::Line);
    stalled.hello("stalled");
    let stalled_in = Got::joined("stalled", 5);
    sender.recv_until(|g| *g == stalled_in);
    for r in &mut readers {
        r.recv_until(|g| *g == stalled_in);
    }

    let stalled_out = Got::left("stalled", 4);
    let progress: Vec<AtomicUsize> = readers.iter().map(|_| AtomicUsize::new(0)).collect();
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let (s, progress, failed) = (&sender.s, &progress, &failed);
        let writer = scope.spawn(move || {
            for burst in 0..MESSAGES / BURST {
                let first = burst * BURST;
                write_all_msgs(
                    s,
                    Dialect::Line,
                    (first..first + BURST).map(|i| numbered(i, SIZE)),
                );
                // Polled closely: a round trip takes well under a millisecond.
                let deadline = Instant::now() + IO_TIMEOUT;
                let caught_up = loop {
                    if failed.load(Ordering::SeqCst) {
                        break false;
                    }
                    if progress
                        .iter()
                        .all(|p| p.load(Ordering::SeqCst) >= first + BURST)
                    {
                        break true;
                    }
                    if Instant::now() >= deadline {
                        break false;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                };
                if !caught_up {
                    panic!("the readers did not get message {}", first + BURST - 1);
                }
            }
        });
        let handles: Vec<_> = readers
            .iter_mut()
            .zip(progress)
            .map(|(r, p)| {
                let until = stalled_out.clone();
                scope.spawn(move || {
                    let guard = FailFlag(failed);
                    let others = collect_run(r, "sender", |i| numbered(i, SIZE), &until, p);
                    assert_eq!(others, [until], "{}: besides the messages", r.name);
                    drop(guard);
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        writer.join().expect("writer");
        for r in results {
            r.expect("reader");
        }
    });
    let took = started.elapsed();
    eprintln!("1,000 x 8 KiB to 3 readers past a stalled one: {took:?}");
    // The sender heard only that the stalled client left.
    sender.expect(stalled_out);
    sender.expect_quiet(Duration::from_millis(50));

    // The stalled client was cut off: what its socket had, then the end.
    let got = stalled.expect_closed(IO_TIMEOUT);
    assert!(
        got.len() < MESSAGES * SIZE,
        "the stalled client got {} bytes: all of it",
        got.len()
    );
    assert!(
        eventually(Duration::from_secs(2), || server.stats().open == 4),
        "{:?}",
        server.stats()
    );
    // The room still works.
    sender.say("after");
    for r in &mut readers {
        r.expect(Got::msg("sender", "after"));
    }
    assert!(took < Duration::from_secs(15), "took {took:?}");
    server.stop(Duration::from_millis(300));
}

/// Sets the flag if the thread holding it panics.
struct FailFlag<'a>(&'a AtomicBool);

impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// `queue_bytes` = 64 KiB; readers in every dialect sit in read() with
/// empty sockets; one client writes 32 messages of 8 KiB (256 KiB) at once.
/// The readers' sockets can take that in: none of them is a slow reader, and
/// each must get all 32, not be dropped. (The queue bounds what waits for a
/// client whose socket is full; it must not count what the server never
/// tried to write.)
#[test]
fn a_burst_bigger_than_the_queue_does_not_drop_waiting_readers() {
    const SIZE: usize = 8 * 1024;
    const BURST: usize = 32;
    let _crowd = crowd();
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "queue_bytes = 65536");
    let addrs = server.local_addrs().to_vec();
    let mut sender = Client::join(addrs[0], Dialect::Line, "sender");
    let mut readers: Vec<Client> = [("r-line", 0), ("r-head", 1), ("r-bin", 2)]
        .into_iter()
        .map(|(name, i)| Client::join(addrs[i], dialects[i], name))
        .collect();
    sender.recv_until(|g| *g == Got::joined("r-bin", 4));
    for r in &mut readers[..2] {
        r.recv_until(|g| *g == Got::joined("r-bin", 4));
    }
    let mut burst = Vec::new();
    for i in 0..BURST {
        Dialect::Line.codec().encode_client_msg(
            ClientMsg::Say {
                text: &numbered(i, SIZE),
            },
            &mut burst,
        );
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = readers
            .iter_mut()
            .map(|r| {
                scope.spawn(move || {
                    for i in 0..BURST {
                        match r.recv() {
                            Got::Message { from, text } if from == "sender" => assert!(
                                text == numbered(i, SIZE),
                                "{}: message {i} out of order",
                                r.name
                            ),
                            g => panic!("{}: unexpected {g:?} after {i} messages", r.name),
                        }
                    }
                })
            })
            .collect();
        // The readers are waiting in read().
        std::thread::sleep(Duration::from_millis(50));
        sender.send_raw(&burst);
        for h in handles {
            h.join().expect("reader");
        }
    });
    sender.expect_quiet(Duration::from_millis(50));
    assert_eq!(server.stats().open, 4, "{:?}", server.stats());
    server.stop(Duration::from_millis(300));
}

/// While one client does not read, a sender's 1,000 messages of 4 KiB
/// (4 MB: more than the kernel's buffers towards the stalled client hold,
/// about 3 MB on loopback) reach a reader promptly, each within a bounded
/// delay of being sent. The queue is large enough that nobody is dropped:
/// the stalled client, once it reads, gets all 1,000 too.
#[test]
fn a_stalled_reader_does_not_stall_the_room() {
    const SIZE: usize = 4 * 1024;
    let _crowd = crowd();
    let server = chat_server(&[Dialect::Line, Dialect::Bincode], "queue_bytes = 8388608");
    let [line_at, bin_at] = server.local_addrs()[..] else {
        unreachable!()
    };
    let mut sender = Client::join(bin_at, Dialect::Bincode, "sender");
    let mut reader = Client::join(line_at, Dialect::Line, "reader");
    let mut stalled = Client::from_stream(connect_small_rcvbuf(line_at), Dialect::Line);
    stalled.hello("stalled");
    sender.recv_until(|g| *g == Got::joined("stalled", 3));
    reader.recv_until(|g| *g == Got::joined("stalled", 3));

    let epoch = Instant::now();
    // Each message carries the microsecond it was sent at.
    let stamp = move |i: usize| {
        let head = format!("{i:04} {:012} ", epoch.elapsed().as_micros());
        format!("{head}{}", "s".repeat(SIZE - head.len()))
    };
    let mut worst = Duration::ZERO;
    std::thread::scope(|scope| {
        let s = &sender.s;
        let writer =
            scope.spawn(move || write_all_msgs(s, Dialect::Bincode, (0..MESSAGES).map(stamp)));
        let mut n = 0;
        while n < MESSAGES {
            match reader.recv() {
                Got::Message { from, text } if from == "sender" => {
                    let mut parts = text.splitn(3, ' ');
                    let i: usize = parts.next().unwrap().parse().unwrap();
                    let sent: u64 = parts.next().unwrap().parse().unwrap();
                    assert_eq!(i, n, "out of order");
                    let now = epoch.elapsed();
                    worst = worst.max(now.saturating_sub(Duration::from_micros(sent)));
                    n += 1;
                }
                g => panic!("reader: unexpected {g:?}"),
            }
        }
        writer.join().expect("writer");
    });
    let took = epoch.elapsed();
    eprintln!("1,000 x 4 KiB past a stalled reader: {took:?}, worst delay {worst:?}");
    assert!(
        took < Duration::from_secs(5),
        "1,000 messages took {took:?}"
    );
    assert!(
        worst < Duration::from_secs(2),
        "a message took {worst:?} to arrive"
    );
    // The stalled client was kept waiting, not dropped: it gets them all.
    stalled.expect(Got::Welcome { online: 3 });
    let mut n = 0;
    while n < MESSAGES {
        match stalled.recv() {
            Got::Message { from, text } if from == "sender" => {
                assert!(
                    text.starts_with(&format!("{n:04} ")),
                    "stalled: out of order"
                );
                n += 1;
            }
            g => panic!("stalled: unexpected {g:?}"),
        }
    }
    reader.expect_quiet(Duration::from_millis(20));
    server.stop(Duration::from_millis(300));
}

/// 200 clients, in three dialects, join at once: every one is welcomed
/// (with every count from 1 to 200 given once: names are taken one at a
/// time), and then every one's /who lists all 200.
#[test]
fn two_hundred_clients_join_at_once() {
    const CLIENTS: usize = 200;
    let _crowd = crowd();
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, "");
    let addrs = server.local_addrs().to_vec();
    let counts = Mutex::new(Vec::new());
    let joined = AtomicUsize::new(0);
    let checked = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let all: Vec<String> = (0..CLIENTS).map(|i| format!("c{i:03}")).collect();
    let started = Instant::now();
    concurrently(CLIENTS, |i| {
        // No client waits for the others forever if one of them failed.
        let _flag = FailFlag(&failed);
        let d = i % dialects.len();
        let mut c = Client::join(addrs[d], dialects[d], &all[i]);
        counts.lock().unwrap().push(c.welcomed_online);
        joined.fetch_add(1, Ordering::SeqCst);
        assert!(
            eventually(Duration::from_secs(10), || joined.load(Ordering::SeqCst)
                == CLIENTS
                || failed.load(Ordering::SeqCst)),
            "not everyone joined"
        );
        assert!(!failed.load(Ordering::SeqCst), "another client failed");
        c.who();
        let got = c.recv_until(|g| matches!(g, Got::Roster(_)));
        let (roster, before) = got.split_last().unwrap();
        assert_eq!(*roster, Got::Roster(all.clone()), "{}", c.name);
        for g in before {
            assert!(
                matches!(g, Got::Joined { .. }),
                "{}: unexpected {g:?}",
                c.name
            );
        }
        checked.fetch_add(1, Ordering::SeqCst);
        // Stay until everyone has their roster.
        assert!(eventually(Duration::from_secs(10), || checked
            .load(Ordering::SeqCst)
            == CLIENTS
            || failed.load(Ordering::SeqCst)));
    });
    eprintln!("200 clients joined and listed: {:?}", started.elapsed());
    let mut counts = counts.into_inner().unwrap();
    counts.sort_unstable();
    assert_eq!(counts, (1..=CLIENTS as u32).collect::<Vec<_>>());
    assert_eq!(server.stats().accepted, CLIENTS as u64);
    assert_eq!(server.stats().refused, 0);
    assert!(eventually(Duration::from_secs(2), || server.stats().open == 0));
    server.stop(Duration::from_millis(300));
}
