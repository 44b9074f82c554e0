//! `netlab chat`: the interactive client. Lines typed are sent; what the
//! room says is printed as it arrives, whatever is being typed. `/who` and
//! `/quit` work in every dialect; end of input or Ctrl-C leaves cleanly.
//!
//! Three threads feed one loop through a channel: stdin lines, the room's
//! events, and signals. Blocking reads on threads keep it simple and work
//! for every kind of stdin (a terminal, a pipe, a file, which epoll would
//! refuse).

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlab::client::{ChatClient, ChatEvent, ChatReceiver, ChatSender, ClientError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{ChatArgs, exit, fail};

/// How long to wait, after saying goodbye, for the server's last words.
const LEAVE_WAIT: Duration = Duration::from_secs(1);
/// The room's thread wakes this often to see whether it should stop.
const RECV_SLICE: Duration = Duration::from_millis(500);

/// What the main loop reacts to.
enum Input {
    Line(String),
    Eof,
    /// Reading stdin failed: leave the room, and say why.
    StdinFailed(io::Error),
    Signal,
    Event(ChatEvent),
    ServerClosed,
    Failed(ClientError),
}

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Say(&'a str),
    Who,
    Quit,
    Nothing,
}

fn command(line: &str) -> Command<'_> {
    match line.trim() {
        "/quit" => Command::Quit,
        "/who" => Command::Who,
        // As the seed's client: a blank line sends nothing.
        "" => Command::Nothing,
        _ => Command::Say(line),
    }
}

pub(super) fn run(args: &ChatArgs) -> u8 {
    let dialect = args.dialect();
    let options = match args.tls.options(args.timeout) {
        Ok(options) => options,
        Err(err) => return fail(&err),
    };
    let client = match ChatClient::connect_with(args.addr, &args.name, dialect, &options) {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    let host = client
        .seen_as()
        .map_or_else(|| args.addr.ip().to_string(), |ip| ip.to_string());
    let screen = Screen::new(format!("[{}@{host}]> ", client.name()));
    screen.show(&format!(
        "* joined {} as {} ({} dialect), {} online; /who lists them, /quit leaves",
        args.addr,
        client.name(),
        dialect,
        client.online_at_welcome()
    ));
    let (sender, receiver) = client.split();
    let (tx, rx) = mpsc::channel();
    if let Err(e) = spawn_feeders(receiver, &tx) {
        eprintln!("netlab: chat: {e}");
        return exit::IO;
    }
    drop(tx);
    converse(sender, &rx, &screen)
}

/// Starts the threads that read stdin, the room and signals.
fn spawn_feeders(mut receiver: ChatReceiver, tx: &Sender<Input>) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let to_main = tx.clone();
    std::thread::Builder::new()
        .name("chat-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = to_main.send(Input::Signal);
            }
        })?;
    let to_main = tx.clone();
    std::thread::Builder::new()
        .name("chat-stdin".into())
        .spawn(move || {
            // Bytes, not `lines()`: a line that is not UTF-8 (a Latin-1
            // terminal) is sent with U+FFFD in place of what is invalid,
            // rather than ending the input there.
            let mut stdin = io::stdin().lock();
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match stdin.read_until(b'\n', &mut raw) {
                    Ok(0) => break,
                    Ok(_) => {
                        let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        let line = String::from_utf8_lossy(line).into_owned();
                        if to_main.send(Input::Line(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = to_main.send(Input::StdinFailed(e));
                        return;
                    }
                }
            }
            let _ = to_main.send(Input::Eof);
        })?;
    let to_main = tx.clone();
    std::thread::Builder::new()
        .name("chat-room".into())
        .spawn(move || {
            loop {
                let input = match receiver.recv(RECV_SLICE) {
                    Ok(Some(event)) => Input::Event(event),
                    Ok(None) => continue,
                    Err(ClientError::Closed { .. }) => Input::ServerClosed,
                    Err(e) => Input::Failed(e),
                };
                let last = matches!(input, Input::ServerClosed | Input::Failed(_));
                // The main loop is gone: nobody to tell, so stop.
                if to_main.send(input).is_err() || last {
                    return;
                }
            }
        })?;
    Ok(())
}

