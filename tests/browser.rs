//! The chat page in a real browser: headless Chromium (Debian's package)
//! driven by playwright-core (npm) through `tests/browser/chat.mjs`, with
//! two pages and an nc-like line client in one room served by this test.
//! The script's screenshot is kept in `target/tmp/browser/chat.png`.
//!
//! Chromium and playwright-core are installed when missing: `apt-get
//! install -y chromium` (as root), and `npm install playwright-core` into
//! `target/tmp/browser/`, a directory of its own. Where neither can be had
//! the test says why and skips, except under CI (`CI=true`), where it fails.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use netlab::server::RunningServer;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The playwright-core this test was written against, and newer 1.x.
const PLAYWRIGHT: &str = "playwright-core@^1.64";
/// The whole browser run, installs excluded.
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser")
}

/// Runs `command`, its output kept in `log`; an error with the log's tail.
fn run_logged(command: &mut Command, what: &str, log: &Path) -> Result<(), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    Err(format!(
        "{what} failed ({status}); the end of {}:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

/// Debian's Chromium, installed if missing.
fn chromium(dir: &Path) -> Result<PathBuf, String> {
    let path = PathBuf::from(CHROMIUM);
    if path.exists() {
        return Ok(path);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "{CHROMIUM} is missing, and only root can install it (apt-get install chromium)"
        ));
    }
    eprintln!("browser test: installing Chromium (apt-get install -y chromium)");
    let apt = |args: &[&str], log: &str| {
        run_logged(
            // Another test binary may be installing too: wait for dpkg's lock.
            Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=600"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &format!("apt-get {}", args.join(" ")),
            &dir.join(log),
        )
    };
    apt(&["update"], "apt-update.log")?;
    apt(
        &["install", "-y", "--no-install-recommends", "chromium"],
        "apt-install.log",
    )?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "apt-get installed chromium, but {CHROMIUM} is not there"
        ))
    }
}

/// playwright-core in `dir/node_modules`, installed if missing.
fn playwright(dir: &Path) -> Result<PathBuf, String> {
    let modules = dir.join("node_modules");
    if modules.join("playwright-core/package.json").exists() {
        return Ok(modules);
    }
    eprintln!(
        "browser test: installing {PLAYWRIGHT} into {}",
        dir.display()
    );
    run_logged(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg(PLAYWRIGHT),
        &format!("npm install {PLAYWRIGHT}"),
        &dir.join("npm-install.log"),
    )?;
    Ok(modules)
}

/// A chat room with a websocket listener and a line listener, on `ports`
/// (0: any).
fn serve(ports: [u16; 2]) -> RunningServer {
    common::start(&format!(
        "name = \"chat\"\nservice = \"chat\"\nlisten = [{{ addr = \"127.0.0.1:{}\", dialect = \"websocket\" }}, {{ addr = \"127.0.0.1:{}\", dialect = \"line\" }}]\n",
        ports[0], ports[1]
    ))
}

/// The node process and its browser, killed together when dropped.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        // Its own process group: node and the Chromium it started.
        let pid = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn two_pages_and_a_line_client_chat_in_headless_chromium() {
    let dir = work_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let tools = chromium(&dir).and_then(|c| playwright(&dir).map(|m| (c, m)));
    let (chromium, modules) = match tools {
        Ok(tools) => tools,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("browser test SKIPPED: no browser could be had here: {why}");
            println!("browser test SKIPPED: {why}");
            return;
        }
        Err(why) => panic!("the browser test cannot run: {why}"),
    };

    let mut server = Some(serve([0, 0]));
    let addrs = server.as_ref().unwrap().local_addrs().to_vec();
    let screenshot = dir.join("chat.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/chat.mjs");
    let child = Command::new("node")
        .arg(&script)
        .env("NODE_MODULES", &modules)
        .env("CHROMIUM", &chromium)
        .env("PAGE_URL", format!("http://{}/", addrs[0]))
        .env("LINE_ADDR", addrs[1].to_string())
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("run node");
    let mut script_run = Script(child);
    let mut stdin = script_run.0.stdin.take().unwrap();
    let stdout = script_run.0.stdout.take().unwrap();

    // The script's lines, read on a thread so that every wait is bounded.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    let mut ok = false;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the script's output: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the browser test took longer than {RUN_LIMIT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match line.trim() {
            "RESTART" => {
                // The drop: the server goes away, and comes back on the
                // same ports a moment later.
                server.take().unwrap().stop(Duration::from_secs(1));
                std::thread::sleep(Duration::from_millis(300));
                server = Some(serve([addrs[0].port(), addrs[1].port()]));
                writeln!(stdin, "RESTARTED").unwrap();
            }
            "OK" => ok = true,
            other => eprintln!("browser test: {other}"),
        }
    }
    let status = script_run.0.wait().unwrap();
    assert!(
        ok && status.success(),
        "the browser script failed ({status})"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    eprintln!("browser test: screenshot kept at {}", screenshot.display());
}
