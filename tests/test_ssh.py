"""The SSH launcher: host lists, configuration, and clusters over ssh.

The live tests run twice. Through a stand-in ``ssh`` program
(tests/fixtures/standin_ssh.py, passed as the launcher's ``ssh=``) that runs
the "remote" command on this machine, so they run everywhere and never skip.
And through OpenSSH and a real ``sshd`` on a free loopback port, with a
throwaway host key and client key (root only: sshd must switch users), over
``ssh root@127.0.0.1:<port>``; without sshd or root those are skipped with the
reason. Either way the "host" is this machine, so the nodes' pids are
checked with psutil.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

import psutil

from disttest.clusters.ssh import Host, SSHLauncher, parse_host
from disttest.config import Config, load_config
from disttest.errors import CallTimeoutError, ClusterStartError, ConfigError, NodeCrashedError
from disttest.requirements import Requirement, requirement_of
from disttest.requirements import class_requirement
from tests import support
from tests.fixtures import nodefuncs as nf

SSHD = "/usr/sbin/sshd"


class ParseHostTest(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_host("node1"), Host("node1", None, "node1", None))
        self.assertEqual(parse_host("me@node1"), Host("me@node1", "me", "node1", None))
        self.assertEqual(parse_host("node1:2222"), Host("node1:2222", None, "node1", 2222))
        self.assertEqual(parse_host(" me@10.0.0.5:22 "),
                         Host("me@10.0.0.5:22", "me", "10.0.0.5", 22))
        self.assertEqual(parse_host("[::1]:2222").name, "::1")
        self.assertEqual(parse_host("[::1]:2222").port, 2222)
        self.assertEqual(parse_host("fe80::1").name, "fe80::1")
        self.assertEqual(parse_host("me@node1:2222").target, "me@node1")

    def test_mistakes_say_what_is_wrong(self):
        for spec, words in [("", "empty"), ("node1:", "empty port"), ("@node1", "user"),
                            ("node1:99999", "1 to 65535"), ("node1:ssh", "1 to 65535"),
                            ("-oProxyCommand=x", "ssh option"), ("me@-x", "ssh option"),
                            ("a b", "space"), ("[::1", "IPv6"), ("me@", "no host")]:
            with self.subTest(spec=spec), self.assertRaises(ValueError) as caught:
                parse_host(spec)
            self.assertIn(words, str(caught.exception))


class ConfigKeysTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="disttest-ssh-config-")
        self.addCleanup(tmp.cleanup)
        self.root = tmp.name
        os.mkdir(os.path.join(self.root, ".git"))

    def load(self, toml: str = "", **environ) -> Config:
        if toml:
            Path(self.root, "disttest.toml").write_text(textwrap.dedent(toml))
        return load_config(self.root, environ=environ, ci=False)

    def test_defaults_are_local(self):
        config = self.load()
        self.assertEqual((config.launcher, config.hosts, config.ssh_options, config.remote_python),
                         ("local", (), (), None))

    def test_toml_lists(self):
        config = self.load("""
            launcher = "ssh"
            hosts = ["node1", "me@node2:2222"]
            ssh_options = ["-i", "/keys/ci key", "-o", "StrictHostKeyChecking=no"]
            remote_python = "/opt/py/bin/python3"
            """)
        self.assertEqual(config.hosts, ("node1", "me@node2:2222"))
        self.assertEqual(config.ssh_options,
                         ("-i", "/keys/ci key", "-o", "StrictHostKeyChecking=no"))
        self.assertEqual(config.remote_python, "/opt/py/bin/python3")

    def test_strings_from_the_environment(self):
        config = self.load(DISTTEST_LAUNCHER="ssh", DISTTEST_HOSTS="node1, me@node2:2222,",
                           DISTTEST_SSH_OPTIONS="-i '/keys/ci key' -o BatchMode=yes")
        self.assertEqual(config.hosts, ("node1", "me@node2:2222"))
        self.assertEqual(config.ssh_options, ("-i", "/keys/ci key", "-o", "BatchMode=yes"))
        self.assertEqual(config.sources["hosts"], "environment DISTTEST_HOSTS")

    def test_ssh_launcher_needs_hosts(self):
        with self.assertRaises(ConfigError) as caught:
            self.load(DISTTEST_LAUNCHER="ssh")
        self.assertIn("needs hosts", str(caught.exception))
        self.assertIn("hosts = [", str(caught.exception))

    def test_bad_values_name_the_key_and_the_reason(self):
        for environ, words in [({"DISTTEST_HOSTS": "node1:0"}, "1 to 65535"),
                               ({"DISTTEST_LAUNCHER": "docker"}, "one of local, ssh"),
                               ({"DISTTEST_SSH_OPTIONS": "-n"}, "-n would cut"),
                               ({"DISTTEST_SSH_OPTIONS": "-i 'open"}, "cannot split")]:
            with self.subTest(environ=environ), self.assertRaises(ConfigError) as caught:
                self.load(**environ)
            self.assertIn(next(iter(environ)), str(caught.exception))
            self.assertIn(words, str(caught.exception))


class RequirementTest(unittest.TestCase):
    SSH = Config(launcher="ssh", hosts=("node1", "node2"))

    def test_configured_hosts_apply_to_every_class(self):
        class Plain:
            cluster_size = 2

        self.assertEqual(class_requirement(Plain, Config()).hosts, ())
        requirement = class_requirement(Plain, self.SSH)
        self.assertEqual(requirement.hosts, ("node1", "node2"))
        self.assertIn("on node1,node2", requirement.describe())

    def test_class_hosts_override_and_split_clusters(self):
        class OnThree:
            hosts = ["me@node3:2222"]

        requirement = class_requirement(OnThree, self.SSH)
        self.assertEqual(requirement.hosts, ("me@node3:2222",))
        self.assertEqual(class_requirement(OnThree, Config()).hosts, ("me@node3:2222",))
        self.assertNotEqual(requirement.key, Requirement(3).key)
        self.assertNotEqual(requirement.key, class_requirement(type("X", (), {}), self.SSH).key)

    def test_bad_class_hosts_name_the_class(self):
        class Bad:
            hosts = "node1"  # a string, not a list

        class Worse:
            hosts = ["node1:port"]

        for cls in (Bad, Worse):
            with self.subTest(cls=cls.__name__), self.assertRaises(ConfigError) as caught:
                requirement_of(cls)
            self.assertIn(cls.__qualname__, str(caught.exception))

    def test_hosts_need_the_direct_network(self):
        class Proxied:
            network = "proxy"

        with self.assertRaises(ConfigError) as caught:
            class_requirement(Proxied, self.SSH)
        self.assertIn("Proxied", str(caught.exception))
        self.assertIn("direct", str(caught.exception))

    def test_simulated_nodes_run_here(self):
        requirement = class_requirement(type("X", (), {}), self.SSH).as_simulated()
        self.assertEqual(requirement.hosts, ())


class CommandTest(unittest.TestCase):
    def test_shape_of_the_node_command(self):
        launcher = SSHLauncher(["me@node1:2222", "node2"], ["-i", "/k"], "/opt/py")
        command = launcher.ssh_command(launcher.host_for(0), launcher.agent_command(), 30,
                                       keepalive=True)
        self.assertEqual(command[:7], ["ssh", "-o", "BatchMode=yes", "-T", "-p", "2222", "-i"])
        self.assertEqual(command[-3:-1], ["me@node1", "--"])
        self.assertIn("ConnectTimeout=30", command)
        self.assertTrue(command[-1].startswith("exec /opt/py -u -c "))
        self.assertIn("from disttest.agent import main", command[-1])
        # Round-robin, by node index, so a restarted node goes back to its host.
        self.assertEqual([launcher.host_for(i).spec for i in range(3)],
                         ["me@node1:2222", "node2", "me@node1:2222"])
        self.assertNotIn("-p", launcher.ssh_command(launcher.host_for(1), "true"))


# -- a real sshd ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


class SSHServer:
    """sshd on 127.0.0.1:<free port>, root logins with one throwaway key only."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="disttest-sshd-"))
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self.spec = f"root@127.0.0.1:{self.port}"
        self.client_key = self.dir / "client_key"
        self.options = ("-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "LogLevel=ERROR")

    @staticmethod
    def unavailable() -> str | None:
        if not os.path.exists(SSHD):
            return f"{SSHD} is not installed (Debian: apt-get install openssh-server)"
        if os.geteuid() != 0:
            return "starting a test sshd needs root"
        missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
        return f"the OpenSSH client tools are missing: {', '.join(missing)}" if missing else None

    def start(self) -> None:
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f",
                            str(self.dir / key)], check=True, stdin=subprocess.DEVNULL)
        shutil.copy(self.dir / "client_key.pub", self.dir / "authorized_keys")
        config = self.dir / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {self.dir / 'host_key'}
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            AuthorizedKeysFile {self.dir / 'authorized_keys'}
            StrictModes no
            PidFile {self.dir / 'sshd.pid'}
            UsePAM no
            PrintMotd no
            """))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        with open(self.dir / "sshd.log", "wb") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise unittest.SkipTest("the test sshd did not start: "
                                + (self.dir / "sshd.log").read_text(errors="replace")[-500:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_server: SSHServer | None = None


def server() -> SSHServer:
    """The module's sshd, started on first use; SkipTest with the reason when it cannot be."""
    global _server
    reason = SSHServer.unavailable()
    if reason:
        raise unittest.SkipTest(reason)
    if _server is None:
        candidate = SSHServer()
        candidate.start()
        _server = candidate
    return _server


