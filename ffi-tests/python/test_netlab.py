"""The Python package's tests, stdlib unittest only. tests/ffi_python.rs
runs them with PYTHONPATH=python and NETLAB_LIBRARY set to the library that
cargo test has just built:

    PYTHONPATH=python NETLAB_LIBRARY=target/debug/libnetlab.so \\
        python3 -m unittest discover -s ffi-tests/python -v

daemon/tests/packaging.rs runs them again against the wheel installed in a
fresh virtual environment, with NETLAB_TEST_INSTALLED=1 and no variable
pointing at the source tree.
"""

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import netlab
from netlab import NetlabError, Status, _lib

# A shell that starts the suite in the background (`cargo test &` in a
# script) hands it SIGINT ignored, and Python then installs no handler of
# its own: the Ctrl-C tests would wait out their calls' timeouts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "daemon", "tests", "seeds")


def config(service="echo", name="t", listen='["127.0.0.1:0"]', **extra):
    lines = ['name = "%s"' % name, 'service = "%s"' % service, "listen = %s" % listen]
    lines += ['%s = %s' % (k, v if isinstance(v, int) else '"%s"' % v) for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def silent_udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerTests(unittest.TestCase):
    def test_starts_on_port_0_and_reports_the_port(self):
        with netlab.Server("[[server]]\n" + config()) as server:
            self.assertEqual(server.listener_count, 1)
            port = server.port()
            self.assertNotEqual(port, 0)
            self.assertEqual(server.address(), "127.0.0.1:%d" % port)
            self.assertEqual(server.ports, [port])
            server.stop(1.0)
            server.stop(0)  # a second stop does nothing
            self.assertEqual(server.port(), port)
        self.assertTrue(server.closed)

    def test_every_model_and_transport(self):
        for model in ("event", "thread", "fork"):
            with self.subTest(model=model), netlab.Server(config(model=model)) as s:
                self.assertEqual(netlab.tcp_echo(s.address(), b"hi"), b"hi")
                s.stop(0.5)
        with netlab.Server(config(transport="udp")) as s:
            self.assertEqual(netlab.udp_echo(s.address(), b"hi"), b"hi")
        chat = config("chat", listen='[{ addr = "127.0.0.1:0", dialect = "line" }, '
                                     '{ addr = "127.0.0.1:0", dialect = "bincode" }]')
        with netlab.Server(chat) as s:
            self.assertEqual(len(s.addresses), 2)

    def test_stats_count_connections(self):
        with netlab.Server(config()) as s:
            for _ in range(3):
                netlab.tcp_echo(s.address(), b"x")
            stats = s.stats()
            self.assertEqual((stats.accepted, stats.refused), (3, 0))

    def test_an_invalid_config_says_where(self):
        with self.assertRaises(NetlabError) as cm:
            netlab.Server(config() + "bogus = 1\n")
        self.assertEqual(cm.exception.status, Status.ERR_CONFIG)
        self.assertIn("bogus", cm.exception.message)
        self.assertIn(":4:", cm.exception.message)
        with self.assertRaises(NetlabError) as cm:
            netlab.Server(config("chat", model="fork"))
        self.assertIn("fork", str(cm.exception))

    def test_a_port_in_use_names_the_address(self):
        with netlab.Server(config()) as first:
            taken = first.address()
            with self.assertRaises(NetlabError) as cm:
                netlab.Server(config(listen='["127.0.0.1:0", "%s"]' % taken))
            self.assertEqual(cm.exception.status, Status.ERR_ADDR_IN_USE)
            self.assertIn(taken, cm.exception.message)
            self.assertIn("in use", cm.exception.message)

    def test_close_of_a_running_server_stops_it(self):
        server = netlab.Server(config(model="thread"))
        addr = server.address()
        server.close()
        server.close()  # twice is fine
        with self.assertRaises(NetlabError) as cm:
            netlab.tcp_echo(addr, b"x", timeout=1)
        self.assertEqual(cm.exception.status, Status.ERR_IO)
        self.assertIn("connection refused", cm.exception.message)

    def test_the_finalizer_frees_a_forgotten_server(self):
        server = netlab.Server(config())
        addr = server.address()
        del server
        gc.collect()
        with self.assertRaises(NetlabError):
            netlab.tcp_echo(addr, b"x", timeout=1)

    def test_a_forked_child_closing_an_inherited_server_releases_its_copies_only(self):
        for model in ("event", "thread"):
            with self.subTest(model=model):
                self.check_fork_close(config(model=model))

    def check_fork_close(self, text):
        server = netlab.Server(text)
        addr, port = server.address(), server.port()
        held = socket.create_connection(("127.0.0.1", port))
        self.assertEqual(netlab.tcp_echo(addr, b"before"), b"before")
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # The child: try to stop the server it inherited, leave a
            # `with` block on it, then stay alive until the parent has looked.
            os.dup2(err_w, 2)
            try:
                status = "no error"
                try:
                    server.stop(0)
                except NetlabError as e:
                    status = e.status.name
                with server:
                    pass
                os.write(report_w, status.encode())
                os.read(go_r, 1)
            finally:
                os._exit(0)
        os.close(err_w)
        os.close(report_w)
        try:
            self.assertEqual(os.read(report_r, 100), b"ERR_INVALID")
            # The server serves on in the parent, its open connection too.
            self.assertEqual(netlab.tcp_echo(addr, b"after"), b"after")
            held.sendall(b"x")
            held.shutdown(socket.SHUT_WR)
            held.settimeout(5)
            self.assertEqual(held.recv(10), b"x")
            # Stopped in the parent, the port is free although the child
            # lives: it held no copy of the listener.
            server.close()
            probe = socket.socket()
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.close()
        finally:
            held.close()
            os.write(go_w, b"x")
            _, status = os.waitpid(pid, 0)
        stderr = os.read(err_r, 65536).decode("utf-8", "replace")
        for fd in (report_r, go_r, go_w, err_r):
            os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(stderr, "", "the child wrote to stderr")

    def test_stop_while_clients_are_connected(self):
        for model in ("event", "thread", "fork"):
            with self.subTest(model=model), netlab.Server(config(model=model)) as s:
                socks = [socket.create_connection(("127.0.0.1", s.port()), timeout=5)
                         for _ in range(5)]
                for sock in socks:
                    sock.sendall(b"ping")
                    self.assertEqual(sock.recv(16), b"ping")
                self.assertEqual(s.stats().open, 5)
                t = time.monotonic()
                s.stop(0.3)
                self.assertLess(time.monotonic() - t, 3)
                for sock in socks:
                    try:
                        self.assertEqual(sock.recv(16), b"")
                    except ConnectionResetError:
                        pass
                    sock.close()


class ClientTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tcp = netlab.Server(config())
        cls.udp = netlab.Server(config(transport="udp"))

    @classmethod
    def tearDownClass(cls):
        cls.tcp.close()
        cls.udp.close()

    def test_tcp_echo(self):
        msg = b"Test message. This will be echoed"
        self.assertEqual(netlab.tcp_echo(self.tcp.address(), msg), msg)
        self.assertEqual(netlab.tcp_echo(("127.0.0.1", self.tcp.port()), "text"), b"text")
        self.assertEqual(netlab.tcp_echo(self.tcp.address(), b""), b"")

    def test_tcp_echo_of_a_large_message(self):
        msg = bytes(range(256)) * 4096
        self.assertEqual(netlab.tcp_echo(self.tcp.address(), msg, timeout=5), msg)

    def test_a_reply_larger_than_the_first_guess_is_fetched_whole(self):
        with netlab.Server(config(model="thread", tag="worker")) as s:
            reply = netlab.tcp_echo(s.address(), b"x" * 10)
            self.assertTrue(reply.endswith(b"x" * 10), reply)

    def test_udp_echo(self):
        msg = b"This is the message. It will be repeated."
        self.assertEqual(netlab.udp_echo(self.udp.address(), msg), msg)

    def test_udp_echo_times_out_after_its_retries(self):
        sock = silent_udp()
        addr = "127.0.0.1:%d" % sock.getsockname()[1]
        with self.assertRaises(NetlabError) as cm:
            netlab.udp_echo(addr, b"anyone?", timeout=0.1, retries=2)
        sock.close()
        self.assertEqual(cm.exception.status, Status.ERR_TIMEOUT)
        self.assertIn("no reply from " + addr, cm.exception.message)
        self.assertIn("3 tries of 100ms", cm.exception.message)

    def test_tcp_echo_times_out_on_a_silent_peer(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        addr = "127.0.0.1:%d" % listener.getsockname()[1]
        with self.assertRaises(NetlabError) as cm:
            netlab.tcp_echo(addr, b"hello", timeout=0.2)
        listener.close()
        self.assertEqual(cm.exception.status, Status.ERR_TIMEOUT)
        self.assertIn(addr, cm.exception.message)

    def test_tcp_echo_of_a_server_that_never_stops_sending_raises(self):
        # chargen, `yes | nc -l`: sends without end (here up to 64 MiB, so
        # that a client reading it all fails the test, not the machine).
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        addr = "127.0.0.1:%d" % listener.getsockname()[1]

        def stream():
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                for _ in range(64 * 256):
                    conn.sendall(b"y" * 4096)
            except OSError:
                pass
            finally:
                conn.close()

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        started = time.monotonic()
        with self.assertRaises(NetlabError) as cm:
            netlab.tcp_echo(addr, b"hello", timeout=5)
        self.assertLess(time.monotonic() - started, 3)
        thread.join(10)
        listener.close()
        self.assertEqual(cm.exception.status, Status.ERR_PROTOCOL)
        self.assertIn("is not an echo of the 5 bytes sent", cm.exception.message)

    def test_ctrl_c_interrupts_every_blocking_call_promptly(self):
        import _thread
        silent_tcp = socket.socket()
        silent_tcp.bind(("127.0.0.1", 0))
        silent_tcp.listen(8)
        tcp_addr = "127.0.0.1:%d" % silent_tcp.getsockname()[1]
        udp = silent_udp()
        udp_addr = "127.0.0.1:%d" % udp.getsockname()[1]
        calls = {
            "tcp_echo": lambda: netlab.tcp_echo(tcp_addr, b"x", timeout=30),
            "udp_echo": lambda: netlab.udp_echo(udp_addr, b"x", timeout=30, retries=0),
            "count": lambda: netlab.count(tcp_addr, b"x", timeout=30),
        }
        # interrupt_main trips Python's flag alone (the periodic check sees
        # it); a real SIGINT also interrupts the system call the C code waits in.
        interrupts = {
            "interrupt_main": _thread.interrupt_main,
            "SIGINT": lambda: os.kill(os.getpid(), signal.SIGINT),
        }
        try:
            for (name, call), (how, interrupt) in [
                    (c, i) for c in calls.items() for i in interrupts.items()]:
                with self.subTest(call=name, interrupt=how):
                    timer = threading.Timer(0.3, interrupt)
                    started = time.monotonic()
                    timer.start()
                    try:
                        with self.assertRaises(KeyboardInterrupt):
                            call()
                    finally:
                        timer.cancel()
                        timer.join()
                    self.assertLess(time.monotonic() - started, 2.0)
            # The calls work as before afterwards.
            with netlab.Server(config()) as s:
                self.assertEqual(netlab.tcp_echo(s.address(), b"still"), b"still")
        finally:
            silent_tcp.close()
            udp.close()

    def test_count_in_every_framing(self):
        for framing in ("line", "header", "chunk"):
            with self.subTest(framing=framing), \
                    netlab.Server(config("count", framing=framing)) as s:
                self.assertEqual(netlab.count(s.address(), "héllo wörld", framing), 11)

    def test_count_refuses_bad_arguments(self):
        with self.assertRaises(NetlabError) as cm:
            netlab.count(self.tcp.address(), b"a\nb")
        self.assertEqual(cm.exception.status, Status.ERR_INVALID)
        self.assertIn("newline", cm.exception.message)
        with self.assertRaises(NetlabError):
            netlab.count(self.tcp.address(), b"a", framing="morse")

    def test_bad_addresses_and_timeouts(self):
        for addr in ("not an address", "127.0.0.1:99999"):
            with self.assertRaises(NetlabError) as cm:
                netlab.tcp_echo(addr, b"x")
            self.assertEqual(cm.exception.status, Status.ERR_INVALID)
            self.assertIn(addr, cm.exception.message)
        with self.assertRaises(NetlabError):
            netlab.tcp_echo(self.tcp.address(), b"x", timeout=0)


class CodecTests(unittest.TestCase):
    def test_encodes_each_dialect(self):
        self.assertEqual(netlab.encode_frame("line", b"hi"), b"hi\n")
        self.assertEqual(netlab.encode_frame("header", b"hi"), b"2         hi")
        self.assertEqual(netlab.encode_frame(netlab.Dialect.HEADER, b"hi", 4), b"2   hi")
        self.assertEqual(netlab.encode_frame("bincode", b"hi"), b"\0\0\0\2hi")
        self.assertEqual(len(netlab.encode_frame("bincode", b"x" * 5000)), 5004)

    def test_websocket_is_a_dialect_not_a_framing(self):
        for call in (lambda: netlab.encode_frame("websocket", b"hi"),
                     lambda: netlab.Decoder(netlab.Dialect.WEBSOCKET)):
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_INVALID)
            self.assertIn("not a framing", cm.exception.message)

    def test_round_trips_split_anywhere(self):
        payloads = [b"first", b"", b"third, a longer one", bytes(range(10)) * 30]
        for dialect in ("line", "header", "bincode"):
            items = payloads if dialect != "line" else [p for p in payloads if b"\n" not in p]
            stream = b"".join(netlab.encode_frame(dialect, p) for p in items)
            for step in (1, 2, 7, 64, len(stream)):
                with self.subTest(dialect=dialect, step=step), netlab.Decoder(dialect) as dec:
                    got = []
                    for at in range(0, len(stream), step):
                        dec.feed(stream[at:at + step])
                        got.extend(dec)
                    self.assertEqual(got, items)
                    self.assertEqual(dec.pending, 0)

    def test_bad_frames_raise_and_keep_raising(self):
        with netlab.Decoder("header", 10, max_frame=8) as dec:
            dec.feed(b"100       ")
            for _ in range(2):
                with self.assertRaises(NetlabError) as cm:
                    dec.next()
                self.assertEqual(cm.exception.status, Status.ERR_PROTOCOL)
                self.assertIn("longer than the maximum of 8", cm.exception.message)

    def test_bad_arguments(self):
        for call in (lambda: netlab.encode_frame("morse", b"x"),
                     lambda: netlab.encode_frame(7, b"x"),
                     lambda: netlab.Decoder(-1),
                     lambda: netlab.encode_frame("line", b"a\nb")):
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_INVALID)


