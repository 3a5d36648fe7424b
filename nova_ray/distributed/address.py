"""A cluster's address checked before Ray is asked to join it: `ray.init` waits for ever on a head
that does not answer, holding the run's job locks."""

from __future__ import annotations

import os
import socket
import sys

from ..config import ConfigError, address_problem

CONNECT_TIMEOUT_S = 15.0  # a cluster's GCS port that does not answer: ray.init would wait for ever


class AddressError(ConfigError):
    """A Ray address that is not one (--address, [ray] address or RAY_ADDRESS)."""


class HeadUnreachable(ConnectionError):
    """A cluster's GCS port that accepts no TCP connection (so no token was ever asked for)."""


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S, named: str = "") -> None:
    """Fail fast on a cluster address that cannot work: an HTTP address (the dashboard's, which
    `ray job submit` takes) or a malformed one is an AddressError, a HOST:PORT that accepts no TCP
    connection within `timeout` a HeadUnreachable (a ConnectionError). `ray.init` retried an
    unreachable head without a time limit while the run held its job lock, so every later night's
    run was refused.
    "auto" and ray:// addresses are left to Ray. `named`: where the address came from, when the
    user did not give it (RAY_ADDRESS), for the message."""
    if address == "auto" or address.startswith("ray://"):
        return
    if (why := address_problem(address)) is not None:
        raise AddressError(f"{named + ': ' if named else ''}Ray address {address!r}: {why}")
    host, _, port = address.rpartition(":")
    try:  # an IPv6 host in brackets ([fd00::5]:6379, as Ray writes it): the socket takes it bare
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
                return  # a TLS head answers a TLS handshake only: left to Ray
            answer = _http2_answer(conn, timeout)
    except OSError as exc:
        raise HeadUnreachable(f"cannot connect to {host}:{port} within {timeout:.0f} s: "
                              f"{exc.strerror or exc}") from None
    if answer is None:  # a port that takes connections and says nothing (or something else)
        raise HeadUnreachable(f"{host}:{port} accepts connections but is not a Ray head's GCS port (no "
                              f"gRPC answer within {timeout:.0f} s; a head listens on 6379 unless "
                              "`ray start --head --port` said otherwise)")


def reachable_cluster(address: str | None) -> None:
    """`check_address` for the cluster a `RayBackend(address)` would join (`address`, else
    RAY_ADDRESS), before a run writes anything; nothing for a local Ray or a session already up."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    ray = sys.modules.get("ray")
    if target is None or (ray is not None and ray.is_initialized()):
        return
    check_address(target, named="" if address else "environment variable RAY_ADDRESS")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + SETTINGS


def _http2_answer(conn: socket.socket, timeout: float) -> bytes | None:
    """The first frame header a gRPC server (Ray's GCS) sends back to an HTTP/2 connection
    preface: its SETTINGS frame. None when the port answers nothing within `timeout` or something
    else (an HTTP/1 server, a database): `ray.init` waited for ever on such a port, holding the
    run's job locks."""
    conn.settimeout(timeout)
    try:
        conn.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return None
            head += chunk
    except OSError:
        return None
    return head if head[3] == 4 else None  # frame type 4: SETTINGS
