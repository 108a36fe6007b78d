"""How long the ``newsbot`` command takes to answer, as an operator types it.

Runs each command as a process several times (a fresh interpreter each time, as in a shell)
against a fresh SQLite database and prints the median and the slowest run, in seconds.

    .venv/bin/python benchmarks/cli.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEWSBOT = str(Path(sys.executable).with_name("newsbot"))
COMMANDS = (
    ("--help",),
    ("--version",),
    ("feeds", "--help"),
    ("feeds", "list"),
    ("search", "كورسك"),
    ("db", "upgrade"),
)


def timed(args: tuple[str, ...], env: dict[str, str], cwd: str) -> float:
    """Seconds one run of ``newsbot ARGS`` took, from spawn to exit."""
    began = time.perf_counter()
    subprocess.run([NEWSBOT, *args], env=env, cwd=cwd, capture_output=True, check=True)  # noqa: S603
    return time.perf_counter() - began


def main() -> None:
    """Print one line per command: median and slowest of the runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
        env["NEWSBOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory}/newsbot.db"
        timed(("db", "upgrade"), env, directory)  # the schema exists, as on a working machine
        print(f"newsbot command, {args.runs} runs each (python {sys.version.split()[0]})")
        for command in COMMANDS:
            runs = [timed(command, env, directory) for _ in range(args.runs)]
            print(
                f"  newsbot {' '.join(command):<16} median {statistics.median(runs):.3f} s"
                f"   slowest {max(runs):.3f} s"
            )


if __name__ == "__main__":
    main()
