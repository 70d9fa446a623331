"""The ``shopsearch`` command. Each subcommand lives in ``api/cmd_<name>.py`` with ``register(subparsers)``.

Subcommand modules import heavy libraries (torch, opensearch-py) inside their ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from shopsearch.api.cli_args import register_modules
from shopsearch.plugin.engine import EngineUnavailable
from shopsearch.settings import command_config

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ["demo", "opensearch", "index", "versions", "serve", "eval", "compare", "report", "judgments", "experiment",
            "train", "simulate_events", "simulate_traffic", "schema", "config", "keys", "redis", "rules"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="shopsearch", description="E-commerce search: index, serve, evaluate.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    register_modules(parser.add_subparsers(dest="command", metavar="COMMAND"), "shopsearch.api.cmd_", COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 failure, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # opensearch-py logs every request at INFO, and each failed attempt with its traceback at WARNING: a
        # command says itself, once, that the engine is unreachable; a server's log keeps the attempts.
        logging.getLogger("opensearch").setLevel(logging.WARNING if args.command == "serve" else logging.ERROR)
        logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # a line per graph pass of an ONNX export
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with command_config(getattr(args, "config", None)):
            return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input: a clear one-line message naming the problem, never a traceback.
        print(f"shopsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError) as exc:
        # an output path that cannot be written
        what = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        print(f"shopsearch {args.command}: error: {what}", file=sys.stderr)
        return 2
    except EngineUnavailable as exc:  # the engine (or Redis) is down or unreachable: say so, once
        print(f"shopsearch {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if not exc.filename:
            raise
        # a file the system refuses (a read-only or full disk), as an unwritable folder above: named, exit 2
        print(f"shopsearch {args.command}: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shopsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
