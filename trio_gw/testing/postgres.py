"""A private, throwaway PostgreSQL server for tests (standard library only).

Theory of operation
-------------------
Tests of the cluster datastore must be able to stop, kill and restart the
database under a running gateway, and to turn TLS on with a PKI they made, so
they cannot use a shared server.  :class:`PostgresServer` builds one from the
machine's own PostgreSQL binaries:

* **Binaries.**  ``initdb``, ``pg_ctl``, ``postgres`` and ``createdb`` are
  looked up in ``$PG_BIN``, then ``pg_config --bindir``, then ``PATH``, then
  Debian's ``/usr/lib/postgresql/<major>/bin`` (newest major first).  Nothing
  else is assumed about the layout (:func:`find_pg_bin`).
* **User.**  PostgreSQL refuses to run as root.  When this process is root
  (CI is), the server and its tools run as the ``postgres`` OS user
  (``subprocess`` ``user=``/``group=``: a plain setuid before exec, no PAM
  session, no wrapper process) and the temporary directory is handed to it.
* **Cluster.**  ``initdb --auth=trust --username=<user>`` in a fresh
  ``mkdtemp`` directory; the server listens on ``127.0.0.1`` only, on a port
  that was free when first started and kept across restarts (a restarted server
  is the *same* server to its clients), and on a Unix socket in the directory.
  ``pg_hba.conf`` always starts with ``local all all trust`` so the helper can
  administrate over the socket whatever the TCP rules say; the TCP lines are
  the caller's (default: ``host all all 127.0.0.1/32 trust``).
* **TLS.**  With :class:`ServerTls`, the certificate, key and (optional)
  client CA are copied into the data directory (key mode 0600, owned by the
  server's user, as PostgreSQL demands) and ``ssl = on``.  Pair it with hba
  lines such as ``hostssl all all 127.0.0.1/32 cert``.
* **Life cycle.**  :meth:`~PostgresServer.start` runs ``postgres`` as a child
  of this process in a session of its own and waits for ``ready`` in
  ``postmaster.pid`` (what ``pg_ctl start -w`` waits for; ``pg_ctl`` itself
  would daemonize the postmaster, and only its parent can reap it after a
  kill — see ``_spawn_postmaster``); :meth:`~PostgresServer.stop` is
  ``pg_ctl stop -m fast``; :meth:`~PostgresServer.kill` sends SIGKILL to the
  postmaster's process group, so its backends die with it, as in a machine
  crash; ``start`` again reuses the port (crash recovery replays the WAL).  :meth:`~PostgresServer.close` stops the server
  and removes the directory; it runs from ``with``, from an ``atexit`` hook for
  every server still open, and — for a test process that was killed before
  either could run — from :func:`reap_orphans`, called before each new server
  is made: a directory whose owner process is gone has its server killed and
  is removed.

Nothing here imports trio-gw or a database driver, so the spec harness can use
it as well as the tests.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_HBA",
    "PostgresServer",
    "PostgresUnavailable",
    "ServerTls",
    "find_pg_bin",
    "reap_orphans",
]

#: What clients of the default server may do: connect over TCP from loopback, no password.
DEFAULT_HBA: Final = ("host all all 127.0.0.1/32 trust",)
#: Prefix of every temporary directory this module makes (what :func:`reap_orphans` looks for).
DIR_PREFIX: Final = "trio-gw-pg-"
#: Bounds on every wait, in seconds.
START_TIMEOUT: Final = 60
STOP_TIMEOUT: Final = 30
_OWNER_FILE: Final = "owner"
_TOOLS: Final = ("initdb", "pg_ctl", "postgres", "createdb")
_SERVER_USER: Final = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's binaries are missing or the server cannot be made; the message says why."""


@dataclass(frozen=True)
class ServerTls:
    """The server's TLS material, as PEM files.

    Attributes:
        cert_file: the server certificate (chain) the server presents.
        key_file: its private key (unencrypted).
        ca_file: CA certificates that verify client certificates
            (``ssl_ca_file``); needed for ``hostssl ... cert`` lines.
        min_protocol_version: ``ssl_min_protocol_version`` (``TLSv1.2`` ...), or ``None``.
        max_protocol_version: ``ssl_max_protocol_version``, or ``None``.
    """

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None


