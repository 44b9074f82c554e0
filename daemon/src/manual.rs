//! The man pages and shell completions of `netlabd` and `netlab`, made from
//! their clap definitions so that they say what `--help` says.
//!
//! The packaged copies are committed under `daemon/man/` and
//! `daemon/completions/` (cargo-deb packages files, not code);
//! `tests/manual.rs` fails when they are stale and rewrites them with
//! `NETLAB_REGENERATE_DOCS=1`. netlabd.toml(5) is written by hand, and the
//! same test checks that it documents every key the parser accepts.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::{Generator, Shell};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::Cli;
use crate::netlabd::Args;

/// The date in every page's title line (netlabd.toml(5)'s too): when the
/// pages last changed in substance.
pub const DATE: &str = "2026-12-04";

/// The shells completions are made for (and packaged).
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The two programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Netlabd,
    Netlab,
}

impl Program {
    pub const ALL: [Program; 2] = [Program::Netlabd, Program::Netlab];

    pub fn name(self) -> &'static str {
        match self {
            Program::Netlabd => "netlabd",
            Program::Netlab => "netlab",
        }
    }

    fn command(self) -> clap::Command {
        match self {
            Program::Netlabd => Args::command(),
            Program::Netlab => Cli::command(),
        }
    }
}

/// A generated file: where it stands under `daemon/`, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub path: String,
    pub contents: Vec<u8>,
}

/// Every generated file: the man pages, then the completions.
pub fn generated() -> Vec<Generated> {
    let mut files = man_pages();
    for program in Program::ALL {
        for shell in SHELLS {
            files.push(Generated {
                path: format!("completions/{}", shell.file_name(program.name())),
                contents: completion(program, shell),
            });
        }
    }
    files
}

/// `program`'s completion script for `shell`, as `netlab completions SHELL`
/// prints it.
pub fn completion(program: Program, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut program.command(), program.name(), &mut out);
    out
}

/// netlabd(8), netlab(1), and a page per `netlab` subcommand
/// (netlab-echo(1), netlab-bench-chat(1), ...), as git has them.
pub fn man_pages() -> Vec<Generated> {
    let mut pages = Vec::new();
    let netlabd = Program::Netlabd.command();
    let see_also = [
        "netlab(1)",
        "netlabd.toml(5)",
        "systemd.service(5)",
        "systemd.socket(5)",
    ];
    let extra = [
        files_section(),
        exit_status_section(),
        see_also_section(&see_also),
    ];
    pages.push(page(netlabd, "8", &extra));

    let mut netlab = Program::Netlab.command().disable_help_subcommand(true);
    netlab.build();
    let mut names = Vec::new();
    collect_subcommands(&netlab, &mut names);
    let mut see_also: Vec<String> = names.iter().map(|n| format!("{n}(1)")).collect();
    see_also.extend(["netlabd(8)".into(), "netlabd.toml(5)".into()]);
    pages.push(page(netlab.clone(), "1", &[see_also_section(&see_also)]));
    add_subcommand_pages(&netlab, &mut pages);
    pages
}

/// The display names ("netlab-bench-echo") of every subcommand, depth first.
fn collect_subcommands(cmd: &clap::Command, names: &mut Vec<String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        names.push(sub.get_display_name().unwrap_or(sub.get_name()).to_owned());
        collect_subcommands(sub, names);
    }
}

fn add_subcommand_pages(cmd: &clap::Command, pages: &mut Vec<Generated>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(page(sub.clone(), "1", &[see_also_section(&["netlab(1)"])]));
        add_subcommand_pages(sub, pages);
    }
}

/// One page: clap_mangen's sections, then `extra` before the version.
fn page(cmd: clap::Command, section: &str, extra: &[Roff]) -> Generated {
    let man = Man::new(cmd)
        .section(section)
        .date(DATE)
        .source(format!("netlab {}", env!("CARGO_PKG_VERSION")))
        .manual("netlab");
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = render(&man, extra, &mut out);
    Generated {
        path: format!("man/{}", man.get_filename()),
        contents: out,
    }
}

fn render(man: &Man, extra: &[Roff], out: &mut Vec<u8>) -> std::io::Result<()> {
    // Man::render, with our sections where a reader looks for them.
    let mut body = Vec::new();
    man.render(&mut body)?;
    // clap_mangen puts a blank line (a vertical space) between two .br
    // requests before "Possible values"; mandoc -Tlint rightly warns that
    // the breaks are redundant. One .sp says the same.
    let text = String::from_utf8_lossy(&body).replace(".br\n\n.br\n", ".sp\n");
    // The version section, when there is one, stays last.
    let (main, version) = match text.find("\n.SH VERSION") {
        Some(at) => text.split_at(at + 1),
        None => (&text[..], ""),
    };
    out.write_all(main.as_bytes())?;
    for roff in extra {
        roff.to_writer(out)?;
    }
    out.write_all(version.as_bytes())
}

fn files_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/netlab/netlabd.toml",
            "The configuration read when --config is not given; see netlabd.toml(5). \
             Without it netlabd runs its embedded default (--print-default-config) and says so.",
        ),
        (
            "/lib/systemd/system/netlabd.service",
            "The service unit (Type=notify), enabled and started when the package is installed.",
        ),
        (
            "/lib/systemd/system/netlabd.socket",
            "Socket activation instead of the service's own listeners: \
             systemctl disable --now netlabd.service; systemctl enable --now netlabd.socket.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff
}

fn exit_status_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        (
            "0",
            "Stopped as asked (SIGTERM, SIGINT), or --check found the configuration valid.",
        ),
        (
            "1",
            "Could not run: a port already in use, a passed socket no server can use, \
             a pidfile held by another netlabd.",
        ),
        (
            "2",
            "The configuration has errors (each is printed with its file, line and column), \
             or the command line is wrong.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(what)]);
    }
    roff
}

fn see_also_section<S: AsRef<str>>(pages: &[S]) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let page = page.as_ref();
        let (name, section) = page.split_once('(').unwrap_or((page, ""));
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(name));
        inlines.push(roman(format!("({section}")));
    }
    roff.text(inlines);
    roff
}
