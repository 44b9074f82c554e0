"""netlab from Python: the socket lab's servers and clients (echo, count,
chat) through libnetlab's C ABI, with ctypes and nothing else.

    >>> import netlab
    >>> with netlab.Server('name = "echo"\\nservice = "echo"\\nlisten = ["127.0.0.1:0"]') as s:
    ...     netlab.tcp_echo(s.address(), b"hello")
    b'hello'

Every failure raises NetlabError, whose .status is a Status and whose
.message is the library's detailed message. Blocking calls (tcp_echo,
udp_echo, count, Chat) end promptly on Ctrl-C, raising KeyboardInterrupt
(or whatever the SIGINT handler raises) rather than waiting out their
timeout. Text arguments (configuration,
address, chat name and message) may be str (sent as UTF-8) or bytes; one
with a NUL character in it is refused (ERR_INVALID), since C would see only
the part before it. Handles (Server, Decoder, Chat)
are freed by close(), by leaving a `with` block, or when they are garbage
collected; using one after close() raises NetlabError instead of crashing.
Handles still open when the interpreter exits are not freed (a daemon
thread may still be using one): the end of the process releases them.
"""

from __future__ import annotations

import ctypes
import enum
import math
import os
import threading
import time
import weakref
from ctypes import byref, c_bool, c_size_t, c_uint16, c_uint64
from typing import Any, Callable, Iterator, List, Literal, Optional, Tuple, TypeVar, Union, cast

from . import _lib
from ._lib import ServerStats, lib

#: An address: "host:port" (str or bytes), or a (host, port) tuple.
Address = Union[str, bytes, Tuple[str, int]]
#: Bytes to send: bytes-like, or a str sent as UTF-8.
Data = Union[bytes, bytearray, memoryview, str]
#: Text for a C string: a str sent as UTF-8, or bytes; no NUL inside.
Text = Union[str, bytes]
#: A chat dialect: a Dialect, its value, or its name ("line", "header", "bincode",
#: "websocket").
DialectLike = Union["Dialect", int, str]
#: A file's path.
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__ = ["Status", "NetlabError", "Server", "ServerStats", "Decoder", "Dialect", "Chat",
           "ChatEvent", "TlsOptions",
           "tcp_echo", "udp_echo", "count", "encode_frame", "version", "library_path"]

library_path: str = _lib.path


class Status(enum.IntEnum):
    """netlab_status: what every C call returns."""
    OK = 0
    ERR_NULL = 1
    ERR_INVALID = 2
    ERR_IO = 3
    ERR_TIMEOUT = 4
    ERR_CLOSED = 5
    ERR_PANIC = 6
    ERR_BUFFER_TOO_SMALL = 7
    ERR_CONFIG = 8
    ERR_ADDR_IN_USE = 9
    ERR_PROTOCOL = 10
    ERR_INTERRUPTED = 11
    ERR_TLS = 12


class NetlabError(Exception):
    """A netlab call failed: .status (a Status, or the raw int for a status
    this module does not know) and .message (the detailed message)."""

    status: Union[Status, int]
    message: str

    def __init__(self, status: Union[Status, int], message: str) -> None:
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.message = message
        super().__init__(status, message)

    def __str__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return "%s: %s" % (name, self.message)


class Dialect(enum.IntEnum):
    """netlab_dialect: a chat dialect, and so a framing (but for WEBSOCKET,
    which only Chat speaks: its frames need the HTTP upgrade)."""
    LINE = 0
    HEADER = 1
    BINCODE = 2
    WEBSOCKET = 3


_COUNT_FRAMINGS = {"line": 0, "header": 1, "chunk": 2}


def version() -> str:
    """libnetlab's version, e.g. "0.1.0"."""
    return cast(bytes, lib.netlab_version()).decode()


def _ms(seconds: float, what: str = "timeout") -> int:
    ms = int(round(seconds * 1000))
    if not 0 < ms <= 0xFFFFFFFF:
        raise NetlabError(Status.ERR_INVALID,
                          "%s must be between 1 ms and 49 days, not %r s" % (what, seconds))
    return ms


def _size(value: int, what: str) -> int:
    if not 0 <= value < 2 ** 63:
        raise NetlabError(Status.ERR_INVALID, "%s must be 0 or more, not %r" % (what, value))
    return value


def _index(index: int) -> int:
    return _size(index, "listener index")


