//! The Python tests: `ffi-tests/python/` run with the standard library's
//! unittest (nothing to install), `PYTHONPATH=python` and `NETLAB_LIBRARY`
//! set to the shared library that `cargo test` has just built. A failing
//! Python case fails this test, with unittest's output printed.
//!
//! Without python3 the test says why and passes.

#[path = "common/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(300);

/// The `libnetlab.so` cargo built for this run: beside the test binary
/// (`<target>/<profile>/deps/`), whatever the target dir and profile.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary's directory");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|dir| dir.join("libnetlab.so"))
        .find(|lib| lib.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libnetlab.so is neither in {} nor beside it",
                deps.display()
            )
        })
}

#[test]
fn python_unittest_suite() {
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        eprintln!("SKIP: python3 is not installed, so the Python tests cannot be run");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output_file =
        std::env::temp_dir().join(format!("netlab-ffi-python-{}.log", std::process::id()));
    let log = std::fs::File::create(&output_file).expect("create the log file");
    let pki = pki::Pki::new();
    let started = Instant::now();
    let mut child = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("ffi-tests/python"))
        .current_dir(root)
        .env("PYTHONPATH", root.join("python"))
        .env("NETLAB_LIBRARY", library())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NETLAB_TEST_PKI", &pki.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run python3");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&output_file).unwrap_or_default();
    let _ = std::fs::remove_file(&output_file);
    println!("{output}");
    match status {
        None => panic!("the Python tests did not finish within {TIMEOUT:?}"),
        Some(s) if !s.success() => {
            panic!("the Python tests failed ({s}); unittest's output is above")
        }
        Some(_) => eprintln!("the Python tests passed in {:.1?}", started.elapsed()),
    }
}