class MisuseTests(unittest.TestCase):
    def test_a_closed_handle_raises_instead_of_crashing(self):
        server = netlab.Server(config())
        server.close()
        for call in (server.port, server.address, server.stats, server.stop,
                     lambda: server.listener_count, lambda: server.__enter__()):
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_CLOSED)
            self.assertIn("closed", cm.exception.message)
        dec = netlab.Decoder("line")
        dec.close()
        for call in (lambda: dec.feed(b"x"), dec.next, lambda: dec.pending):
            with self.assertRaises(NetlabError):
                call()
        self.assertIn("closed", repr(server))

    def test_null_handles_through_the_raw_functions_give_err_null(self):
        lib = _lib.lib
        n = _lib.ctypes.c_size_t()
        calls = [
            lambda: lib.netlab_server_port(None, 0, _lib.ctypes.byref(_lib.ctypes.c_uint16())),
            lambda: lib.netlab_server_listener_count(None, _lib.ctypes.byref(n)),
            lambda: lib.netlab_server_stop(None, 0),
            lambda: lib.netlab_server_start(None, None),
            lambda: lib.netlab_decoder_feed(None, b"x", 1),
            lambda: lib.netlab_decoder_pending(None, _lib.ctypes.byref(n)),
            lambda: lib.netlab_tcp_echo(None, b"x", 1, 100, None, 0, _lib.ctypes.byref(n)),
            lambda: lib.netlab_count(b"127.0.0.1:1", b"x", 1, 0, 0, 100, None),
        ]
        for call in calls:
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_NULL)
            self.assertIn("is NULL", cm.exception.message)
        lib.netlab_server_free(None)
        lib.netlab_decoder_free(None)

    def test_threads_may_share_a_handle_and_close_it_under_each_other(self):
        server = netlab.Server(config())
        dec = netlab.Decoder("line")
        errors = []

        def hammer():
            for _ in range(200):
                try:
                    server.port()
                    server.stats()
                    dec.feed(b"x\n")
                    dec.next()
                except NetlabError as e:
                    if e.status != Status.ERR_CLOSED:
                        errors.append(e)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.01)
        server.close()
        dec.close()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_negative_and_huge_numbers_are_refused(self):
        with netlab.Server(config()) as s:
            for call in (lambda: s.port(-1), lambda: s.port(5),
                         lambda: netlab.udp_echo(s.address(), b"x", retries=-1),
                         lambda: netlab.count(s.address(), b"x", "header", header_len=-1),
                         lambda: netlab.count(s.address(), b"x", "header", header_len=10**6),
                         lambda: netlab.encode_frame("header", b"x", header_len=2**40),
                         lambda: netlab.Decoder("header", header_len=-3),
                         lambda: netlab.tcp_echo(s.address(), b"x", timeout=-1)):
                with self.assertRaises(NetlabError) as cm:
                    call()
                self.assertEqual(cm.exception.status, Status.ERR_INVALID)

    def test_status_strings_and_version(self):
        self.assertEqual(_lib.lib.netlab_status_str(0), b"ok")
        self.assertEqual(_lib.lib.netlab_status_str(-5), b"unknown status")
        self.assertEqual(_lib.lib.netlab_status_str(2**31 - 1), b"unknown status")
        self.assertRegex(netlab.version(), r"^\d+\.\d+\.\d+")

    def test_errors_are_per_thread(self):
        errors = []

        def fail():
            try:
                netlab.tcp_echo("nowhere", b"x")
            except NetlabError as e:
                errors.append(e.message)

        threads = [threading.Thread(target=fail) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(errors), 4)
        for message in errors:
            self.assertIn("nowhere", message)

    def test_library_search_order(self):
        # The package's own folder (where a wheel puts the library), then,
        # for the package in the source tree only, the workspace's builds.
        pkg = os.path.dirname(os.path.abspath(netlab.__file__))
        workspace = [os.path.join(pkg, "libnetlab.so")]
        if pkg == os.path.join(ROOT, "python", "netlab"):
            workspace += [os.path.join(ROOT, "target", "release", "libnetlab.so"),
                          os.path.join(ROOT, "target", "debug", "libnetlab.so")]
        saved = os.environ.get("NETLAB_LIBRARY")
        try:
            os.environ["NETLAB_LIBRARY"] = "/somewhere/libnetlab.so"
            self.assertEqual(_lib.candidates(), ["/somewhere/libnetlab.so"] + workspace)
            del os.environ["NETLAB_LIBRARY"]
            self.assertEqual(_lib.candidates(), workspace)
        finally:
            if saved is not None:
                os.environ["NETLAB_LIBRARY"] = saved

    @unittest.skipUnless(os.environ.get("NETLAB_TEST_INSTALLED"),
                         "the package under test is the source tree's")
    def test_the_installed_package_loads_the_library_it_carries(self):
        pkg = os.path.dirname(os.path.abspath(netlab.__file__))
        self.assertFalse(pkg.startswith(ROOT + os.sep), pkg)
        self.assertEqual(netlab.library_path, os.path.join(pkg, "libnetlab.so"))
        self.assertTrue(os.path.exists(os.path.join(pkg, "py.typed")))

    def test_a_wrong_netlab_library_fails_loudly(self):
        # The same package as this run's, wherever it is installed.
        env = dict(os.environ, NETLAB_LIBRARY="/nonexistent/libnetlab.so",
                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(netlab.__file__))))
        out = subprocess.run([sys.executable, "-c", "import netlab"], env=env,
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("ImportError", out.stderr)
        self.assertIn("/nonexistent/libnetlab.so", out.stderr)


class TextArgumentTests(unittest.TestCase):
    """Every C string argument: str or bytes, and a NUL inside is refused
    rather than silently cutting the string short."""

    @classmethod
    def setUpClass(cls):
        cls.echo = netlab.Server(config())
        cls.udp = netlab.Server(config(transport="udp"))
        cls.count = netlab.Server(config("count", name="c"))
        cls.room = netlab.Server(config("chat", listen='[{ addr = "127.0.0.1:0", '
                                                       'dialect = "line" }]'))

    @classmethod
    def tearDownClass(cls):
        for server in (cls.echo, cls.udp, cls.count, cls.room):
            server.close()

    def assertInvalid(self, call, *needles):
        with self.assertRaises(NetlabError) as cm:
            call()
        self.assertEqual(cm.exception.status, Status.ERR_INVALID)
        for needle in needles:
            self.assertIn(needle, cm.exception.message)
        return cm.exception

    def test_a_configuration_with_a_nul_is_refused(self):
        e = self.assertInvalid(lambda: netlab.Server(config() + "\0bogus = 1\n"),
                               "configuration", "NUL")
        self.assertIn("at byte %d" % len(config()), e.message)
        with netlab.Server(config().encode()) as s:
            self.assertEqual(netlab.tcp_echo(s.address(), b"x"), b"x")
        self.assertInvalid(lambda: netlab.Server(None), "configuration", "NoneType")

    def test_an_address_with_a_nul_is_refused_by_every_client(self):
        for name, server, call in (
                ("tcp_echo", self.echo, lambda a: netlab.tcp_echo(a, b"x")),
                ("udp_echo", self.udp, lambda a: netlab.udp_echo(a, b"x")),
                ("count", self.count, lambda a: netlab.count(a, "x")),
                ("Chat", self.room, lambda a: netlab.Chat(a, "Ayu").close())):
            with self.subTest(call=name):
                addr = server.address()
                self.assertInvalid(lambda: call(addr + "\0junk"), "address", "NUL")
                call(addr.encode())  # bytes are accepted
                self.assertInvalid(lambda: call(5), "address", "int")
                self.assertInvalid(lambda: call(("127.0.0.1",)), "address", "tuple")

    def test_a_chat_name_with_a_nul_is_refused(self):
        addr = self.room.address()
        self.assertInvalid(lambda: netlab.Chat(addr, "Ayu\0x"), "chat name", "NUL")
        with netlab.Chat(addr, b"Ayu") as ayu, netlab.Chat(addr, "R\u00e4fi") as rafi:
            self.assertEqual(ayu.recv(timeout=2.0),
                             netlab.ChatEvent("joined", "R\u00e4fi", None, 2))
            ayu.send("hi")
            self.assertEqual(rafi.recv(timeout=2.0), netlab.ChatEvent("message", "Ayu", "hi"))
        self.assertInvalid(lambda: netlab.Chat(addr, 7), "chat name", "int")

    def test_a_chat_message_with_a_nul_is_refused_and_bytes_are_sent(self):
        addr = self.room.address()
        with netlab.Chat(addr, "Ayu") as ayu, netlab.Chat(addr, "Rafi") as rafi:
            self.assertEqual(ayu.recv(timeout=2.0).kind, "joined")
            self.assertInvalid(lambda: rafi.send("abc\0def"), "chat message", "NUL",
                               "at byte 3")
            self.assertInvalid(lambda: rafi.send(b"abc\0"), "chat message", "NUL")
            self.assertInvalid(lambda: rafi.send(None), "chat message", "NoneType")
            self.assertInvalid(lambda: rafi.send("\ud800"), "chat message", "UTF-8")
            self.assertInvalid(lambda: rafi.send(b"\xff"), "UTF-8")
            rafi.send(b"bytes")
            rafi.send(bytearray("h\u00e9llo".encode()))
            got = [ayu.recv(timeout=2.0) for _ in range(2)]
            self.assertEqual([(e.kind, e.text) for e in got],
                             [("message", "bytes"), ("message", "h\u00e9llo")])
            # Nothing of the refused ones arrived.
            self.assertIsNone(ayu.recv(timeout=0.2))

    def test_byte_buffers_refuse_what_is_not_bytes_or_str(self):
        # bytes(5) would have sent five zero bytes.
        self.assertInvalid(lambda: netlab.tcp_echo(self.echo.address(), 5), "data", "int")
        self.assertInvalid(lambda: netlab.encode_frame("line", None), "payload")
        with netlab.Decoder("line") as dec:
            self.assertInvalid(lambda: dec.feed(3), "data")
            dec.feed(memoryview(b"a\0b\n"))
            self.assertEqual(dec.next(), b"a\0b")
        # A NUL inside a byte buffer is data, not an end.
        self.assertEqual(netlab.tcp_echo(self.echo.address(), "a\0b"), b"a\0b")


CHAT = config("chat", listen='[{ addr = "127.0.0.1:0", dialect = "line" }, '
                             '{ addr = "127.0.0.1:0", dialect = "header" }, '
                             '{ addr = "127.0.0.1:0", dialect = "bincode" }, '
                             '{ addr = "127.0.0.1:0", dialect = "websocket" }]')
DIALECTS = ("line", "header", "bincode", "websocket")


class ChatTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.room = netlab.Server(CHAT)

    @classmethod
    def tearDownClass(cls):
        cls.room.close()

    def join(self, dialect, name):
        return netlab.Chat(self.room.address(DIALECTS.index(dialect)), name, dialect)

    def next_of(self, chat, kind):
        for _ in range(10):
            event = chat.recv(timeout=2.0)
            self.assertIsNotNone(event, "no %s event" % kind)
            if event.kind == kind:
                return event
        self.fail("no %s event" % kind)

    def test_two_handles_talk_in_every_pair_of_dialects(self):
        for a in DIALECTS:
            for b in DIALECTS:
                with self.subTest(a=a, b=b), self.join(a, "Ayu") as ayu:
                    with self.join(b, "Rafi") as rafi:
                        self.assertEqual(self.next_of(ayu, "joined"),
                                         netlab.ChatEvent("joined", "Rafi", None, 2))
                        rafi.send("halo semua")
                        self.assertEqual(self.next_of(ayu, "message"),
                                         netlab.ChatEvent("message", "Rafi", "halo semua"))
                        ayu.send("héllo")
                        self.assertEqual(self.next_of(rafi, "message").text, "héllo")
                    left = self.next_of(ayu, "left")
                    self.assertEqual((left.sender, left.online), ("Rafi", 1))

    def test_roster_taken_name_and_timeout(self):
        with self.join("line", "Ayu") as ayu, self.join("bincode", "Dian") as dian:
            dian.who()
            self.assertEqual(sorted(self.next_of(dian, "roster").text), ["Ayu", "Dian"])
            with self.assertRaises(NetlabError) as cm:
                self.join("header", "Ayu")
            self.assertEqual(cm.exception.status, Status.ERR_PROTOCOL)
            self.assertIn("Ayu", cm.exception.message)
            self.next_of(ayu, "joined")
            self.assertIsNone(ayu.recv(timeout=0.1))
            dian.send("still here")
            self.assertEqual(self.next_of(ayu, "message").text, "still here")

    def test_the_seeds_100_byte_header(self):
        seed = config("chat", listen='[{ addr = "127.0.0.1:0", dialect = "header", '
                                     'header_len = 100 }, '
                                     '{ addr = "127.0.0.1:0", dialect = "line" }]')
        with netlab.Server(seed) as room:
            with netlab.Chat(room.address(0), "Dian", "header", header_len=100) as dian, \
                    netlab.Chat(room.address(1), "Ayu", "line") as ayu:
                self.next_of(dian, "joined")
                dian.send("Hello World")
                self.assertEqual(self.next_of(ayu, "message"),
                                 netlab.ChatEvent("message", "Dian", "Hello World"))
                ayu.send("x" * 1000)
                self.assertEqual(self.next_of(dian, "message").text, "x" * 1000)

    def test_a_closed_chat_raises(self):
        chat = self.join("line", "Ayu")
        chat.close()
        for call in (lambda: chat.send("x"), chat.recv, chat.who):
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_CLOSED)


    def test_close_under_a_recv_in_another_thread_then_calls_raise(self):
        ayu, rafi = self.join("line", "Ayu"), self.join("bincode", "Rafi")
        errors, receiving = [], threading.Event()

        def reader():
            try:
                while True:
                    receiving.set()
                    ayu.recv(timeout=0.3)
            except NetlabError as e:
                errors.append(e)

        thread = threading.Thread(target=reader)
        thread.start()
        receiving.wait(5)
        time.sleep(0.1)
        ayu.close()
        self.assertTrue(ayu.closed)
        thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertEqual([e.status for e in errors], [Status.ERR_CLOSED])
        for call in (lambda: ayu.send("x"), ayu.recv, ayu.who):
            with self.assertRaises(NetlabError) as cm:
                call()
            self.assertEqual(cm.exception.status, Status.ERR_CLOSED)
        # The room saw Ayu go.
        self.assertEqual(self.next_of(rafi, "left").sender, "Ayu")
        rafi.close()


    def test_a_send_does_not_wait_for_a_recv_in_another_thread(self):
        # The usual client shape: one thread reads, another sends.
        with self.join("line", "Ayu") as ayu, self.join("bincode", "Rafi") as rafi:
            self.next_of(ayu, "joined")
            got, stop = [], threading.Event()

            def reader():
                while not stop.is_set():
                    event = ayu.recv(timeout=2.0)
                    if event is not None and event.kind == "message":
                        got.append(event.text)

            thread = threading.Thread(target=reader)
            thread.start()
            try:
                for i in range(5):
                    time.sleep(0.05)  # the reader is back in its 2 s wait
                    started = time.monotonic()
                    ayu.send("from Ayu %d" % i)
                    if i == 2:
                        ayu.who()
                    self.assertLess(time.monotonic() - started, 0.5, "send %d waited" % i)
                    self.assertEqual(self.next_of(rafi, "message").text, "from Ayu %d" % i)
                    rafi.send("from Rafi %d" % i)
                deadline = time.monotonic() + 5
                while len(got) < 5 and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                stop.set()
                thread.join(5)
            self.assertEqual(got, ["from Rafi %d" % i for i in range(5)])

    def test_close_does_not_wait_out_a_long_recv(self):
        ayu = self.join("line", "Ayu")
        errors, receiving = [], threading.Event()

        def reader():
            receiving.set()
            try:
                ayu.recv(timeout=30)
            except NetlabError as e:
                errors.append(e.status)

        thread = threading.Thread(target=reader)
        thread.start()
        receiving.wait(5)
        time.sleep(0.2)
        started = time.monotonic()
        ayu.close()
        self.assertLess(time.monotonic() - started, 1.0)
        thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [Status.ERR_CLOSED])

    def test_ctrl_c_interrupts_a_long_recv(self):
        import _thread
        with self.join("line", "Ayu") as ayu:
            timer = threading.Timer(0.2, _thread.interrupt_main)
            started = time.monotonic()
            timer.start()
            try:
                with self.assertRaises(KeyboardInterrupt):
                    ayu.recv(timeout=30)
            finally:
                timer.cancel()
            self.assertLess(time.monotonic() - started, 2.0)
            # The handle is still usable.
            self.assertIsNone(ayu.recv(timeout=0.05))