def _bytes(data: Data, what: str = "data") -> bytes:
    """A byte-buffer argument (pointer and length): bytes as they are, or a
    str as UTF-8. Anything else (an int would become that many zero bytes)
    is refused."""
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise NetlabError(Status.ERR_INVALID,
                              "%s cannot be encoded as UTF-8 (%s): expected text without "
                              "lone surrogates" % (what, e.reason)) from None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise NetlabError(Status.ERR_INVALID,
                      "%s must be bytes or str, not %s" % (what, type(data).__name__))


def _text(value: Text, what: str) -> bytes:
    """A C string argument (a char * ending at its first NUL): a str, sent
    as UTF-8, or bytes. A NUL inside would silently cut it short, so it is
    refused."""
    data = _bytes(value, what)
    nul = data.find(b"\0")
    if nul >= 0:
        raise NetlabError(Status.ERR_INVALID,
                          "%s has a NUL character at byte %d: C strings end at the first NUL, "
                          "so everything after it would be lost; expected text without NUL"
                          % (what, nul))
    return data


def _addr(addr: Address) -> bytes:
    if isinstance(addr, tuple):
        if len(addr) != 2 or not isinstance(addr[0], str) or not isinstance(addr[1], int):
            raise NetlabError(Status.ERR_INVALID,
                              "address %r is not \"host:port\" or a (host, port) tuple of a "
                              "str and an int" % (addr,))
        host, port = addr
        addr = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return _text(addr, "address")


def _dialect(dialect: DialectLike) -> int:
    if isinstance(dialect, str):
        try:
            return Dialect[dialect.upper()]
        except KeyError:
            raise NetlabError(Status.ERR_INVALID,
                              "dialect %r is not line, header, bincode or websocket" % dialect) from None
    return int(dialect)


def _into_buffer(call: Callable[[Any, int, Any], object], cap: int) -> bytes:
    """Runs call(buf, cap, &len), growing the buffer once to the size the
    library says it needs."""
    for _ in range(2):
        buf = (ctypes.c_uint8 * max(cap, 1))()
        n = c_size_t(0)
        try:
            call(buf, cap, byref(n))
        except NetlabError as e:
            if e.status != Status.ERR_BUFFER_TOO_SMALL or n.value <= cap:
                raise
            cap = n.value
            continue
        return bytes(buf[:n.value])
    raise NetlabError(Status.ERR_BUFFER_TOO_SMALL, "the reply kept growing")


class _Owned:
    """What a handle's finalizer needs, kept apart from the handle so that
    the finalizer does not keep the handle alive: the C pointer (None once
    freed), the function that frees it, the locks its calls take, and
    whether a free is waiting for them."""
    __slots__ = ("ptr", "free", "locks", "closing")

    def __init__(self, ptr: Any, free: Callable[[Any], None],
                 locks: List[threading.Lock]) -> None:
        self.ptr, self.free, self.locks = ptr, free, locks
        self.closing = False


def _release(owned: _Owned) -> None:
    """Frees the C handle once, holding every one of its locks, so that no
    call is running on it: a call in progress finishes first, and a call
    after this finds .ptr None and raises. Calls that start meanwhile raise
    at once, so a thread calling in a loop cannot keep the free waiting."""
    owned.closing = True
    for lock in owned.locks:
        lock.acquire()
    try:
        ptr, owned.ptr = owned.ptr, None
        if ptr is not None:
            owned.free(ptr)
    finally:
        for lock in reversed(owned.locks):
            lock.release()


_T = TypeVar("_T")
_H = TypeVar("_H", bound="_Handle")


class _Handle:
    """A C handle: freed once, by close(), `with`, or the finalizer when the
    object is garbage collected. Every call holds one of the handle's locks,
    so threads may share an object: calls that take the same lock go one at
    a time, and the free takes every lock, so it cannot run under a call.

    Handles still open when the interpreter exits are not freed: a daemon
    thread may be inside a call on one, and the process's end releases
    everything anyway."""
    _kind = "handle"
    _owned: Optional[_Owned] = None
    _locks = 1

    def _own(self, ptr: Any, free: Callable[[Any], None]) -> None:
        self._owned = _Owned(ptr, free, [threading.Lock() for _ in range(self._locks)])
        self._finalizer = weakref.finalize(self, _release, self._owned)
        # At exit, Python would run the finalizer itself, while daemon
        # threads may still be inside calls on the handle.
        self._finalizer.atexit = False

    def _call(self, func: Callable[..., _T], *args: Any, lock: int = 0) -> _T:
        """func(handle, *args) holding lock number `lock`; raises if closed."""
        owned = self._owned
        if owned is None or owned.closing:
            raise NetlabError(Status.ERR_CLOSED, "this %s is closed" % self._kind)
        with owned.locks[lock]:
            if owned.ptr is None:
                raise NetlabError(Status.ERR_CLOSED, "this %s is closed" % self._kind)
            return func(owned.ptr, *args)

    @property
    def closed(self) -> bool:
        """Whether close() has been called (or the handle is being freed)."""
        return self._owned is None or self._owned.closing

    def close(self) -> None:
        """Frees the C handle, once any call in progress on it has returned.
        Closing twice does nothing."""
        if self._owned is not None:
            self._finalizer()

    def __enter__(self: _H) -> _H:
        self._call(lambda ptr: None)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False


