//! netlab installed as its users install it, following README.md's
//! "Install" section:
//!
//! - C: `cargo cinstall` into a temporary prefix; the README's program built
//!   with nothing but `pkg-config --cflags --libs netlab`, against the shared
//!   library and against the static one; the SONAME; no debug info.
//! - Python: the wheel built from `python/`, installed in a fresh virtual
//!   environment outside the source tree; the Python suite run against it;
//!   `mypy --strict` on a typed user program.
//! - Operators: the .deb's files and maintainer scripts, then the package
//!   installed under a real booted systemd (`../shared/tools/systemd-box.sh`,
//!   root only): netlabd.service enabled, active and answering, the socket
//!   unit left alone, and `dpkg -r` stopping it.
//!
//! These are slow (release builds; cargo-c, cargo-deb, pkg-config, mypy and
//! the box's root are installed or made when missing). Run them alone with
//! `cargo test -p netlab-daemon --test packaging`.

mod tools;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tools::{TempDir, run, run_status, workspace};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// mypy, at the version the typed program was checked with.
const MYPY: &str = "mypy==2.4.1";

/// The largest the stripped shared library and the wheel may be.
const MAX_LIBRARY_BYTES: u64 = 4 << 20;
const MAX_WHEEL_BYTES: u64 = 5 << 20;

/// cargo-c builds and copies out of one directory: one run at a time.
static CARGO_C_RUN: Mutex<()> = Mutex::new(());

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn need<T>(what: Result<T, String>) -> T {
    what.unwrap_or_else(|e| panic!("{e}"))
}

/// The SONAME cargo-c gives a version: `libnetlab.so.0.MINOR` before 1.0,
/// `libnetlab.so.MAJOR` after.
fn soname() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("libnetlab.so.0.{minor}")
    } else {
        format!("libnetlab.so.{major}")
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn readelf(args: &[&str], file: &Path) -> String {
    need(run(
        Command::new("readelf").args(args).arg(file),
        Duration::from_secs(60),
    ))
    .stdout
}

// ---- C --------------------------------------------------------------------

/// README.md's C program (its ```c block with a `main`): what a C user
/// copies.
fn readme_c_program() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    readme
        .split("```c\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(code, _)| code))
        .find(|code| code.contains("int main("))
        .expect("README.md has a ```c block with a main()")
        .to_owned()
}

/// `cargo cinstall --profile dist -p netlab --prefix PREFIX`, the README's
/// command, with `extra` arguments.
fn cinstall(prefix: &Path, extra: &[&str]) {
    let _one = CARGO_C_RUN.lock().unwrap_or_else(|e| e.into_inner());
    need(run(
        Command::new(tools::cargo())
            .current_dir(workspace())
            .args(["cinstall", "--profile", "dist", "-p", "netlab", "--prefix"])
            .arg(prefix)
            .arg("--libdir")
            .arg(prefix.join("lib"))
            .args(extra),
        minutes(30),
    ));
}

/// `pkg-config ARGS netlab` with the prefix's netlab.pc first in the path.
fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = need(run(
        Command::new("pkg-config")
            .args(args)
            .arg("netlab")
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
        Duration::from_secs(30),
    ));
    out.stdout.split_whitespace().map(str::to_owned).collect()
}