def test_pki():
    """The test certificates: the directory NETLAB_TEST_PKI names (cargo
    test makes one), else a CA and a server certificate for 127.0.0.1 made
    here with the openssl command."""
    given = os.environ.get("NETLAB_TEST_PKI")
    if given:
        return given
    import shutil
    import tempfile
    if shutil.which("openssl") is None:
        raise RuntimeError("the TLS tests need certificates: set NETLAB_TEST_PKI to a directory "
                           "of them, or install openssl to make them")
    d = tempfile.mkdtemp(prefix="netlab-pki-")
    run = lambda *args: subprocess.run(["openssl", *args], cwd=d, check=True,
                                       capture_output=True, timeout=30)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA",
        "-days", "2")
    for name, cn, san in (("server", "localhost", "IP:127.0.0.1,DNS:localhost"),
                          ("client", "client", "DNS:client.test")):
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
    return d


class TlsTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = test_pki()

    def path(self, name):
        return os.path.join(self.pki, name)

    def tls_config(self, service="echo", extra="", dialect=None):
        listen = '{ addr = "127.0.0.1:0"%s, tls = { cert = "%s", key = "%s"%s } }' % (
            ', dialect = "%s"' % dialect if dialect else "", self.path("server.pem"),
            self.path("server.key"), extra)
        return 'name = "t"\nservice = "%s"\nlisten = [%s]\n' % (service, listen)

    def test_echo_count_and_chat_over_tls(self):
        tls = netlab.TlsOptions(ca=self.path("ca.pem"))
        with netlab.Server(self.tls_config()) as s, tls:
            self.assertEqual(netlab.tcp_echo(s.address(), b"over TLS", tls=tls), b"over TLS")
            self.assertEqual(s.stats().tls_handshakes, 1)
        tls = netlab.TlsOptions(ca=self.path("ca.pem"), server_name="localhost")
        with netlab.Server(self.tls_config("count")) as s:
            self.assertEqual(netlab.count(s.address(), "héllo", tls=tls), 5)
        with netlab.Server(self.tls_config("chat", dialect="line")) as room:
            with netlab.Chat(room.address(), "Ayu", tls=tls) as ayu, \
                    netlab.Chat(room.address(), "Rafi", tls=tls) as rafi:
                rafi.send("halo")
                for _ in range(5):
                    event = ayu.recv(timeout=2.0)
                    if event is not None and event.kind == "message":
                        break
                self.assertEqual((event.sender, event.text), ("Rafi", "halo"))

    def test_client_certificates_and_untrusted_servers(self):
        extra = ', client_ca = "%s"' % self.path("ca.pem")
        with netlab.Server(self.tls_config(extra=extra)) as s:
            good = netlab.TlsOptions(ca=self.path("ca.pem"), cert=self.path("client.pem"),
                                     key=self.path("client.key"))
            self.assertEqual(netlab.tcp_echo(s.address(), b"ok", tls=good), b"ok")
            none = netlab.TlsOptions(ca=self.path("ca.pem"))
            with self.assertRaises(NetlabError) as e:
                netlab.tcp_echo(s.address(), b"x", tls=none)
            self.assertEqual(e.exception.status, Status.ERR_TLS)
            self.assertIn("requires a client certificate", e.exception.message)
            # A CA that did not sign the server's certificate.
            wrong = netlab.TlsOptions(ca=self.path("client.pem"))
            with self.assertRaises(NetlabError) as e:
                netlab.tcp_echo(s.address(), b"x", tls=wrong)
            self.assertEqual(e.exception.status, Status.ERR_TLS)

    def test_bad_files_and_arguments(self):
        with self.assertRaises(NetlabError) as e:
            netlab.TlsOptions(ca=self.path("missing.pem"))
        self.assertEqual(e.exception.status, Status.ERR_TLS)
        self.assertIn("missing.pem: cannot read it", e.exception.message)
        with self.assertRaises(NetlabError) as e:
            netlab.TlsOptions(ca=self.path("ca.pem"), cert=self.path("client.pem"))
        self.assertIn("give both or neither", e.exception.message)
        with self.assertRaises(NetlabError) as e:
            netlab.tcp_echo("127.0.0.1:1", b"x", tls="ca.pem")
        self.assertEqual(e.exception.status, Status.ERR_INVALID)
        tls = netlab.TlsOptions(ca=self.path("ca.pem"))
        tls.close()
        with self.assertRaises(NetlabError) as e:
            netlab.tcp_echo("127.0.0.1:1", b"x", tls=tls)
        self.assertEqual(e.exception.status, Status.ERR_CLOSED)


