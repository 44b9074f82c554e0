//! The peer netlabd's event-model echo is compared with: a plain tokio echo
//! server built the way tokio's own `examples/echo.rs` is (multi-thread
//! runtime, one task per connection, a 64 KiB buffer, `read` then
//! `write_all`), so the comparison is against idiomatic async Rust rather
//! than a tuned special case.
//!
//! `--listen ADDR` (default 127.0.0.1:0); the bound address is the first
//! line on stdout, so a script can start it on port 0 and read the port.
//! Worker threads follow tokio's default (one per core the process may use),
//! so `taskset` limits it the same way it limits netlabd.

#[path = "peer.rs"]
mod peer;

use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BUFFER_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    peer::run("tokio-echo-server", serve)
}

async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; BUFFER_SIZE];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
