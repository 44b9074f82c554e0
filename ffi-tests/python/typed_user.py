"""A small program written as a user of the installed package would, with
type annotations: tests/packaging.rs checks it with `mypy --strict` against
the wheel's annotations (py.typed), then runs it."""

from __future__ import annotations

from typing import List, Optional

import netlab


def echo_twice(server: netlab.Server, payload: bytes) -> List[bytes]:
    replies: List[bytes] = []
    for _ in range(2):
        replies.append(netlab.tcp_echo(server.address(), payload, timeout=2.0))
    return replies


def accepted(server: netlab.Server) -> int:
    stats: netlab.ServerStats = server.stats()
    return stats.accepted


def first_event(chat: netlab.Chat) -> Optional[netlab.ChatEvent]:
    return chat.recv(timeout=2.0)


def frames(payloads: List[str]) -> List[bytes]:
    decoder = netlab.Decoder(netlab.Dialect.HEADER, header_len=10)
    with decoder:
        for payload in payloads:
            decoder.feed(netlab.encode_frame("header", payload, header_len=10))
        return list(decoder)


def udp_roundtrip(payload: bytes) -> bytes:
    config = 'name = "u"\nservice = "echo"\ntransport = "udp"\nlisten = ["127.0.0.1:0"]'
    with netlab.Server(config) as server:
        host, port = server.address().rsplit(":", 1)
        return netlab.udp_echo((host, int(port)), payload, timeout=1.0, retries=2)


def tcp_roundtrips() -> int:
    config = 'name = "echo"\nservice = "echo"\nlisten = ["127.0.0.1:0"]'
    with netlab.Server(config) as server:
        assert echo_twice(server, b"hi") == [b"hi", b"hi"]
        return accepted(server)


def echo_over_tls(addr: str, ca: str) -> bytes:
    """Typed use of the TLS options (checked by mypy; not run here)."""
    options = netlab.TlsOptions(ca=ca, server_name="localhost")
    with options:
        return netlab.tcp_echo(addr, b"secret", tls=options)


def refused() -> netlab.Status | int:
    try:
        netlab.Server("name = 1")
    except netlab.NetlabError as e:
        return e.status
    return netlab.Status.OK


def count_chars(text: str) -> int:
    with netlab.Server('name = "c"\nservice = "count"\nlisten = ["127.0.0.1:0"]') as server:
        return netlab.count(server.address(), text)


def chat_roundtrip() -> str:
    room = netlab.Server('name = "room"\nservice = "chat"\n'
                         'listen = [{ addr = "127.0.0.1:0", dialect = "line" }]')
    try:
        with netlab.Chat(room.address(), "ayu") as ayu, netlab.Chat(room.address(), "budi") as budi:
            event = first_event(ayu)
            while event is not None and event.kind != "joined":
                event = first_event(ayu)
            budi.send("halo")
            message = first_event(ayu)
            while message is not None and message.kind != "message":
                message = first_event(ayu)
            assert message is not None and isinstance(message.text, str)
            return message.text
    finally:
        room.close()


if __name__ == "__main__":
    assert tcp_roundtrips() == 2
    assert udp_roundtrip(b"datagram") == b"datagram"
    assert refused() == netlab.Status.ERR_CONFIG
    assert count_chars("héllo") == 5
    assert frames(["a", "bc"]) == [b"a", b"bc"]
    assert chat_roundtrip() == "halo"
    print("typed user program: ok, netlab", netlab.version())
