"""A real local OpenSearch 2.19.1 node (k-NN, analysis-common, painless, neural-search) for dev, tests and demos.

``ensure_node()`` downloads and assembles the node once (see ``localnode_download`` / ``localnode_install``), starts
it detached as a non-root user, waits for yellow health and returns where it is; a second call finds the running
node and reuses it. ``stop_node()`` and ``node_status()`` complete the set; ``shopsearch opensearch ...`` wraps them.

If the settings' ``opensearch_url`` (``$OPENSEARCH_URL``) points at a non-local cluster nothing is started: that
cluster is checked and used.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shopsearch.plugin.connection import display_url
from shopsearch.plugin.localnode_download import OPENSEARCH_VERSION, cache_dir, fetch_artifacts, node_artifacts
from shopsearch.plugin.localnode_install import CLUSTER_NAME, heap_options, install_node, is_installed
from shopsearch.plugin.localnode_security import (SECURE_PORT, NodeAccess, access_for, configure_security,
                                                  is_secure_home, security_artifact)
from shopsearch.settings import Settings, child_environment, load_settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 9200
DEFAULT_HEAP = "1g"
SERVICE_USER = "opensearch"
MAIN_CLASS = "org.opensearch.bootstrap.OpenSearch"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_SPAWNED: list[subprocess.Popen] = []  # kept referenced so no ResourceWarning fires while the JVM outlives us


@dataclass(frozen=True)
class NodeInfo:
    """Where a node is. ``pid``/``home``/``log_path`` are None for a remote cluster; ``started`` is False on reuse."""

    url: str
    pid: int | None
    home: Path | None
    log_path: Path | None
    started: bool = False


@dataclass(frozen=True)
class NodeStatus:
    """What ``node_status`` found; ``plugins`` lists modules and plugins together, sorted."""

    running: bool
    url: str
    pid: int | None = None
    version: str | None = None
    health: str | None = None
    plugins: tuple[str, ...] = ()
    security: bool = False  # the security plugin is loaded; ``user``/``ca_certs``: how the node was reached
    user: str | None = None
    ca_certs: Path | None = None


def default_home(settings: Settings, secure: bool = False) -> Path:
    """The settings' ``opensearch_home``, else a folder the non-root service user can reach.

    Root's home is mode 700, so as root the node lives in ``/var/lib/shopsearch``; otherwise in ``cache_dir``.
    The secured node (``secure``) has its own home beside that one, ``<home>-secure``, with its own data.
    """
    if settings.opensearch_home:
        home = settings.opensearch_home.resolve()
    else:
        base = Path("/var/lib/shopsearch") if os.geteuid() == 0 else settings.cache_dir
        home = base / f"opensearch-{OPENSEARCH_VERSION}"
    return home.with_name(home.name + "-secure") if secure else home


def validate_port(port: int) -> int:
    """``port`` if it is an int in 1..65535; raises ValueError otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port={port!r} is not allowed; use an integer from 1 to 65535")
    return port


def validate_heap(heap: str) -> str:
    """``heap`` if it looks like a JVM size (``512m``, ``1g``, at least 256m); raises ValueError otherwise."""
    text = str(heap).strip().lower()
    if len(text) < 2 or text[-1] not in "mg" or not text[:-1].isdigit():
        raise ValueError(f"heap={heap!r} is not allowed; use a size like '512m' or '1g'")
    megabytes = int(text[:-1]) * (1024 if text[-1] == "g" else 1)
    if megabytes < 256:
        raise ValueError(f"heap={heap!r} is too small; OpenSearch with k-NN needs at least '256m'")
    return text


def remote_url(settings: Settings) -> str | None:
    """``opensearch_url``'s first node when it is a non-local host (then nothing is started or stopped here), else
    None."""
    url = settings.opensearch_urls[0]
    if (urlparse(url).hostname or "") not in LOCAL_HOSTS:
        return url.rstrip("/")
    return None


