"""SSHLauncher: nodes on other machines, started through the system's OpenSSH client.

Why the ``ssh`` program and not an SSH library: the user's keys, agent, known
hosts and every ``~/.ssh/config`` setting (jump hosts, multiplexing, aliases)
work unchanged, and nothing needs installing.

Each node is one session, ``ssh -o BatchMode=yes [-p port] [options] host --
python -u -c '<agent>'``, and the session *is* the node's lifetime:

* the bootstrap (with the cluster key) is written on ssh's stdin and travels
  inside the encrypted channel, never in argv or the environment, where
  ``ps`` on either machine would show it;
* the ready line comes back on ssh's stdout; ssh's stderr (its own errors,
  then the node's log) goes to the node's local log file;
* when the controller ends, even by SIGKILL, the ssh client reads end of file
  on its stdin and forwards it, the node reads end of file and exits, and the
  session closes. A lost connection ends the session the same way.

A node's ``pid`` is its pid on its host (from the ready line); signals (kill,
terminate, pause, resume) travel as ``ssh host kill -s SIG pid``.
"""
from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from disttest.clusters.launcher import AGENT_CODE, Process, ReadyLines, spawn_error, write_bootstrap
from disttest.errors import ClusterStartError, DisttestError
from disttest.hosts import Host, parse_host

# ssh's own exit status when it failed (connection, authentication, host key);
# anything else is the remote command's.
_SSH_FAILED = 255
# Connection attempts and signals are short: bound them so a dead host cannot hang a run.
_SIGNAL_TIMEOUT = 15.0


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name[3:]  # SIGKILL -> KILL, as kill -s takes it


def _stop_and_wait_script(pid: int) -> str:
    # SIGSTOP takes effect asynchronously: return once every thread of the
    # node is stopped (where /proc shows it), so a call made right after
    # pause() is not answered. Without /proc there is nothing to wait on.
    return (f"kill -s STOP {pid} || exit 1; n=0; while [ $n -lt 400 ]; do r=0; "
            f"for f in /proc/{pid}/task/*/stat; do [ -r \"$f\" ] || exit 0; "
            "s=$(sed 's/.*) //' \"$f\" | cut -c1); case $s in T|t) ;; *) r=1;; esac; done; "
            "[ $r = 0 ] && exit 0; n=$((n+1)); sleep 0.005; done")