class SeedClientTests(unittest.TestCase):
    """The lab's own Python clients, unmodified but for host and port,
    against servers started from Python."""

    def run_seed(self, script, args, stdin=""):
        out = subprocess.run([sys.executable, os.path.join(SEEDS, script)] + args,
                             input=stdin, capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return out.stdout

    def test_seed_clients_are_served(self):
        for model in ("event", "thread", "fork"):
            with self.subTest(model=model), netlab.Server(config(model=model)) as s:
                out = self.run_seed("tcp_echo_client.py", ["--port", str(s.port())])
                received = "".join(l[len("Received: "):] for l in out.splitlines()
                                   if l.startswith("Received: "))
                self.assertEqual(received, "Test message. This will be echoed")
        with netlab.Server(config(transport="udp")) as s:
            out = self.run_seed("udp_echo_client.py", ["--port", str(s.port())])
            self.assertIn("Received: This is the message. It will be repeated.", out)
        with netlab.Server(config("count", framing="chunk")) as s:
            out = self.run_seed("count_client.py", [str(s.port())], "héllo wörld\n")
            self.assertIn("Jumlah karakter: 11", out)


FORK_SCRIPT = textwrap.dedent("""
    import atexit, os, socket, sys, time
    import netlab

    marker = sys.argv[1]
    atexit.register(lambda: open(marker, "a").write("exit %d\\n" % os.getpid()))

    def zombies():
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                stat = open("/proc/%s/stat" % pid).read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == os.getpid() and fields[0] == "Z":
                found.append(int(pid))
        return found

    config = 'name = "f"\\nservice = "echo"\\nmodel = "fork"\\nlisten = ["127.0.0.1:0"]\\n'
    with netlab.Server(config) as server:
        for i in range(50):
            msg = b"message %d" % i
            assert netlab.tcp_echo(server.address(), msg) == msg
        deadline = time.monotonic() + 5
        while server.stats().open and time.monotonic() < deadline:
            time.sleep(0.05)
        accepted = server.stats().accepted
        server.stop(1.0)
        print("accepted", accepted, "zombies", len(zombies()))
""")


EXIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import netlab

    # The room is the test's (another process's), or this process's own.
    if len(sys.argv) > 1:
        addr, names = sys.argv[1], (sys.argv[2] + "a", sys.argv[2] + "b")
    else:
        room = netlab.Server('name = "c"\\nservice = "chat"\\n'
                             'listen = [{ addr = "127.0.0.1:0", dialect = "line" }]\\n')
        addr, names = room.address(), ("Ayu", "Rafi")
    ayu = netlab.Chat(addr, names[0], "line")
    rafi = netlab.Chat(addr, names[1], "line")

    def reader():
        while True:
            ayu.recv(timeout=5.0)

    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.2)
    print("main thread done")
