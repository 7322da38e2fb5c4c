"""Fetch released packages and keep only their Python sources, outside the repo.

    python bench/fetch.py vllm==0.33.0 sglang==0.5.23 torch==2.13.0

Layout (CACHE = $ALLOC_LINT_CACHE or ~/.cache/alloc-lint):
    CACHE/dl/                  what `pip download` fetched (wheel or sdist)
    CACHE/src/NAME-VERSION/    only the *.py files of that archive

Idempotent: a tree that is already extracted is not fetched again.
Prints one line per tree: its path and its number of .py files.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    return Path(
        os.environ.get("ALLOC_LINT_CACHE") or "~/.cache/alloc-lint"
    ).expanduser()


def count_py(tree: Path) -> int:
    return sum(1 for _ in tree.rglob("*.py"))


def find_archive(dl: Path, name: str, version: str) -> Path | None:
    # Wheel names use underscores for dashes; sdists may use either.
    stems = {name, name.replace("-", "_"), name.replace("_", "-")}
    for p in sorted(dl.iterdir()):
        low = p.name.lower()
        if not low.endswith((".whl", ".tar.gz", ".zip")):
            continue
        for s in stems:
            head = f"{s.lower()}-{version}"
            # The version must end there: "0.2" must not match "0.21.0" or "0.2.1".
            if low.startswith(head) and re.match(
                r"[-+]|\.tar\.gz$|\.zip$", low[len(head) :]
            ):
                return p
    return None


def extract_py(archive: Path, dest: Path) -> None:
    # Extract to a temp dir first so an interrupted run never leaves a half tree
    # that the idempotence check would take for a finished one.
    tmp = dest.with_name(dest.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            members = [
                m for m in tf.getmembers() if m.isfile() and m.name.endswith(".py")
            ]
            tf.extractall(tmp, members=members, filter="data")
    else:  # wheels and .zip sdists
        with zipfile.ZipFile(archive) as zf:
            for n in zf.namelist():
                if (
                    n.endswith(".py")
                    and not n.startswith("/")
                    and ".." not in n.split("/")
                ):
                    zf.extract(n, tmp)
    tmp.rename(dest)


def fetch(spec: str) -> Path:
    name, _, version = spec.partition("==")
    if not version:
        sys.exit(f"need NAME==VERSION, got {spec!r}")
    cache = cache_dir()
    dl, dest = cache / "dl", cache / "src" / f"{name}-{version}"
    if dest.is_dir():
        return dest
    dl.mkdir(parents=True, exist_ok=True)
    archive = find_archive(dl, name, version)
    if archive is None:
        # --no-deps: we only want this package's own sources, not its closure.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", spec, "--no-deps", "-d", str(dl)],
            check=True,
        )
        archive = find_archive(dl, name, version)
        if archive is None:
            sys.exit(f"pip download {spec} left no archive in {dl}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    extract_py(archive, dest)
    return dest


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    for spec in argv:
        tree = fetch(spec)
        print(f"{tree}\t{count_py(tree)} files")


if __name__ == "__main__":
    main(sys.argv[1:])
