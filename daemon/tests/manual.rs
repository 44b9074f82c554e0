//! The man pages and shell completions: the generated ones match the clap
//! definitions, every page renders without a warning, `netlab completions`
//! prints the packaged scripts, and netlabd.toml(5) documents every key
//! that the configuration parser accepts.
//!
//! After changing a command line: `NETLAB_REGENERATE_DOCS=1 cargo test -p
//! netlab-daemon --test manual` rewrites daemon/man/ and daemon/completions/.

mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netlab::config::Config;
use netlab_daemon::manual::{self, Generated};

fn daemon_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The hand-written page, beside the generated ones.
const CONFIG_PAGE: &str = "man/netlabd.toml.5";

#[test]
fn generated_pages_and_completions_are_current() {
    let generated = manual::generated();
    let regenerate = std::env::var_os("NETLAB_REGENERATE_DOCS").is_some();
    let mut stale = Vec::new();
    for Generated { path, contents } in &generated {
        let file = daemon_dir().join(path);
        if std::fs::read(&file).ok().as_deref() != Some(contents.as_slice()) {
            if regenerate {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, contents).unwrap();
            }
            stale.push(path.clone());
        }
    }
    // A file of a subcommand that is gone is stale too.
    let wanted: BTreeSet<&str> = generated.iter().map(|g| g.path.as_str()).collect();
    for dir in ["man", "completions"] {
        for entry in std::fs::read_dir(daemon_dir().join(dir)).unwrap() {
            let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            if name != CONFIG_PAGE && !wanted.contains(name.as_str()) {
                if regenerate {
                    std::fs::remove_file(daemon_dir().join(&name)).unwrap();
                }
                stale.push(name);
            }
        }
    }
    assert!(
        regenerate || stale.is_empty(),
        "stale under daemon/: {stale:?}; regenerate them with \
         NETLAB_REGENERATE_DOCS=1 cargo test -p netlab-daemon --test manual"
    );
}

fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(daemon_dir().join("man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    for page in ["netlabd.8", "netlab.1", "netlab-echo.1", "netlabd.toml.5"] {
        assert!(
            pages.iter().any(|p| p.ends_with(page)),
            "{page} is missing from daemon/man: {pages:?}"
        );
    }
    pages
}

/// mandoc's linter, and groff's warnings where groff is installed.
#[test]
fn every_man_page_renders_without_warnings() {
    tools::ensure_apt("mandoc", "mandoc").unwrap_or_else(|e| panic!("{e}"));
    let groff = tools::on_path("groff");
    if !groff {
        eprintln!("groff is not installed: mandoc -Tlint alone checks the pages");
    }
    let limit = Duration::from_secs(60);
    for page in man_pages() {
        let lint = tools::run_status(
            Command::new("mandoc")
                .args(["-Tlint", "-W", "warning"])
                .arg(&page),
            limit,
        )
        .unwrap();
        assert!(
            lint.status.success() && lint.both().trim().is_empty(),
            "mandoc -Tlint {}:\n{}",
            page.display(),
            lint.both()
        );
        if groff {
            let out = tools::run_status(
                Command::new("groff").args(["-ww", "-z", "-man"]).arg(&page),
                limit,
            )
            .unwrap();
            assert!(
                out.status.success() && out.both().trim().is_empty(),
                "groff -ww -z -man {}:\n{}",
                page.display(),
                out.both()
            );
        }
    }
}

