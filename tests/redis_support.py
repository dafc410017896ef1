"""A real Redis for the fleet tests: the shared one named by $REDIS_URL, or a private one.

Contract tests run against a real server (no fakes: Lua, TIME and streams must be real).
Where the URL comes from, in order:

1. ``$REDIS_URL``;
2. a private ``redis-server`` started on a free loopback port for the test session, when
   the binary is installed;
3. otherwise the tests are skipped, or fail when ``ASYNC_DISPATCH_REQUIRE_REDIS=1`` (CI sets
   it, so fleet tests can never be skipped there unnoticed).

`RedisServer` is also what a test uses to stop and restart a server of its own: it only
ever signals the process it started, by that process's id.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

__all__ = [
    "REQUIRE_ENV",
    "RedisClusterServers",
    "RedisServer",
    "delete_keys",
    "free_port",
    "make_certificates",
    "redis_command",
    "unavailable_reason",
    "unique_name",
]

REQUIRE_ENV = "ASYNC_DISPATCH_REQUIRE_REDIS"
SKIP_REASON = "fleet tests need Redis: set REDIS_URL or install redis-server"


def unavailable_reason() -> str | None:
    """Why no Redis can be had here, or None when one can."""
    if os.environ.get("REDIS_URL") or shutil.which("redis-server"):
        return None
    return SKIP_REASON


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str = "test") -> str:
    """A fleet name no other test (or concurrent test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class _PortTaken(Exception):
    """Another process listens on the port a private redis-server was to use."""


class RedisServer:
    """A private ``redis-server`` on a free loopback port, keeping nothing on disk.

    ``stop()`` kills it (SIGKILL: as abrupt as a crash), ``start()`` starts it again on the
    same port, so a test can watch its code through a Redis restart. `extra_args` are more
    ``redis-server`` options (``["--maxmemory", "2mb"]``); the plain port stays open to
    the default user, for setup and the readiness check.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        self._binary = binary
        self._free_to_move = port is None  # a restart keeps the port, a first start may not
        self.port = port or free_port()
        self._extra_args = list(extra_args)
        self._dir = tempfile.TemporaryDirectory(prefix="async-dispatch-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def directory(self) -> Path:
        """A temporary directory of this server's own, removed by ``close()``."""
        return Path(self._dir.name)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) and wait until it answers on its port.

        With a port of our choosing, a lost race for it (another test process bound it
        between `free_port()` and the start) moves the server to a new free port.
        """
        for _ in range(5):
            try:
                self._start_once(timeout)
                self._free_to_move = False  # clients now hold the URL: restarts keep it
                return
            except _PortTaken:
                if not self._free_to_move:
                    raise RuntimeError(f"port {self.port} belongs to another process") from None
                self.port = free_port()
        raise RuntimeError("no free port for redis-server after five tries")

    def _start_once(self, timeout: float) -> None:
        if self._process is not None:
            return
        log = Path(self._dir.name) / "redis.log"
        args = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", self._dir.name]
        args += ["--logfile", str(log), "--daemonize", "no", *self._extra_args]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if redis_command(self.url, "PING") == "PONG":
                    break
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                if log.exists() and "Address already in use" in log.read_text(errors="replace"):
                    raise _PortTaken
                raise RuntimeError(f"redis-server did not start on port {self.port}: see {log}")
            time.sleep(0.02)
        info = redis_command(self.url, "INFO", "server")
        assert isinstance(info, bytes), info
        if f"process_id:{self._process.pid}\r".encode() not in info:  # another's server answered
            self.stop()
            raise _PortTaken

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RedisClusterServers:
    """A private Redis Cluster: `masters` ``redis-server`` processes with
    ``--cluster-enabled yes`` on free loopback ports, joined with ``redis-cli --cluster
    create``, keeping nothing on disk; stopped by their process ids on ``close()``.

    `move_slot()` reshards one slot to another master while clients keep using it (the
    migration Redis itself does: SETSLOT IMPORTING/MIGRATING, MIGRATE of its keys in
    batches, SETSLOT NODE), with a pause between batches so that commands meet the slot
    half moved (ASK, TRYAGAIN) rather than only before or after.
    """

    def __init__(self, masters: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None or shutil.which("redis-server") is None:
            raise RuntimeError("a cluster needs redis-server and redis-cli")
        self._cli = cli
        self.servers = [
            RedisServer(_cluster_port(), extra_args=self._args()) for _ in range(masters)
        ]

    @staticmethod
    def _args() -> list[str]:
        # nodes.conf goes in the server's own --dir (the temp directory of each).
        return ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]

    @property
    def url(self) -> str:
        """The URL of the first node (a client discovers the others from it)."""
        return f"redis://127.0.0.1:{self.servers[0].port}"

    def start(self, timeout: float = 30.0) -> None:
        for server in self.servers:
            server.start()
        nodes = [f"127.0.0.1:{server.port}" for server in self.servers]
        subprocess.run(
            [self._cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not all(self._state_ok(server) for server in self.servers):
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)

    @staticmethod
    def _state_ok(server: RedisServer) -> bool:
        info = redis_command(server.url.removesuffix("/0"), "CLUSTER", "INFO")
        return isinstance(info, bytes) and b"cluster_state:ok" in info

    def node_id(self, server: RedisServer) -> str:
        reply = redis_command(self._plain(server), "CLUSTER", "MYID")
        assert isinstance(reply, bytes)
        return reply.decode()

    def owner(self, slot: int) -> RedisServer:
        """The master that owns `slot` now."""
        shards = redis_command(self._plain(self.servers[0]), "CLUSTER", "SLOTS")
        assert isinstance(shards, list)
        for first, last, master, *_ in shards:
            if first <= slot <= last:
                return next(s for s in self.servers if s.port == int(master[1]))
        raise LookupError(f"no master owns slot {slot}")

    def slot_of(self, key: str) -> int:
        reply = redis_command(self._plain(self.servers[0]), "CLUSTER", "KEYSLOT", key)
        assert isinstance(reply, int)
        return reply

    def move_slot(
        self, slot: int, target: RedisServer, *, batch: int = 1, pause: float = 0.05
    ) -> int:
        """Migrate `slot` to `target`, `batch` keys at a time; returns how many keys moved."""
        source = self.owner(slot)
        if source is target:
            return 0
        src, dst = self._plain(source), self._plain(target)
        source_id, target_id = self.node_id(source), self.node_id(target)
        redis_command(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        redis_command(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        moved = 0
        while True:
            keys = redis_command(src, "CLUSTER", "GETKEYSINSLOT", str(slot), str(batch))
            assert isinstance(keys, list)
            if not keys:
                break
            names = [key.decode() for key in keys]
            redis_command(
                src, "MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *names
            )
            moved += len(names)
            time.sleep(pause)
        for server in (target, source, *self.servers):
            redis_command(self._plain(server), "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        return moved

    @staticmethod
    def _plain(server: RedisServer) -> str:
        return server.url.removesuffix("/0")

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, and a server and a client certificate it signed, for 127.0.0.1.

    Made with the ``openssl`` command in `directory`; keys are unencrypted. Answers the
    paths by name: ca, server_cert, server_key, client_cert, client_key.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("TLS tests need the openssl command")
    paths = {
        "ca": directory / "ca.pem",
        "ca_key": directory / "ca.key",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
    }

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", paths["ca_key"], "-out", paths["ca"])  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        csr = directory / f"{who}.csr"
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
            "-keyout", paths[f"{who}_key"], "-out", csr)  # fmt: skip
        extra: list[str | Path] = ["-extfile", extensions] if who == "server" else []
        run("x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", paths["ca_key"],
            "-CAcreateserial", "-days", "1", "-out", paths[f"{who}_cert"], *extra)  # fmt: skip
    return paths


def redis_command(url: str, *args: str, timeout: float = 2.0) -> object:
    """Send one command over a fresh connection, synchronously, and return the reply.

    Enough RESP2 for setup and clean-up in fixtures, which run outside any event loop.
    """
    parts = urlsplit(url)
    with socket.create_connection(
        (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
    ) as sock:
        reader = sock.makefile("rb")
        commands: list[tuple[str, ...]] = []
        if parts.password:
            auth = (parts.username, parts.password) if parts.username else (parts.password,)
            commands.append(("AUTH", *auth))
        db = parts.path.strip("/")
        if db:
            commands.append(("SELECT", db))
        commands.append(args)
        reply: object = None
        for command in commands:
            sock.sendall(_encode(command))
            reply = _read(reader)
        return reply


def delete_keys(url: str, name: str) -> int:
    """Delete every key of fleet `name`; returns how many there were."""
    script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
    script += "n = n + redis.call('DEL', k) end return n"
    pattern = "async_dispatch:{" + name + "}:*"
    reply = redis_command(url, "EVAL", script, "0", pattern)
    return reply if isinstance(reply, int) else 0


def _encode(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(reader: BinaryIO) -> object:
    line = reader.readline()
    if not line:
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reader) for _ in range(count)]
    raise RuntimeError(f"unexpected reply from Redis: {line!r}")
