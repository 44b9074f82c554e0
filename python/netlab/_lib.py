"""Finds and loads libnetlab, and declares every C function's argument and
result types, so that ctypes converts and checks each call."""

import ctypes
import os
import sys
import threading
from ctypes import (POINTER, c_bool, c_char_p, c_int, c_size_t, c_uint16,
                    c_uint32, c_uint64, c_void_p)

_HERE = os.path.dirname(os.path.abspath(__file__))
_WORKSPACE = os.path.dirname(os.path.dirname(_HERE))
_NAME = "libnetlab.dylib" if os.uname().sysname == "Darwin" else "libnetlab.so"


def candidates():
    """Where libnetlab is looked for, in order: $NETLAB_LIBRARY, this package's
    folder, then the workspace's target/release and target/debug."""
    found = []
    env = os.environ.get("NETLAB_LIBRARY")
    if env:
        found.append(env)
    found.append(os.path.join(_HERE, _NAME))
    for profile in ("release", "debug"):
        found.append(os.path.join(_WORKSPACE, "target", profile, _NAME))
    return found


def _load():
    # $NETLAB_LIBRARY, when set, is the only one tried: a wrong setting
    # should fail loudly, not load some other build.
    env = os.environ.get("NETLAB_LIBRARY")
    tried = []
    for path in [env] if env else candidates():
        if env or os.path.exists(path):
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
        else:
            tried.append("%s (not found)" % path)
    raise ImportError(
        "netlab: cannot load libnetlab; tried:\n  " + "\n  ".join(tried)
        + "\nbuild it with `cargo build --release` or set NETLAB_LIBRARY")


lib, path = _load()

# NETLAB_ADDRESS_MAX: room for any address text, NUL included.
ADDRESS_MAX = 64


class _Server(ctypes.Structure):
    pass


class _Decoder(ctypes.Structure):
    pass


class _Chat(ctypes.Structure):
    pass


class _ClientOptions(ctypes.Structure):
    pass


class ServerStats(ctypes.Structure):
    """A server's counters (netlab_server_stats)."""
    _fields_ = [("accepted", c_uint64), ("refused", c_uint64), ("open", c_uint64),
                ("datagrams", c_uint64), ("dropped", c_uint64),
                ("tls_handshakes", c_uint64), ("tls_failures", c_uint64)]

    def __repr__(self):
        return "ServerStats(%s)" % ", ".join(
            "%s=%d" % (name, getattr(self, name)) for name, _ in self._fields_)


ServerP = POINTER(_Server)
DecoderP = POINTER(_Decoder)
ChatP = POINTER(_Chat)
ClientOptionsP = POINTER(_ClientOptions)
u8p = POINTER(ctypes.c_uint8)


def last_error():
    """This thread's message about its last failed call."""
    need = lib.netlab_last_error(None, 0)
    buf = ctypes.create_string_buffer(need)
    lib.netlab_last_error(buf, need)
    return buf.value.decode("utf-8", "replace")


_InterruptCheck = ctypes.CFUNCTYPE(c_int, c_void_p)
_thread = threading.local()


def _check(_data):
    """Called by libnetlab, on the waiting thread, while a blocking call
    waits (at least every 0.1 s, and when a signal interrupts the wait).
    In the main thread, Python runs the signal handlers that are due as
    this function starts; one that raises (KeyboardInterrupt on Ctrl-C)
    raises here, before its first line. ctypes hands that exception to
    sys.unraisablehook, which keeps it for the caller (see _keep_interrupt);
    this function then asks the call to give up, now or at its next check."""
    return 1 if getattr(_thread, "interrupt", None) is not None else 0


_check_signals = _InterruptCheck(_check)


_previous_unraisablehook = None


def _keep_interrupt(unraisable):
    """sys.unraisablehook while netlab is imported: an exception that a
    signal handler raised inside _check is kept to be raised once the
    netlab call has returned; anything else goes to the previous hook."""
    if unraisable.object is _check:
        _thread.interrupt = unraisable.exc_value
    else:
        (_previous_unraisablehook or sys.__unraisablehook__)(unraisable)


def interruptible():
    """Sets the main thread's interrupt check, once, so that blocking calls
    made from it end promptly on Ctrl-C. Only the main thread runs signal
    handlers, so only its calls can be interrupted; other threads wait as
    before, and never call back into Python from inside a call (a daemon
    thread that did so at interpreter exit would be ended inside netlab)."""
    global _previous_unraisablehook
    if threading.current_thread() is not threading.main_thread():
        return
    if sys.unraisablehook is not _keep_interrupt:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _keep_interrupt
    if not getattr(_thread, "checked", False):
        lib.netlab_set_interrupt_check(_check_signals, None)
        _thread.checked = True