def resolve_port(port: int | None, settings: Settings) -> int:
    """``port``, else the port of a local ``opensearch_url`` (its first node), else 9200."""
    if port is not None:
        return validate_port(port)
    first = settings.opensearch_urls[0]
    if remote_url(settings) is None and urlparse(first).port:
        return int(urlparse(first).port)
    return DEFAULT_PORT


def secure_port(port: int | None, settings: Settings) -> int:
    """The secured node's port: ``port``, else the port of a local https ``opensearch_url``, else 9250."""
    if port is not None or (remote_url(settings) is None and settings.opensearch_urls[0].startswith("https:")):
        return resolve_port(port, settings)
    return SECURE_PORT


def _probe_access(settings: Settings, port: int, home: Path | None = None) -> NodeAccess | None:
    """What to probe a node with: the secured ``home``'s own admin and CA, the settings' for an https URL, else None."""
    if home is not None and is_secure_home(home):
        return access_for(home, port)
    if settings.opensearch_urls[0].startswith("https:"):
        url = remote_url(settings) or f"https://127.0.0.1:{port}"
        return NodeAccess(url, settings.opensearch_user, settings.opensearch_password, settings.opensearch_ca_certs)
    return None


def _url(port: int, access: NodeAccess | None = None) -> str:
    return access.url if access else f"http://127.0.0.1:{port}"


def _get_json(url: str, timeout: float = 3.0, access: NodeAccess | None = None) -> dict | list | None:
    """GET ``url`` (with ``access``'s credentials and CA) and decode JSON; None when unreachable or not 2xx."""
    import requests

    try:
        resp = requests.get(url, timeout=timeout, **(access.requests_kwargs() if access else {}))
    except requests.RequestException:
        return None
    if not resp.ok:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def _health(url: str, timeout: float = 3.0, access: NodeAccess | None = None) -> str | None:
    """Cluster health colour (green/yellow/red) or None when the cluster does not answer."""
    body = _get_json(f"{url}/_cluster/health", timeout, access)
    return body.get("status") if isinstance(body, dict) else None


def _is_opensearch_pid(pid: int) -> bool:
    """True when ``pid`` is a live OpenSearch JVM (not a recycled pid running something else)."""
    import psutil

    try:
        return MAIN_CLASS in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _pid_file(home: Path) -> Path:
    return home / "run" / "opensearch.pid"


