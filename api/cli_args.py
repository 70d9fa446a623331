"""Argument builders shared by the ``shopsearch`` subcommands, and the loader of subcommand modules.

Every command that searches or writes an index takes the same engine arguments (``--engine``, ``--url``,
``--root``) and, for the query/product encoder, ``--model``; they are declared once here (as pyserini's CLIs share
their argument builders) so the names, defaults and help texts cannot drift apart. Cheap to import: ``--help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from shopsearch.atomic_write import write_atomically
from shopsearch.settings import DEFAULT_MODEL, ENGINES, Settings, load_settings

EXIT_NOT_RUNNING = 3  # `status` of a service that is not running (as `systemctl status`, LSB)
QUERY_MODEL_HELP = "query bi-encoder; must be the one the index was built with"
# Flags that are settings too: unset, they take the config file's or environment's value (settings_from_args).
SETTING_FLAGS = {"index": "config / $SHOPSEARCH_INDEX / products",
                 "model": f"config / $SHOPSEARCH_MODEL / {DEFAULT_MODEL}"}


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine`` (default: the settings' ``engine``, i.e. $SHOPSEARCH_ENGINE or embedded), ``--url``
    and ``--root``.

    Open the engine they describe with :func:`open_engine_from_args`; :func:`settings_from_args` resolves them
    with the lower layers.

    >>> p = argparse.ArgumentParser(); add_engine_args(p)
    >>> p.parse_args(["--engine", "embedded", "--root", "/tmp/e"]).root
    '/tmp/e'
    """
    parser.add_argument("--engine", choices=ENGINES, help="default: $SHOPSEARCH_ENGINE or embedded")
    parser.add_argument("--url", help="OpenSearch URL (default $OPENSEARCH_URL or http://127.0.0.1:9200)")
    parser.add_argument("--root", help="embedded engine directory (default $SHOPSEARCH_HOME/embedded)")
    parser.add_argument("--config", help="TOML settings file (default $SHOPSEARCH_CONFIG)")


def add_model_arg(parser: argparse.ArgumentParser, help: str = QUERY_MODEL_HELP, *, setting: bool = True) -> None:
    """Add ``--model`` with the command's own ``help``: the ``model`` setting when unset (the query encoder
    the API serves with), or with ``setting=False`` all-MiniLM-L6-v2 (the packaged weights; a base to train)."""
    if setting:
        add_setting_arg(parser, "model", help)
    else:
        parser.add_argument("--model", default=DEFAULT_MODEL, help=f"{help} (default {DEFAULT_MODEL})")


def add_setting_arg(parser: argparse.ArgumentParser, key: str, help: str) -> None:
    """Add ``--<key>``, a flag for one of :data:`SETTING_FLAGS`: unset, :func:`settings_from_args` fills it from
    the config file or the environment, as ``serve`` reads it."""
    parser.add_argument(f"--{key}", help=f"{help} (default: {SETTING_FLAGS[key]})")
    parser.set_defaults(**{f"_setting_{key}": True})


