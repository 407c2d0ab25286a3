"""A throwaway PostgreSQL server on 127.0.0.1 for the tests: started once per test session (per xdist
worker) from the installed binaries, run as an unprivileged user when the tests run as root."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "neurotrain"  # the database superuser initdb creates (trust auth, no password)
DATABASE = "neurotrain"
OS_USER = "neurotrain-pg"  # PostgreSQL refuses to run as root: the server runs as this system user then
PG_LIB = Path("/usr/lib/postgresql")  # Debian keeps the binaries here, off PATH
PROGRAMS = ("initdb", "pg_ctl", "postgres")
SETTINGS = {  # fast and disposable: nothing needs to survive a crash
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}
HBA = (  # trust, and only for the local socket and 127.0.0.1
    "local all all trust\nhost all all 127.0.0.1/32 trust\n"
    "local replication all trust\nhost replication all 127.0.0.1/32 trust\n"
)


def pg_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: the one initdb on PATH resolves to, else the newest
    /usr/lib/postgresql/<version>/bin; None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    candidates = [Path(os.path.realpath(found)).parent] if found else []

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)

    candidates += sorted(PG_LIB.glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PROGRAMS):
            return folder
    return None


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of an unprivileged user to run the server as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        if shutil.which("useradd"):  # a concurrent xdist worker may create it first: look again after
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
                capture_output=True,
                timeout=30,
            )
        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(folder: Path) -> bool:
    """Whether another user can walk down to ``folder`` (every folder on the way is world-searchable)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (folder, *folder.parents))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return " | ".join(line.strip() for line in text[-lines:]) or "empty server log"


class PostgresServer:
    """One server: ``start()`` runs initdb and pg_ctl start on a free port, ``stop()`` stops it and deletes
    its folder. Every subprocess has a timeout; a failure raises RuntimeError with a one-line reason."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.owner = _run_as()
        base = Path(tempfile.gettempdir())
        if self.owner and not _reachable_by_others(base):  # the server's user must reach its folder
            base = Path("/tmp")
        self.root = Path(tempfile.mkdtemp(prefix="neurotrain-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.owner:
            os.chown(self.root, *self.owner)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program from the server's folder, as the server's user."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        user = {"user": self.owner[0], "group": self.owner[1], "extra_groups": []} if self.owner else {}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            **user,
        )

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:  # the server log says why when there is one, else the program's output
            said = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            said = _tail(self.log) if self.log.is_file() and self.log.stat().st_size else said
            raise RuntimeError(f"{what} failed (exit {proc.returncode}): {said}")

    def start(self, attempts: int = 3) -> str:
        """Create the cluster and start it; returns the URL of the ``postgres`` database."""
        try:
            init = self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C",
                "--no-sync", "--no-instructions", timeout=120,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RuntimeError("initdb took over 120 s") from None
        self._check(init, "initdb")
        (self.data / "pg_hba.conf").write_text(HBA)
        for attempt in range(attempts):  # the free port may be taken before the server binds it: retry
            self.port = _free_port()
            settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.root}'"}
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("".join(f"\n{key} = {value}" for key, value in settings.items()) + "\n")
            try:
                proc = self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start", timeout=45
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"pg_ctl start took over 45 s; server log: {_tail(self.log)}") from None
            if proc.returncode == 0:
                return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"
            if attempt + 1 == attempts or "could not bind" not in _tail(self.log, 20):
                self._check(proc, "pg_ctl start")
        raise AssertionError("unreachable")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server (fast, then SIGKILL if it lingers) and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop", timeout=30)
            pid = self._postmaster_pid()  # still there after a fast stop: killed, the folder goes anyway
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def new_database(url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``url`` and return its URL (same user, host, port):
    each migration or concurrency test gets its own database on the session's server."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return parsed.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL ``postgresql+psycopg://neurotrain@127.0.0.1:<port>/neurotrain`` of a server this test
    session starts (one per xdist worker) and stops at its end; mark its tests requires("postgresql")."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "PostgreSQL binaries (initdb, pg_ctl) not found (install: apt-get install -y postgresql); "
            'mark the test @pytest.mark.requires("postgresql")',
            pytrace=False,
        )
    server = PostgresServer(bin_dir)
    failure = None
    try:
        url = new_database(server.start(), DATABASE)
    except Exception as exc:
        failure = f"PostgreSQL test server did not start: {exc}".replace("\n", " ")
    if failure:  # outside the except block: one line, no chained traceback
        server.stop()
        pytest.fail(failure, pytrace=False)
    try:
        yield url
    finally:
        server.stop()
