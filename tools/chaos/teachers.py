"""Teacher servers on lab nodes, and the DNS name the trainers resolve.

Contract:
  * Every teacher serves the same checkpoint with --deterministic on
    <its node's address>:PORT, so any teacher's answer is bit for bit the
    same and the pool can fail over freely.
  * ``Teacher.start()`` launches the server; ``serving()`` is true once its
    port file is written (it is SERVING). A teacher is "long-lived" for the
    resource checks when one process served from the baseline window to the
    end (it was never killed or replaced).
  * ``Dns`` owns one name (e.g. teachers.chaos) and writes the set of
    addresses it resolves to into every trainer node's hosts file (see
    netlab.Lab.set_hosts); trainers use --teachers=dns:///NAME:PORT and
    re-resolve it every 5 s (client/teacher_pool_client.h).
"""

import os

from procs import Proc

PORT = 7000


class Teacher:
    def __init__(self, name, node, retort, checkpoint, clock, log_dir, work_dir, elastic=False):
        self.name = name
        self.node = node
        self.retort = retort
        self.checkpoint = checkpoint
        self.clock = clock
        self.log_dir = log_dir
        self.work_dir = work_dir
        self.elastic = elastic  # started and stopped by dns_join faults only
        self.proc = None
        self.incarnations = 0
        self.fault = None  # the fault currently on it
        self.samples = []  # (t, pid, stats)
        self.idle_before = None  # (pid, stats) before any client
        self.idle_after = None  # (pid, stats) after every client has gone

    @property
    def address(self):
        return "%s:%d" % (self.node.ip, PORT)

    def start(self):
        self.incarnations += 1
        port_file = os.path.join(self.work_dir, "%s.port" % self.name)
        if os.path.exists(port_file):
            os.unlink(port_file)
        self._port_file = port_file
        argv = [self.retort, "teacher", "serve", "--checkpoint=" + self.checkpoint,
                "--listen=" + self.address, "--port_file=" + port_file, "--deterministic",
                "--threads=1", "--blas_threads=1", "--drain_timeout=5"]
        self.proc = Proc("%s-%d" % (self.name, self.incarnations), argv, self.node, self.clock,
                         self.log_dir)
        return self.proc

    def serving(self):
        return self.proc is not None and self.proc.running() and os.path.exists(self._port_file)

    def running(self):
        return self.proc is not None and self.proc.running()

    def sample(self):
        """Appends a /proc sample; returns (pid, stats) or None."""
        if self.proc is None or not self.proc.running():
            return None
        s = self.proc.stats()
        if s is None:
            return None
        self.samples.append((self.clock.now(), self.proc.pid, s))
        return self.proc.pid, s


class Dns:
    def __init__(self, lab, name, client_nodes):
        self.lab = lab
        self.name = name
        self.client_nodes = client_nodes
        self.members = []  # teachers in DNS, in join order

    def target(self):
        return "dns:///%s:%d" % (self.name, PORT)

    def _write(self):
        addresses = [t.node.ip for t in self.members]
        for node in self.client_nodes:
            self.lab.set_hosts(node, {self.name: addresses} if addresses else {})

    def add(self, teacher):
        if teacher not in self.members:
            self.members.append(teacher)
            self._write()

    def remove(self, teacher):
        if teacher in self.members:
            self.members.remove(teacher)
            self._write()