def _errcheck(result, func, args):
    # A signal handler's exception from inside the call (see _check) is
    # raised as it returns, whatever it returned: the call gave up for it,
    # or finished before its next check.
    interrupt = getattr(_thread, "interrupt", None)
    if interrupt is not None:
        _thread.interrupt = None
        raise interrupt
    if result != 0:
        from . import NetlabError
        raise NetlabError(result, last_error())
    return result


def _declare(name, argtypes, restype=c_int, check=True):
    func = getattr(lib, name)
    func.argtypes = argtypes
    func.restype = restype
    if check:
        func.errcheck = _errcheck
    return func


_declare("netlab_version", [], c_char_p, check=False)
_declare("netlab_status_str", [c_int], c_char_p, check=False)
_declare("netlab_last_error", [c_char_p, c_size_t], c_size_t, check=False)

_declare("netlab_server_start", [c_char_p, POINTER(ServerP)])
_declare("netlab_server_listener_count", [ServerP, POINTER(c_size_t)])
_declare("netlab_server_port", [ServerP, c_size_t, POINTER(c_uint16)])
_declare("netlab_server_address", [ServerP, c_size_t, c_char_p, c_size_t, POINTER(c_size_t)])
_declare("netlab_server_get_stats", [ServerP, POINTER(ServerStats)])
_declare("netlab_server_stop", [ServerP, c_uint32])
_declare("netlab_server_free", [ServerP], None, check=False)

_declare("netlab_set_interrupt_check", [_InterruptCheck, c_void_p])
_declare("netlab_tcp_echo", [c_char_p, c_char_p, c_size_t, c_uint32, u8p, c_size_t,
                             POINTER(c_size_t)])
_declare("netlab_tcp_echo_with", [c_char_p, c_char_p, c_size_t, c_uint32, ClientOptionsP, u8p,
                                  c_size_t, POINTER(c_size_t)])
_declare("netlab_client_options_new", [POINTER(ClientOptionsP)])
_declare("netlab_client_options_set_tls", [ClientOptionsP, c_char_p, c_char_p, c_char_p])
_declare("netlab_client_options_set_server_name", [ClientOptionsP, c_char_p])
_declare("netlab_client_options_free", [ClientOptionsP], None, check=False)
_declare("netlab_udp_echo", [c_char_p, c_char_p, c_size_t, c_uint32, c_uint32, u8p,
                             c_size_t, POINTER(c_size_t)])
_declare("netlab_count", [c_char_p, c_char_p, c_size_t, c_int, c_size_t, c_uint32,
                          POINTER(c_uint64)])
_declare("netlab_count_with", [c_char_p, c_char_p, c_size_t, c_int, c_size_t, c_uint32,
                               ClientOptionsP, POINTER(c_uint64)])

_declare("netlab_frame_encode", [c_int, c_size_t, c_char_p, c_size_t, u8p, c_size_t,
                                 POINTER(c_size_t)])
_declare("netlab_decoder_new", [c_int, c_size_t, c_size_t, POINTER(DecoderP)])
_declare("netlab_decoder_feed", [DecoderP, c_char_p, c_size_t])
_declare("netlab_decoder_next", [DecoderP, POINTER(u8p), POINTER(c_size_t), POINTER(c_bool)])
_declare("netlab_decoder_pending", [DecoderP, POINTER(c_size_t)])
_declare("netlab_decoder_free", [DecoderP], None, check=False)



class ChatEvent(ctypes.Structure):
    """netlab_chat_event, as netlab_chat_recv fills it in."""
    _fields_ = [("kind", c_int), ("sender", c_char_p), ("text", c_char_p),
                ("online", ctypes.c_uint32)]


_declare("netlab_chat_connect", [c_char_p, c_int, c_size_t, c_char_p, c_uint32, POINTER(ChatP)])
_declare("netlab_chat_connect_with", [c_char_p, c_int, c_size_t, c_char_p, c_uint32,
                                      ClientOptionsP, POINTER(ChatP)])
_declare("netlab_chat_send", [ChatP, c_char_p])
_declare("netlab_chat_who", [ChatP])
_declare("netlab_chat_recv", [ChatP, c_uint32, POINTER(ChatEvent)])
_declare("netlab_chat_free", [ChatP], None, check=False)

__all__ = ["lib", "path", "candidates", "last_error", "ServerStats", "c_void_p"]
