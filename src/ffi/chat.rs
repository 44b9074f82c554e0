//! `netlab_chat`: a chat client handle over `client::ChatClient`.

use std::ffi::{CString, c_char, c_int};
use std::net::SocketAddr;
use std::ptr;
use std::sync::{Mutex, MutexGuard};

use super::codec::dialect_arg;
use super::{
    Error, addr_arg, guard, guard_void, header_len_arg, millis, netlab_client_options,
    netlab_dialect, netlab_status, out_arg, str_arg,
};
use crate::chat::WebSocketSettings;
use crate::client::{ChatClient, ChatEvent, ChatReceiver, ChatSender, Dialect};

/// What kind of event `netlab_chat_recv` returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum netlab_chat_event_kind {
    /// A message: `sender` said `text`.
    NETLAB_CHAT_EVENT_MESSAGE = 0,
    /// `sender` joined; `online` counts them.
    NETLAB_CHAT_EVENT_JOINED = 1,
    /// `sender` left; `online` no longer counts them.
    NETLAB_CHAT_EVENT_LEFT = 2,
    /// Who is online, as `text`: the names, one per line (the answer to
    /// `netlab_chat_who`); `online` is how many.
    NETLAB_CHAT_EVENT_ROSTER = 3,
    /// The server refused something or is going away: `text` says what.
    NETLAB_CHAT_EVENT_ERROR = 4,
    /// A notice in a format this client does not know, as `text`.
    NETLAB_CHAT_EVENT_NOTICE = 5,
    /// A (further) welcome: `online` clients, `text` this client's address
    /// as the server sees it, or NULL.
    NETLAB_CHAT_EVENT_WELCOME = 6,
}

/// One event from the room, filled in by `netlab_chat_recv`.
///
/// `sender` and `text` are NUL-terminated UTF-8 strings (a NUL inside a
/// message arrives as U+FFFD), or NULL when the kind has none. They are
/// borrowed from the handle until the next `netlab_chat_recv` on it (from
/// any thread) or `netlab_chat_free`: copy them to keep them. Sends and
/// `netlab_chat_who` leave them alone.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netlab_chat_event {
    /// A `netlab_chat_event_kind` value.
    pub kind: c_int,
    /// Who sent the message, joined or left; NULL otherwise.
    pub sender: *const c_char,
    /// The message, roster, error or notice text; NULL otherwise.
    pub text: *const c_char,
    /// How many are online, for JOINED, LEFT, ROSTER and WELCOME; else 0.
    pub online: u32,
}

/// A chat client connected to one room under one name. Opaque: created by
/// `netlab_chat_connect`, and must eventually be freed by
/// `netlab_chat_free`.
///
/// The sending side (`netlab_chat_send`, `netlab_chat_who`) and the
/// receiving side (`netlab_chat_recv`) have a lock each: a send may be
/// called from one thread while `netlab_chat_recv` runs in another, and
/// neither waits for the other. (In the websocket dialect
/// `netlab_chat_recv` answers the server's pings; a pong the socket cannot
/// take at once, behind a send that waits for a slow server, goes out
/// after that send's bytes, by whichever call comes next.) Calls on the
/// same side from several threads are safe too, and take turns. Since an
/// event's strings last only
/// until the next `netlab_chat_recv`, receive on one thread at a time.
/// `netlab_chat_free` must not run while any other call on the handle
/// runs, nor be followed by one.
pub struct netlab_chat {
    peer: SocketAddr,
    sending: Mutex<ChatSender>,
    receiving: Mutex<Receiving>,
}

/// The receiving side, with the strings of the last event, which C borrows
/// until the next `netlab_chat_recv`.
struct Receiving {
    receiver: ChatReceiver,
    sender: Option<CString>,
    text: Option<CString>,
}

impl netlab_chat {
    /// # Safety
    /// `ptr` is NULL or a live handle: not freed, and not being freed by
    /// another thread.
    unsafe fn from_ptr<'a>(ptr: *const netlab_chat) -> Result<&'a netlab_chat, Error> {
        if ptr.is_null() {
            return Err(Error::null("chat"));
        }
        // SAFETY: a live handle, as the caller promises; every field that
        // calls change is behind a mutex, so sharing it is sound.
        Ok(unsafe { &*ptr })
    }

    fn sending(&self) -> Result<MutexGuard<'_, ChatSender>, Error> {
        lock(&self.sending, "sending")
    }

    fn receiving(&self) -> Result<MutexGuard<'_, Receiving>, Error> {
        lock(&self.receiving, "receiving")
    }
}

