//! A room on several reactors (`workers = 2`): clients spread over them,
//! one room still, every member hearing every sender in order, and a slow
//! reader dropped without delaying anyone, on its reactor or the other.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlab::chat::ClientMsg;

use crate::client::*;
use crate::common::*;

/// Time on a CPU, in nanoseconds, of this process's threads whose name
/// starts with `prefix` (schedstat's first field: exact, where stat's ticks
/// round a thread's short work down to nothing).
fn thread_cpu_ns(prefix: &str) -> Vec<u64> {
    let mut times = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        times.push(schedstat.split(' ').next().unwrap().parse::<u64>().unwrap());
    }
    times
}

/// 200 clients in two dialects on two reactors; ten of them send 20
/// numbered messages each; every client gets every other sender's messages,
/// all of them, each sender's in order.
#[test]
fn two_workers_200_clients_every_message_to_every_member_in_order() {
    const CLIENTS: usize = 200;
    const SENDERS: usize = 10;
    const EACH: usize = 20;
    let _crowd = crowd();
    let dialects = [Dialect::Line, Dialect::Bincode];
    // A name of its own: its room threads are "two-room0" and "two-room1",
    // and no other test's.
    let listen: Vec<String> = dialects.iter().map(|d| d.listen()).collect();
    let server = start(&format!(
        "name = \"two\"\nservice = \"chat\"\nlisten = [{}]\nworkers = 2\nmax_clients = 300\n",
        listen.join(", ")
    ));
    let addrs = server.local_addrs().to_vec();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| Client::join(addrs[i % 2], dialects[i % 2], &format!("c{i:03}")))
        .collect();
    // Everyone has heard everyone after it join.
    for (i, c) in clients.iter_mut().enumerate() {
        if i + 1 < CLIENTS {
            let last = Got::joined(&format!("c{:03}", CLIENTS - 1), CLIENTS as u32);
            c.recv_until(|g| *g == last);
        }
    }
    // The senders write at once, each from its own thread.
    std::thread::scope(|scope| {
        for c in clients.iter().take(SENDERS) {
            let (mut s, codec, name) =
                (c.s.try_clone().unwrap(), c.dialect.codec(), c.name.clone());
            scope.spawn(move || {
                let mut bytes = Vec::new();
                for k in 0..EACH {
                    let text = format!("{name} {k}");
                    codec.encode_client_msg(ClientMsg::Say { text: &text }, &mut bytes);
                }
                s.write_all(&bytes).unwrap();
            });
        }
    });
    for (i, c) in clients.iter_mut().enumerate() {
        let mut next: HashMap<String, usize> = HashMap::new();
        let expected = if i < SENDERS { SENDERS - 1 } else { SENDERS } * EACH;
        for _ in 0..expected {
            match c.recv() {
                Got::Message { from, text } => {
                    let k = next.entry(from.clone()).or_insert(0);
                    assert_eq!(text, format!("{from} {k}"), "{}: out of order", c.name);
                    *k += 1;
                }
                other => panic!("{}: {other:?} among the messages", c.name),
            }
        }
        assert!(next.values().all(|&k| k == EACH), "{}: {next:?}", c.name);
    }
    // Both reactors served: each of the room's threads did a real share of
    // the work (an idle one would have spent well under a tenth: it only
    // started and waited).
    let times = thread_cpu_ns("two-room");
    assert_eq!(times.len(), 2, "{times:?}");
    let total: u64 = times.iter().sum();
    assert!(
        times.iter().all(|&t| t * 10 > total),
        "a reactor did (almost) nothing: {times:?} ns on a CPU"
    );
    server.stop(Duration::from_millis(300));
}

/// A client that never reads is dropped when its queue overflows (1,000
/// messages of 8 KiB: more than the kernel's buffers hold); the ten others,
/// spread over both reactors, get all 1,000 in order, in bounded time.
#[test]
fn two_workers_a_slow_reader_delays_no_one() {
    const MESSAGES: usize = 1000;
    const READERS: usize = 10;
    let _crowd = crowd();
    let server = chat_server(&[Dialect::Line], "workers = 2\nqueue_bytes = 65536");
    let addr = server.local_addrs()[0];
    let mut sender = Client::join(addr, Dialect::Line, "sender");
    let mut readers: Vec<Client> = (0..READERS)
        .map(|i| Client::join(addr, Dialect::Line, &format!("r{i:02}")))
        .collect();
    let mut stalled = Client::from_stream(connect_small_rcvbuf(addr), Dialect::Line);
    stalled.hello("stalled");
    let stalled_in = Got::joined("stalled", READERS as u32 + 2);
    sender.recv_until(|g| *g == stalled_in);
    for r in &mut readers {
        r.recv_until(|g| *g == stalled_in);
    }
    let text = |k: usize| format!("{k:04} {}", "x".repeat(8 * 1024 - 5));
    // Bursts of 4 (32 KiB, half the queue), the next once every reader has
    // the last: the readers plainly keep up, so any of them dropped is the
    // server's fault, whatever else runs on the machine.
    const BURST: usize = 4;
    let progress: Vec<AtomicUsize> = (0..READERS).map(|_| AtomicUsize::new(0)).collect();
    let began = Instant::now();
    std::thread::scope(|scope| {
        let mut s = sender.s.try_clone().unwrap();
        let progress = &progress;
        scope.spawn(move || {
            let codec = Dialect::Line.codec();
            let mut bytes = Vec::new();
            for first in (0..MESSAGES).step_by(BURST) {
                bytes.clear();
                for k in first..first + BURST {
                    codec.encode_client_msg(ClientMsg::Say { text: &text(k) }, &mut bytes);
                }
                s.write_all(&bytes).unwrap();
                let deadline = Instant::now() + IO_TIMEOUT;
                while progress
                    .iter()
                    .any(|p| p.load(Ordering::SeqCst) < first + BURST)
                {
                    assert!(
                        Instant::now() < deadline,
                        "the readers fell behind at {first}"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        for (r, p) in readers.iter_mut().zip(progress) {
            scope.spawn(move || {
                let mut k = 0;
                while k < MESSAGES {
                    match r.recv() {
                        Got::Message { from, text: got } if from == "sender" => {
                            assert_eq!(got, text(k), "{}: message {k}", r.name);
                            k += 1;
                            p.store(k, Ordering::SeqCst);
                        }
                        Got::Left { name, .. } if name == "stalled" => {}
                        other => panic!("{}: {other:?}", r.name),
                    }
                }
            });
        }
    });
    let took = began.elapsed();
    eprintln!("1,000 x 8 KiB to {READERS} readers on two reactors past a stalled one: {took:?}");
    let got = stalled.expect_closed(IO_TIMEOUT);
    assert!(
        got.len() < MESSAGES * 8 * 1024,
        "the stalled client got it all"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    server.stop(Duration::from_millis(300));
}
