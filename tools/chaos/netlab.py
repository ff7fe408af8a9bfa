"""A switched network of Linux network namespaces on this machine.

Contract:
  * Every node is a network namespace with one interface, eth0, holding its
    own address on a private /24, plugged by a veth pair into a bridge that
    lives in a hub namespace of its own. Nothing is added to the host's
    namespace, so two labs never share an address, a route or an interface.
  * Names carry the owner's pid and a random tag (``rc<pid>x<tag>-<node>``),
    so concurrent runs (CTest -j2) cannot collide and a later run can tell a
    stale lab (owner dead) from a live one: ``sweep_stale()`` removes stale
    namespaces, their /etc/netns files and their tmpfs mounts.
  * ``Lab.close()`` (also on ``with`` exit) kills whatever still runs inside
    the namespaces, deletes them (which deletes the veths and the bridge) and
    the per-node /etc/netns/<ns>/ directories. It is idempotent.
  * Name resolution: ``set_hosts`` writes /etc/netns/<ns>/hosts, which
    ``ip netns exec`` bind-mounts over /etc/hosts for processes it starts;
    rewrites are done in place, one page at a time, so running processes see
    the new file on their next lookup (glibc reads /etc/hosts on every call).

Needs root and iproute2. Not thread-safe: call from one thread.
"""

import os
import random
import re
import signal
import subprocess
import time

NS_PREFIX = "rc"
NETNS_ETC = "/etc/netns"
HOSTS_FILE_BYTES = 4096  # hosts files are always exactly one page
_STALE_NS = re.compile(r"^%s(\d+)x[0-9a-f]+-" % NS_PREFIX)
_STALE_MOUNT = re.compile(r"^chaos-%s(\d+)x[0-9a-f]+$" % NS_PREFIX)


def run(argv, check=True):
    """Runs a command quietly; raises RuntimeError with its output on failure."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stdout.strip()))
    return p


def available():
    """Empty string when labs can be built here, else why not."""
    if os.geteuid() != 0:
        return "not root (network namespaces and mounts need root)"
    if run(["ip", "-V"], check=False).returncode != 0:
        return "iproute2 (ip) is missing"
    return ""


def _pid_alive(pid):
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_ns_processes(ns):
    pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def sweep_stale():
    """Removes namespaces, /etc/netns entries and mounts of labs whose owner died.

    Returns the names removed.
    """
    removed = []
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        m = _STALE_NS.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _kill_ns_processes(ns)
            run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    if os.path.isdir(NETNS_ETC):
        for ns in os.listdir(NETNS_ETC):
            m = _STALE_NS.match(ns)
            if m and not _pid_alive(int(m.group(1))):
                _remove_tree(os.path.join(NETNS_ETC, ns))
                removed.append(NETNS_ETC + "/" + ns)
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            m = _STALE_MOUNT.match(fields[0])
            if m and not _pid_alive(int(m.group(1))):
                run(["umount", "-l", fields[1]], check=False)
                removed.append(fields[1])
    return removed


def _remove_tree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


class Node:
    """One namespace on the lab's network."""

    def __init__(self, name, ns, ip, hub_if):
        self.name = name  # short, e.g. "t0", "r1"
        self.ns = ns  # the namespace's name
        self.ip = ip  # its address on eth0
        self.hub_if = hub_if  # its veth end in the hub (the switch port)
        self.link_up = True

    def exec_prefix(self):
        """argv prefix that runs a command inside this node."""
        return ["ip", "netns", "exec", self.ns]


class Lab:
    """A bridge in a hub namespace and nodes plugged into it (see module doc)."""

    def __init__(self, subnet="10.231.0"):
        self.tag = "%s%dx%04x" % (NS_PREFIX, os.getpid(), random.getrandbits(16))
        self.subnet = subnet
        self.hub = self.tag + "-hub"
        self.nodes = {}
        self._namespaces = []
        self._closed = False
        self._add_namespace(self.hub)
        run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.hub, "link", "set", "br0", "up"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def mount_tag(self):
        """The tmpfs source name for mounts this lab owns (swept if stale)."""
        return "chaos-" + self.tag

    def _add_namespace(self, ns):
        run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def add_node(self, name, host_octet):
        """Adds node `name` at <subnet>.<host_octet> (10..99, so every address has
        the same length in hosts files)."""
        if not 10 <= host_octet <= 99:
            raise ValueError("host_octet must be 10..99")
        ns = "%s-%s" % (self.tag, name)
        self._add_namespace(ns)
        os.makedirs(os.path.join(NETNS_ETC, ns), exist_ok=True)
        node = Node(name, ns, "%s.%d" % (self.subnet, host_octet), "v-" + name)
        self.set_hosts(node, {})
        run(["ip", "-n", self.hub, "link", "add", node.hub_if, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.hub, "link", "set", node.hub_if, "master", "br0"])
        run(["ip", "-n", self.hub, "link", "set", node.hub_if, "up"])
        run(["ip", "-n", ns, "addr", "add", node.ip + "/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.nodes[name] = node
        return node

    def set_link(self, node, up):
        """Plugs (up) or unplugs (down) the node's switch port: a partition."""
        run(["ip", "-n", self.hub, "link", "set", node.hub_if, "up" if up else "down"])
        node.link_up = up

    def set_hosts(self, node, names):
        """Writes the node's /etc/hosts: `names` maps a host name to a list of
        addresses (one line each, in order)."""
        lines = ["127.0.0.1 localhost"]
        for name, addresses in sorted(names.items()):
            lines += ["%s %s" % (a, name) for a in addresses]
        text = "\n".join(lines) + "\n"
        if len(text) >= HOSTS_FILE_BYTES:
            raise ValueError("hosts file too long")
        text += "#" * (HOSTS_FILE_BYTES - len(text) - 1) + "\n"
        path = os.path.join(NETNS_ETC, node.ns, "hosts")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, text.encode(), 0)  # one page, no truncation window
        finally:
            os.close(fd)

    def close(self):
        if self._closed:
            return
        self._closed = True
        for ns in reversed(self._namespaces):
            _kill_ns_processes(ns)
        time.sleep(0.1)
        for ns in reversed(self._namespaces):
            run(["ip", "netns", "del", ns], check=False)
            etc = os.path.join(NETNS_ETC, ns)
            if os.path.isdir(etc):
                _remove_tree(etc)