#[test]
fn netlab_completions_prints_the_packaged_scripts() {
    for (shell, file) in [
        ("bash", "netlab.bash"),
        ("zsh", "_netlab"),
        ("fish", "netlab.fish"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_netlab"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let packaged = std::fs::read(daemon_dir().join("completions").join(file)).unwrap();
        assert!(
            out.stdout == packaged,
            "netlab completions {shell} != {file}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

/// Sourced by bash, the scripts register their completion functions.
#[test]
fn the_bash_completions_load() {
    for program in ["netlab", "netlabd"] {
        let script = daemon_dir().join(format!("completions/{program}.bash"));
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; source '{}'; complete -p {program}",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(program));
    }
}

// ---- netlabd.toml(5) against the parser ----------------------------------

/// How a table is written: `key = { ... }` or `key = [{ ... }]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    Table,
    Array,
}

/// A table the parser accepts: where it is (empty for the top level), and
/// its keys.
#[derive(Debug)]
struct Table {
    path: Vec<(String, Form)>,
    keys: Vec<String>,
}

const PROBE: &str = "__probe__";

/// TOML text that puts an unknown key in the table at `path`.
fn probe_text(path: &[(String, Form)]) -> String {
    let mut text = format!("{PROBE} = 1");
    for (key, form) in path.iter().rev() {
        text = match form {
            Form::Table => format!("{key} = {{ {text} }}"),
            Form::Array => format!("{key} = [{{ {text} }}]"),
        };
    }
    text
}

/// The keys the table at `path` accepts, as the parser's error for an
/// unknown key lists them; None when `path` is not a table that refuses
/// unknown keys.
fn accepted_keys(path: &[(String, Form)]) -> Option<Vec<String>> {
    let text = probe_text(path);
    let errors = match Config::parse(&text, "probe") {
        Ok(_) => return None,
        Err(errors) => errors.to_string(),
    };
    let line = errors
        .lines()
        .find(|l| l.contains(&format!("unknown field `{PROBE}`")))?;
    let expected = &line[line.find("expected")?..];
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys in {line:?}");
    Some(keys)
}

/// Every table the parser accepts, found by asking it: each key is tried
/// as a table and as an array of tables.
fn parser_tables() -> Vec<Table> {
    let mut tables = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let keys = accepted_keys(&path).unwrap_or_else(|| {
            panic!(
                "the parser did not list the keys of {path:?} for {:?}",
                probe_text(&path)
            )
        });
        for key in &keys {
            for form in [Form::Table, Form::Array] {
                let mut sub = path.clone();
                sub.push((key.clone(), form));
                if accepted_keys(&sub).is_some() {
                    todo.push(sub);
                }
            }
        }
        tables.push(Table { path, keys });
    }
    tables
}

/// The page's subsection heading for a table: `[daemon]`, `[[server]]`,
/// then nested tables' keys: `[[server]] listen`.
fn heading(path: &[(String, Form)]) -> String {
    let mut words = Vec::new();
    for (i, (key, form)) in path.iter().enumerate() {
        words.push(match (i, form) {
            (0, Form::Table) => format!("[{key}]"),
            (0, Form::Array) => format!("[[{key}]]"),
            _ => key.clone(),
        });
    }
    words.join(" ")
}

/// The page's entries: subsection heading, then each `.TP` tag (`.B KEY`)
/// with the paragraph below it.
fn page_entries(page: &str) -> Vec<(String, String, String)> {
    let mut entries = Vec::new();
    let mut heading = String::new();
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(".SS ") {
            heading = rest.trim().trim_matches('"').to_owned();
        } else if line.starts_with(".SH ") {
            heading.clear();
        } else if line == ".TP" {
            let Some(tag) = lines.next() else { break };
            let key = tag.strip_prefix(".B ").unwrap_or(tag).trim().to_owned();
            let mut body = String::new();
            while let Some(next) = lines.peek() {
                if next.starts_with(".TP") || next.starts_with(".SS") || next.starts_with(".SH") {
                    break;
                }
                body.push_str(lines.next().unwrap());
                body.push('\n');
            }
            entries.push((heading.clone(), key, body));
        }
    }
    entries
}

fn config_page() -> String {
    std::fs::read_to_string(daemon_dir().join(CONFIG_PAGE)).unwrap()
}

/// A key the parser accepts and the page does not document fails here. To
/// add one: an entry under the subsection of its table
///
/// ```text
/// .TP
/// .B new_key
/// What it does, for which services.
/// Default: its default (or "Required.").
/// ```
///
/// a subsection `.SS "[[server]] new_table"` for a new table, and a use of
/// the key in the EXAMPLES file.
#[test]
fn netlabd_toml_5_documents_every_key_the_parser_accepts() {
    let page = config_page();
    let entries = page_entries(&page);
    let headings: BTreeSet<&str> = entries.iter().map(|(h, _, _)| h.as_str()).collect();
    let tables = parser_tables();
    assert!(
        tables.len() >= 3,
        "the parser should have [daemon], [[server]] and listen tables: {tables:?}"
    );
    let mut missing = Vec::new();
    for table in &tables {
        let here = heading(&table.path);
        for key in &table.keys {
            let nested = tables.iter().any(|t| {
                t.path.len() == table.path.len() + 1
                    && t.path.starts_with(&table.path)
                    && t.path.last().unwrap().0 == *key
            });
            // A top-level table is its subsection; others are an entry.
            if table.path.is_empty() && nested {
                continue;
            }
            match entries.iter().find(|(h, k, _)| *h == here && k == key) {
                None => missing.push(format!("{key} (under .SS \"{here}\")")),
                Some((_, _, body)) => assert!(
                    body.contains("Default:")
                        || body.contains("Required")
                        || body.contains("required"),
                    "the entry for {key} under {here} says neither its default nor that it is required:\n{body}"
                ),
            }
        }
        if !table.path.is_empty() {
            assert!(
                headings.contains(here.as_str()),
                "no subsection .SS \"{here}\" for its keys {:?}",
                table.keys
            );
        }
    }
    assert!(
        missing.is_empty(),
        "netlabd.toml(5) (daemon/{CONFIG_PAGE}) does not document: {missing:#?}"
    );
    // And the page documents nothing the parser refuses.
    for (heading_text, key, _) in &entries {
        if heading_text.is_empty() {
            continue;
        }
        let known = tables
            .iter()
            .any(|t| heading(&t.path) == *heading_text && t.keys.contains(key));
        assert!(
            known,
            "netlabd.toml(5) documents {key} under {heading_text}, which the parser does not accept"
        );
    }
}

/// The EXAMPLES file is valid, and shows every key.
#[test]
fn netlabd_toml_5_example_parses_and_uses_every_key() {
    let page = config_page();
    let start = page.find("\n.EX\n").expect("an .EX example") + 5;
    let end = start + page[start..].find("\n.EE").expect(".EE after .EX");
    let example = page[start..end].replace("\\-", "-").replace("\\e", "\\");
    // The TLS files it names, beside it as the paths say.
    let dir = tls_files();
    if let Err(e) = Config::parse_in(&example, "netlabd.toml(5) example", Some(dir.path())) {
        panic!("the example does not parse:\n{e}\n{example}");
    }
    let value: toml::Table = example.parse().unwrap();
    let mut used = BTreeSet::new();
    collect_paths(&toml::Value::Table(value), &mut Vec::new(), &mut used);
    let mut unused = Vec::new();
    for table in parser_tables() {
        for key in &table.keys {
            let mut path: Vec<String> = table.path.iter().map(|(k, _)| k.clone()).collect();
            path.push(key.clone());
            if !used.contains(&path) {
                unused.push(path.join("."));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "the example in netlabd.toml(5) does not use: {unused:?}"
    );
}

/// tls/server.pem, tls/server.key and tls/clients.pem in a new directory:
/// a self-signed server certificate and a CA for client certificates.
fn tls_files() -> tools::TempDir {
    let dir = tools::TempDir::new("manual-tls");
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(tls.join("server.pem"), server.cert.pem()).unwrap();
    std::fs::write(tls.join("server.key"), server.signing_key.serialize_pem()).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(tls.join("clients.pem"), ca.pem()).unwrap();
    dir
}

/// Every key path in `value`, arrays of tables seen through.
fn collect_paths(value: &toml::Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                out.insert(path.clone());
                collect_paths(v, path, out);
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                collect_paths(item, path, out);
            }
        }
        _ => {}
    }
}

/// The title line of every page, the hand-written one included, has the
/// same date and the package's version.
#[test]
fn every_page_carries_the_date_and_the_package_version() {
    let ending = format!(
        " {} \"netlab {}\" netlab",
        manual::DATE,
        env!("CARGO_PKG_VERSION")
    );
    for page in man_pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert!(
            th.ends_with(&ending),
            "{}: {th:?} should end with {ending:?}",
            page.display()
        );
    }
}