class Server(_Handle):
    """A server the daemon could run, started from TOML text (one
    `[[server]]` table, the `[[server]]` line optional). Listen on port 0
    and ask .port() which one the kernel chose.

    After os.fork() the server runs on in the parent only: in the child,
    close() (or leaving a `with` block) releases the child's copies of the
    server's sockets and nothing else, and stop() raises ERR_INVALID."""
    _kind = "Server"

    def __init__(self, config: Text) -> None:
        ptr = _lib.ServerP()
        lib.netlab_server_start(_text(config, "configuration"), byref(ptr))
        self._own(ptr, lib.netlab_server_free)

    @property
    def listener_count(self) -> int:
        n = c_size_t()
        self._call(lib.netlab_server_listener_count, byref(n))
        return n.value

    def port(self, index: int = 0) -> int:
        """The port listener `index` is bound to."""
        port = c_uint16()
        self._call(lib.netlab_server_port, _index(index), byref(port))
        return port.value

    def address(self, index: int = 0) -> str:
        """Listener `index`'s address as "host:port", ready for the clients."""
        buf = ctypes.create_string_buffer(_lib.ADDRESS_MAX)
        n = c_size_t()
        self._call(lib.netlab_server_address, _index(index), buf, len(buf), byref(n))
        return buf.value.decode()

    @property
    def ports(self) -> List[int]:
        return [self.port(i) for i in range(self.listener_count)]

    @property
    def addresses(self) -> List[str]:
        return [self.address(i) for i in range(self.listener_count)]

    def stats(self) -> ServerStats:
        """The server's counters: accepted, refused, open, datagrams, dropped."""
        stats = ServerStats()
        self._call(lib.netlab_server_get_stats, byref(stats))
        return stats

    def stop(self, grace: float = 1.0) -> None:
        """Stops accepting, lets open connections finish for up to `grace`
        seconds, closes the rest, and waits. The handle stays open."""
        self._call(lib.netlab_server_stop, min(max(0, int(round(grace * 1000))), 0xFFFFFFFF))

    def __repr__(self) -> str:
        if self.closed:
            return "<netlab.Server closed>"
        return "<netlab.Server %s>" % " ".join(self.addresses)


class TlsOptions(_Handle):
    """TLS for the clients (tcp_echo, count, Chat: their `tls=` argument).

        tls = netlab.TlsOptions(ca="ca.pem")
        netlab.tcp_echo("127.0.0.1:7443", b"hello", tls=tls)

    `ca` is a PEM file of the CA certificates to trust (None: the system's);
    `cert` and `key` a client certificate and its key, for servers that ask
    for one; `server_name` the name the server's certificate must carry
    when it is not the address's IP. The files are read at once: one that
    cannot be used raises NetlabError (ERR_TLS) with its path and why. One
    TlsOptions may serve any number of calls, from any thread; calls that
    share one take turns (it cannot be closed under them), so threads that
    must connect at once each make their own."""
    _kind = "TlsOptions"

    def __init__(self, ca: Optional[PathLike] = None, cert: Optional[PathLike] = None,
                 key: Optional[PathLike] = None, server_name: Optional[Text] = None) -> None:
        ptr = _lib.ClientOptionsP()
        lib.netlab_client_options_new(byref(ptr))
        self._own(ptr, lib.netlab_client_options_free)

        def path(p: Optional[PathLike], what: str) -> Optional[bytes]:
            return None if p is None else _text(os.fspath(p), what)
        self._call(lib.netlab_client_options_set_tls, path(ca, "ca"), path(cert, "cert"),
                   path(key, "key"))
        if server_name is not None:
            self._call(lib.netlab_client_options_set_server_name,
                       _text(server_name, "server_name"))


def _with_options(tls: Optional[TlsOptions], call: Callable[[Any], _T]) -> _T:
    """call(options pointer): NULL for plain TCP, else `tls`'s, held so that
    it cannot be closed under the call."""
    if tls is None:
        return call(None)
    if not isinstance(tls, TlsOptions):
        raise NetlabError(Status.ERR_INVALID,
                          "tls must be a netlab.TlsOptions or None, not %s" % type(tls).__name__)
    return tls._call(call)


