"""The builder's own scripts for the server's python3, run as `python3 -c SCRIPT`: they need
no switcher on the server, so no push depends on one being there (docs/switcher.md).

BOOTSTRAP answers one question per process: `check DEST STATE` prints the sha256 of every file
of the switcher in DEST (null: no folder), removes the temp folders of installs that died (a
power cut, a kill), prunes cached bytecode of folders that are gone and lists the generations
under STATE. `install DEST` writes the switcher from the tar on stdin into a temp folder, fsyncs
every file and folder, then renames it over DEST (a damaged DEST is moved aside first, its
cached bytecode dropped) and fsyncs the parent.

LAUNCHER `session STATE` does the same check and install, then serves the switcher's commands
in this one process (activate/inprocess.py), for a whole deploy, over framed stdin/stdout:
a request is a 4-byte length and a JSON header, and when the header says `payload`, its data
in chunks (4-byte length, bytes) ended by an empty one; a reply is a 4-byte length, a JSON
header {rc, out, err} and then `out` bytes of stdout and `err` bytes of stderr.
"""

from __future__ import annotations

# Shared by both scripts: what a check finds, and an install.
_COMMON = r"""
import hashlib, io, json, os, re, shutil, sys, tarfile

class Refused(Exception):
    pass

def fsync(path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

def drop(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)

def pycache(state):
    return os.path.join(os.path.abspath(state), "cache", "pycache")

def cached(state, folder):
    # where Python keeps the bytecode of FOLDER's modules (sys.pycache_prefix mirrors paths)
    return pycache(state) + os.path.abspath(folder)

def hashes(folder):
    found = {}
    for here, dirs, names in os.walk(os.path.join(folder, "activate")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            path = os.path.join(here, name)
            try:
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                found[os.path.relpath(path, folder)] = None
    return found

def leftovers(parent):
    removed = []
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        m = re.fullmatch(r"[0-9a-f]{64}\.(?:tmp|old)([0-9]+)", name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # that install still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        drop(os.path.join(parent, name))
        removed.append(name)
    return removed

def prune_bytecode(state):
    # the bytecode of switchers and generations removed since (gc): never read again
    for kind in ("switchers", "generations"):
        here = cached(state, os.path.join(state, kind))
        for name in os.listdir(here) if os.path.isdir(here) else []:
            if not os.path.isdir(os.path.join(state, kind, name)):
                drop(os.path.join(here, name))

def check(dest, state):
    gens = os.path.join(state, "generations")
    names = os.listdir(gens) if os.path.isdir(gens) else []
    prune_bytecode(state)
    return {
        "switcher": hashes(dest) if os.path.lexists(dest) else None,
        "leftovers": leftovers(os.path.dirname(dest)),
        "generations": sorted(n for n in names if re.fullmatch(r"[0-9]+-[0-9a-f]{12}", n)),
    }

def install(dest, state, data):
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = "%s.tmp%d" % (dest, os.getpid())
    drop(tmp)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if not m.isfile() or not m.name.startswith("activate/") or ".." in m.name.split("/"):
                raise Refused("bootstrap: refused archive entry %r" % m.name)
            path = os.path.join(tmp, m.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tar.extractfile(m).read())
                f.flush()
                os.fsync(f.fileno())
    for here, _dirs, _names in sorted(os.walk(tmp), key=lambda w: -len(w[0])):
        fsync(here, os.O_RDONLY | os.O_DIRECTORY)
    old = None
    if os.path.lexists(dest):
        old = "%s.old%d" % (dest, os.getpid())
        os.rename(dest, old)
    # bytecode compiled from a damaged copy must not outlive it (its mtime may match)
    drop(cached(state, dest))
    try:
        os.rename(tmp, dest)
    except OSError:
        drop(tmp)  # another push installed it meanwhile
    fsync(parent, os.O_RDONLY | os.O_DIRECTORY)
    if old:
        drop(old)
"""

BOOTSTRAP = (
    _COMMON
    + r"""
if sys.argv[1] == "check":
    print(json.dumps(check(sys.argv[2], sys.argv[3])))
    sys.exit(0)
try:
    # an older deployer gives no STATE: the switchers' parent's parent is it
    state = sys.argv[3] if len(sys.argv) > 3 else os.path.dirname(os.path.dirname(sys.argv[2]))
    install(sys.argv[2], state, sys.stdin.buffer.read())
except Refused as exc:
    sys.exit(str(exc))
"""
)

LAUNCHER = (
    _COMMON
    + r"""
import struct
state = sys.argv[2]
# the conversation keeps its own fds: the switcher's children inherit 0 and 1 and must
# neither read from it nor write into it
rin = os.fdopen(os.dup(0), "rb")
rout = os.fdopen(os.dup(1), "wb")
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
os.dup2(2, 1)

def reply(rc, out=b"", err=b""):
    head = json.dumps({"rc": rc, "out": len(out), "err": len(err)}).encode()
    rout.write(struct.pack(">I", len(head)) + head + out + err)
    rout.flush()

class Payload(io.RawIOBase):
    def __init__(self):
        self.left, self.done = 0, False
    def readable(self):
        return True
    def readinto(self, b):
        while not self.left and not self.done:
            size = rin.read(4)
            self.left = struct.unpack(">I", size)[0] if len(size) == 4 else 0
            self.done = not self.left
        if self.done:
            return 0
        data = rin.read(min(len(b), self.left))
        b[: len(data)] = data
        self.left = self.left - len(data) if data else 0
        self.done = not data  # cut short: the command reads the end, as from a closed pipe
        return len(data)

call = None
while True:
    head = rin.read(4)
    body = rin.read(struct.unpack(">I", head)[0]) if len(head) == 4 else b""
    if not body:
        break  # the deployer is done, or went away between steps
    req = json.loads(body)
    data = io.BufferedReader(Payload(), 256 * 1024) if req.get("payload") else io.BytesIO()
    op = req["op"]
    if op == "check":
        reply(0, json.dumps(check(req["dest"], state)).encode())
    elif op == "install":
        try:
            install(req["dest"], state, data.read())
            reply(0)
        except Refused as exc:
            reply(1, err=str(exc).encode())
    elif op == "call":
        if call is None:  # the first call: from now on the switcher in DEST answers, here
            sys.pycache_prefix = pycache(state)
            sys.path[:] = [req["dest"]] + [p for p in sys.path if p]
            os.chdir(req["dest"])
            from activate.inprocess import call
        reply(*call(req["argv"], data))
    else:
        reply(2, err=("bundle session: unknown request %r" % op).encode())
    while data.read(256 * 1024):
        pass  # what the command left unread: the next request starts after it
"""
)
