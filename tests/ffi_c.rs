//! The C tests: every program in `ffi-tests/c/` is compiled with gcc
//! (`-std=c11 -Wall -Wextra -Wpedantic -Werror -fsanitize=address,undefined`)
//! against `include/netlab.h` and the shared library that `cargo test` has
//! just built, then run; a program that fails a check exits non-zero and
//! fails its test here, with its output printed. The same programs, built
//! without the sanitizers, then run under valgrind, which must report no
//! leak and no invalid access.
//!
//! Without gcc (or valgrind, for the second run) the tests say why and pass.

#[path = "common/pki.rs"]
mod pki;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every C test program, without its `.c`.
const PROGRAMS: &[&str] = &[
    "server_lifecycle",
    "clients",
    "chat",
    "codec",
    "misuse",
    "stop_connected",
    "tls",
];

/// How long one program may run (valgrind is slow: 20x or so).
const TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the `libnetlab.so` that cargo built for this test
/// run: the test binary lives in `<target>/<profile>/deps/`, and cargo puts
/// the library's cdylib beside it (honouring `CARGO_TARGET_DIR` and the
/// profile without our having to know them).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary's directory");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        if dir.join("libnetlab.so").is_file() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "libnetlab.so is neither in {} nor beside it: is crate-type cdylib still set in Cargo.toml?",
        deps.display()
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the C binaries go: beside the test binary.
fn out_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = library_dir().join("ffi-c-tests");
        std::fs::create_dir_all(&dir).expect("create the C tests' output directory");
        dir
    })
}

/// Compiles one program; panics with gcc's output when it fails.
fn compile(name: &str, sanitize: bool) -> PathBuf {
    let lib = library_dir();
    let exe = out_dir().join(if sanitize {
        format!("{name}-asan")
    } else {
        name.to_owned()
    });
    let mut gcc = Command::new("gcc");
    gcc.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-g",
    ]);
    if sanitize {
        gcc.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ]);
    } else {
        gcc.arg("-O1");
    }
    gcc.arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("ffi-tests/c"))
        .arg(root().join("ffi-tests/c").join(format!("{name}.c")))
        .arg("-L")
        .arg(&lib)
        .arg("-lnetlab")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe);
    let out = gcc.output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed on ffi-tests/c/{name}.c:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs a command to completion within [`TIMEOUT`] (killing it after), and
/// panics with its output when it exits non-zero.
fn run(what: &str, mut cmd: Command) {
    // cargo test puts its target directories in LD_LIBRARY_PATH, which
    // outranks the programs' rpath: a stale target/debug/libnetlab.so (from
    // an earlier cargo build) would be loaded instead of the one linked.
    cmd.env("LD_LIBRARY_PATH", library_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    // Drain both pipes on threads so a chatty program cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("--- {what}: stdout ---\n{out}--- {what}: stderr ---\n{err}");
    match status {
        None => panic!("{what}: did not finish within {TIMEOUT:?}"),
        Some(s) if !s.success() => panic!("{what}: failed ({s}); its output is above"),
        Some(_) => eprintln!("{what}: passed in {:.1?}", started.elapsed()),
    }
}

fn with_sanitizers(name: &str) {
    if !have("gcc") {
        eprintln!("SKIP: gcc is not installed, so the C tests cannot be compiled");
        return;
    }
    let exe = compile(name, true);
    let pki = pki::Pki::new();
    let mut cmd = Command::new(&exe);
    cmd.env("NETLAB_TEST_PKI", &pki.dir);
    // LeakSanitizer works with Rust's allocator (the system malloc).
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    run(&format!("{name} (ASan+UBSan)"), cmd);
}

fn under_valgrind(name: &str) {
    if !have("gcc") {
        eprintln!("SKIP: gcc is not installed, so the C tests cannot be compiled");
        return;
    }
    if !have("valgrind") {
        eprintln!("SKIP: valgrind is not installed, so the C tests' valgrind run cannot be done");
        return;
    }
    let exe = compile(name, false);
    let pki = pki::Pki::new();
    let mut cmd = Command::new("valgrind");
    cmd.env("NETLAB_TEST_PKI", &pki.dir);
    cmd.args([
        "--quiet",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
        "--error-exitcode=1",
        // The fork model's children leave with _exit and never free.
        "--child-silent-after-fork=yes",
    ])
    .arg(format!(
        "--suppressions={}",
        root().join("ffi-tests/c/valgrind.supp").display()
    ))
    .arg(&exe);
    run(&format!("{name} (valgrind)"), cmd);
}

#[test]
fn c_server_lifecycle() {
    with_sanitizers("server_lifecycle");
}

#[test]
fn c_clients() {
    with_sanitizers("clients");
}

#[test]
fn c_chat() {
    with_sanitizers("chat");
}

#[test]
fn c_codec() {
    with_sanitizers("codec");
}

#[test]
fn c_misuse() {
    with_sanitizers("misuse");
}

#[test]
fn c_stop_connected() {
    with_sanitizers("stop_connected");
}

#[test]
fn c_tls() {
    with_sanitizers("tls");
}

/// Every program under valgrind, one after the other: valgrind is heavy,
/// and the machine has few cores.
#[test]
fn c_all_under_valgrind() {
    for name in PROGRAMS {
        under_valgrind(name);
    }
}

#[test]
fn every_c_program_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("ffi-tests/c"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".c")?.to_owned())
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "ffi-tests/c/*.c and PROGRAMS differ");
}
