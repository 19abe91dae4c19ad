"""Load test of `cervical-tf serve`: normal clients posting one image to /v1/detect, optionally
alongside hostile clients asking for far too much work, each kind reported on its own.

Run: .venv/bin/python bench/load_serve.py --model EXPORT_DIR [--clients 4] [--requests 100]
     .venv/bin/python bench/load_serve.py --fake 0.19 --hostile-clients 2
     .venv/bin/python bench/load_serve.py --url http://127.0.0.1:8501 [--image field.png]
With --model it starts a server on a free 127.0.0.1 port (stopped at the end); --fake SECONDS
does the same with the tests' stand-in export, whose every model call waits SECONDS without
computing (it measures the server, not a model); with --url it uses a running server
(127.0.0.1 or localhost only). The normal image is --image, or one field of
the built-in synthetic sample (--size px square). Hostile clients post a --hostile-size square
image with --hostile-query (default tile=32&overlap=31: millions of model calls, which the
server must refuse at once, 413 over --max-tiles) back to back until the normal clients are done.
The run stops after --requests normal requests or --time-limit seconds, whichever comes first,
and prints per kind: requests, status codes, p50/p95 latency; the exit status is 1 if a normal
request failed or the time limit cut the run short.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

from tfrecords_gen.sample import SampleSpec, generate_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_export import write_fake_export
from server_process import running_server

LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Kind:
    """One kind of client: what it posts, and what it got back."""

    label: str
    name: str
    image: bytes
    path: str
    latencies: list[float] = field(default_factory=list)  # of the answered requests, whatever the status
    statuses: Counter = field(default_factory=Counter)
    unanswered: list[str] = field(default_factory=list)  # transport errors: timeouts, resets
    examples: list[str] = field(default_factory=list)  # the first few distinct answers other than 200

    @property
    def count(self) -> int:
        return len(self.latencies) + len(self.unanswered)

    async def post(self, http: httpx.AsyncClient) -> None:
        sent = time.perf_counter()
        try:
            response = await http.post(self.path, files={"image": (self.name, self.image)})
        except httpx.HTTPError as error:
            self.unanswered.append(f"{type(error).__name__}: {error}")
            return
        self.latencies.append(time.perf_counter() - sent)
        self.statuses[response.status_code] += 1
        example = f"{response.status_code} {response.text[:200]}"
        if response.status_code != 200 and example not in self.examples and len(self.examples) < 3:
            self.examples.append(example)

    def report(self) -> str:
        p50, p95 = np.percentile(self.latencies, [50, 95]) * 1000 if self.latencies else (np.nan, np.nan)
        statuses = ", ".join(f"{status} x {count}" for status, count in sorted(self.statuses.items()))
        lines = [
            f"{self.label} ({self.name}, {len(self.image)} B, {self.path}): {self.count} requests, "
            f"status {statuses or 'none'}, unanswered {len(self.unanswered)}, "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        ]
        lines += [f"  e.g. {example}" for example in [*self.examples, *self.unanswered[:3]]]
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=Path, help="export folder: start a server for it")
    target.add_argument(
        "--fake",
        type=float,
        metavar="SECONDS",
        help="start a server for a stand-in export taking SECONDS a call",
    )
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501")
    parser.add_argument("--clients", type=int, default=4, help="concurrent normal clients (default 4)")
    parser.add_argument("--requests", type=int, default=100, help="normal requests in all (default 100)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds at most (default 300)")
    parser.add_argument("--image", type=Path, help="image to upload (default: a synthetic sample field)")
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic field, px (default 512)")
    parser.add_argument(
        "--hostile-clients", type=int, default=0, help="concurrent hostile clients (default 0)"
    )
    parser.add_argument(
        "--hostile-size", type=int, default=4000, help="side of their image, px (default 4000)"
    )
    parser.add_argument(
        "--hostile-query", default="tile=32&overlap=31", help="their query (default tile=32&overlap=31)"
    )
    parser.add_argument("--max-concurrent", type=int, default=1, help="the started server's --max-concurrent")
    parser.add_argument(
        "--request-timeout", type=float, default=60.0, help="the started server's --request-timeout"
    )
    args = parser.parse_args()
    if args.clients < 1 or args.requests < 1 or args.time_limit <= 0 or args.hostile_clients < 0:
        parser.error("--clients, --requests and --time-limit must be positive, --hostile-clients at least 0")
    name, image = (args.image.name, args.image.read_bytes()) if args.image else sample_field(args.size)
    normal = Kind("normal", name, image, "/v1/detect")
    hostile = Kind("hostile", "hostile.png", blank_png(args.hostile_size), f"/v1/detect?{args.hostile_query}")
    with server(args) as url:
        elapsed = asyncio.run(load(url, normal, hostile, args))
    print(
        f"{args.clients} normal and {args.hostile_clients} hostile clients: normal requests done in "
        f"{elapsed:.1f} s, {normal.count / elapsed:.1f} req/s"
    )
    for kind in (normal, hostile) if args.hostile_clients else (normal,):
        print(kind.report())
    print(f"reproduce: .venv/bin/python {' '.join(sys.argv)}")
    return 0 if normal.statuses[200] == args.requests else 1


def sample_field(size: int) -> tuple[str, bytes]:
    """(name, BMP bytes) of one synthetic Pap smear field from the built-in sample generator."""
    with tempfile.TemporaryDirectory() as folder:
        summary = generate_sample(
            Path(folder) / "sample", SampleSpec(images=1, width=size, height=size), False
        )
        path = next(summary.out_dir.rglob("*.bmp"))
        return path.name, path.read_bytes()


def blank_png(side: int) -> bytes:
    """A blank side x side PNG: a few KB on the wire, side * side pixels in its header."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 230).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def server(args: argparse.Namespace) -> Iterator[str]:
    """The base URL to load: --url as given (local only), or a server started for --model or --fake."""
    if args.url:
        if urlparse(args.url).hostname not in LOCAL_HOSTS:
            raise SystemExit(f"--url must point at this machine ({', '.join(LOCAL_HOSTS)}), got {args.url}")
        yield args.url.rstrip("/")
        return
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or write_fake_export(Path(folder) / "fake", seconds_per_call=args.fake)
        arguments = ["--model", str(model), "--max-concurrent", str(args.max_concurrent)]
        arguments += ["--request-timeout", str(args.request_timeout)]
        with running_server(arguments, Path(folder) / "server.log") as url:
            yield url