def tcp_echo(addr: Address, data: Data, timeout: float = 2.0,
             tls: Optional[TlsOptions] = None) -> bytes:
    """Sends `data` to the TCP echo server at `addr` ("host:port" or a
    (host, port) tuple) and returns what came back, over TLS when `tls` (a
    TlsOptions) is given. A reply longer than twice `data` plus 64 KiB
    cannot be its echo: reading stops there and NetlabError (ERR_PROTOCOL)
    is raised."""
    data, a, ms = _bytes(data), _addr(addr), _ms(timeout)
    _lib.interruptible()
    return _with_options(tls, lambda options: _into_buffer(
        lambda buf, cap, n: lib.netlab_tcp_echo_with(a, data, len(data), ms, options, buf, cap, n),
        2 * len(data) + 1024))


def udp_echo(addr: Address, data: Data, timeout: float = 1.0, retries: int = 2) -> bytes:
    """Sends `data` as one datagram to the UDP echo server at `addr`,
    resending up to `retries` times after `timeout` seconds each."""
    data, a, ms = _bytes(data), _addr(addr), _ms(timeout)
    if not 0 <= retries <= 0xFFFFFFFF:
        raise NetlabError(Status.ERR_INVALID, "retries must be 0 or more, not %r" % (retries,))
    _lib.interruptible()
    return _into_buffer(
        lambda buf, cap, n: lib.netlab_udp_echo(a, data, len(data), ms, retries, buf, cap, n),
        65536)


def count(addr: Address, data: Data, framing: str = "line", header_len: int = 0,
          timeout: float = 2.0, tls: Optional[TlsOptions] = None) -> int:
    """Asks the count server at `addr` how many characters `data` has.
    `framing` is "line", "header" or "chunk", as the server's; `tls` a
    TlsOptions for a TLS listener."""
    if framing not in _COUNT_FRAMINGS:
        raise NetlabError(Status.ERR_INVALID,
                          "framing %r is not line, header or chunk" % (framing,))
    raw, a, hl, ms = _bytes(data), _addr(addr), _size(header_len, "header_len"), _ms(timeout)
    n = c_uint64()
    _lib.interruptible()
    _with_options(tls, lambda options: lib.netlab_count_with(
        a, raw, len(raw), _COUNT_FRAMINGS[framing], hl, ms, options, byref(n)))
    return n.value


def encode_frame(dialect: DialectLike, payload: Data, header_len: int = 0) -> bytes:
    """`payload` framed in `dialect` ("line", "header", "bincode" or a Dialect;
    not "websocket", whose frames need the upgrade)."""
    d, payload = _dialect(dialect), _bytes(payload, "payload")
    return _into_buffer(
        lambda buf, cap, n: lib.netlab_frame_encode(d, _size(header_len, "header_len"),
                                                    payload, len(payload),
                                                    buf, cap, n),
        len(payload) + 32)


class Decoder(_Handle):
    """Frames of one dialect out of bytes fed in pieces of any size.

        dec = netlab.Decoder("header")
        dec.feed(sock.recv(4096))
        for frame in dec: ...
    """
    _kind = "Decoder"

    def __init__(self, dialect: DialectLike, header_len: int = 0, max_frame: int = 0) -> None:
        ptr = _lib.DecoderP()
        lib.netlab_decoder_new(_dialect(dialect), _size(header_len, "header_len"),
                               _size(max_frame, "max_frame"), byref(ptr))
        self._own(ptr, lib.netlab_decoder_free)

    def feed(self, data: Data) -> None:
        """Adds bytes received; whole frames then come out of next()."""
        raw = _bytes(data)
        self._call(lib.netlab_decoder_feed, raw, len(raw))

    def next(self) -> Optional[bytes]:
        """The next whole frame's payload, or None when more bytes are needed."""
        def next_frame(ptr: Any) -> Optional[bytes]:
            frame, n, found = _lib.u8p(), c_size_t(), c_bool()
            lib.netlab_decoder_next(ptr, byref(frame), byref(n), byref(found))
            # Copied while the lock is held: the frame is borrowed from the decoder.
            return ctypes.string_at(frame, n.value) if found.value else None
        return self._call(next_frame)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            frame = self.next()
            if frame is None:
                return
            yield frame

    @property
    def pending(self) -> int:
        """Bytes held that are not yet part of a whole frame."""
        n = c_size_t()
        self._call(lib.netlab_decoder_pending, byref(n))
        return n.value


# Chat's locks: the sending side's and the receiving side's.
_SEND, _RECV = 0, 1
# The longest single wait of Chat.recv(), so Ctrl-C and close() get through.
_RECV_SLICE_MS = 100