def find_pg_bin(environ: Mapping[str, str] | None = None, *, debian_root: str = "/usr/lib/postgresql") -> Path:
    """The directory holding this machine's ``initdb``, ``pg_ctl``, ``postgres`` and ``createdb``.

    Args:
        environ: the environment to read ``PG_BIN`` and ``PATH`` from (default ``os.environ``).
        debian_root: where Debian installs each major version's ``bin`` directory.

    Returns:
        A directory containing both programs.

    Raises:
        PostgresUnavailable: none was found; the message lists where it looked.
    """
    env = os.environ if environ is None else environ
    candidates: list[str] = []
    if env.get("PG_BIN"):
        candidates.append(env["PG_BIN"])
    pg_config = shutil.which("pg_config", path=env.get("PATH"))
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(out.stdout.strip())
    on_path = shutil.which("initdb", path=env.get("PATH"))
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates.extend(sorted(glob.glob(f"{debian_root}/*/bin"), key=_major_version, reverse=True))
    for directory in candidates:
        path = Path(directory)
        if all(os.access(path / tool, os.X_OK) for tool in _TOOLS):
            return path
    raise PostgresUnavailable(
        f"PostgreSQL's {', '.join(_TOOLS)} were not found together (looked in $PG_BIN, `pg_config --bindir`, "
        f"PATH and {debian_root}/*/bin); install them: tools/install-system-tools.sh postgresql"
    )