/// The main loop: sends what is typed, shows what arrives, and leaves on
/// `/quit`, end of input or a signal.
fn converse(mut sender: ChatSender, rx: &Receiver<Input>, screen: &Screen) -> u8 {
    screen.prompt();
    loop {
        let Ok(input) = rx.recv() else {
            return exit::IO;
        };
        let sent = match input {
            Input::Line(line) => match command(&line) {
                Command::Say(text) => sender.send(text),
                Command::Who => sender.who(),
                Command::Nothing => Ok(()),
                Command::Quit => return leave(sender, rx, screen),
            },
            Input::Eof | Input::Signal => return leave(sender, rx, screen),
            Input::StdinFailed(e) => {
                leave(sender, rx, screen);
                eprintln!("netlab: read stdin: {e}");
                return exit::IO;
            }
            Input::Event(event) => {
                screen.show_event(&event);
                continue;
            }
            Input::ServerClosed => {
                screen.end();
                eprintln!("netlab: the server closed the connection");
                return exit::IO;
            }
            Input::Failed(err) => {
                screen.end();
                return fail(&err);
            }
        };
        if let Err(err) = sent {
            screen.end();
            return fail(&err);
        }
        screen.prompt();
    }
}

/// Says goodbye, shows what the room still says until it closes (or a
/// second passes), and exits 0.
fn leave(mut sender: ChatSender, rx: &Receiver<Input>, screen: &Screen) -> u8 {
    if let Err(err) = sender.bye() {
        log::debug!("chat: goodbye not sent: {err}");
    }
    let deadline = std::time::Instant::now() + LEAVE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Input::Event(event)) => screen.show_event(&event),
            Ok(Input::Line(_) | Input::Eof | Input::StdinFailed(_) | Input::Signal) => {}
            Ok(Input::ServerClosed | Input::Failed(_)) | Err(_) => break,
        }
    }
    screen.end();
    exit::OK
}

/// Stdout, with the prompt kept at the bottom when it is a terminal: an
/// arriving line clears the prompt, prints, and redraws it. Elsewhere (a
/// pipe, a file) lines are printed plain and there is no prompt.
struct Screen {
    prompt: String,
    terminal: bool,
    /// Whether the prompt is on screen now; one writer at a time.
    prompted: Arc<Mutex<bool>>,
}

impl Screen {
    fn new(prompt: String) -> Screen {
        Screen {
            prompt,
            terminal: io::stdout().is_terminal(),
            prompted: Arc::new(Mutex::new(false)),
        }
    }

    fn show_event(&self, event: &ChatEvent) {
        let line = match event {
            ChatEvent::Message { from, text } => format!("[{from}] {text}"),
            other => other.to_string(),
        };
        self.show(&line);
    }

    /// Prints one line above the prompt.
    fn show(&self, line: &str) {
        let prompted = self.prompted.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = io::stdout().lock();
        let line = printable(line);
        let written = if self.terminal && *prompted {
            // Carriage return, clear the line, print, redraw the prompt.
            write!(out, "\r\x1b[K{line}\n{}", self.prompt)
        } else {
            writeln!(out, "{line}")
        };
        let _ = written.and_then(|()| out.flush());
    }

    /// Shows the prompt (on a terminal) for the next line to type.
    fn prompt(&self) {
        if !self.terminal {
            return;
        }
        let mut prompted = self.prompted.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = io::stdout().lock();
        let _ = write!(out, "{}", self.prompt).and_then(|()| out.flush());
        *prompted = true;
    }

    /// Leaves the terminal on a fresh line.
    fn end(&self) {
        let mut prompted = self.prompted.lock().unwrap_or_else(|e| e.into_inner());
        if self.terminal && *prompted {
            let mut out = io::stdout().lock();
            let _ = write!(out, "\r\x1b[K").and_then(|()| out.flush());
        }
        *prompted = false;
    }
}

/// What peers send reaches the terminal as text: control characters but
/// tab (line breaks, escape sequences) become U+FFFD, so no message can
/// move the cursor, forge a line or retitle the window.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_become_commands() {
        assert_eq!(command("/quit"), Command::Quit);
        assert_eq!(command(" /who "), Command::Who);
        assert_eq!(command("   "), Command::Nothing);
        assert_eq!(command("hello /who"), Command::Say("hello /who"));
        assert_eq!(command(" hi "), Command::Say(" hi "));
    }

    #[test]
    fn peers_cannot_drive_the_terminal() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(
            printable("a\x1b[2Jb\nc\u{9b}"),
            "a\u{fffd}[2Jb\u{fffd}c\u{fffd}"
        );
    }
}