def tearDownModule():
    global _server
    try:
        support.shutdown_and_check()
    finally:
        if _server is not None:
            _server.stop()
            _server = None
        if _standin_dir is not None:
            shutil.rmtree(_standin_dir, ignore_errors=True)


# -- a stand-in ssh: the same launcher, without an sshd -------------------------------
STANDIN = Path(__file__).resolve().parent / "fixtures" / "standin_ssh.py"
_standin_dir: Path | None = None


def standin_program() -> str:
    """An executable ``ssh`` that runs tests/fixtures/standin_ssh.py with this interpreter."""
    global _standin_dir
    if _standin_dir is None:
        _standin_dir = Path(tempfile.mkdtemp(prefix="disttest-standin-ssh-"))
        program = _standin_dir / "ssh"
        program.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                           f"{shlex.quote(str(STANDIN))} \"$@\"\n")
        program.chmod(0o755)
    return str(_standin_dir / "ssh")


class StandInSSH:
    """Every host is this machine, reached through the stand-in ``ssh`` program."""

    real = False

    def hosts(self) -> tuple:
        return ("root@127.0.0.1", "127.0.0.1")  # two spellings of one host

    def program(self) -> str:
        return standin_program()

    def pool(self, hosts=None, **changes):
        hosts = tuple(hosts or self.hosts()[:1])
        pool = support.make_pool(launcher="ssh", hosts=hosts, **changes)
        # The launcher takes the ssh program to run; the pool uses this one for these hosts.
        pool.launchers[hosts] = SSHLauncher(hosts, (), changes.get("remote_python"),
                                            ssh=self.program())
        return pool

    def controller_setup(self, spec: str) -> str:
        return (f"pool.launchers[({spec!r},)] = SSHLauncher(({spec!r},), (), None, "
                f"ssh={self.program()!r})")


