"""``shopsearch demo``: index a catalog, train small models (cached), serve the API and show real searches.

Every step reuses the project's own commands (index, simulate-events, train, serve), so the demo exercises the
same code a deployment runs. Models and indexed vectors are cached under the settings' ``home``
(``$SHOPSEARCH_HOME``): a second demo starts in seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from shopsearch.settings import ENGINES, Settings, child_environment, load_settings

HELP = """\
Set everything up and show shopsearch working end to end:
  1. start a local OpenSearch node (or use $OPENSEARCH_URL; --engine embedded needs no server),
  2. index a catalog (default: a generated 400-product demo catalog with brands, categories and prices),
  3. train a small cross-encoder and a LightGBM conversion model on ../shared/data when it is there
     (cached in $SHOPSEARCH_HOME/models; the conversion model learns from SIMULATED events),
  4. serve the API with gunicorn and print example searches, then keep serving until Ctrl-C
     (storefront at http://HOST:PORT/, relevance console at /console).
"""

EXAMPLES = [
    ("wireless earbuds", {}),
    ("runing shoes", {}),  # a typo, as shoppers type
    ("sofa", {"price_max": "1000"}),
    ("lamp", {"in_stock": "true", "rating_min": "4"}),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="index, train, serve and show example searches", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=ENGINES,
                   help="default: $SHOPSEARCH_ENGINE if set, else opensearch (a local node is started), falling back "
                        "to embedded if it can't start")
    p.add_argument("--catalog", help="catalog file to index instead of the generated demo catalog")
    p.add_argument("--index", default="demo", help="alias to index into and serve (default: demo)")
    p.add_argument("--products", type=int, default=400, help="size of the generated catalog (default 400)")
    p.add_argument("--data", default=None,
                   help="labelled data for model training (default: the data_dir setting, i.e. $SHOPSEARCH_DATA "
                        "or ../shared/data beside the project, if present)")
    p.add_argument("--no-models", action="store_true", help="skip model training; serve hybrid retrieval only")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--exit", action="store_true", help="stop the server after printing the examples (for scripts)")
    p.set_defaults(run=run)


def _step(n: int, text: str) -> None:
    print(f"\n==> [{n}/4] {text}", flush=True)


def _pick_engine(requested: str | None, settings: Settings) -> tuple[str, str | None]:
    """Start (or find) OpenSearch unless embedded was asked for; fall back to embedded with a clear note.

    Returns the engine and, for OpenSearch, the node's URL."""
    if requested == "embedded":
        print("using the embedded engine (no server)")
        return "embedded", None
    from shopsearch.plugin.localnode import ensure_node

    try:
        node = ensure_node(settings=settings)
    except (RuntimeError, ValueError, OSError) as exc:
        if requested == "opensearch":
            raise RuntimeError(f"OpenSearch could not start: {exc}") from exc
        print(f"OpenSearch could not start ({exc}); using the embedded engine instead")
        return "embedded", None
    where = f", logs in {node.log_path}" if node.log_path else ""
    print(f"OpenSearch at {node.url}{' (started)' if node.started else ' (already running)'}{where}")
    return "opensearch", node.url


def _shared_data(arg: str | None, settings: Settings) -> Path | None:
    if arg:
        return Path(arg)
    found = settings.data_dir
    return found if found and (found / "crowdflower" / "qrels-dev.txt").exists() else None


def _cli(argv: list[str]) -> None:
    """Run a shopsearch subcommand in-process; raise if it fails."""
    from .cli import main

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"`shopsearch {' '.join(argv)}` exited with {code}")


