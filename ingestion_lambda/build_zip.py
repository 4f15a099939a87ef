"""Build ``dist/ingestion_lambda.zip`` for AWS Lambda (Python 3.11, Linux x86_64).

The zip holds ``ingestion_lambda/``, the ``trendcast`` core and the pinned wheels of
``ingestion_lambda/requirements.lock`` for manylinux2014 (Amazon Linux 2's glibc), installed by uv
from binary wheels only. boto3 comes with the Lambda runtime. Entries are sorted and dated
2020-01-01 so the same inputs give the same zip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "ingestion_lambda" / "requirements.lock"
SKIP_DIRS = {"__pycache__", "tests", "benchmarks"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def uv() -> list[str]:
    """The uv pinned in this environment (main.lock), never one found on PATH."""
    return [sys.executable, "-m", "uv"]


def install_dependencies(target: Path) -> None:
    subprocess.run(
        [
            *uv(),
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            "--python-version",
            "3.11",
            "--python-platform",
            "x86_64-manylinux_2_17",
            "--only-binary",
            ":all:",
            "--no-deps",
            "-r",
            str(LOCK),
        ],
        check=True,
    )


def add_tree(archive: zipfile.ZipFile, root: Path, base: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_dir() or SKIP_DIRS & set(path.relative_to(base).parts):
            continue
        if path.suffix in SKIP_SUFFIXES or path.name.endswith(".dist-info"):
            continue
        info = zipfile.ZipInfo(str(path.relative_to(base)), FIXED_TIME)
        info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())


def build(output: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    deps = work / "deps"
    install_dependencies(deps)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        add_tree(archive, deps, deps)
        for package in ("ingestion_lambda", "trendcast"):
            add_tree(archive, REPO / package, REPO)
    tmp.replace(output)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "dist" / "ingestion_lambda.zip")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "lambda")
    args = parser.parse_args()
    path = build(args.output, args.work)
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