/// Takes one side's lock. A panic during an earlier call on that side
/// (reported then as `NETLAB_ERR_PANIC`) left its state unknown, half a
/// frame written or read, so the side stays unusable.
fn lock<'a, T>(side: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>, Error> {
    side.lock().map_err(|_| {
        Error::new(
            netlab_status::NETLAB_ERR_PANIC,
            format!(
                "this chat handle's {what} side is unusable: an earlier call panicked in the \
                 middle of it; free the handle and connect again"
            ),
        )
    })
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// Connects to the chat listener at `addr` ("127.0.0.1:1235", ...), whose
/// dialect is `dialect` (a `netlab_dialect` value; `header_len` is used by
/// `NETLAB_DIALECT_HEADER` only, 0 meaning 10, at most 1024, and must match the
/// listener's), and joins the room as `name`. Returns once the room has
/// welcomed the name. With `NETLAB_DIALECT_WEBSOCKET` the client first asks
/// for the upgrade at `/ws`, and later answers the server's pings whenever
/// it receives.
///
/// A name the room refuses (taken, invalid) gives `NETLAB_ERR_PROTOCOL`
/// with the room's reason; no welcome within `timeout_ms` milliseconds
/// gives `NETLAB_ERR_TIMEOUT`. `timeout_ms` also bounds every later send.
///
/// `addr` and `name` are borrowed for the duration of the call. On success
/// `*out` receives a new handle, which must eventually be freed by
/// `netlab_chat_free`.
///
/// # Safety
/// `addr` and `name` must be NULL or NUL-terminated; `out` NULL or valid for
/// writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_connect(
    addr: *const c_char,
    dialect: c_int,
    header_len: usize,
    name: *const c_char,
    timeout_ms: u32,
    out: *mut *mut netlab_chat,
) -> netlab_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        netlab_chat_connect_with(
            addr,
            dialect,
            header_len,
            name,
            timeout_ms,
            std::ptr::null(),
            out,
        )
    }
}

/// `netlab_chat_connect`, connecting as `options` say (TLS, ...); NULL
/// `options` is plain TCP. `options` is borrowed for the duration of the
/// call: the handle keeps what it needs.
///
/// # Safety
/// As `netlab_chat_connect`; `options` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_connect_with(
    addr: *const c_char,
    dialect: c_int,
    header_len: usize,
    name: *const c_char,
    timeout_ms: u32,
    options: *const netlab_client_options,
    out: *mut *mut netlab_chat,
) -> netlab_status {
    guard(|| {
        // SAFETY (all four): forwarded from the caller.
        let addr = addr_arg(unsafe { str_arg(addr, "addr")? })?;
        let name = unsafe { str_arg(name, "name")? };
        let out = unsafe { out_arg(out, "out")? };
        let options = unsafe { netlab_client_options::from_ptr(options) };
        let dialect = match dialect_arg(dialect)? {
            netlab_dialect::NETLAB_DIALECT_LINE => Dialect::Line,
            netlab_dialect::NETLAB_DIALECT_HEADER => Dialect::Header {
                header_len: header_len_arg(header_len)?,
            },
            netlab_dialect::NETLAB_DIALECT_BINCODE => Dialect::Bincode,
            netlab_dialect::NETLAB_DIALECT_WEBSOCKET => {
                Dialect::websocket(WebSocketSettings::default())
            }
        };
        let options = netlab_client_options::with_timeout(options, millis(timeout_ms));
        let client = ChatClient::connect_with(addr, name, dialect, &options)?;
        let peer = client.peer();
        let (sender, receiver) = client.split();
        out.write(Box::into_raw(Box::new(netlab_chat {
            peer,
            sending: Mutex::new(sender),
            receiving: Mutex::new(Receiving {
                receiver,
                sender: None,
                text: None,
            }),
        })));
        Ok(())
    })
}

/// Sends `text` (UTF-8, NUL-terminated) to everyone else in the room.
/// `text` is borrowed for the duration of the call. A connection the server
/// has closed gives `NETLAB_ERR_CLOSED` or `NETLAB_ERR_IO`.
///
/// May be called while `netlab_chat_recv` runs on the same handle in
/// another thread: it does not wait for it.
///
/// # Safety
/// `chat` must be NULL or a live handle (not freed, nor being freed);
/// `text` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_send(
    chat: *mut netlab_chat,
    text: *const c_char,
) -> netlab_status {
    guard(|| {
        // SAFETY (both): forwarded from the caller.
        let chat = unsafe { netlab_chat::from_ptr(chat)? };
        let text = unsafe { str_arg(text, "text")? };
        chat.sending()?.send(text)?;
        Ok(())
    })
}

