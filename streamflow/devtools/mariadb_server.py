"""A real MariaDB server for development, tests and benchmarks.

The server is Debian's ``mariadb-server`` (``apt-get install mariadb-server``; ``dev.sh``
installs it when missing). :class:`MariaDbServer` initialises a data directory of its own
with ``mariadb-install-db``, starts ``mariadbd`` on a free 127.0.0.1 port with
networking for 127.0.0.1 only and a root account without password, waits until it
answers, and stops it again. It never touches a system MariaDB or MySQL.

XA transactions, which the exactly-once MySQL sink needs, work out of the box.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from pathlib import Path

from streamflow.devtools.processes import ServerProcess, die_with_parent, free_port, port_open

__all__ = ["MariaDbServer", "MariaDbServerError", "find_mariadb"]

_SERVER_NAMES = ("mariadbd", "mysqld")
_INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


class MariaDbServerError(RuntimeError):
    """The MariaDB server could not be found, initialised or started."""


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None
        )
        if found:
            return found
    return None


def find_mariadb() -> tuple[str, str]:
    """The paths of the server binary and of the data-directory initialiser."""
    server, install = _which(_SERVER_NAMES), _which(_INSTALL_NAMES)
    if server is None or install is None:
        raise MariaDbServerError(
            "MariaDB is not installed: run `apt-get install mariadb-server` (./dev.sh test "
            "does it for you), or point the tests at a running server with "
            "MYSQL_URL=mysql://user:password@host:port/database"
        )
    return server, install


class MariaDbServer(ServerProcess):
    """One ``mariadbd`` process on 127.0.0.1, user ``root`` without a password.

    ``data_dir`` keeps the databases between :meth:`stop` and :meth:`start` (and the
    port); without it a temporary directory is used and removed on :meth:`stop`.
    """

    def __init__(self, data_dir: Path | None = None, *, port: int | None = None,
                 buffer_pool: str = "256M") -> None:
        super().__init__(data_dir, "streamflow-mariadb-")
        self.port = port or free_port()
        self._buffer_pool = buffer_pool

    @property
    def url(self) -> str:
        """``mysql://root@127.0.0.1:PORT/`` (no database: create one per use)."""
        return f"mysql://root@127.0.0.1:{self.port}/"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "error.log"

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the data directory if it is new, start the server and return
        :attr:`url` once it answers a query."""
        if self._process is not None:
            raise MariaDbServerError("the MariaDB server is already running")
        server, install = find_mariadb()
        user = getpass.getuser()  # mariadbd refuses to run as root unless told to
        databases = self.data_dir / "db"
        if not (databases / "mysql").is_dir():
            databases.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [install, "--no-defaults", f"--datadir={databases}", f"--user={user}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise MariaDbServerError(f"mariadb-install-db failed ({done.returncode}):\n"
                                         f"{done.stdout}{done.stderr}")
        console = open(self.data_dir / "console.log", "ab")
        with console:
            self._process = subprocess.Popen(
                [server, "--no-defaults", f"--datadir={databases}", f"--user={user}",
                 f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                 f"--socket={self.data_dir / 'mariadb.sock'}",
                 f"--pid-file={self.data_dir / 'mariadb.pid'}", f"--log-error={self.log_file}",
                 f"--innodb-buffer-pool-size={self._buffer_pool}",
                 "--max-connections=500", "--character-set-server=utf8mb4"],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_until_ready(self, timeout: float) -> None:
        import pymysql

        deadline = time.monotonic() + timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                raise MariaDbServerError(f"mariadbd exited at start-up; see {self.log_file}")
            if port_open(self.port):
                try:
                    pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                                    connect_timeout=5).close()
                    return
                except pymysql.MySQLError:
                    pass  # still starting (e.g. InnoDB recovery)
            if time.monotonic() > deadline:
                raise MariaDbServerError(f"mariadbd did not answer within {timeout:.0f} s; "
                                         f"see {self.log_file}")
            time.sleep(0.1)