/// Compiles `source` with gcc and `flags`, warnings as errors.
fn gcc(source: &Path, flags: &[String], exe: &Path) {
    need(run(
        Command::new("gcc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
            .arg(source)
            .args(flags)
            .arg("-o")
            .arg(exe),
        Duration::from_secs(120),
    ));
}

/// Runs the README's program: it starts an echo server on port 0, echoes
/// "hello" through it, and prints `ADDR echoed: hello`.
fn run_hello(exe: &Path, library_path: Option<&Path>) {
    let mut cmd = Command::new(exe);
    // Only what a user would have: cargo test's own LD_LIBRARY_PATH points
    // at the libnetlab it built.
    cmd.env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = library_path {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = need(run(&mut cmd, Duration::from_secs(30)));
    let line = out.stdout.trim();
    let (addr, rest) = line.split_once(' ').unwrap_or(("", line));
    assert!(
        addr.starts_with("127.0.0.1:") && rest == "echoed: hello",
        "{}: {line:?}",
        exe.display()
    );
}

#[test]
fn c_library_installs_with_cargo_c_and_links_through_pkg_config() {
    need(tools::ensure_cargo_tool(&tools::CARGO_C));
    need(tools::ensure_apt("pkg-config", "pkg-config"));
    need(tools::ensure_apt("gcc", "gcc"));
    need(tools::ensure_apt("readelf", "binutils"));
    let dir = TempDir::new("cinstall");
    let source = dir.path().join("hello.c");
    std::fs::write(&source, readme_c_program()).unwrap();

    // Shared: libnetlab.so.X.Y.Z, its SONAME link, the -lnetlab link.
    let prefix = dir.path().join("prefix");
    cinstall(&prefix, &[]);
    let lib = prefix.join("lib");
    let real = lib.join(format!("libnetlab.so.{VERSION}"));
    for (link, to) in [
        (soname(), format!("libnetlab.so.{VERSION}")),
        ("libnetlab.so".to_owned(), format!("libnetlab.so.{VERSION}")),
    ] {
        let target = std::fs::read_link(lib.join(&link))
            .unwrap_or_else(|e| panic!("{link} should be a link to {to}: {e}"));
        assert_eq!(target, Path::new(&to), "{link}");
    }
    for file in ["libnetlab.a", "pkgconfig/netlab.pc"] {
        assert!(lib.join(file).is_file(), "{file} is not installed");
    }
    assert_eq!(
        std::fs::read(prefix.join("include/netlab.h")).unwrap(),
        std::fs::read(workspace().join("include/netlab.h")).unwrap(),
        "the installed header is not include/netlab.h"
    );
    let dynamic = readelf(&["-d"], &real);
    assert!(
        dynamic.contains(&format!("Library soname: [{}]", soname())),
        "{dynamic}"
    );
    let sections = readelf(&["-S", "-W"], &real);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".debug_line"),
        "the installed library has debug info:\n{sections}"
    );
    let size = file_size(&real);
    eprintln!("stripped libnetlab.so: {size} bytes");
    assert!(size < MAX_LIBRARY_BYTES, "libnetlab.so is {size} bytes");

    let flags = pkg_config(&prefix, &["--cflags", "--libs"]);
    let shared = dir.path().join("hello-shared");
    gcc(&source, &flags, &shared);
    let needed = readelf(&["-d"], &shared);
    assert!(
        needed.contains(&format!("Shared library: [{}]", soname())),
        "{needed}"
    );
    // As ldconfig would find it under /usr/local.
    run_hello(&shared, Some(&lib));

    // Static: a prefix with only libnetlab.a, so that -lnetlab is it, and
    // Libs.private must name every system library it needs.
    let static_prefix = dir.path().join("static");
    cinstall(&static_prefix, &["--library-type", "staticlib"]);
    let flags = pkg_config(&static_prefix, &["--cflags", "--static", "--libs"]);
    let linked = dir.path().join("hello-static");
    gcc(&source, &flags, &linked);
    let needed = readelf(&["-d"], &linked);
    assert!(!needed.contains("libnetlab"), "{needed}");
    run_hello(&linked, None);
}

// ---- Python -----------------------------------------------------------------

/// `python3 -m venv DIR`, installing Debian's python3-venv if that is what
/// is missing.
fn venv(dir: &Path) -> PathBuf {
    need(tools::ensure_apt("python3", "python3"));
    let make = || {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(dir),
            minutes(2),
        )
    };
    if make().is_err() {
        need(tools::ensure_apt_package("python3-venv"));
        need(make());
    }
    dir.join("bin")
}