""")


class ExitTests(unittest.TestCase):
    def test_the_interpreter_exits_cleanly_while_a_daemon_thread_is_in_a_call(self):
        # At exit the handles must not be freed under the reader thread's
        # recv: that corrupted the heap (abort, exit code 134) most runs
        # with a room in another process, and gave the reader EBADF with
        # the room in the same process.
        import tempfile
        with tempfile.TemporaryDirectory() as tmp, netlab.Server(CHAT) as room:
            script = os.path.join(tmp, "exit_while_receiving.py")
            with open(script, "w") as f:
                f.write(EXIT_SCRIPT)
            for run in range(10):
                args = [room.address(), "run%d" % run] if run % 2 == 0 else []
                out = subprocess.run([sys.executable, script] + args, capture_output=True,
                                     text=True, timeout=30)
                self.assertEqual((run, out.returncode), (run, 0), out.stdout + out.stderr)
                self.assertIn("main thread done", out.stdout)
                self.assertEqual(out.stderr, "")

    def test_the_finalizer_does_not_run_at_exit(self):
        with netlab.Decoder("line") as dec:
            self.assertFalse(dec._finalizer.atexit)


class ForkModelTests(unittest.TestCase):
    def test_fork_model_in_a_python_process(self):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            marker = os.path.join(tmp, "atexit")
            script = os.path.join(tmp, "fork_server.py")
            with open(script, "w") as f:
                f.write(FORK_SCRIPT)
            out = subprocess.run([sys.executable, script, marker], capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("accepted 50 zombies 0", out.stdout)
            with open(marker) as f:
                exits = f.read().splitlines()
            # Only the Python process itself ran its exit handlers: none of
            # the 50 children did.
            self.assertEqual(len(exits), 1, exits)


if __name__ == "__main__":
    unittest.main()
