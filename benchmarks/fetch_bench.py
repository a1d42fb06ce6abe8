"""Fetch a generated model (one large file + a few hundred small ones) from a local moto S3 server with
modelport and with KServe's storage initializer (``kserve-storage``), side by side.

Usage: .venv/bin/python benchmarks/fetch_bench.py [--size-mb 1024] [--small-files 300] [--skip-kserve]
Prints seconds, MB/s and peak RSS (whole process tree, sampled from /proc) for each tool.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / ".bench"
KSERVE_VENV = BENCH / "kserve-venv"
MIB = 1024 * 1024
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def generate(root: Path, size_mb: int, small_files: int, seed: int = 0) -> dict[str, tuple[int, str]]:
    """Write the model to ``root``; return {relpath: (size, sha256)}."""
    rng = random.Random(seed)
    shutil.rmtree(root, ignore_errors=True)
    small_sizes = [rng.randint(1024, 64 * 1024) for _ in range(small_files)]
    big_size = max(MIB, size_mb * MIB - sum(small_sizes))
    out: dict[str, tuple[int, str]] = {}

    def write(rel: str, size: int) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            left = size
            while left:
                block = os.urandom(min(left, 8 * MIB))
                fh.write(block)
                digest.update(block)
                left -= len(block)
        out[rel] = (size, digest.hexdigest())

    write("MLmodel", 600)
    write("data/model.pth", big_size)
    for i, size in enumerate(small_sizes):
        write(f"data/shards/part-{i:04d}.json", size)
    return out


def upload(endpoint: str, root: Path) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="bench")
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(
                str(path), "bench", f"models/bench/artifacts/model/{path.relative_to(root).as_posix()}"
            )


def ensure_kserve_venv() -> Path:
    python = KSERVE_VENV / "bin" / "python"
    if python.exists():
        return python
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(KSERVE_VENV)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "kserve-storage"], check=True)
    return python


def tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, subprocess.CompletedProcess[bytes]]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - t0
    stop.set()
    sampler.join()
    return seconds, peak, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def check(dest: Path, expected: dict[str, tuple[int, str]]) -> str:
    got = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
    if set(got) != set(expected):
        return f"DIFFERENT file set ({len(got)} vs {len(expected)})"
    for rel, (size, digest) in expected.items():
        if got[rel].stat().st_size != size or hashlib.sha256(got[rel].read_bytes()).hexdigest() != digest:
            return f"DIFFERENT content in {rel}"
    return "identical"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--small-files", type=int, default=300)
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument(
        "--modelport-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra variables for modelport, e.g. MODELPORT_STORAGE_PART_SIZE=67108864",
    )
    args = ap.parse_args()

    BENCH.mkdir(exist_ok=True)
    work = BENCH / "fetch"
    work.mkdir(exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    kserve_python = None if args.skip_kserve else ensure_kserve_venv()
    moto = start_moto(port, work / "moto.log")
    try:
        print(f"generating {args.size_mb} MB model ({args.small_files} small files) ...", file=sys.stderr)
        expected = generate(work / "source", args.size_mb, args.small_files)
        total = sum(size for size, _ in expected.values())
        upload(endpoint, work / "source")
        shutil.rmtree(work / "source")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELPORT_", "S3_"))}
        env = {**base, **AWS, "AWS_ENDPOINT_URL": endpoint}
        uri = "s3://bench/models/bench/artifacts/model"
        runs = [
            (
                "modelport",
                [sys.executable, "-m", "modelport", "fetch", uri, str(work / "out-modelport")],
                {**env, **dict(kv.split("=", 1) for kv in args.modelport_env)},
            )
        ]
        if kserve_python:
            code = (
                f"from kserve_storage import Storage; Storage.download({uri!r}, {str(work / 'out-kserve')!r})"
            )
            runs.append(("kserve-storage", [str(kserve_python), "-c", code], {**env, "S3_VERIFY_SSL": "0"}))
        rows = []
        for name, cmd, run_env in runs:
            dest = Path(cmd[-1]) if name == "modelport" else work / "out-kserve"
            shutil.rmtree(dest, ignore_errors=True)
            seconds, peak_kb, proc = timed(cmd, run_env)
            if proc.returncode != 0:
                print(proc.stderr.decode()[-3000:], file=sys.stderr)
                rows.append((name, seconds, 0.0, peak_kb, f"FAILED (exit {proc.returncode})"))
                continue
            rows.append((name, seconds, total / 1e6 / seconds, peak_kb, check(dest, expected)))
            shutil.rmtree(dest, ignore_errors=True)
        print(
            f"\nmodel: {total / 1e6:.0f} MB in {len(expected)} files, moto S3 on loopback, {os.cpu_count()} CPUs"
        )
        print(f"{'tool':<16}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}  tree")
        for name, seconds, mbs, peak_kb, status in rows:
            print(f"{name:<16}{seconds:>9.2f}{mbs:>9.1f}{peak_kb / 1024:>13.0f}  {status}")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
