//! The shipped unit files: `systemd-analyze verify` accepts them, and
//! `systemd-analyze security --offline=yes` rates the service 2.0 or lower,
//! and stopping the service signals netlabd alone.

use std::path::Path;
use std::process::Command;

fn units_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd"))
}

fn have_systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: systemd-analyze is not installed (Debian package systemd)");
    }
    ok
}

/// The units as installed: pointing at the netlabd just built, since the
/// check wants an executable where ExecStart= says.
fn installed_copy() -> (tempdir::Dir, std::path::PathBuf) {
    let dir = tempdir::Dir::new();
    for unit in ["netlabd.service", "netlabd.socket"] {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        let text = text.replace("/usr/bin/netlabd", env!("CARGO_BIN_EXE_netlabd"));
        std::fs::write(dir.0.join(unit), text).unwrap();
    }
    let service = dir.0.join("netlabd.service");
    (dir, service)
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    if !have_systemd_analyze() {
        return;
    }
    let (dir, service) = installed_copy();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&service)
        .arg(dir.0.join("netlabd.socket"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Only the service's own lines matter; the host's other units are not ours.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("netlabd")).collect();
    assert!(ours.is_empty(), "{ours:#?}");
}

#[test]
fn the_service_is_rated_2_or_lower_by_systemd_analyze_security() {
    if !have_systemd_analyze() {
        return;
    }
    let (_dir, service) = installed_copy();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&service)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no rating in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the rating in {line:?}"));
    assert!(score <= 2.0, "{line}");
}

/// On `systemctl stop`, SIGTERM goes to netlabd alone (`KillMode=mixed`):
/// the fork model's children are netlabd's to end when the shutdown grace
/// is over, and only what is left after netlabd exits is killed.
#[test]
fn the_stop_signal_goes_to_netlabd_alone() {
    let text = std::fs::read_to_string(units_dir().join("netlabd.service")).unwrap();
    let mut section = "";
    let mut kill_modes = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some(value) = line.strip_prefix("KillMode=") {
            kill_modes.push((section, value.trim()));
        }
    }
    assert_eq!(kill_modes, [("[Service]", "mixed")], "KillMode= lines");
}

/// A directory removed on drop (one small thing, no extra crate).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "netlabd-units-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
