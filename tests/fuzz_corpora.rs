//! Replays the fuzz targets' committed corpora (`fuzz/corpus/NAME/`) through
//! their checks, on stable: what the fuzzers found interesting stays
//! checked by `cargo test`. The checks are the fuzz crate's own file, so a
//! corpus input means here exactly what it meant to the fuzzer.
//!
//! Long fuzzing runs are benchmarks (`benches/fuzz.sh MINUTES`), not tests.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::collections::BTreeSet;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of a directory, sorted, so failures read the same every run.
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Every target's corpus replays without a failed check, and none is
/// missing or empty (a corpus that silently vanished would pass).
#[test]
fn every_corpus_replays_clean() {
    let mut failures = Vec::new();
    let mut total = 0;
    for &(name, check) in checks::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(
            dir.is_dir(),
            "{}: the corpus of target {name} is missing",
            dir.display()
        );
        let inputs = files(&dir);
        assert!(
            !inputs.is_empty(),
            "{}: the corpus of target {name} is empty",
            dir.display()
        );
        for path in inputs {
            let input = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            total += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failures.push(format!("{name}: {}: {why}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus inputs failed their check:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The targets the fuzz crate builds, the corpora and the checks are the
/// same set: a target added without a check or a corpus is caught here.
#[test]
fn targets_corpora_and_checks_agree() {
    let checks: BTreeSet<String> = checks::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let stems = |dir: &str, keep_dirs: bool| -> BTreeSet<String> {
        let dir = fuzz_dir().join(dir);
        fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() == keep_dirs)
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
            .collect()
    };
    assert_eq!(stems("fuzz_targets", false), checks, "fuzz/fuzz_targets/");
    assert_eq!(stems("corpus", true), checks, "fuzz/corpus/");
}
