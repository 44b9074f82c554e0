//! benches/plot.py draws the latest run of each results file: the servers
//! and figures of that run, none of an earlier one; a file without a table
//! is refused, saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

fn plot(results: &Path, out: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/plot.py"))
        .arg("--results")
        .arg(results)
        .arg("--out")
        .arg(out)
        .output()
        .expect("python3 runs (the Python tests need it too)")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netlab-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const ECHO: &str = "# Echo\n\n\
## 2026-01-01 00:00 UTC, commit old\n\n\
| server | req/s | MB/s |\n| --- | ---: | ---: |\n| netlabd (event) | 111.0 | 1 |\n| tokio echo | 99.0 | 1 |\n\n\
## 2026-01-02 00:00 UTC, commit new\n\n\
| server | req/s | MB/s |\n| --- | ---: | ---: |\n| netlabd (event) | 185826.2 | 11 |\n| tokio echo | 176083.8 | 11 |\n| floor (C, epoll) | 186836.4 | 12 |\n";

#[test]
fn the_latest_run_is_drawn() {
    let dir = temp_dir("latest");
    std::fs::write(dir.join("echo.md"), ECHO).unwrap();
    let out = plot(&dir, &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(dir.join("echo.svg")).unwrap();
    for want in [
        "commit new",
        "netlabd (event)",
        "tokio echo",
        "floor (C, epoll)",
        "185,826",
        "176,084",
        "186,836",
    ] {
        assert!(svg.contains(want), "{want:?} missing from:\n{svg}");
    }
    assert!(
        !svg.contains("commit old") && !svg.contains(">111<"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_results_file_without_a_table_is_refused() {
    let dir = temp_dir("empty");
    std::fs::write(dir.join("chat.md"), "# Chat\n\n## a heading, no table\n").unwrap();
    let out = plot(&dir, &dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no run with a table of deliveries/s"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