/// A user's environment: none of cargo test's variables that would point
/// Python at the source tree or at another library.
fn user_env<'a>(cmd: &'a mut Command, cwd: &Path) -> &'a mut Command {
    cmd.current_dir(cwd)
        .env_remove("NETLAB_LIBRARY")
        .env_remove("PYTHONPATH")
        .env_remove("LD_LIBRARY_PATH")
        .env("PYTHONDONTWRITEBYTECODE", "1")
}

#[test]
fn python_wheel_installs_in_a_fresh_venv_and_passes_the_suite() {
    let dir = TempDir::new("wheel");
    let pyproject = std::fs::read_to_string(workspace().join("python/pyproject.toml")).unwrap();
    assert!(
        pyproject.contains(&format!("\nversion = \"{VERSION}\"\n")),
        "python/pyproject.toml's version is not the library's ({VERSION})"
    );

    // The README's build: pip builds the wheel (hatchling, which runs cargo).
    let build = venv(&dir.path().join("build-venv"));
    let wheels = dir.path().join("wheels");
    need(run(
        Command::new(build.join("pip"))
            .current_dir(workspace())
            .args(["wheel", "--no-deps", "--wheel-dir"])
            .arg(&wheels)
            .arg(workspace().join("python")),
        minutes(30),
    ));
    let wheel: Vec<PathBuf> = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(wheel.len(), 1, "{wheel:?}");
    let wheel = &wheel[0];
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("netlab-{VERSION}-py3-none-linux_")) && name.ends_with(".whl"),
        "not a py3 platform wheel: {name}"
    );
    let size = file_size(wheel);
    eprintln!("{name}: {size} bytes");
    assert!(size < MAX_WHEEL_BYTES, "the wheel is {size} bytes");
    let listing = need(run(
        Command::new(build.join("python"))
            .args(["-m", "zipfile", "-l"])
            .arg(wheel),
        Duration::from_secs(30),
    ))
    .stdout;
    for file in [
        "netlab/libnetlab.so",
        "netlab/py.typed",
        "netlab/__init__.py",
    ] {
        assert!(
            listing.contains(file),
            "{file} is not in the wheel:\n{listing}"
        );
    }

    // A fresh environment, outside the source tree, with no variable set.
    let user = venv(&dir.path().join("user-venv"));
    need(run(
        Command::new(user.join("pip")).arg("install").arg(wheel),
        minutes(5),
    ));
    let probe = need(run(
        user_env(&mut Command::new(user.join("python")), dir.path()).args([
            "-c",
            "import netlab; print(netlab.__file__); print(netlab.library_path); print(netlab.version())",
        ]),
        Duration::from_secs(60),
    ))
    .stdout;
    let lines: Vec<&str> = probe.lines().collect();
    let site = dir.path().join("user-venv");
    assert!(
        lines.len() == 3
            && Path::new(lines[0]).starts_with(&site)
            && Path::new(lines[1]).starts_with(&site)
            && lines[2] == VERSION,
        "import netlab from the installed wheel:\n{probe}"
    );

    // The Python suite, against the installed package.
    let suite = run_status(
        user_env(&mut Command::new(user.join("python")), dir.path())
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(workspace().join("ffi-tests/python"))
            .env("NETLAB_TEST_INSTALLED", "1"),
        minutes(5),
    );
    let suite = need(suite);
    assert!(
        suite.status.success(),
        "the Python suite failed against the installed wheel:\n{}",
        suite.both()
    );
    let installed_check = suite
        .stderr
        .lines()
        .find(|l| l.starts_with("test_the_installed_package_loads_the_library_it_carries"));
    assert!(
        installed_check.is_some_and(|l| l.ends_with(" ok")),
        "the installed-package check did not pass: {installed_check:?}\n{}",
        suite.stderr
    );

    // Its annotations: mypy --strict on a typed user program (and on the
    // package itself), then the program runs.
    need(run(
        Command::new(user.join("pip")).args(["install", "--quiet", MYPY]),
        minutes(10),
    ));
    let program = workspace().join("ffi-tests/python/typed_user.py");
    for target in [
        vec![program.to_string_lossy().into_owned()],
        vec!["-p".to_owned(), "netlab".to_owned()],
    ] {
        let out = need(run_status(
            user_env(&mut Command::new(user.join("mypy")), dir.path())
                .arg("--strict")
                .args(&target),
            minutes(5),
        ));
        assert!(
            out.status.success() && out.stdout.contains("Success"),
            "mypy --strict {target:?}:\n{}",
            out.both()
        );
    }
    let out = need(run(
        user_env(&mut Command::new(user.join("python")), dir.path()).arg(&program),
        Duration::from_secs(60),
    ));
    assert!(
        out.stdout.contains("typed user program: ok"),
        "{}",
        out.both()
    );
}

