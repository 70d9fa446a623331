"""``shopsearch train TARGET``: train a model. Each target lives in ``api/cmd_train_<name>.py`` with
``register(subparsers)`` (like the top-level subcommands); add its name to TARGETS to list it."""

from __future__ import annotations

import argparse

from shopsearch.api.cli_args import register_modules

# Training targets, in the order ``train --help`` lists them (module api/cmd_train_<name>.py).
TARGETS = ["cross_encoder", "bi_encoder", "ranker", "calibration"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and every available target under it."""
    p = subparsers.add_parser("train", help="train a model (cross-encoder, bi-encoder, learning-to-rank ranker) "
                              "or refit a calibration", description="Train a model from judged query-product data.")
    register_modules(p.add_subparsers(dest="target", metavar="TARGET"), "shopsearch.api.cmd_train_", TARGETS)
    p.set_defaults(run=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    """``train`` without a target: show its help, exit code 2."""
    parser.print_help()
    return 2