class RealSSHD:
    """A throwaway sshd on loopback (skipped, with the reason, where none can run)."""

    real = True

    def hosts(self) -> tuple:
        sshd = server()
        return (sshd.spec, f"127.0.0.1:{sshd.port}")

    def program(self) -> str:
        return "ssh"

    def pool(self, hosts=None, **changes):
        sshd = server()
        return support.make_pool(launcher="ssh", hosts=tuple(hosts or (sshd.spec,)),
                                 ssh_options=sshd.options, **changes)

    def controller_setup(self, spec: str) -> str:
        return ""


class SSHClusterTests:
    """Three nodes over ssh, placed round-robin on two spellings of the same host."""

    transport = StandInSSH()

    @classmethod
    def setUpClass(cls) -> None:
        cls.hosts = cls.transport.hosts()
        cls.pool = cls.transport.pool(hosts=cls.hosts)
        cls.cluster = cls.pool.acquire(Requirement(3))

    @classmethod
    def tearDownClass(cls) -> None:
        pids = [n.pid for n in cls.cluster.nodes]
        clients = [n.process.local_pid for n in cls.cluster.nodes]
        cls.pool.shutdown()
        leftovers = _wait_gone(pids + clients, 5.0)
        problems = cls.pool.verify_cleanup()
        assert not leftovers, f"still running after shutdown: {leftovers}"
        assert not problems, f"leaks: {problems}"

    def test_nodes_are_processes_of_their_host_behind_an_ssh_client(self):
        for node, host in zip(self.cluster.nodes, self.hosts + self.hosts[:1]):
            self.assertEqual(node.process.host.spec, host)
            self.assertEqual(node.host, "127.0.0.1")
            self.assertEqual(node.call(nf.getpid), node.pid)  # pid is the node's, on its host
            self.assertNotEqual(node.pid, node.process.local_pid)
            # The client was given the agent's command for its host to run.
            client = psutil.Process(node.process.local_pid)
            self.assertEqual(client.cmdline()[-1],
                             self.pool.launchers[self.hosts].agent_command())
            self.assertEqual(psutil.Process(node.pid).cwd(), node.boot["cwd"])

    def test_the_cluster_key_never_travels_in_argv_or_environment(self):
        node = self.cluster.nodes[0]
        key = node.boot["key"]
        client = psutil.Process(node.process.local_pid)
        remote = psutil.Process(node.pid)
        for proc in (client, remote):
            self.assertNotIn(key, " ".join(proc.cmdline()))
            self.assertNotIn(key, " ".join(f"{k}={v}" for k, v in proc.environ().items()))

    def test_calls_and_call_all(self):
        node = self.cluster.nodes[0]
        self.assertEqual(node.call(nf.add, 2, 3), 5)
        self.assertEqual(node.submit(nf.echo, {"a": [1]}).result(10), {"a": [1]})
        self.assertEqual(self.cluster.call_all(nf.getpid), [n.pid for n in self.cluster.nodes])
        self.assertIn("serving on 127.0.0.1", node.logs())

    def test_kill_and_restart_on_the_same_host(self):
        node = self.cluster.nodes[1]
        old_pid, host, ports = node.pid, node.process.host, node.ports
        node.kill()
        self.assertFalse(node.alive)
        self.assertEqual(_wait_gone([old_pid], 3.0), [])
        with self.assertRaises(NodeCrashedError) as caught:
            node.call(nf.getpid)
        self.assertIn("SIGKILL", str(caught.exception))
        node.restart()
        self.assertNotEqual(node.pid, old_pid)
        self.assertEqual((node.process.host, node.ports), (host, ports))
        self.assertEqual(node.call(nf.getpid), node.pid)
        self.assertIn("restarted", node.logs())

    def test_terminate(self):
        node = self.cluster.nodes[2]
        node.terminate()
        self.assertEqual(node.process.returncode, -signal.SIGTERM)
        node.restart()
        self.assertEqual(node.call(nf.add, 1, 1), 2)

    def test_pause_and_resume(self):
        node = self.cluster.nodes[2]
        node.pause()
        try:
            self.assertEqual(psutil.Process(node.pid).status(), psutil.STATUS_STOPPED)
            with self.assertRaises(CallTimeoutError):
                node.ping(timeout=0.5)
        finally:
            node.resume()
        self.assertEqual(node.call(nf.add, 1, 2), 3)