// ---- Debian -----------------------------------------------------------------

fn multiarch() -> String {
    let out = need(run(
        Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"),
        Duration::from_secs(30),
    ));
    out.stdout.trim().to_owned()
}

/// Builds the .deb as README.md says (daemon/debian/build-deb.sh), into `out`.
fn build_deb(out: &Path) -> PathBuf {
    need(tools::ensure_cargo_tool(&tools::CARGO_C));
    need(tools::ensure_cargo_tool(&tools::CARGO_DEB));
    let _one = CARGO_C_RUN.lock().unwrap_or_else(|e| e.into_inner());
    need(run(
        Command::new(workspace().join("daemon/debian/build-deb.sh"))
            .arg("--output")
            .arg(out),
        minutes(40),
    ));
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs[0].clone()
}

/// Every path the package must install, and the links among them.
fn expected_contents() -> (Vec<String>, Vec<(String, String)>) {
    let lib = format!("usr/lib/{}", multiarch());
    let mut files = vec![
        "usr/bin/netlabd".to_owned(),
        "usr/bin/netlab".to_owned(),
        format!("{lib}/libnetlab.so.{VERSION}"),
        format!("{lib}/libnetlab.a"),
        format!("{lib}/pkgconfig/netlab.pc"),
        "usr/include/netlab.h".to_owned(),
        "usr/lib/systemd/system/netlabd.service".to_owned(),
        "lib/systemd/system/netlabd.socket".to_owned(),
        "etc/netlab/netlabd.toml".to_owned(),
        "usr/share/doc/netlab/copyright".to_owned(),
        "usr/share/bash-completion/completions/netlab".to_owned(),
        "usr/share/bash-completion/completions/netlabd".to_owned(),
        "usr/share/zsh/vendor-completions/_netlab".to_owned(),
        "usr/share/zsh/vendor-completions/_netlabd".to_owned(),
        "usr/share/fish/vendor_completions.d/netlab.fish".to_owned(),
        "usr/share/fish/vendor_completions.d/netlabd.fish".to_owned(),
    ];
    for entry in std::fs::read_dir(workspace().join("daemon/man")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let section = name.rsplit('.').next().unwrap().to_owned();
        files.push(format!("usr/share/man/man{section}/{name}.gz"));
    }
    let target = format!("libnetlab.so.{VERSION}");
    let links = vec![
        (format!("{lib}/{}", soname()), target.clone()),
        (format!("{lib}/libnetlab.so"), target),
    ];
    (files, links)
}

fn control_file(deb: &Path, name: &str) -> String {
    need(run(
        Command::new("dpkg-deb").arg("--info").arg(deb).arg(name),
        Duration::from_secs(30),
    ))
    .stdout
}

