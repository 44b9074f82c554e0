//! The outside programs the manual and packaging tests run: commands with a
//! time bound and their output kept for the failure message, and the tools
//! installed when missing (Debian packages with apt-get, which needs root;
//! cargo subcommands at a pinned version), or else a clear reason why not.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a finished command said.
pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin closed) for at most `limit`; Err with what it printed
/// when it cannot start, does not finish in time, or exits non-zero.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let out = run_status(cmd, limit)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{} failed ({}):\n{}",
            describe(cmd),
            out.status,
            tail(&out.both())
        ))
    }
}

/// As [`run`], but a non-zero exit is the caller's to judge.
pub fn run_status(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let dir = scratch_dir();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let stdout = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(&out_path).unwrap_or_default()
                + &std::fs::read_to_string(&err_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "{} did not finish within {limit:?}:\n{}",
                describe(cmd),
                tail(&said)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    format!("`{text}`")
}

/// The last 60 lines: what explains a failure.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("netlab-tools-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Whether `program` runs (`program arg` exits 0).
pub fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `program` is an executable file in a directory of $PATH.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Makes `program` available, installing Debian's `package` when it is
/// missing from $PATH.
pub fn ensure_apt(program: &str, package: &str) -> Result<(), String> {
    if on_path(program) {
        return Ok(());
    }
    eprintln!("{program} is missing: apt-get install {package}");
    ensure_apt_package(package)?;
    if on_path(program) {
        Ok(())
    } else {
        Err(format!(
            "{package} was installed but {program} is still not on PATH"
        ))
    }
}

/// Installs Debian's `package` (apt-get, as root; a no-op when it is
/// installed already).
pub fn ensure_apt_package(package: &str) -> Result<(), String> {
    // One apt-get at a time: dpkg holds a lock.
    static APT: Mutex<bool> = Mutex::new(false);
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        return Err(format!(
            "{package} is needed, and installing it needs root: apt-get install {package}"
        ));
    }
    let limit = Duration::from_secs(600);
    // Another test binary or script may be installing too: wait for dpkg.
    let wait = ["-o", "DPkg::Lock::Timeout=600"];
    if !*updated {
        run(
            Command::new("apt-get").args(wait).args(["update", "-qq"]),
            limit,
        )?;
        *updated = true;
    }
    run(
        Command::new("apt-get")
            .args(wait)
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        limit,
    )
    .map(|_| ())
    .map_err(|e| format!("cannot install {package}: {e}"))
}

/// A cargo subcommand the tests need, at the version they were written for.
pub struct CargoTool {
    /// The program cargo runs, e.g. `cargo-cinstall`.
    pub program: &'static str,
    pub krate: &'static str,
    pub version: &'static str,
    /// How long installing it from source may take here.
    pub limit: Duration,
}

/// cargo-c: `cargo cbuild`, `cargo cinstall`. 0.10.24 is the newest that
/// builds with Rust 1.95; it takes about 9 minutes to build on 2 cores.
pub const CARGO_C: CargoTool = CargoTool {
    program: "cargo-cinstall",
    krate: "cargo-c",
    version: "0.10.24+cargo-0.98.0",
    limit: Duration::from_secs(40 * 60),
};

/// cargo-deb: `cargo deb`.
pub const CARGO_DEB: CargoTool = CargoTool {
    program: "cargo-deb",
    krate: "cargo-deb",
    version: "3.8.0",
    limit: Duration::from_secs(15 * 60),
};

/// Makes `tool` available, installing it with `cargo install --locked` when
/// missing. Any installed version is used: `.ci/run` installs the pinned one.
pub fn ensure_cargo_tool(tool: &CargoTool) -> Result<(), String> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if cargo_tool_present(tool) {
        return Ok(());
    }
    eprintln!(
        "{} is missing: cargo install {} --version ={} --locked (may take up to {:?})",
        tool.program, tool.krate, tool.version, tool.limit
    );
    run(
        Command::new(cargo())
            .args(["install", "--locked", tool.krate, "--version"])
            .arg(format!("={}", tool.version)),
        tool.limit,
    )
    .map_err(|e| format!("cannot install {}: {e}", tool.krate))?;
    if cargo_tool_present(tool) {
        Ok(())
    } else {
        Err(format!(
            "{} was installed but cargo cannot find {}: is $CARGO_HOME/bin on PATH?",
            tool.krate, tool.program
        ))
    }
}

fn cargo_tool_present(tool: &CargoTool) -> bool {
    let sub = tool.program.trim_start_matches("cargo-");
    Command::new(cargo())
        .args([sub, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cargo that runs these tests.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

/// The workspace root.
pub fn workspace() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("daemon/ is in the workspace")
            .to_path_buf()
    })
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("netlab-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