class StandInSSHClusterTest(SSHClusterTests, unittest.TestCase):
    """The cluster tests through the stand-in ssh: they run everywhere."""

    transport = StandInSSH()

    def test_the_stand_in_is_what_ran(self):
        client = psutil.Process(self.cluster.nodes[0].process.local_pid)
        self.assertIn(str(STANDIN), client.cmdline())


class RealSSHClusterTest(SSHClusterTests, unittest.TestCase):
    """The cluster tests through OpenSSH and a real sshd."""

    transport = RealSSHD()

    def test_nodes_are_started_through_sshd_with_no_shell_between(self):
        for node in self.cluster.nodes:
            self.assertEqual(psutil.Process(node.process.local_pid).name(), "ssh")
            ancestors = psutil.Process(node.pid).parents()
            self.assertEqual(ancestors[0].name(), "sshd")  # exec'd: no shell in between
            self.assertNotIn(node.process.local_pid, [p.pid for p in ancestors])


class SSHStartFailureTests:
    transport = StandInSSH()

    def test_unreachable_host_names_the_host_and_the_fix(self):
        with socket.socket() as closed:  # bound, never listening: connections are refused
            closed.bind(("127.0.0.1", 0))
            spec = f"root@127.0.0.1:{closed.getsockname()[1]}"
            pool = self.transport.pool(hosts=(spec,), startup_retries=0)
            try:
                with self.assertRaises(ClusterStartError) as caught:
                    pool.acquire(Requirement(2))
            finally:
                pool.shutdown()
        error = caught.exception
        self.assertEqual(error.host, spec)
        self.assertEqual(error.diagnosis.kind, "ssh-unreachable")
        self.assertIn(spec, error.diagnosis.problem)
        self.assertIn("Connection refused", error.diagnosis.cause)
        self.assertTrue(any(f"check by hand: {self.transport.program()} -o BatchMode=yes" in step
                            for step in error.diagnosis.steps), error.diagnosis.steps)
        self.assertEqual(pool.verify_cleanup(), [])

    def test_missing_interpreter_says_how_to_set_remote_python(self):
        spec = self.transport.hosts()[0]
        pool = self.transport.pool(hosts=(spec,), remote_python="/nonexistent/bin/python3",
                                   startup_retries=0)
        try:
            with self.assertRaises(ClusterStartError) as caught:
                pool.acquire(Requirement(1))
        finally:
            pool.shutdown()
        error = caught.exception
        self.assertEqual(error.diagnosis.kind, "spawn-executable")
        self.assertIn("/nonexistent/bin/python3", error.diagnosis.problem)
        self.assertIn(spec, error.diagnosis.problem)
        self.assertTrue(any("remote_python" in step for step in error.diagnosis.steps))


