"""A faulty network: a TCP proxy in front of the database that cuts, stalls or swallows connections."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time


class FaultyProxy:
    """A TCP proxy in front of the database that, while armed, gives some connections a fault:
    cut (both ends reset) after N bytes in one direction, a stall of some seconds, or a black hole
    (nothing forwarded any more)."""

    def __init__(self, upstream_port: int, rng: random.Random, blackholes: bool = False) -> None:
        self.upstream_port = upstream_port
        self.rng = rng
        self.blackholes = blackholes
        self.armed = False
        self.budget = 0
        self.faults = 0
        self._lock = threading.Lock()
        self._closing = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        #: Bytes forwarded so far, per direction; faults strike at up to ``reach`` bytes.
        self.traffic = {"up": 0, "down": 0}
        self.reach = {"up": 6000, "down": 6000}
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def arm(self, budget: int) -> None:
        with self._lock:
            self.armed, self.budget = True, budget

    def disarm(self) -> None:
        with self._lock:
            self.armed = False
            socks, self._socks = self._socks, []
        for s in socks:  # the faulty connections of before must not linger
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closing = True
        self.disarm()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _fate(self) -> tuple[str, ...]:
        with self._lock:
            if not self.armed or self.budget <= 0 or self.rng.random() < 0.35:
                return ("pass",)
            self.budget -= 1
            self.faults += 1
            kinds = ["cut", "cut", "cut", "stall"] + (["blackhole"] if self.blackholes else [])
            kind = self.rng.choice(kinds)
            direction = self.rng.choice(("up", "down"))
            after = self.rng.randint(0, self.reach[direction])
            return (kind, direction, str(after), f"{self.rng.uniform(0.2, 3.0):.2f}")

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            fate = self._fate()
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, fate, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, fate, "down"), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, fate: tuple[str, ...], direction: str) -> None:
        sent = 0
        faulty = fate[0] != "pass" and fate[1] == direction
        after = int(fate[2]) if faulty else -1
        stalled = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if faulty and sent + len(data) > after:
                    head = data[: max(0, after - sent)]
                    if fate[0] == "cut":
                        if head:
                            dst.sendall(head)
                        self._reset(src, dst)
                        return
                    if fate[0] == "blackhole":
                        if head:
                            dst.sendall(head)
                        while src.recv(65536):
                            pass
                        return
                    if fate[0] == "stall" and not stalled:
                        stalled = True
                        time.sleep(float(fate[3]))
                dst.sendall(data)
                sent += len(data)
                self.traffic[direction] += len(data)
        except OSError:
            self._reset(src, dst)
