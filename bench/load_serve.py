"""Load test of `cervical-tf serve`: concurrent clients posting one image to /v1/detect.

Run: .venv/bin/python bench/load_serve.py --model EXPORT_DIR [--clients 4] [--requests 100]
     .venv/bin/python bench/load_serve.py --url http://127.0.0.1:8501 [--image field.png]
With --model it starts a server on a free 127.0.0.1 port (stopped at the end); with --url it
uses a running one (127.0.0.1 or localhost only). The image is --image, or one field of the
built-in synthetic sample (--size px square). It stops after --requests requests or
--time-limit seconds, whichever comes first, and prints throughput (req/s), p50/p95 latency and
the error count; the exit status is 1 if any request failed or the time limit cut the run short.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from tfrecords_gen.sample import SampleSpec, generate_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import running_server

LOCAL_HOSTS = ("127.0.0.1", "localhost")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=Path, help="export folder: start a server for it")
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--requests", type=int, default=100, help="requests in all (default 100)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds at most (default 300)")
    parser.add_argument("--image", type=Path, help="image to upload (default: a synthetic sample field)")
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic field, px (default 512)")
    parser.add_argument("--max-concurrent", type=int, default=1, help="the started server's --max-concurrent")
    args = parser.parse_args()
    if args.clients < 1 or args.requests < 1 or args.time_limit <= 0:
        parser.error("--clients, --requests and --time-limit must be positive")
    name, image = (args.image.name, args.image.read_bytes()) if args.image else sample_field(args.size)
    with server(args) as url:
        latencies, errors, elapsed = asyncio.run(
            load(url, name, image, args.clients, args.requests, args.time_limit)
        )
    done = len(latencies) + len(errors)
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000 if latencies else (float("nan"), float("nan"))
    print(
        f"{name} ({len(image)} B): {args.clients} clients, {done}/{args.requests} requests, {elapsed:.1f} s"
    )
    print(f"throughput {done / elapsed:.1f} req/s, p50 {p50:.0f} ms, p95 {p95:.0f} ms, errors {len(errors)}")
    for error in errors[:5]:
        print(f"  error: {error}")
    print(f"reproduce: .venv/bin/python {' '.join(sys.argv)}")
    return 0 if not errors and done == args.requests else 1


def sample_field(size: int) -> tuple[str, bytes]:
    """(name, BMP bytes) of one synthetic Pap smear field from the built-in sample generator."""
    with tempfile.TemporaryDirectory() as folder:
        summary = generate_sample(
            Path(folder) / "sample", SampleSpec(images=1, width=size, height=size), False
        )
        path = next(summary.out_dir.rglob("*.bmp"))
        return path.name, path.read_bytes()


@contextmanager
def server(args: argparse.Namespace) -> Iterator[str]:
    """The base URL to load: --url as given (local only), or a server started for --model."""
    if args.url:
        if urlparse(args.url).hostname not in LOCAL_HOSTS:
            raise SystemExit(f"--url must point at this machine ({', '.join(LOCAL_HOSTS)}), got {args.url}")
        yield args.url.rstrip("/")
        return
    with tempfile.TemporaryDirectory() as folder:
        arguments = ["--model", str(args.model), "--max-concurrent", str(args.max_concurrent)]
        with running_server(arguments, Path(folder) / "server.log") as url:
            yield url


async def load(
    url: str, name: str, image: bytes, clients: int, requests: int, time_limit: float
) -> tuple[list[float], list[str], float]:
    """(latencies in s of the successful requests, error messages, elapsed s) of the whole run."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = iter(range(requests))
    timeout = httpx.Timeout(time_limit)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        first = await http.post("/v1/detect", files={"image": (name, image)})  # untimed: fail early, clearly
        if first.status_code != 200:
            raise SystemExit(f"/v1/detect answered {first.status_code}: {first.text}")
        started = time.perf_counter()
        deadline = started + time_limit

        async def client() -> None:
            for _ in remaining:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                try:
                    response = await http.post("/v1/detect", files={"image": (name, image)})
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors.append(f"{response.status_code} {response.text[:200]}")

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), time_limit + 30)
    return latencies, errors, time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
