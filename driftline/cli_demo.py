"""The `driftline demo` command: the whole service, three simulated models and catchers for what it sends.

  demo [--dir D] [--duration T] [--api-port P] [--smtp-port P] [--broker-port P] [--quiet] [--force]

See driftline/demo/ for what runs. Exit codes: 0 everything the demo promises
happened, 1 it did not within --duration (the summary says what is missing),
2 a folder it will not use or a bad option, 4 no local broker, 130 stopped
by SIGINT/SIGTERM (cleanly, with a partial summary).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from driftline.config import Settings

MIN_DURATION_S = 120.0


def cmd_demo(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> int:
    from driftline.demo.run import Options, run_demo
    from driftline.durations import parse_duration

    try:
        duration = parse_duration(args.duration).total_seconds()
    except ValueError as exc:
        print(f"driftline demo: --duration: {exc}", file=sys.stderr)
        return 2
    if duration < MIN_DURATION_S:
        print(f"driftline demo: --duration must be at least {MIN_DURATION_S:.0f}s (the story takes about 90 s)",
              file=sys.stderr)
        return 2
    options = Options(folder=Path(args.dir), duration_s=duration, api_port=args.api_port, smtp_port=args.smtp_port,
                      broker_port=args.broker_port, quiet=args.quiet, force=args.force)
    return run_demo(options, settings, stop)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, got {port}")
    return port


def add_parsers(sub: Any, common: Any) -> None:
    """Register `demo` on the main parser (`common` is unused: the demo always runs on its own folder)."""
    p = sub.add_parser(
        "demo", help="run everything with three simulated models for about 2 minutes, then summarize what fired",
        description="Starts a local broker, the collector, the detectors (10-second windows), alerts, the API, an "
                    "SMTP catcher and a webhook receiver in one process, simulates three models (one drifts, one "
                    "stays healthy, one gets a broken feature pipeline), shows the progress and a summary, and "
                    "leaves the data in --dir.")
    p.add_argument("--dir", default="driftline-demo",
                   help="the demo folder (default ./driftline-demo); a previous demo folder is replaced")
    p.add_argument("--force", action="store_true", help="use --dir even if it is a non-empty folder of yours")
    p.add_argument("--duration", default="170s", help="end within this long, whatever happens (default 170s)")
    p.add_argument("--api-port", type=_port, default=0, help="port of the HTTP API (default: a free port)")
    p.add_argument("--smtp-port", type=_port, default=0, help="port of the SMTP catcher (default: a free port)")
    p.add_argument("--broker-port", type=_port, default=0, help="port of the local broker (default: a free port)")
    p.add_argument("--quiet", action="store_true", help="no progress view on stderr, only the summary")
    p.set_defaults(handler=cmd_demo, needs_stop=True)