def _train_models(data: Path, models: Path) -> list[str]:
    """Train the demo's cross-encoder and conversion model unless cached; returns notes for the summary."""
    from shopsearch.reranker.conversion import is_current
    from shopsearch.reranker.model_card import CARD_JSON

    notes = []
    ce = models / "demo-ce"
    if (ce / CARD_JSON).exists():
        notes.append(f"cross-encoder: cached ({ce})")
    else:
        # Small on purpose (a couple of minutes on a laptop CPU): whole queries, short inputs, one epoch.
        _cli(["train", "cross-encoder", "--train", str(data / "crowdflower"), "--out", str(ce), "--epochs", "1",
              "--max-pairs", "600", "--max-valid-pairs", "200", "--max-length", "64", "--batch-size", "16"])
        notes.append(f"cross-encoder: trained ({ce})")
    lgbm = models / "demo-lgbm"
    if is_current(lgbm):  # a ranker of an older card version would be refused by the stage: train it again
        notes.append(f"conversion model: cached ({lgbm})")
    else:
        events = models / "demo-events.simulated.jsonl"
        # The cross-encoder's held-out queries stay out of the ranker's training too, and the ranker learns
        # from the same cross-encoder score the rerank stage will hand it.
        heldout = ce / "heldout-queries-crowdflower.tsv"  # absent in a demo-ce cached by an older version
        _cli(["simulate-events", "--data", str(data / "crowdflower"), "--out", str(events), "--sessions", "1500",
              *(["--exclude-queries", str(heldout)] if heldout.is_file() else [])])
        _cli(["train", "ranker", "--events", str(events), "--data", str(data / "crowdflower"), "--out", str(lgbm),
              "--folds", "3", "--cross-encoder", str(ce)])
        notes.append(f"conversion model: trained on SIMULATED events ({lgbm})")
    return notes


def _write_demo_profile(profiles: Path, with_models: bool) -> str:
    """A profile file naming the demo models (profiles refer to models by name)."""
    profiles.mkdir(parents=True, exist_ok=True)
    text = ('# Written by `shopsearch demo`: the default hybrid profile plus the demo\'s rerankers.\n'
            'description = "Demo: hybrid retrieval, cross-encoder rerank of the top 20, LightGBM conversion order"\n')
    if with_models:
        text += ('\n[rerank]\ndepth = 20\nbudget_ms = 2000\nmodel = "demo-ce"\n'
                 '\n[conversion]\nmodel = "demo-lgbm"\n')
    (profiles / "demo.toml").write_text(text)
    return "demo"


def demo_storefront_key(settings: Settings) -> str | None:
    """The search key the demo's storefront and examples send when API keys exist; None in local mode (no keys).

    The ``storefront_key`` setting when set; else the demo's own search key, kept in ``<home>/demo/storefront.key``
    (mode 0600; a search key is public by design: the storefront page ships it) and created when that file is
    missing or its key is no longer active.

    >>> demo_storefront_key(load_settings({"home": "/nonexistent"}, environ={})) is None
    True
    """
    from .keys import InvalidKey, KeyStore

    store = KeyStore(settings.keys_file)
    if not store.configured():
        return None
    if settings.storefront_key is not None:
        return settings.storefront_key.get_secret_value()
    path = settings.home / "demo" / "storefront.key"
    if path.exists():
        secret = path.read_text().strip()
        try:
            if store.verify(secret).role == "search":
                return secret
        except InvalidKey:
            pass  # revoked or expired: make a new one
    created = store.create("search", name="demo-storefront")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # a file left from before may have other bits
    path.write_text(created.secret + "\n")
    print(f"API keys exist ({settings.keys_file}): the demo's storefront sends the search key {created.key.id} "
          f"(demo-storefront, kept in {path})")
    return created.secret


def _get(base: str, path: str, params: dict[str, str] | None = None, key: str | None = None) -> dict:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode}")
        try:
            _get(base, "/readyz")
            return
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.5)
    raise RuntimeError(f"the API did not become ready at {base} within {timeout:.0f} s")