def _pid_from_file(home: Path) -> int | None:
    """The pid in the node's pid file if that process is a live OpenSearch JVM."""
    try:
        pid = int(_pid_file(home).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_opensearch_pid(pid) else None


def _pid_on_port(port: int) -> int | None:
    """The pid of the OpenSearch JVM listening on ``port`` (a node started some other way), if visible."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            if _is_opensearch_pid(conn.pid):
                return conn.pid
    return None


def _port_taken(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_path(home: Path, cluster: str = CLUSTER_NAME) -> Path:
    return home / "logs" / f"{cluster}.log"


def _tail(home: Path, lines: int = 30, since: float = 0.0, cluster: str = CLUSTER_NAME) -> str:
    """The last lines of the node's stdout capture and log (named for its ``cluster``), skipping files untouched
    since ``since`` (epoch s)."""
    chunks = []
    for path in (home / "logs" / "stdout.log", _log_path(home, cluster)):
        if path.is_file() and path.stat().st_mtime >= since:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(chunks) or f"(no log files under {home / 'logs'})"


@contextmanager
def _install_lock(home: Path) -> Iterator[None]:
    """Serialise install/start for one home across processes so two callers never start two JVMs."""
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _java_home(settings: Settings) -> Path:
    """``opensearch_java_home`` or the JDK behind ``java`` on PATH; raises RuntimeError when there is none."""
    if settings.opensearch_java_home:
        return settings.opensearch_java_home
    java = shutil.which("java")
    if not java:
        raise RuntimeError("no `java` on PATH; install a JDK 11-21 (e.g. apt-get install openjdk-17-jre-headless) "
                           "or set OPENSEARCH_JAVA_HOME")
    return Path(os.path.realpath(java)).parent.parent


def _service_user(home: Path) -> pwd.struct_passwd | None:
    """As root: the ``opensearch`` system user (created if missing) owning ``home``; None when not root.

    Raises:
        RuntimeError: an ancestor of ``home`` is not traversable by other users, so the service user can't reach it.
    """
    if os.geteuid() != 0:
        return None
    for parent in home.parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise RuntimeError(f"{parent} is not traversable by other users, so the '{SERVICE_USER}' user cannot "
                               f"reach {home}; set SHOPSEARCH_OPENSEARCH_HOME to a folder outside it")
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True)
        user = pwd.getpwnam(SERVICE_USER)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(home)], check=True)
    return user


def _wait_healthy(url: str, proc: subprocess.Popen, home: Path, timeout: float,
                  access: NodeAccess | None = None) -> None:
    """Poll health until yellow/green; raises RuntimeError (with log tail) if the JVM dies or time runs out."""
    started_at = time.time() - 1.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _pid_file(home).unlink(missing_ok=True)
            raise RuntimeError(f"OpenSearch exited with code {proc.returncode} while starting.\n"
                               f"{_tail(home, since=started_at)}")
        if _health(url, timeout=2.0, access=access) in ("yellow", "green"):
            return
        time.sleep(1.0)
    proc.terminate()
    _pid_file(home).unlink(missing_ok=True)
    raise RuntimeError(f"OpenSearch did not reach yellow health within {timeout:.0f} s (stopped it).\n"
                       f"{_tail(home, since=started_at)}")


def spawn_node(home: Path, node_dir: Path, conf_dir: Path, args: list[str], settings: Settings) -> subprocess.Popen:
    """Launch ``home``'s OpenSearch detached (own session) with the config in ``conf_dir`` and ``-E`` ``args``.

    ``node_dir`` holds the node's ``logs/stdout.log`` and ``run/opensearch.pid`` (written here) and, as root, is
    handed to the service user. The single node's ``node_dir`` is ``home`` itself; a cluster node has its own
    (``localcluster``). Returns the JVM's Popen at once; the caller waits for health.

    Raises:
        RuntimeError: no JDK, or (as root) ``node_dir`` is not reachable by the service user.
    Example:
        >>> spawn_node(home, home, home / "config", ["-Ehttp.port=9200"], load_settings())  # doctest: +SKIP
    """
    java_home = _java_home(settings)
    user = _service_user(node_dir)
    env = child_environment(drop=("JAVA_TOOL_OPTIONS", "JAVA_OPTS"))
    env.update(OPENSEARCH_JAVA_HOME=str(java_home), OPENSEARCH_PATH_CONF=str(conf_dir), HOME=str(node_dir))
    extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    # Truncated per start so a failure report shows this start's output, not an older one's.
    with (node_dir / "logs" / "stdout.log").open("wb") as out:
        # bin/opensearch execs java, so this pid is the JVM's; a new session keeps it alive after the CLI exits.
        proc = subprocess.Popen([str(home / "bin" / "opensearch"), *args], cwd=home, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **extra)
    _SPAWNED.append(proc)
    _pid_file(node_dir).write_text(f"{proc.pid}\n")
    log.info("starting OpenSearch %s from %s (pid %d, config %s, user %s)", OPENSEARCH_VERSION, home, proc.pid,
             conf_dir, user.pw_name if user else pwd.getpwuid(os.geteuid()).pw_name)
    return proc


def forget_spawned(pid: int) -> None:
    """Reap ``pid`` if this process started it (records its exit, so no ResourceWarning fires later)."""
    for spawned in [p for p in _SPAWNED if p.pid == pid]:
        spawned.poll()
        _SPAWNED.remove(spawned)


def _start(home: Path, port: int, heap: str, timeout: float, settings: Settings,
           access: NodeAccess | None = None) -> NodeInfo:
    """Launch the JVM detached (own session), write the pid file and wait for health."""
    (home / "config" / "jvm.options.d" / "shopsearch-heap.options").write_text(heap_options(heap))
    t0 = time.monotonic()
    proc = spawn_node(home, home, home / "config", [f"-Ehttp.port={port}"], settings)
    url = _url(port, access)
    log.info("OpenSearch pid %d: %s, heap %s", proc.pid, url, heap)
    _wait_healthy(url, proc, home, timeout, access)
    log.info("OpenSearch healthy at %s after %.1f s", url, time.monotonic() - t0)
    return NodeInfo(url, proc.pid, home, _log_path(home), started=True)


def _reuse(url: str, home: Path, port: int, access: NodeAccess | None = None) -> NodeInfo | None:
    """NodeInfo for a healthy OpenSearch already answering on ``port``; raises RuntimeError if it is the wrong one."""
    root = _get_json(url, access=access)
    if root is None:
        return None
    version = (root.get("version") or {}).get("number") if isinstance(root, dict) else None
    if version != OPENSEARCH_VERSION:
        raise RuntimeError(f"port {port} is taken by {'OpenSearch ' + version if version else 'another service'}, "
                           f"not OpenSearch {OPENSEARCH_VERSION}; stop it or pick another --port")
    pid = _pid_from_file(home) or _pid_on_port(port)
    return NodeInfo(url, pid, home, _log_path(home), started=False)


def ensure_node(port: int | None = None, heap: str | None = None, home: Path | None = None,
                timeout: float = 180.0, settings: Settings | None = None, secure: bool = False) -> NodeInfo:
    """Make sure an OpenSearch 2.19.1 node answers, starting a local one only if none is running.

    Args:
        port: HTTP port on 127.0.0.1; None = port of a local ``opensearch_url``, else 9200.
        heap: JVM heap for a newly started node, e.g. ``"1g"`` (default: the settings' ``opensearch_heap``).
        home: install folder; default ``default_home()``.
        timeout: seconds to wait for yellow health.
        settings: the resolved settings (default :func:`shopsearch.settings.load_settings`).
        secure: the secured node instead (security plugin, HTTPS, basic auth; ``localnode_security``): its own
            home ``default_home(settings, secure=True)`` and port (default 9250); never a remote cluster.
    Returns:
        NodeInfo; ``started`` tells whether this call launched the JVM. For a remote ``opensearch_url`` only
        ``url`` is set.
    Raises:
        ValueError: bad ``port``/``heap``.
        RuntimeError: download/sha1 failure, port taken by something else, or the node failed to become healthy
            (the message carries the last log lines).
    Example:
        >>> node = ensure_node()  # doctest: +SKIP
        >>> node.url  # doctest: +SKIP
        'http://127.0.0.1:9200'
    """
    settings = settings or load_settings()
    heap = validate_heap(heap or settings.opensearch_heap)
    remote = None if secure else remote_url(settings)
    if remote:
        status = _health(remote, timeout=10.0, access=_probe_access(settings, 0))
        if status not in ("yellow", "green"):
            raise RuntimeError(f"OPENSEARCH_URL={remote} is not healthy (health: {status or 'unreachable'})")
        log.info("using OpenSearch at OPENSEARCH_URL=%s (health %s); not starting a local node", remote, status)
        return NodeInfo(remote, None, None, None, started=False)
    port = secure_port(port, settings) if secure else resolve_port(port, settings)
    home = (home or default_home(settings, secure)).resolve()
    access = None
    with _install_lock(home):
        if secure:  # installed and configured first: probing the node needs its CA and admin password
            if not is_installed(home):
                artifacts = [*node_artifacts(), security_artifact()]
                install_node(fetch_artifacts(artifacts, cache_dir(settings.cache_dir)), home)
            access = configure_security(home, port, settings)
        url = _url(port, access)
        pid = _pid_from_file(home)
        if pid is not None and _get_json(url, access=access) is None:
            # Our JVM is alive but not answering yet (another caller is starting it): wait, don't start a second.
            deadline = time.monotonic() + timeout
            while (_health(url, access=access) not in ("yellow", "green") and time.monotonic() < deadline
                   and _is_opensearch_pid(pid)):
                time.sleep(1.0)
        found = _reuse(url, home, port, access)
        if found is not None:
            if _health(url, access=access) not in ("yellow", "green"):
                raise RuntimeError(f"OpenSearch at {url} answers but is not healthy.\n{_tail(home)}")
            log.info("reusing OpenSearch at %s (pid %s)", url, found.pid)
            return found
        if pid is not None:
            raise RuntimeError(f"OpenSearch pid {pid} from {_pid_file(home)} is running but does not answer on {url}; "
                               f"stop it with `shopsearch opensearch stop` first")
        if _port_taken(port):
            raise RuntimeError(f"port {port} on 127.0.0.1 is taken by a service that is not OpenSearch; "
                               f"stop it or pick another --port")
        if not is_installed(home):
            install_node(fetch_artifacts(node_artifacts(), cache_dir(settings.cache_dir)), home)
        return _start(home, port, heap, timeout, settings, access)


def stop_node(port: int | None = None, home: Path | None = None, timeout: float = 60.0,
              settings: Settings | None = None, secure: bool = False) -> int | None:
    """Stop the local node: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

    Args:
        port: used to find a node without a pid file; default as in ``ensure_node``.
        home: install folder; default ``default_home()``.
        timeout: seconds to wait after SIGTERM.
        secure: stop the secured node (its home and port, as in ``ensure_node``).
    Returns:
        The pid that was stopped, or None when no local node was running (or ``opensearch_url`` is remote).
    Example:
        >>> stop_node()  # doctest: +SKIP
        12345
    """
    import psutil

    settings = settings or load_settings()
    if remote_url(settings) and not secure:
        log.info("OPENSEARCH_URL=%s is remote; not stopping anything", remote_url(settings))
        return None
    port = secure_port(port, settings) if secure else resolve_port(port, settings)
    home = (home or default_home(settings, secure)).resolve()
    pid = _pid_from_file(home) or _pid_on_port(port)
    if pid is None:
        _pid_file(home).unlink(missing_ok=True)
        return None
    proc = psutil.Process(pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        log.warning("OpenSearch pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
        proc.kill()
        proc.wait(10)
    _pid_file(home).unlink(missing_ok=True)
    forget_spawned(pid)
    log.info("stopped OpenSearch pid %d", pid)
    return pid


def node_status(port: int | None = None, home: Path | None = None,
                settings: Settings | None = None, secure: bool = False) -> NodeStatus:
    """Health, version, plugins and security of the node (remote ``opensearch_url`` or local), or ``running=False``.

    ``secure`` (or a local https ``opensearch_url``) asks the secured node, with its own admin and CA.

    Example:
        >>> node_status().running  # doctest: +SKIP
        True
    """
    settings = settings or load_settings()
    remote = None if secure else remote_url(settings)
    secure = secure or (not remote and settings.opensearch_urls[0].startswith("https:"))
    port = secure_port(port, settings) if secure else resolve_port(port, settings)
    local_home = (home or default_home(settings, secure)).resolve()
    access = _probe_access(settings, port, None if remote else local_home)
    url = remote or _url(port, access)
    root = _get_json(url, access=access)
    if not isinstance(root, dict) or "version" not in root:
        return NodeStatus(running=False, url=url)
    nodes = _get_json(f"{url}/_nodes/plugins", access=access)
    names: set[str] = set()
    for node in (nodes or {}).get("nodes", {}).values():
        names.update(p["name"] for p in node.get("modules", []) + node.get("plugins", []))
    pid = None if remote else _pid_from_file(local_home) or _pid_on_port(port)
    return NodeStatus(running=True, url=display_url(url), pid=pid, version=root["version"].get("number"),
                      health=_health(url, access=access), plugins=tuple(sorted(names)),
                      security="opensearch-security" in names, user=access.user if access else None,
                      ca_certs=access.ca_certs if access else None)