/// Asks the room who is online; the answer arrives as a
/// `NETLAB_CHAT_EVENT_ROSTER` event from `netlab_chat_recv`. Like
/// `netlab_chat_send`, it does not wait for a `netlab_chat_recv` running in
/// another thread.
///
/// # Safety
/// `chat` must be NULL or a live handle (not freed, nor being freed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_who(chat: *mut netlab_chat) -> netlab_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let chat = unsafe { netlab_chat::from_ptr(chat)? };
        chat.sending()?.who()?;
        Ok(())
    })
}

/// Waits up to `timeout_ms` milliseconds for the room's next event and
/// fills in `*event`. No event in time gives `NETLAB_ERR_TIMEOUT` (not a
/// failure of the connection: call again); a connection the server closed
/// gives `NETLAB_ERR_CLOSED`.
///
/// The event's strings are borrowed from `chat` until the next
/// `netlab_chat_recv` on it or `netlab_chat_free`. `netlab_chat_send` and
/// `netlab_chat_who` may be called from other threads meanwhile, and do not
/// wait for this call.
///
/// # Safety
/// `chat` must be NULL or a live handle (not freed, nor being freed);
/// `event` NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_recv(
    chat: *mut netlab_chat,
    timeout_ms: u32,
    event: *mut netlab_chat_event,
) -> netlab_status {
    guard(|| {
        // SAFETY (both): forwarded from the caller.
        let chat = unsafe { netlab_chat::from_ptr(chat)? };
        let event = unsafe { out_arg(event, "event")? };
        let timeout = millis(timeout_ms);
        let mut receiving = chat.receiving()?;
        // This call ends the borrow of the last event's strings.
        receiving.sender = None;
        receiving.text = None;
        let Some(got) = receiving.receiver.recv(timeout)? else {
            return Err(Error::new(
                netlab_status::NETLAB_ERR_TIMEOUT,
                format!(
                    "no chat event from {} within {}",
                    chat.peer,
                    crate::client::format_duration(timeout)
                ),
            ));
        };
        use netlab_chat_event_kind::*;
        let (kind, sender, text, online) = match got {
            ChatEvent::Message { from, text } => {
                (NETLAB_CHAT_EVENT_MESSAGE, Some(from), Some(text), 0)
            }
            ChatEvent::Joined { name, online } => {
                (NETLAB_CHAT_EVENT_JOINED, Some(name), None, online)
            }
            ChatEvent::Left { name, online } => (NETLAB_CHAT_EVENT_LEFT, Some(name), None, online),
            ChatEvent::Roster { names } => {
                let online = u32::try_from(names.len()).unwrap_or(u32::MAX);
                (
                    NETLAB_CHAT_EVENT_ROSTER,
                    None,
                    Some(names.join("\n")),
                    online,
                )
            }
            ChatEvent::Error { reason, .. } => (NETLAB_CHAT_EVENT_ERROR, None, Some(reason), 0),
            ChatEvent::Notice { text } => (NETLAB_CHAT_EVENT_NOTICE, None, Some(text), 0),
            ChatEvent::Welcome { online, addr } => (NETLAB_CHAT_EVENT_WELCOME, None, addr, online),
        };
        receiving.sender = sender.as_deref().map(c_string);
        receiving.text = text.as_deref().map(c_string);
        event.write(netlab_chat_event {
            kind: kind as c_int,
            sender: receiving
                .sender
                .as_ref()
                .map_or(ptr::null(), |s| s.as_ptr()),
            text: receiving.text.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            online,
        });
        Ok(())
    })
}

/// Closes the connection (the room tells the others this client left) and
/// frees the handle and the strings of its last event. `chat` is consumed:
/// it must not be used again. `netlab_chat_free(NULL)` does nothing.
///
/// # Safety
/// `chat` must be NULL or a live handle from `netlab_chat_connect` that no
/// other thread is using (wait for every other call on it to return first);
/// freeing it twice is undefined behaviour.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netlab_chat_free(chat: *mut netlab_chat) {
    guard_void(|| {
        if !chat.is_null() {
            // SAFETY: a live handle from Box::into_raw, as the caller promises.
            drop(unsafe { Box::from_raw(chat) });
        }
    });
}
