//! What the tokio peers share: `--listen ADDR` (default 127.0.0.1:0), a
//! multi-thread runtime with tokio's default worker count (so `taskset`
//! limits it as it limits netlabd), and the bound address as the first line
//! on stdout, so a script can start a peer on port 0 and read the port.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

/// Parses the arguments, binds, prints the address, and runs `serve` on the
/// listener until it fails; `name` prefixes every message.
pub fn run<F, Fut>(name: &str, serve: F) -> ExitCode
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(listen) => listen,
        Err(message) => {
            eprintln!("{name}: {message}");
            eprintln!("usage: {name} [--listen ADDR]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {listen}: {e}")))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        serve(listener).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
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
