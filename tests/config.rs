//! Configuration fixtures: every file in `fixtures/config/valid` loads, and
//! every file in `fixtures/config/invalid` is refused with exactly the
//! errors its `# expect: LINE:COLUMN: text` lines name, in order.

use std::path::{Path, PathBuf};

use netlab::config::Config;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn valid_fixtures_load() {
    let mut files = fixtures("valid");
    // The configurations the project ships are fixtures too.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    files.push(root.join("daemon/systemd/netlabd.toml"));
    for path in files {
        if let Err(e) = Config::load(&path) {
            panic!("{} should load:\n{e}", path.display());
        }
    }
}

#[test]
fn invalid_fixtures_give_their_errors() {
    for path in fixtures("invalid") {
        // Lossy, for the expectations alone: a fixture may hold bytes that
        // are not UTF-8, for the loader to refuse.
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect: line",
            path.display()
        );
        let origin = path.display().to_string();
        let errors = match Config::load(&path) {
            Ok(_) => panic!("{origin} should be refused"),
            Err(e) => e.0,
        };
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), expected.len(), "{origin}: got {got:#?}");
        for (got, want) in got.iter().zip(&expected) {
            let (at, message) = want.split_once(": ").expect("LINE:COL: text");
            let prefix = format!("{origin}:{at}: ");
            assert!(
                got.starts_with(&prefix) && got[prefix.len()..].contains(message),
                "{origin}: expected `{prefix}…{message}…`, got `{got}`"
            );
        }
    }
}

/// The configuration example in the README is a working file: every key
/// shown there is accepted, together, as written.
#[test]
fn the_readme_configuration_example_loads() {
    readme_example_loads("## Configuration");
}

/// So is the cluster's.
#[test]
fn the_readme_cluster_example_loads() {
    readme_example_loads("## A room across machines");
}

/// The first TOML block after the heading `section` loads.
fn readme_example_loads(section: &str) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split_once(section)
        .unwrap_or_else(|| panic!("a section {section:?}"))
        .1;
    let block = after
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("a toml block in the section {section:?}"))
        .0;
    if let Err(errors) = Config::parse(block, "README.md") {
        panic!("the README's example is refused:\n{errors}");
    }
}