class ChatEvent:
    """One event from a chat room: .kind ("message", "joined", "left",
    "roster", "error", "notice" or "welcome"), .sender, .text and .online
    (None where the kind has none)."""
    KINDS: Tuple[str, ...] = ("message", "joined", "left", "roster", "error", "notice",
                              "welcome")
    __slots__ = ("kind", "sender", "text", "online")
    #: One of KINDS; the raw number for a kind this module does not know.
    kind: Union[str, int]
    sender: Optional[str]
    #: The message or notice; for "roster", the list of names.
    text: Union[str, List[str], None]
    online: Optional[int]

    def __init__(self, kind: Union[str, int], sender: Optional[str] = None,
                 text: Union[str, List[str], None] = None,
                 online: Optional[int] = None) -> None:
        self.kind, self.sender, self.text, self.online = kind, sender, text, online

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatEvent) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __repr__(self) -> str:
        return "ChatEvent(%s)" % ", ".join(
            "%s=%r" % (a, getattr(self, a)) for a in self.__slots__
            if getattr(self, a) is not None)


class Chat(_Handle):
    """A chat client in one room under one name.

        with netlab.Chat("127.0.0.1:1235", "Ayu", "line") as chat:
            chat.send("halo")
            event = chat.recv(timeout=1.0)   # a ChatEvent, or None

    In the "header" dialect, `header_len` must be the listener's (0 means
    10; seed 004 uses 100; at most 1024). In the "websocket" dialect the
    client upgrades at /ws, as the listener's page does in a browser, and
    answers the server's pings whenever it receives.

    Sending (send, who) and receiving (recv) have a lock each, as the C
    handle has: one thread may wait in recv() while another sends, and the
    send does not wait for the recv. recv() waits in slices of at most
    0.1 s, so Ctrl-C interrupts it, and close() from another thread waits
    at most that long for it.
    """
    _kind = "Chat"
    _locks = 2

    def __init__(self, addr: Address, name: Text, dialect: DialectLike = "line",
                 header_len: int = 0, timeout: float = 2.0,
                 tls: Optional[TlsOptions] = None) -> None:
        ptr = _lib.ChatP()
        _lib.interruptible()
        a, d, hl = _addr(addr), _dialect(dialect), _size(header_len, "header_len")
        n, ms = _text(name, "chat name"), _ms(timeout)
        _with_options(tls, lambda options: lib.netlab_chat_connect_with(
            a, d, hl, n, ms, options, byref(ptr)))
        self._own(ptr, lib.netlab_chat_free)

    def send(self, text: Text) -> None:
        """Sends `text` (str, or UTF-8 bytes; no NUL) to everyone else."""
        _lib.interruptible()
        self._call(lib.netlab_chat_send, _text(text, "chat message"), lock=_SEND)

    def who(self) -> None:
        """Asks who is online; the answer comes as a "roster" event."""
        _lib.interruptible()
        self._call(lib.netlab_chat_who, lock=_SEND)

    def recv(self, timeout: float = 1.0) -> Optional[ChatEvent]:
        """The room's next event, or None when none came within `timeout` s."""
        _ms(timeout)
        _lib.interruptible()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ms = max(1, min(_RECV_SLICE_MS, math.ceil(left * 1000)))
            got = self._call(_recv_once, ms, lock=_RECV)
            if got is not None:
                return got
            if time.monotonic() >= deadline:
                return None


def _recv_once(ptr: Any, ms: int) -> Optional[ChatEvent]:
    """One netlab_chat_recv of up to `ms` ms, under the receiving lock: a
    ChatEvent, or None when none came."""
    ev = _lib.ChatEvent()
    try:
        lib.netlab_chat_recv(ptr, ms, byref(ev))
    except NetlabError as e:
        if e.status == Status.ERR_TIMEOUT:
            return None
        raise
    # Reading a c_char_p field copies the borrowed string, here while the
    # receiving lock is held: the next recv would free it.
    code, raw_sender, raw_text, raw_online = ev.kind, ev.sender, ev.text, ev.online
    kind: Union[str, int] = ChatEvent.KINDS[code] if 0 <= code < len(ChatEvent.KINDS) else code
    message = raw_text.decode() if raw_text is not None else None
    sender = raw_sender.decode() if raw_sender is not None else None
    online = raw_online if kind in ("joined", "left", "roster", "welcome") else None
    text: Union[str, List[str], None] = message
    if kind == "roster":
        text = message.split("\n") if message else []
    return ChatEvent(kind, sender, text, online)