class StandInSSHStartFailureTest(SSHStartFailureTests, unittest.TestCase):
    transport = StandInSSH()


class RealSSHStartFailureTest(SSHStartFailureTests, unittest.TestCase):
    transport = RealSSHD()


_CONTROLLER = """
import json, sys, time
from disttest.clusters.pool import ClusterPool
from disttest.clusters.ssh import SSHLauncher
from disttest.config import load_config
from disttest.requirements import Requirement

config = load_config({repo!r}).replace(state_dir={state!r}, launcher="ssh",
                                       hosts=({spec!r},), ssh_options={options!r})
pool = ClusterPool(config)
{setup}
cluster = pool.acquire(Requirement(2))
print(json.dumps({{"pids": [n.pid for n in cluster.nodes],
                  "clients": [n.process.local_pid for n in cluster.nodes],
                  "tmpdir": str(cluster._entry.tmpdir)}}), flush=True)
time.sleep(60)
"""


class SSHLifetimeTests:
    transport = StandInSSH()

    def test_nodes_end_when_the_controller_is_killed(self):
        spec = self.transport.hosts()[0]
        options = server().options if self.transport.real else ()
        code = _CONTROLLER.format(repo=support.REPO, state=support.STATE_DIR, spec=spec,
                                  options=options, setup=self.transport.controller_setup(spec))
        controller = subprocess.Popen([sys.executable, "-c", code], cwd=support.REPO,
                                      env=support.python_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.addCleanup(controller.stderr.close)
        self.addCleanup(controller.stdout.close)
        timer = threading.Timer(30, controller.kill)
        timer.start()
        line = controller.stdout.readline()
        timer.cancel()
        if not line:
            controller.kill()
            controller.wait()
            self.fail("the controller did not start its cluster: " + controller.stderr.read())
        started = json.loads(line)
        self.addCleanup(shutil.rmtree, started["tmpdir"], True)
        self.addCleanup(support.remove_dead_locks, controller.pid)
        self.addCleanup(lambda: [psutil.Process(p).kill() for p in started["pids"] if _running(p)])
        self.assertTrue(all(_running(pid) for pid in started["pids"]))

        controller.send_signal(signal.SIGKILL)
        controller.wait()
        killed = time.monotonic()
        self.assertEqual(_wait_gone(started["pids"], 5.0), [], "nodes outlived the controller")
        self.assertEqual(_wait_gone(started["clients"], 5.0), [], "ssh clients outlived it")
        self.assertLess(time.monotonic() - killed, 5.0)


class StandInSSHLifetimeTest(SSHLifetimeTests, unittest.TestCase):
    transport = StandInSSH()


class RealSSHLifetimeTest(SSHLifetimeTests, unittest.TestCase):
    transport = RealSSHD()


if __name__ == "__main__":
    unittest.main()