#[test]
fn debian_package_installs_enables_and_removes_netlabd() {
    need(tools::ensure_apt("dpkg-deb", "dpkg"));
    need(tools::ensure_apt("dpkg-architecture", "dpkg-dev"));
    need(tools::ensure_apt("readelf", "binutils"));
    let dir = TempDir::new("deb");
    let deb = build_deb(dir.path());
    eprintln!("{}: {} bytes", deb.display(), file_size(&deb));

    // dpkg-deb --contents: every file, and nothing else.
    let listing = need(run(
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
        Duration::from_secs(60),
    ))
    .stdout;
    let mut files = Vec::new();
    let mut links = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, path) = (fields[0], fields[5].trim_start_matches("./"));
        match mode.chars().next() {
            Some('-') => files.push(path.to_owned()),
            Some('l') => links.push((path.to_owned(), fields[7].to_owned())),
            _ => {}
        }
    }
    let (mut want_files, mut want_links) = expected_contents();
    want_files.sort();
    files.sort();
    want_links.sort();
    links.sort();
    assert_eq!(files, want_files, "the package's files:\n{listing}");
    assert_eq!(links, want_links, "the package's links:\n{listing}");

    // The conffile, and what the maintainer scripts do: the service is
    // enabled and started the Debian way; the socket unit is left alone.
    assert_eq!(
        control_file(&deb, "conffiles").trim(),
        "/etc/netlab/netlabd.toml"
    );
    let postinst = control_file(&deb, "postinst");
    let prerm = control_file(&deb, "prerm");
    assert!(
        postinst.contains("deb-systemd-helper enable netlabd.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke $_dh_action netlabd.service"),
        "{postinst}"
    );
    assert!(
        prerm.contains("deb-systemd-invoke stop netlabd.service"),
        "{prerm}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = control_file(&deb, script);
        assert!(
            !text.contains("netlabd.socket"),
            "{script} touches the socket unit:\n{text}"
        );
    }
    assert!(control_file(&deb, "triggers").contains("activate-noawait ldconfig"));

    // The packaged library and its netlab.pc are for /usr.
    let unpacked = dir.path().join("unpacked");
    need(run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        Duration::from_secs(60),
    ));
    let lib = unpacked.join(format!("usr/lib/{}", multiarch()));
    let pc = std::fs::read_to_string(lib.join("pkgconfig/netlab.pc")).unwrap();
    assert!(pc.contains("prefix=/usr\n"), "{pc}");
    let real = lib.join(format!("libnetlab.so.{VERSION}"));
    assert!(readelf(&["-d"], &real).contains(&format!("Library soname: [{}]", soname())));
    assert!(file_size(&real) < MAX_LIBRARY_BYTES);

    match SystemdBox::prepare() {
        Ok(systemd) => systemd.install_and_remove(&deb),
        Err(why) => eprintln!("SKIP the install under systemd: {why}"),
    }
}

/// A booted systemd in a throw-away root (../shared/tools/systemd-box.sh),
/// of this test's own (another engineer's box is left alone), held under a
/// lock so that two test runs do not share it.
struct SystemdBox {
    script: PathBuf,
    dir: PathBuf,
    _lock: std::fs::File,
}

