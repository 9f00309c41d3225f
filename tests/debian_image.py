"""tests/debian_image.py: images made from this machine's installed Debian packages.

No image can be pulled on jam's CI machines, so the tests assemble the ones they need from the
files of installed packages (and whatever else they name) with `docker import`, which takes
seconds. tests/rust-builder-image (the Rust build stage) and tests/python-image (a student's
mesin1) use it.
"""
import os
import subprocess
import sys
import tarfile

# Debian's merged /usr: these top-level names are links into /usr.
MERGED = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}


def die(prog, msg):
    sys.exit(f"{prog}: {msg}")


def run(prog, *cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        die(prog, f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def exists(tag):
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def closure(roots):
    """The installed packages that `roots` depend on, themselves included."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop().split(":")[0]
        if name in seen:
            continue
        q = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Depends}, ${Pre-Depends}", name],
                           capture_output=True, text=True)
        if q.returncode or q.stdout.split("\t")[0] != "install ok installed":
            continue  # a virtual package, or one not installed: an alternative stands for it
        seen.add(name)
        for dep in q.stdout.split("\t", 1)[1].split(","):
            alternatives = [a.strip().split(" ")[0] for a in dep.split("|") if a.strip()]
            todo.extend(alternatives[:1] if len(alternatives) == 1 else alternatives)
    return sorted(seen)


def real(path):
    """Where a path listed by dpkg really is, with merged /usr: /bin/dash is /usr/bin/dash."""
    parent = os.path.realpath(os.path.dirname(path))
    return os.path.join(parent, os.path.basename(path))


def package_files(prog, packages):
    """Every file and link of `packages` and what they depend on."""
    files = set()
    for package in closure(packages):
        for path in run(prog, "dpkg", "-L", package).splitlines():
            if os.path.islink(path) or os.path.isfile(path):
                files.add(real(path))
    return files


def build(prog, tag, files, env=(), changes=(), links=(), more=None):
    """Imports an image `tag` of `files` (absolute paths), with the merged-/usr links, a /tmp,
    the symbolic `links` ((name, target) pairs), ENV `env` and other Dockerfile `changes`;
    `more(tar)` adds anything else."""
    importer = subprocess.Popen(["docker", "import", *[a for e in env for a in ("--change", f"ENV {e}")],
                                 *[a for c in changes for a in ("--change", c)], "-", tag],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    with tarfile.open(fileobj=importer.stdin, mode="w|") as tar:
        def link(name, target):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name, target in MERGED.items():
            link(name, target)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        for path in sorted(files):
            if path.split("/")[1] in MERGED:
                continue  # the merged links themselves
            tar.add(path, arcname=path.lstrip("/"), recursive=False)
        for name, target in links:
            if f"/{name}" not in files:
                link(name, target)
        if more:
            more(tar)
    importer.stdin.close()
    if importer.wait():
        die(prog, "docker import failed")