async def load(url: str, normal: Kind, hostile: Kind, args: argparse.Namespace) -> float:
    """Run the clients; the seconds the normal clients took."""
    remaining = iter(range(args.requests))
    timeout = httpx.Timeout(args.time_limit)
    limits = httpx.Limits(max_connections=args.clients + args.hostile_clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        first = await http.post(normal.path, files={"image": (normal.name, normal.image)})  # untimed
        if first.status_code != 200:
            raise SystemExit(f"/v1/detect answered {first.status_code}: {first.text}")
        started = time.perf_counter()
        deadline = started + args.time_limit
        normal_done = asyncio.Event()
        elapsed = [args.time_limit]

        async def normal_client() -> None:
            for _ in remaining:
                if time.perf_counter() > deadline:
                    return
                await normal.post(http)

        async def hostile_client() -> None:
            while not normal_done.is_set() and time.perf_counter() < deadline:
                await hostile.post(http)

        async def normal_clients() -> None:
            await asyncio.gather(*(normal_client() for _ in range(args.clients)))
            elapsed[0] = time.perf_counter() - started
            normal_done.set()

        hostiles = [hostile_client() for _ in range(args.hostile_clients)]
        await asyncio.wait_for(asyncio.gather(normal_clients(), *hostiles), args.time_limit + 30)
        return elapsed[0]


if __name__ == "__main__":
    sys.exit(main())
