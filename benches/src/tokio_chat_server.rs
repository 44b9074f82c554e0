//! The peer netlabd's chat is compared with: a plain tokio chat server
//! built the way tokio's chat examples are (multi-thread runtime, one task
//! per client, every message through one `tokio::sync::broadcast`
//! channel, each task writing what it receives with `write_all`), so the
//! comparison is against idiomatic async Rust rather than a tuned special
//! case.
//!
//! It speaks netlab's line dialect, so `netlab chat` and `netlab bench
//! chat` drive it unchanged: the first line is the client's name, answered
//! with `* welcome NAME, N online; ...`; every later line reaches the others
//! as `[name] text`; joins and leaves are notices. Names are not checked
//! for uniqueness (the bench's are unique).
//!
//! `--listen ADDR` (default 127.0.0.1:0); the bound address is the first
//! line on stdout, so a script can start it on port 0 and read the port.
//! Worker threads follow tokio's default (one per core the process may
//! use), so `taskset` limits it the same way it limits netlabd.

#[path = "peer.rs"]
mod peer;

use std::process::ExitCode;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};

/// Messages the channel holds for its slowest receiver; one that falls
/// further behind skips what it missed (tokio's `Lagged`), and the bench
/// counts those as lost.
const CHANNEL_CAPACITY: usize = 1024;

/// One line for everyone but its sender (`None`: for everyone).
struct Broadcast {
    from: Option<u64>,
    line: Vec<u8>,
}

fn main() -> ExitCode {
    peer::run("tokio-chat-server", serve)
}

async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let (tx, _) = broadcast::channel::<Arc<Broadcast>>(CHANNEL_CAPACITY);
    let mut next_id = 0u64;
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        next_id += 1;
        let (id, tx) = (next_id, tx.clone());
        tokio::spawn(async move {
            // A client that goes away is the normal end of its task.
            let _ = client(id, socket, tx).await;
        });
    }
}

async fn client(
    id: u64,
    socket: TcpStream,
    tx: broadcast::Sender<Arc<Broadcast>>,
) -> std::io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    let Some(name) = lines.next_line().await? else {
        return Ok(());
    };
    let name = name.trim_end_matches('\r').to_owned();
    let mut rx = tx.subscribe();
    let online = tx.receiver_count();
    let welcome = format!("* welcome {name}, {online} online; /who lists them, /quit leaves\n");
    writer.write_all(welcome.as_bytes()).await?;
    let _ = tx.send(Arc::new(Broadcast {
        from: Some(id),
        line: format!("* {name} joined ({online} online)\n").into_bytes(),
    }));

    let result = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(text)) => {
                    let text = text.trim_end_matches('\r');
                    if text.trim() == "/quit" {
                        break Ok(());
                    }
                    let line = format!("[{name}] {text}\n").into_bytes();
                    let _ = tx.send(Arc::new(Broadcast { from: Some(id), line }));
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            received = rx.recv() => match received {
                Ok(message) if message.from != Some(id) => {
                    if let Err(e) = writer.write_all(&message.line).await {
                        break Err(e);
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break Ok(()),
            },
        }
    };
    drop(rx);
    let _ = tx.send(Arc::new(Broadcast {
        from: Some(id),
        line: format!("* {name} left ({} online)\n", tx.receiver_count()).into_bytes(),
    }));
    result
}
