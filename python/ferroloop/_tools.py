"""``python -m ferroloop ps PID`` and ``python -m ferroloop pstree PID``: the
client of ``ferroloop.inspector``, printing what Python 3.14's
``python -m asyncio ps/pstree`` prints (a task table; a tree of tasks and
the coroutine frames they await in) from the JSON snapshot the target
process sends. Every failure is one line on stderr and exit status 1.
"""

import json
import os
import socket
import struct
import sys

from . import inspector

_REPLY_LIMIT = 64 << 20  # bytes; a snapshot of a few hundred thousand tasks
_TIMEOUT = 10.0  # seconds for the whole exchange


class ToolError(Exception):
    """A failure to report on one line."""


def _target_pid(text):
    try:
        pid = int(text)
    except ValueError:
        raise ToolError(f"invalid PID: {text!r}") from None
    if pid <= 0:
        raise ToolError(f"invalid PID: {text!r}")
    return pid


def _process_uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise ToolError(f"no process with PID {pid}") from None


def _runs_ferroloop(pid):
    """True/False if the process's mappings say, None if they are unreadable."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return b"_ferroloop" in f.read()
    except OSError:
        return None


def fetch(pid, command):
    """The snapshot of process ``pid`` (a dict), or ToolError."""
    if command not in inspector.COMMANDS:
        raise ToolError(f"unknown command: {command!r}")
    if _process_uid(pid) != os.getuid():
        raise ToolError(f"process {pid} belongs to another user; only its own user can inspect it")
    path = inspector.socket_path(pid)
    if path is None:
        if _runs_ferroloop(pid) is False:
            raise ToolError(f"process {pid} does not run ferroloop")
        raise ToolError(f"process {pid} has no ferroloop inspector (start it with FERROLOOP_INSPECT=1)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_TIMEOUT)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            # A socket file left behind by a process that died with our
            # PID's predecessor, or one closing right now.
            raise ToolError(f"process {pid} has no ferroloop inspector listening") from None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        peer_pid, peer_uid, _ = struct.unpack("3i", creds)
        if peer_uid != os.getuid() or peer_pid != pid:
            raise ToolError(f"the socket {path} is not process {pid}'s inspector")
        sock.sendall(command.encode() + b"\n")
        chunks, size = [], 0
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > _REPLY_LIMIT:
                raise ToolError(f"process {pid} sent more than {_REPLY_LIMIT} bytes")
            chunks.append(chunk)
    except socket.timeout:
        raise ToolError(f"process {pid} did not answer within {_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ToolError(f"cannot talk to process {pid}: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ToolError(f"process {pid} sent a malformed reply") from None
    if isinstance(reply, dict) and "error" in reply:
        raise ToolError(f"process {pid} refused: {reply['error']}")
    if not isinstance(reply, dict) or not isinstance(reply.get("loops"), list):
        raise ToolError(f"process {pid} sent a malformed reply")
    return reply


def _frame_label(frame):
    name, filename, lineno = frame
    return f"{name} {filename}:{lineno}"


def _chain(stack):
    # Innermost first, function names only, as asyncio's ps shows them.
    return " -> ".join(frame[0] for frame in stack)


def task_table(reply):
    """Rows of (tid, task id, task name, coroutine stack, awaiter chain,
    awaiter name, awaiter id): one per task and awaiter."""
    rows = []
    for loop in reply["loops"]:
        tid = loop.get("thread_id") or 0
        for task in loop["tasks"]:
            base = [tid, hex(task["id"]), task["name"], _chain(task["stack"])]
            if not task["awaited_by"]:
                rows.append(base + ["", "", "0x0"])
            for parent in task["awaited_by"]:
                rows.append(base + [_chain(parent["stack"]), parent["name"], hex(parent["id"])])
    return rows


def format_table(reply):
    widths = (10, 20, 20, 50, 50, 15, 15)
    header = ("tid", "task id", "task name", "coroutine stack", "awaiter chain", "awaiter name", "awaiter id")

    def line(cells):
        return " ".join(f"{str(c):<{w}}" for c, w in zip(cells, widths)).rstrip()

    out = [line(header), "-" * (sum(widths) + len(widths) - 1)]
    out.extend(line(row) for row in task_table(reply))
    return "\n".join(out)


class CycleError(ToolError):
    pass


def task_trees(reply):
    """The tasks as trees of lines, one tree per task nobody awaits. Under a
    task hang its coroutine frames, outermost first, each under the one
    that awaits it; the tasks it awaits hang under its innermost frame."""
    tasks = {}
    children = {}
    for loop in reply["loops"]:
        for task in loop["tasks"]:
            tasks[task["id"]] = task
    for task in list(tasks.values()):
        for parent in task["awaited_by"]:
            kids = children.setdefault(parent["id"], [])
            if task["id"] not in kids:
                kids.append(task["id"])
            if parent["id"] not in tasks:
                # An awaiter the snapshot lists only as such (a task of an
                # uninspected loop): drawn from what the entry says of it.
                tasks[parent["id"]] = dict(parent, awaited_by=[])
    _check_acyclic(tasks, children)
    awaited = {kid for kids in children.values() for kid in kids}

    def render(tid, prefix, last, out):
        out.append(f"{prefix}{'└── ' if last else '├── '}(T) {tasks[tid]['name']}")
        prefix += "    " if last else "│   "
        # One stack per task: its frames are a chain, each the only child of
        # the frame awaiting it (the double space is asyncio's layout: an
        # empty marker where tasks have "(T)").
        for frame in reversed(tasks[tid]["stack"]):
            out.append(f"{prefix}└──  {_frame_label(frame)}")
            prefix += "    "
        kids = children.get(tid, [])
        for i, kid in enumerate(kids):
            render(kid, prefix, i == len(kids) - 1, out)

    trees = []
    for root in (tid for tid in tasks if tid not in awaited):
        out = []
        render(root, "", True, out)
        trees.append(out)
    return trees


def _check_acyclic(tasks, children):
    state = {}

    def visit(tid, path):
        state[tid] = 1
        path.append(tid)
        for kid in children.get(tid, ()):
            if state.get(kid) == 1:
                names = [tasks[t]["name"] for t in path[path.index(kid):]] + [tasks[kid]["name"]]
                raise CycleError("the await graph has a cycle, no tree to print: " + " -> ".join(names))
            if kid not in state:
                visit(kid, path)
        path.pop()
        state[tid] = 2

    for tid in list(tasks):
        if tid not in state:
            visit(tid, [])


def format_trees(reply):
    return "\n".join("\n".join(tree) for tree in task_trees(reply))


def main(command, argv):
    prog = f"python -m ferroloop {command}"
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print(f"usage: {prog} PID", file=stream)
        return 0 if stream is sys.stdout else 2
    try:
        reply = fetch(_target_pid(argv[0]), command)
        text = format_table(reply) if command == "ps" else format_trees(reply)
    except ToolError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if text:
        print(text)
    return 0