class PostgresServer:
    """One throwaway PostgreSQL server in a temporary directory (see the module's theory of operation).

    Example::

        with PostgresServer() as pg:
            psycopg.connect(pg.conninfo())
            pg.kill()
            pg.start()          # same port, committed data kept

    Args:
        user: the bootstrap superuser, trusted without a password.
        database: a database created at first start.
        hba: ``pg_hba.conf`` lines for TCP clients (after ``local all all trust``).
        tls: turn ``ssl = on`` with this material.
        settings: more ``postgresql.conf`` settings (name → value as written in the file).
        bin_dir: where the PostgreSQL programs are (default: :func:`find_pg_bin`).
    """

    def __init__(
        self,
        *,
        user: str = "test",
        database: str = "test",
        hba: Sequence[str] = DEFAULT_HBA,
        tls: ServerTls | None = None,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", user) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
            raise ValueError("user and database must be lower-case identifiers")
        self.user = user
        self.database = database
        self.host = "127.0.0.1"
        self._hba = tuple(hba)
        self._tls = tls
        self._settings = dict(settings or {})
        self._bin = bin_dir or find_pg_bin()
        self._as_postgres = os.geteuid() == 0
        self._port: int | None = None
        self._dir: Path | None = None
        self._initialised = False
        self._database_created = False
        self._postmaster: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    # -- where ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (fixed at the first start)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def directory(self) -> Path:
        """The temporary directory (data, socket, log)."""
        if self._dir is None:
            raise RuntimeError("the server has not been started")
        return self._dir

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sock"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def conninfo(self, **params: object) -> str:
        """A libpq connection string to this server over TCP; ``params`` add or replace keywords."""
        values: dict[str, object] = {
            "host": self.host, "port": self.port, "dbname": self.database, "user": self.user, "connect_timeout": 5,
        }  # fmt: skip
        values.update(params)
        return " ".join(f"{k}={_quote(str(v))}" for k, v in values.items() if v is not None)

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Start the server (creating the cluster the first time) and wait until it accepts connections.

        Returns:
            ``self``.

        Raises:
            PostgresUnavailable: initdb or the server failed; the message carries the log's tail.
        """
        with self._lock:
            if self._dir is None:
                reap_orphans()
                self._dir = _make_directory(self._as_postgres)
                _LIVE.add(self)
            if not self._initialised:
                self._initdb()
            if self.is_running():
                return self
            attempts = 3 if self._port is None else 1  # a fresh port may be taken between probe and bind
            for attempt in range(attempts):
                if self._port is None or attempt:
                    self._port = _free_port()
                try:
                    self._spawn_postmaster()
                    break
                except PostgresUnavailable:
                    if attempt == attempts - 1 or "could not bind" not in self.log():
                        raise
            if not self._database_created:
                self._createdb()
        return self

    def stop(self) -> None:
        """Stop the server cleanly (``pg_ctl stop -m fast``: clients are disconnected); no-op when stopped."""
        with self._lock:
            if self._dir is not None and self.is_running():
                self._run([str(self._bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                           "-t", str(STOP_TIMEOUT)])  # fmt: skip
            self._reap()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash): clients see their connections drop."""
        with self._lock:
            pid = self.postmaster_pid()
            if pid is not None:
                _kill_server(pid)
            self._reap()

    def close(self) -> None:
        """Stop the server (killing it if it does not stop) and remove its directory; idempotent."""
        with self._lock:
            directory, self._dir = self._dir, None
            _LIVE.discard(self)
            if directory is None:
                return
            pid = _postmaster_pid(directory / "data")
            if pid is not None:
                _kill_server(pid)  # nothing to keep: no clean shutdown needed
            self._reap()
        shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, or ``None``."""
        return None if self._dir is None else _postmaster_pid(self.data_dir)

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    # -- helpers --------------------------------------------------------------------

    def _initdb(self) -> None:
        self._run([
            str(self._bin / "initdb"), "-D", str(self.data_dir), "--auth=trust", f"--username={self.user}",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        ])  # fmt: skip
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _conf_quote(str(self.socket_dir)),
            "fsync": "off",  # a throwaway server: crash safety of the OS is not under test, the WAL is
            "max_connections": "50",
            "shared_buffers": "16MB",
        }
        if self._tls is not None:
            conf.update(self._install_tls(self._tls))
        conf.update(self._settings)
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write("\n# trio_gw.testing.postgres\n")
            f.writelines(f"{name} = {value}\n" for name, value in conf.items())
        (self.data_dir / "pg_hba.conf").write_text("local all all trust\n" + "".join(f"{line}\n" for line in self._hba))
        self.socket_dir.mkdir(mode=0o700)
        if self._as_postgres:
            shutil.chown(self.socket_dir, _SERVER_USER, _SERVER_USER)
        self._initialised = True

    def _install_tls(self, tls: ServerTls) -> dict[str, str]:
        conf = {"ssl": "on"}
        files = {"ssl_cert_file": ("server.crt", tls.cert_file), "ssl_key_file": ("server.key", tls.key_file)}
        if tls.ca_file is not None:
            files["ssl_ca_file"] = ("client-ca.crt", tls.ca_file)
        for setting, (name, source) in files.items():
            target = self.data_dir / name
            target.write_bytes(Path(source).read_bytes())
            target.chmod(0o600)
            if self._as_postgres:
                shutil.chown(target, _SERVER_USER, _SERVER_USER)
            conf[setting] = _conf_quote(name)
        if tls.min_protocol_version:
            conf["ssl_min_protocol_version"] = _conf_quote(tls.min_protocol_version)
        if tls.max_protocol_version:
            conf["ssl_max_protocol_version"] = _conf_quote(tls.max_protocol_version)
        return conf

    def _createdb(self) -> None:
        createdb = self._bin / "createdb"
        if self.database != "postgres":
            self._run([str(createdb), "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user, self.database])
        self._database_created = True

    def _spawn_postmaster(self) -> None:
        """Run ``postgres`` as this process's child, in a session of its own, and wait until it is ready.

        Being the parent (rather than letting ``pg_ctl start`` daemonize it) lets
        :meth:`kill` reap the killed postmaster at once: PostgreSQL takes a
        zombie postmaster for a live one and refuses to start again until
        whoever is the parent reaps it, which some container inits never do.
        """
        as_postgres = self._as_postgres
        with self.log_file.open("ab") as log:
            self._postmaster = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=_server_env(),
                start_new_session=True, user=_SERVER_USER if as_postgres else None,
                group=_SERVER_USER if as_postgres else None, extra_groups=[] if as_postgres else None,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._postmaster.poll() is not None:
                break
            if _pid_file_status(self.data_dir, self._postmaster.pid) == "ready":
                return
            time.sleep(0.02)
        self._reap(kill=True)
        tail = "\n".join(self.log().splitlines()[-15:])
        raise PostgresUnavailable(f"the PostgreSQL server did not become ready\n--- server log ---\n{tail}")

    def _reap(self, *, kill: bool = False) -> None:
        """Wait for the postmaster child once it has exited (killing it first if asked)."""
        child, self._postmaster = self._postmaster, None
        if child is None:
            return
        if kill and child.poll() is None:
            _kill_server(child.pid)
        try:
            child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_server(child.pid)
            child.wait()

    def _run(self, argv: list[str]) -> None:
        as_postgres = self._as_postgres
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=START_TIMEOUT + 10, env=_server_env(), cwd="/",
                stdin=subprocess.DEVNULL, user=_SERVER_USER if as_postgres else None,
                group=_SERVER_USER if as_postgres else None, extra_groups=[] if as_postgres else None,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed to run: {exc}") from exc
        if done.returncode != 0:
            tail = "\n".join(self.log().splitlines()[-15:])
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} {argv[1] if len(argv) > 1 else ''} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\n--- server log ---\n{tail}"
            )


# -- process-wide bookkeeping ------------------------------------------------------

_LIVE: set[PostgresServer] = set()


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        server.close()


def reap_orphans(tmp: str | None = None) -> list[Path]:
    """Kill and remove the servers of test processes that died without closing them.

    A directory made by this module records its owner (pid and process start
    time, so a reused pid is not mistaken for the owner).  When the owner is
    gone, the server is SIGKILLed and the directory removed.

    Args:
        tmp: the temporary directory to scan (default ``tempfile.gettempdir()``).

    Returns:
        The directories removed.
    """
    removed = []
    for directory in Path(tmp or tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = (directory / _OWNER_FILE).read_text().split()
            pid, started = int(owner[0]), owner[1]
        except (OSError, ValueError, IndexError):
            continue  # not ours, or still being made
        if _process_start(pid) == started:
            continue
        postmaster = _postmaster_pid(directory / "data")
        if postmaster is not None:
            _kill_server(postmaster)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _make_directory(as_postgres: bool) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    (directory / _OWNER_FILE).write_text(f"{os.getpid()} {_process_start(os.getpid())}\n")
    if as_postgres:
        try:
            shutil.chown(directory, _SERVER_USER, _SERVER_USER)
        except (LookupError, OSError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise PostgresUnavailable(
                f"running as root, the server must run as the {_SERVER_USER!r} OS user, which is unusable: {exc}"
            ) from exc
    return directory


def _server_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _pid_file_status(data_dir: Path, pid: int) -> str:
    """The status line of ``postmaster.pid`` (``starting``, ``ready``, ``stopping``) when written by ``pid``.

    A killed postmaster leaves its file behind, ``ready`` included: the pid
    on the first line says whose status it is.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return ""
    return lines[7].strip() if len(lines) > 7 and lines[0].strip() == str(pid) else ""


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ('' when it does not exist)."""
    fields = _stat(pid)
    return fields[19] if fields else ""  # field 22 of /proc/PID/stat


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid`` if that process is a live ``postgres`` (not a reused pid, not a zombie)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "postgres" and _alive(pid) else None


def _kill_server(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGKILL a postmaster and every process it started, and wait until all of them are gone.

    Its process group is not enough: each backend calls ``setsid()`` (PostgreSQL's
    ``InitPostmasterChild``), so a backend survives ``killpg`` of the postmaster's group. It then
    goes on answering its client until it notices the postmaster is dead, which a client that
    writes at once can beat. So the postmaster is stopped first (it forks nothing more), its
    children are found by their parent pid, and all of them are killed.
    """
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGSTOP)
    victims = [pid, *_children(pid)]
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(victim) for victim in victims):
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for entry in glob.glob("/proc/[0-9]*"):
        child = int(entry.rsplit("/", 1)[1])
        fields = _stat(child)
        if fields and int(fields[1]) == pid:  # field 4: the parent's pid
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    fields = _stat(pid)  # a zombie (killed, not reaped yet by its parent) counts as gone
    return bool(fields) and fields[0] != "Z"


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` from field 3 (the state) on, past the command name; ``[]`` once it has exited."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _major_version(path: str) -> int:
    match = re.search(r"/(\d+)/bin$", path)
    return int(match.group(1)) if match else 0


def _quote(value: str) -> str:
    """A libpq conninfo value, quoted when it needs to be."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def iter_live() -> Iterator[PostgresServer]:
    """The servers of this process not closed yet (for diagnostics)."""
    return iter(list(_LIVE))