def _show_examples(base: str, profile: str, key: str | None) -> None:
    # The shipped hybrid profile first; then the same query through the demo's reranking profile, whose small
    # models (trained in a minute, the conversion model on simulated events) are there to show the pipeline.
    examples = [(q, p, "default") for q, p in EXAMPLES] + [(EXAMPLES[0][0], EXAMPLES[0][1], profile)]
    for query, params, prof in examples:
        res = _get(base, "/search", {"q": query, "size": "3", "profile": prof, **params}, key)
        shown = "".join(f"{k}={v} " for k, v in params.items())
        print(f"\nGET /search?q={query!r} {shown}profile={prof} -> {res['total']} results "
              f"in {res['timings_ms'].get('total', 0):.0f} ms{' (degraded)' if res.get('degraded') else ''}")
        for hit in res["hits"]:
            price = f"${hit['price']:.2f}" if hit.get("price") is not None else ""
            print(f"  {hit['rank']}. {hit['title'][:70]:<70} {hit.get('brand') or '':<10} {price}")
    sugg = _get(base, "/suggest", {"q": "wire", "size": "5"}, key)
    shown = [f"{s['text']} ({s['kind']})" for s in sugg.get("suggestions", [])] if "suggestions" in sugg else sugg
    print(f"\nGET /suggest?q='wire' -> {shown}")
    first = _get(base, "/search", {"q": "coffee maker", "size": "1"}, key)["hits"]
    if first:
        sim = _get(base, f"/products/{first[0]['id']}/similar", {"size": "3"}, key)
        titles = [h["title"] for h in sim.get("hits", [])]
        print(f"GET /products/{first[0]['id']}/similar -> {titles}")


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code (1, with the step that failed named on stderr, when a step fails)."""
    try:
        return _run(args)
    except RuntimeError as exc:
        print(f"shopsearch demo: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.products <= 0:
        raise ValueError(f"--products must be > 0; got {args.products}")
    settings = load_settings()
    home = settings.home
    started = time.monotonic()

    _step(1, "search engine")
    # An engine set in the config file or environment counts as asked for; the default tries OpenSearch first.
    requested = args.engine or (settings.engine if "engine" in settings.model_fields_set else None)
    engine, url = _pick_engine(requested, settings)
    url_args = ["--url", url] if url else []

    _step(2, "catalog")
    fields: list[str] = []
    if args.catalog:
        catalog = Path(args.catalog)
    else:
        from .demo_catalog import write_catalog

        catalog = write_catalog(home / "demo" / "catalog.jsonl", n=args.products)
        print(f"generated {args.products} demo products (synthetic, marked attributes.generated) -> {catalog}")
        # The generated colours are a storefront facet (attr.colour); a given catalog declares its own.
        mapping = home / "demo" / "fields.toml"
        mapping.write_text('facet_attributes = ["colour"]\n', encoding="utf-8")
        fields = ["--fields", str(mapping)]
    _cli(["index", str(catalog), "--index", args.index, "--engine", engine, *url_args, *fields,
          "--quarantine", str(home / "demo" / f"{args.index}.quarantine.jsonl")])

    _step(3, "models")
    data = None if args.no_models else _shared_data(args.data, settings)
    notes: list[str] = []
    if data is None:
        why = "--no-models" if args.no_models else "no labelled data; pass --data DIR"
        notes.append(f"models: skipped ({why}) - serving hybrid retrieval")
    else:
        notes += _train_models(data, home / "models")
    profile = _write_demo_profile(home / "profiles", with_models=data is not None)
    for note in notes:
        print(note)

    _step(4, "API")
    base = f"http://{args.host}:{args.port}"
    cmd = [sys.executable, "-m", "shopsearch.api.cli", "serve", "--host", args.host, "--port", str(args.port),
           "--engine", engine, "--index", args.index, *url_args]
    # The server layers the demo's profiles over the packaged ones and keeps its state in the same home; when API
    # keys exist, its storefront page embeds a search key (the storefront_key setting, docs/security.md).
    key = demo_storefront_key(settings)
    proc = subprocess.Popen(cmd, env=child_environment({"home": home, "profiles_dir": home / "profiles",
                                                        "storefront_key": key}))
    try:
        _wait_ready(base, proc)
        _show_examples(base, profile, key)
        console = f"{base}/console" + (" (asks for an admin key)" if key else "")
        print(f"\ndemo ready in {time.monotonic() - started:.0f} s: storefront {base}/  console {console}  "
              f"API {base}/search?q=earbuds  (engine {engine}, index {args.index}, profile {profile})")
        if args.exit:
            return 0
        print("serving; press Ctrl-C to stop")
        proc.wait()
        return proc.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()  # reaped, so no zombie outlives the demo