class SSHProcess(Process):
    """One node running on a host, seen through its ssh client process."""

    remote = True  # pid is on another machine: local process tools must not use it
    pid = None     # the node's pid on its host, from the ready line

    def __init__(self, launcher: "SSHLauncher", host: Host, popen: subprocess.Popen,
                 log_path: Path, log_offset: int) -> None:
        super().__init__(popen, log_path)
        self.launcher = launcher
        self.host = host
        self.log_offset = log_offset  # where this process's part of the log starts
        self._stopped = False         # SIGSTOP sent and no SIGCONT since
        self._sent: int | None = None  # the last fatal signal sent

    @property
    def local_pid(self) -> int:
        """The ssh client's pid, on this machine."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        code = self.popen.poll()
        # A remote command ended by a signal makes ssh exit with 255: when we
        # sent that signal, report it the way a local process would.
        if code == _SSH_FAILED and self._sent is not None:
            return -self._sent
        return code

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def signal(self, signum: int) -> None:
        if self.popen.poll() is not None:
            return
        if self.pid is None:  # not ready yet: ending the session ends the node
            if signum in (signal.SIGKILL, signal.SIGTERM):
                self._sent = signum
                self.popen.kill()
            return
        if signum == signal.SIGCONT and not self._stopped:
            return  # nothing to resume: spare a connection to the host
        if signum == signal.SIGSTOP:
            script = _stop_and_wait_script(self.pid)
        else:
            script = shlex.join(["kill", "-s", _signal_name(signum), str(self.pid)])
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self._sent = signum
        failure = self.launcher.run(self.host, script)
        if failure is None:
            self._stopped = signum == signal.SIGSTOP or (self._stopped and signum != signal.SIGCONT)
            return
        if self.popen.poll() is not None:
            return  # the node ended meanwhile: nothing left to signal
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.popen.kill()  # the host is out of reach: at least end the session
            return
        raise DisttestError(
            f"could not send SIG{_signal_name(signum)} to pid {self.pid} on {self.host.spec}",
            failure, [f"check the host by hand: {self.launcher.by_hand(self.host, 'true')}"],
            kind="ssh-signal")

    def stop(self, timeout: float) -> None:
        """Ask (close stdin), then insist (SIGKILL on the host), then end the session."""
        self.close_stdin()
        if self.wait(timeout) is None:
            if self.pid is not None:
                self._sent = signal.SIGKILL
                self.launcher.run(self.host, f"kill -s CONT {self.pid}; kill -s KILL {self.pid}")
            if self.wait(2.0) is None:
                self.popen.kill()
                self.popen.wait()
        self.close_pipes()


class SSHLauncher(ReadyLines):
    """Starts nodes on ``hosts`` (round-robin by node index) over ssh."""

    simulated = False

    def __init__(self, hosts, options=(), python: str | None = None, ssh: str = "ssh") -> None:
        self.hosts = [parse_host(h) for h in hosts]
        if not self.hosts:
            raise ValueError("SSHLauncher needs at least one host")
        self.options = list(options)
        self.python = python or sys.executable
        self.ssh = ssh
        self.local_pids: set[int] = set()  # every ssh client started, for leak checks
        self._addresses: dict[Host, str] = {}

    # -- placement ----------------------------------------------------------------
    def host_for(self, index: int) -> Host:
        """Node ``index``'s host: round-robin, so a restarted node stays where it was."""
        return self.hosts[index % len(self.hosts)]

    def address(self, index: int) -> str:
        """The address the controller reaches node ``index``'s host at (the node binds it)."""
        host = self.host_for(index)
        if host not in self._addresses:
            self._addresses[host] = self._resolve(host)
        return self._addresses[host]

    def _resolve(self, host: Host) -> str:
        # ``ssh -G`` prints the effective configuration: an alias of ~/.ssh/config
        # resolves to its HostName, as ssh itself would connect.
        name = host.name
        try:
            shown = subprocess.run([self.ssh, "-G", *self._port(host), *self.options, host.target],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=10)
            for line in shown.stdout.splitlines():
                key, _, value = line.partition(" ")
                if key.lower() == "hostname" and value.strip():
                    name = value.strip()
                    break
        except (OSError, subprocess.SubprocessError):
            pass  # an old ssh without -G: the name as written
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ClusterStartError(
                f"cannot resolve the address of SSH host {host.spec}",
                f"the host name {name!r} does not resolve on this machine ({exc}); the "
                "controller connects to each node directly at that address",
                ["check the name in hosts (or HostName in ~/.ssh/config)",
                 "use the host's IP address in hosts"],
                kind="ssh-unreachable", host=host.spec) from None
        return infos[0][4][0]

    # -- commands -------------------------------------------------------------------
    @staticmethod
    def _port(host: Host) -> list[str]:
        return ["-p", str(host.port)] if host.port else []

    def ssh_command(self, host: Host, remote: str, connect_timeout: float | None = None,
                    keepalive: bool = False) -> list[str]:
        """``ssh`` running the shell command ``remote`` on ``host``."""
        # ssh keeps the first value it sees for an option: BatchMode (never ask
        # for a password) comes first; the user's options beat our timeouts.
        command = [self.ssh, "-o", "BatchMode=yes", "-T", *self._port(host), *self.options]
        if connect_timeout is not None:
            command += ["-o", f"ConnectTimeout={max(1, int(connect_timeout))}"]
        if keepalive:  # a host that vanishes ends the session (and so the node) within ~15 s
            command += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        return command + [host.target, "--", remote]

    def agent_command(self) -> str:
        """The shell command a host runs: the agent, as LocalLauncher starts it."""
        # -u: the node's output reaches its log as it happens (no environment
        # travels over ssh to set PYTHONUNBUFFERED); exec: no shell left between.
        return "exec " + shlex.join([self.python, "-u", "-c", AGENT_CODE])

    def run(self, host: Host, remote: str) -> str | None:
        """Run a short shell command on ``host``; None when it worked, else what went wrong."""
        try:
            done = subprocess.run(self.ssh_command(host, remote, 10), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=_SIGNAL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"ssh did not finish within {_SIGNAL_TIMEOUT:g}s"
        except OSError as exc:
            return f"ssh could not be started: {exc}"
        if done.returncode == 0:
            return None
        return f"exit status {done.returncode}: {done.stderr.strip() or '(no output)'}"

    # -- starting ---------------------------------------------------------------------
    def start(self, boots: list[dict], log_paths: list[Path], timeout: float) -> list[SSHProcess]:
        """Start one node per bootstrap on its host; all ready, or none left running."""
        started: list[SSHProcess] = []
        try:
            for boot, log_path in zip(boots, log_paths):
                started.append(self._spawn(boot, log_path, timeout))
            self._wait_ready(started, boots, timeout)
        except BaseException:
            for process in started:  # every session is asked to end first, then each waited on
                process.close_stdin()
                if process.pid is None:
                    process.signal(signal.SIGKILL)
            for process in started:
                process.stop(1.0)
            raise
        return started

    def _spawn(self, boot: dict, log_path: Path, timeout: float) -> SSHProcess:
        host = self.host_for(boot["index"])
        command = self.ssh_command(host, self.agent_command(), timeout, keepalive=True)
        with open(log_path, "ab") as log:
            offset = log.tell()
            try:
                popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, start_new_session=True)
            except FileNotFoundError:
                raise ClusterStartError(
                    f"could not start node {boot['name']} on {host.spec}: the OpenSSH client "
                    f"{self.ssh!r} is not installed",
                    "nodes on other hosts are started with the system's ssh program",
                    ["install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)",
                     'or run the nodes locally: launcher = "local"'],
                    kind="spawn-executable", host=host.spec) from None
            except OSError as exc:
                raise spawn_error(exc, boot["name"]) from None
        self.local_pids.add(popen.pid)
        process = SSHProcess(self, host, popen, log_path, offset)
        write_bootstrap(popen.stdin, boot)  # if ssh already gave up, _wait_ready says why
        return process

    def _ready(self, process: SSHProcess, port: int, pid: int) -> None:
        process.control_port, process.pid = port, pid  # the node's pid on its host

    def _ended(self, process: SSHProcess, boot: dict) -> ClusterStartError:
        if process.wait(5.0) is None:
            process.popen.kill()
            process.popen.wait()
        return self._failed(process, boot)

    # -- diagnoses --------------------------------------------------------------------
    def by_hand(self, host: Host, remote: str) -> str:
        """The command a user types to try what disttest does on ``host``."""
        command = self.ssh_command(host, remote)
        return shlex.join(command[:-1]) + " " + remote

    def _check_by_hand(self, host: Host) -> str:
        return "check by hand: " + self.by_hand(host, shlex.join([self.python, "-c",
                                                                    "import disttest"]))

    def _failed(self, process: SSHProcess, boot: dict) -> ClusterStartError:
        host, code = process.host, process.popen.returncode
        output = _read_from(process.log_path, process.log_offset)
        said = output.strip().splitlines()
        text = "\n".join(said[-30:]) or "(no output)"
        name = boot["name"]
        if code == _SSH_FAILED:
            return self._unreachable(host, name, text)
        if code in (126, 127):
            return ClusterStartError(
                f"node {name} cannot start on {host.spec}: the interpreter {self.python!r} "
                f"{'does not exist' if code == 127 else 'cannot be executed'} there",
                f"the host's shell said: {text}",
                [f"install the same Python at {self.python} on {host.name} (with the project "
                 "and its dependencies at the same paths as here)",
                 'or set remote_python to the interpreter on the hosts, e.g. '
                 'remote_python = "/usr/bin/python3"',
                 self._check_by_hand(host)],
                kind="spawn-executable", host=host.spec, log_tail=text)
        cause = f"the node exited with status {code} before it was ready; it said:\n{text}"
        steps = ["read the node's output above", self._check_by_hand(host)]
        if ("No module named 'disttest'" in output
                or f"No such file or directory: {boot['cwd']!r}" in output):
            steps.insert(0, f"put the project (and the packages it uses) at the same path on "
                            f"{host.name} as here ({boot['cwd']}), or install them for "
                            f"remote_python ({self.python})")
        if "Cannot assign requested address" in output:
            steps.insert(0, f"the node could not listen on {boot['host']}, the address this "
                            f"machine reaches {host.name} at: hosts behind NAT or a tunnel "
                            "cannot run nodes; use an address the host owns")
        return ClusterStartError(f"node {name} exited during start-up on {host.spec}", cause,
                                 steps, kind="node-start-crash", host=host.spec, log_tail=text)

    def _unreachable(self, host: Host, name: str, text: str) -> ClusterStartError:
        lowered = text.lower()
        kind = "ssh-unreachable"
        if "could not resolve hostname" in lowered:
            steps = ["check the host name in hosts (or HostName in ~/.ssh/config)"]
        elif "permission denied" in lowered or "too many authentication failures" in lowered:
            kind = "ssh-auth"
            steps = [f"let this machine log in without a password: ssh-copy-id {host.target}",
                     'or name the key: ssh_options = ["-i", "/path/to/key"]',
                     "disttest runs ssh in batch mode: passwords and passphrase prompts "
                     "cannot be answered (use ssh-agent for a key with a passphrase)"]
        elif ("host key verification failed" in lowered
              or "host identification has changed" in lowered):
            kind = "ssh-auth"
            steps = [f"connect once by hand to accept the host key: ssh {host.target}",
                     'or accept new host keys: ssh_options = ["-o", '
                     '"StrictHostKeyChecking=accept-new"]']
        else:
            port = f"port {host.port}" if host.port else "its port (22, or Port in ~/.ssh/config)"
            steps = [f"check that {host.name} is up and that sshd listens on {port}",
                     "check the host and port in hosts"]
        steps += [self._check_by_hand(host),
                  'or run the nodes on this machine: launcher = "local"']
        return ClusterStartError(f"cannot reach {host.spec} over SSH to start node {name}",
                                 f"ssh failed (exit status 255): {text}", steps,
                                 kind=kind, host=host.spec, log_tail=text)

    def _not_ready(self, process: SSHProcess, boot: dict, timeout: float) -> ClusterStartError:
        text = _read_from(process.log_path, process.log_offset).strip()
        text = "\n".join(text.splitlines()[-30:])
        return ClusterStartError(
            f"node {boot['name']} on {process.host.spec} did not report ready within {timeout:g}s",
            "the connection or the host is slow, or the node hangs while starting"
            + ("; its output ends with:\n" + text if text else " (it printed nothing)"),
            ["raise startup_timeout in the configuration (e.g. startup_timeout = 60)",
             self._check_by_hand(process.host)],
            kind="node-start-timeout", host=process.host.spec, log_tail=text)


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""

