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

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BUFFER_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(listen) => listen,
        Err(message) => {
            eprintln!("tokio-echo-server: {message}");
            eprintln!("usage: tokio-echo-server [--listen ADDR]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio-echo-server: start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio-echo-server: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--listen" => args.next().ok_or("--listen needs an address")?,
            _ => match arg.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        };
        listen = value
            .parse()
            .map_err(|e| format!("--listen {value:?}: {e}"))?;
    }
    Ok(listen)
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{bound}")?;
    stdout.flush()?;
    drop(stdout);

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