impl SystemdBox {
    /// Why the box cannot be had here, when it cannot: not root, or no
    /// systemd-box.sh beside the repository.
    fn prepare() -> Result<SystemdBox, String> {
        if !tools::is_root() {
            return Err("the box needs root (namespaces, chroot, debootstrap)".into());
        }
        let script = workspace()
            .parent()
            .unwrap()
            .join("shared/tools/systemd-box.sh");
        if !script.is_file() {
            return Err(format!("{} is not there", script.display()));
        }
        let dir = match std::env::var_os("NETLAB_PACKAGING_BOX") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/netlab-packaging-box"),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; released when it closes.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock {}", dir.display());
        // A box of ours left up by a test run that was killed.
        let _ = run(
            Command::new("bash")
                .arg(&script)
                .arg("down")
                .env("BOX", &dir),
            minutes(1),
        );
        // The ports of the packaged configuration must be free here: the box
        // shares this machine's network.
        for port in [7007, 7008, 7009, 12345, 12346, 1234, 1235, 1236] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                return Err(format!(
                    "127.0.0.1:{port} is in use on this machine, and the packaged netlabd.toml needs it"
                ));
            }
        }
        Ok(SystemdBox {
            script,
            dir,
            _lock: lock,
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn tool(&self, args: &[&str], limit: Duration) -> Result<tools::Output, String> {
        run(
            Command::new("bash")
                .arg(&self.script)
                .args(args)
                .env("BOX", &self.dir),
            limit,
        )
    }

    /// `CMD` inside the box; its output whatever its exit status.
    fn inside(&self, cmd: &[&str]) -> tools::Output {
        let mut args = vec!["in"];
        args.extend_from_slice(cmd);
        need(run_status(
            Command::new("bash")
                .arg(&self.script)
                .args(&args)
                .env("BOX", &self.dir),
            minutes(3),
        ))
    }

    fn must(&self, cmd: &[&str]) -> String {
        let out = self.inside(cmd);
        assert!(out.status.success(), "in the box, {cmd:?}:\n{}", out.both());
        out.stdout
    }

    fn unit_state(&self, query: &str, unit: &str) -> String {
        self.inside(&["systemctl", query, unit])
            .stdout
            .trim()
            .to_owned()
    }

    fn install_and_remove(&self, deb: &Path) {
        eprintln!(
            "systemd box in {}: making its root (debootstrap, the first time)",
            self.dir.display()
        );
        need(self.tool(&["make"], minutes(30)));
        need(self.tool(&["up"], minutes(1)));
        let _down = Down(self);
        let booted = Instant::now();
        loop {
            let state = self.inside(&["systemctl", "is-system-running"]).stdout;
            if matches!(state.trim(), "running" | "degraded") {
                break;
            }
            assert!(
                booted.elapsed() < Duration::from_secs(90),
                "the box's systemd is not up: {state}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // What an earlier, interrupted run may have left.
        self.inside(&["dpkg", "--purge", "netlab"]);

        // The box cannot make device nodes, which PrivateDevices=yes needs.
        let dropin = self.root().join("etc/systemd/system/netlabd.service.d");
        std::fs::create_dir_all(&dropin).unwrap();
        std::fs::write(dropin.join("box.conf"), "[Service]\nPrivateDevices=no\n").unwrap();
        let cache = self.root().join("var/cache/netlab-packaging");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::copy(deb, cache.join("netlab.deb")).unwrap();

        self.must(&["dpkg", "-i", "/var/cache/netlab-packaging/netlab.deb"]);
        assert_eq!(self.unit_state("is-enabled", "netlabd.service"), "enabled");
        assert_eq!(self.unit_state("is-active", "netlabd.service"), "active");
        assert_eq!(self.unit_state("is-enabled", "netlabd.socket"), "disabled");
        assert_eq!(self.unit_state("is-active", "netlabd.socket"), "inactive");
        let status = self.must(&["systemctl", "status", "netlabd", "--no-pager"]);
        eprintln!("{status}");
        assert!(status.contains("Active: active (running)"), "{status}");

        // netlabd answers: from this machine, and with the packaged client.
        let message = b"hello from outside the box";
        let mut echo = TcpStream::connect(("127.0.0.1", 7007)).expect("connect to the echo server");
        echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        echo.write_all(message).unwrap();
        echo.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        echo.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, message);
        let out = self.must(&["netlab", "echo", "127.0.0.1:7007", "packaged", "client"]);
        assert_eq!(out.trim(), "packaged client");
        self.must(&["test", "-f", "/usr/share/man/man5/netlabd.toml.5.gz"]);
        self.must(&["netlabd", "--check"]);

        // dpkg -r stops it and keeps the conffile; --purge removes that too.
        self.must(&["dpkg", "-r", "netlab"]);
        assert_ne!(self.unit_state("is-active", "netlabd.service"), "active");
        assert!(
            TcpStream::connect(("127.0.0.1", 7007)).is_err(),
            "something still listens on 7007 after dpkg -r"
        );
        assert!(self.root().join("etc/netlab/netlabd.toml").is_file());
        self.must(&["dpkg", "--purge", "netlab"]);
        assert!(!self.root().join("etc/netlab/netlabd.toml").exists());
    }
}

/// Ends the box (its PID 1, and so everything in it) however the test ends.
struct Down<'a>(&'a SystemdBox);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.tool(&["down"], minutes(1));
    }
}
