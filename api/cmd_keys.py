"""``shopsearch keys create|list|revoke|client-token``: the API keys the server checks (api/keys.py,
docs/security.md), and a shopper's client_token (api/hit_tokens.py)."""

from __future__ import annotations

import argparse

from .hit_tokens import CLIENT_TOKEN_RECIPE

HELP = """\
Manage API keys. A key is printed once, at creation; the keys file (setting keys_file, default <home>/keys.json)
keeps only a salted HMAC of it. Once any key exists every request needs one (Authorization: Bearer <key> or
X-API-Key: <key>), and `shopsearch serve --host 0.0.0.0` is allowed.

Roles: search (the storefront key: /search, /suggest, /products, /recommendations, POST /events; safe to ship in
page JavaScript) and admin (everything, including /console, /metrics and whatever changes server state). Revoking
takes effect in a running server at once.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keys`` subcommand with its ``create``, ``list`` and ``revoke`` actions."""
    p = subparsers.add_parser("keys", help="create, list and revoke API keys", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--role", required=True, choices=("search", "admin"))
    create.add_argument("--name", default="", help="a label for `keys list` (default <role>-<id>)")
    create.add_argument("--expires", help="a duration (12h, 30d, 8w) or an ISO date/time (UTC unless zoned)")
    actions.add_parser("list", help="list keys (id, name, role, state; never the secret)")
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", help="the id `keys list` shows")
    token = actions.add_parser("client-token", help="print a shopper's client_token (for GET /recommendations)",
                               description="Print the client_token that lets the public search key read CLIENT_ID's "
                                           "history (GET /recommendations?client_id=...&client_token=...): "
                                           f"{CLIENT_TOKEN_RECIPE}. A shop's backend computes it with the same key "
                                           "for its signed-in shopper.")
    token.add_argument("client_id", help="the shopper's user_id")
    for sub in actions.choices.values():
        sub.add_argument("--config", help="TOML settings file (default $SHOPSEARCH_CONFIG)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Do the chosen action; returns 0 (errors raise ValueError: exit 2 with the message)."""
    from shopsearch.settings import load_settings
    from shopsearch.timestamps import utcnow

    from .keys import KeyStore, parse_expires

    cfg = load_settings({"config": getattr(args, "config", None)})
    store = KeyStore(cfg.keys_file)
    if args.action == "create":
        expires = parse_expires(args.expires) if args.expires else None
        key, secret = store.create(args.role, name=args.name, expires=expires)
        print(secret)
        until = f", expires {key.expires.isoformat(timespec='seconds')}" if key.expires else ""
        print(f"created {key.role} key {key.id} ({key.name}{until}) in {store.path}; it is shown only now",
              flush=True)
        return 0
    if args.action == "client-token":
        from .hit_tokens import client_token, signing_key

        print(client_token(signing_key(cfg), args.client_id))
        return 0
    if args.action == "revoke":
        key = store.revoke(args.key_id)
        print(f"revoked {key.role} key {key.id} ({key.name})")
        return 0
    now = utcnow()
    keys = store.keys()
    if not keys:
        print(f"no keys in {store.path}; the API answers loopback clients only (create one: "
              "shopsearch keys create --role admin)")
        return 0
    print(f"{'id':<9} {'role':<7} {'state':<8} {'created':<20} {'expires':<20} name")
    for k in keys:
        expires = k.expires.isoformat(timespec="seconds")[:19] if k.expires else "-"
        print(f"{k.id:<9} {k.role:<7} {k.state(now):<8} {k.created.isoformat(timespec='seconds')[:19]:<20} "
              f"{expires:<20} {k.name}")
    return 0