def add_ranking_args(parser: argparse.ArgumentParser) -> None:
    """What :func:`shopsearch.api.ranking_runs.rank_profiles` reads, for the commands that rank judged queries as
    GET /search serves them (eval, compare, judgments pool): ``--index``, the engine's arguments, ``--model``,
    ``--no-budget`` and ``--no-progress``."""
    add_setting_arg(parser, "index", "index or alias to search")
    add_engine_args(parser)
    add_model_arg(parser)
    parser.add_argument("--no-budget", action="store_true",
                        help="run rerank stages without the profile's latency budget (offline quality on a slow CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def report_file(value: str) -> str:
    """An ``--html`` / ``--markdown`` path, refused at once when it names a folder (not after the whole run)."""
    if Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder; name the file to write")
    return value


def add_report_args(parser: argparse.ArgumentParser) -> None:
    """``--html``, ``--markdown`` and ``--json``, as every report command (compare, experiment, report) takes them."""
    parser.add_argument("--html", type=report_file, help="write the self-contained HTML report here")
    parser.add_argument("--markdown", type=report_file, help="write the markdown report here")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def write_reports(args: argparse.Namespace, html: Callable[[], str], markdown: Callable[[], str]) -> None:
    """Write the ``--html`` and ``--markdown`` files the arguments ask for (rendered only then; folders made) and
    say where on stderr (stdout carries the report itself)."""
    for path, render in ((args.html, html), (args.markdown, markdown)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, render())
            print(f"wrote {path}", file=sys.stderr)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings with the flags :func:`add_engine_args` and :func:`add_setting_arg` added as the top layer;
    sets ``args.engine`` (and ``args.index``, ``args.model`` where the command has them as settings) to the
    resolved values, so the command runs on them and its messages name them."""
    mirrored = [key for key in SETTING_FLAGS if getattr(args, f"_setting_{key}", False)]
    settings = load_settings({"config": getattr(args, "config", None), "engine": args.engine,
                              "opensearch_url": getattr(args, "url", None),
                              **{key: getattr(args, key) for key in mirrored}})
    args.engine = settings.engine
    for key in mirrored:
        setattr(args, key, getattr(settings, key))
    return settings


def open_engine_from_args(args: argparse.Namespace) -> Any:
    """The engine named by the arguments :func:`add_engine_args` added (the caller closes it).

    Raises:
        ValueError: an invalid setting (named).
    """
    from shopsearch.plugin.engines import open_engine

    settings = settings_from_args(args)
    return open_engine(settings.engine, root=args.root, settings=settings)


def add_ubi_args(parser: argparse.ArgumentParser) -> None:
    """Add where a command reads the UBI logs: ``--ubi-dir`` (offline JSONL files) or the engine arguments of
    :func:`add_engine_args` (that engine's UBI store). Open it with :func:`open_ubi_store_from_args`."""
    parser.add_argument("--ubi-dir", help="read ubi_queries.jsonl / ubi_events.jsonl from this folder instead of "
                                          "the engine's UBI store (offline logs)")
    add_engine_args(parser)


def open_ubi_store_from_args(args: argparse.Namespace) -> Any:
    """The UBI store the arguments of :func:`add_ubi_args` name: the JSONL files of ``--ubi-dir``, else the
    configured engine's store.

    Raises:
        FileNotFoundError: ``--ubi-dir`` is not a folder, or holds neither log.
        ValueError: an invalid setting (named).
    """
    from shopsearch.plugin.ubi_store import JsonlUbiStore, open_ubi_store

    if args.ubi_dir:
        if not Path(args.ubi_dir).is_dir():
            raise FileNotFoundError(f"--ubi-dir {args.ubi_dir!r} is not a folder")
        store = JsonlUbiStore(args.ubi_dir)
        if not store.queries_path.exists() and not store.events_path.exists():
            raise FileNotFoundError(f"--ubi-dir {args.ubi_dir!r} holds no {store.queries_path.name} or "
                                    f"{store.events_path.name} (the embedded engine's logs are in <home>/ubi)")
        return store
    return open_ubi_store(settings_from_args(args))


def add_command_group(subparsers: argparse._SubParsersAction, name: str, dest: str,
                      **parser_kwargs: Any) -> argparse._SubParsersAction:
    """Add a command whose work is done by its actions (``train TARGET``, ``judgments ACTION``); given no action
    it prints its help and exits 2. Returns the subparsers to add the actions to (``dest`` names the chosen one).

    >>> p = argparse.ArgumentParser(); sub = p.add_subparsers()
    >>> actions = add_command_group(sub, "judgments", "action", help="judgments from behaviour")
    >>> p.parse_args(["judgments"]).run.__name__
    'print_help_exit_2'
    """
    group = subparsers.add_parser(name, **parser_kwargs)

    def print_help_exit_2(args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(run=print_help_exit_2)
    return group.add_subparsers(dest=dest, metavar=dest.upper())


def index_missing(engine: Any, args: argparse.Namespace, command: str, catalog: str = "CATALOG") -> bool:
    """True, after saying on stderr how to build it, when ``args.index`` is neither an index nor an alias.

    ``command`` names the subcommand in the message (``eval``, ``train bi-encoder``); ``catalog`` is the catalog
    path suggested in the ``shopsearch index`` hint.
    """
    if engine.index_exists(args.index) or engine.resolve_alias(args.index) is not None:
        return False
    print(f"shopsearch {command}: index {args.index!r} does not exist on {args.engine}; build it with "
          f"`shopsearch index {catalog} --index {args.index} --engine {args.engine}`", file=sys.stderr)
    return True


def register_modules(subparsers: argparse._SubParsersAction, prefix: str, names: Sequence[str]) -> None:
    """Import ``{prefix}{name}`` for each name and call its ``register(subparsers)``; a module not written yet is
    skipped (an import error inside an existing module still raises).

    >>> register_modules(sub, "shopsearch.api.cmd_", ["eval", "compare"])  # doctest: +SKIP
    """
    for name in names:
        try:
            module = importlib.import_module(f"{prefix}{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{prefix}{name}":
                raise
            continue  # not built yet
        module.register(subparsers)
