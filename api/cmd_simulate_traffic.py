"""``shopsearch simulate-traffic``: SIMULATED shoppers search the served API and click, cart and buy through
POST /events, so the whole log → judge → learn → experiment loop runs for real.

Each session: a shopper (the offline simulator's users: liked brands and categories) issues a query (from
``--queries`` or the data folder's judged queries) with ``GET /search``, reads the shown list (ids, positions,
prices, ratings, brands, categories from the response), decides with :func:`shopsearch.reranker.simulate.decide`
(satisfaction from the folder's human relevance grades; an unjudged product counts as grade 0) and posts the
impressions and its actions to ``POST /events`` as UBI 1.0 events with ``event_attributes.simulated = true``.
The searches are marked too when the API's OpenAPI document lists a ``simulated`` parameter of ``/search``
(``query_attributes.simulated``); ``client_id`` is sent when listed. See docs/simulator.md.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the CLI stays cheap to import: these load in run()
    from shopsearch.reranker.sim_catalog import JudgedData
    from shopsearch.events import Event
    from shopsearch.reranker.simulate import Action, ShownProduct, SimParams, SimSummary, SimUser

RETRYABLE = (409, 429, 503)  # in flight elsewhere, overload, outage: retried with backoff; no other >= 400
MAX_WAIT_S = 30.0  # longest single backoff wait, whatever Retry-After says
DEFAULT_MAX_EVENTS = 100  # events per POST when the API does not document its limit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate-traffic`` subcommand."""
    p = subparsers.add_parser(
        "simulate-traffic", help="SIMULATED shoppers search and buy through a served API (/search, /events)",
        description="Simulated shoppers (position-biased clicks, price/rating-sensitive add-to-cart and purchase, "
                    "satisfaction from the data folder's relevance labels) search the served API and post their "
                    "behaviour to POST /events. Every record is marked SIMULATED; see docs/simulator.md.")
    p.add_argument("--url", required=True, help="base URL of the served API, e.g. http://127.0.0.1:8000")
    p.add_argument("--data", required=True, help="data folder with products.jsonl, queries-dev.tsv, qrels-dev.txt")
    p.add_argument("--sessions", type=int, required=True, help="number of shopper sessions (one search each)")
    p.add_argument("--queries", metavar="TSV", help="queries to search (qid<TAB>text; qids judged in --data); "
                                                    "default: the folder's judged queries")
    p.add_argument("--seed", type=int, default=0, help="random seed of shoppers, queries and decisions (default 0)")
    p.add_argument("--concurrency", type=int, default=4, help="sessions in flight at once (default 4)")
    p.add_argument("--users", type=int, default=200, help="number of simulated shoppers (default 200)")
    p.add_argument("--page-size", type=int, default=10, help="results asked for per search (default 10)")
    p.add_argument("--key", help="search API key sent as X-API-Key (default: the api_key setting, "
                                 "$SHOPSEARCH_API_KEY; none: the API's local mode)")
    p.add_argument("--retries", type=int, default=5, help="retries of a request answered 429/503 or not "
                                                          "answered at all, with exponential backoff (default 5)")
    p.add_argument("--backoff", type=float, default=0.5, help="first backoff wait in seconds, doubled per retry "
                                                              "(default 0.5; a Retry-After header wins)")
    p.set_defaults(run=run)


class TrafficError(Exception):
    """The run cannot go on: the API is unreachable or rejected a request as malformed (4xx)."""


class ApiFeatures(NamedTuple):
    """What the served API accepts, read from its OpenAPI document: the /search parameters and how many events
    one POST /events may carry."""

    search_params: frozenset[str]
    max_events: int


class PlannedSession(NamedTuple):
    """One session decided up front from the seed: its index, shopper and query."""

    index: int
    user: SimUser
    qid: str
    query: str


def _shopper_summary() -> SimSummary:
    from shopsearch.reranker.simulate import SimSummary

    return SimSummary()


@dataclass
class TrafficSummary:
    """What a run did: the shoppers' counts as the offline simulator keeps them (sessions completed, impressions,
    clicks, add_to_carts, purchases), the searches, the events posted, the sessions that failed (``errors``) and
    the retries. Every record behind them is SIMULATED."""

    shoppers: SimSummary = field(default_factory=_shopper_summary)
    searches: int = 0
    events: int = 0
    errors: int = 0
    retries: int = 0
    seconds: float = 0.0

    def add(self, other: TrafficSummary) -> None:
        """Add another summary's counts (not its seconds)."""
        self.shoppers.add(other.shoppers)
        self.searches, self.events = self.searches + other.searches, self.events + other.events
        self.errors, self.retries = self.errors + other.errors, self.retries + other.retries

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        rate = self.searches / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.shoppers.line()}; {self.searches} searches, {self.events} events posted, {self.errors} "
                f"errors, {self.retries} retries; {rate:.1f} searches/s")


class ApiClient:
    """HTTP to the served API: one ``requests.Session`` per thread, bounded retries of 429/503 and lost
    connections with exponential backoff, every retry counted."""

    def __init__(self, url: str, retries: int, backoff: float, timeout: float = 30.0, key: str | None = None) -> None:
        self.url, self.retries, self.backoff, self.timeout = url.rstrip("/"), retries, backoff, timeout
        self.key = key
        self._local = threading.local()

    def _session(self):
        import requests

        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            self._local.session.headers["User-Agent"] = "shopsearch-simulate-traffic"
            if self.key:
                self._local.session.headers["X-API-Key"] = self.key
        return self._local.session

    def request(self, method: str, path: str, tally: TrafficSummary, retries: int | None = None, **kwargs: Any):
        """The response to ``method path`` (status < 400 or a non-retryable error status).

        Args:
            retries: overrides the client's number of retries (0: fail at once, as the first contact does).
        Raises:
            TrafficError: no answer (connection refused, timeout) after the retries.
            RetriesExhausted: still 429/503 after the retries.
        """
        import requests

        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            resp, failure = None, ""
            try:
                resp = self._session().request(method, self.url + path, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if resp is not None and resp.status_code not in RETRYABLE:
                return resp
            if attempt >= retries:
                if resp is None:
                    raise TrafficError(f"cannot reach {method} {self.url}{path} ({attempt + 1} tries): {failure}")
                raise RetriesExhausted(f"{method} {path} answered {_describe(resp)} after {attempt + 1} tries")
            tally.retries += 1
            time.sleep(self._wait(attempt, resp))
            attempt += 1

    def _wait(self, attempt: int, resp) -> float:
        """Exponential backoff from ``backoff``; a numeric Retry-After header takes precedence (capped)."""
        wait = self.backoff * 2 ** attempt
        header = resp.headers.get("Retry-After") if resp is not None else None
        if header is not None and header.strip().isdigit():
            wait = float(header)
        return min(wait, MAX_WAIT_S)


class RetriesExhausted(Exception):
    """A request was still answered 429/503 after every retry (counted as an error; the run goes on)."""


def _describe(resp) -> str:
    """``status code: message`` of an API error response (its JSON error body when there is one)."""
    try:
        err = resp.json().get("error", {})
        return f"{resp.status_code} {err.get('code')}: {err.get('message')}"
    except (ValueError, AttributeError):
        return f"{resp.status_code} {resp.reason}"


def api_features(client: ApiClient) -> ApiFeatures:
    """Read the API's OpenAPI document: the parameters /search takes and how many events one POST may carry.

    Raises:
        TrafficError: the URL does not answer, or answers /openapi.json with something else than the document.
    """
    resp = client.request("GET", "/openapi.json", TrafficSummary(), retries=0)
    if resp.status_code != 200:
        raise TrafficError(f"--url {client.url!r} is not a shopsearch API: GET /openapi.json answered "
                           f"{_describe(resp)}")
    try:
        spec = resp.json()
        search = spec["paths"]["/search"]["get"]
        body = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    except (ValueError, KeyError, TypeError):
        raise TrafficError(f"--url {client.url!r} is not a shopsearch API: /openapi.json lacks /search or "
                           f"/events") from None
    limits = [v.get("maxItems") for v in body.get("oneOf", []) if isinstance(v, dict) and v.get("maxItems")]
    return ApiFeatures(frozenset(p["name"] for p in search.get("parameters", [])),
                       int(limits[0]) if limits else DEFAULT_MAX_EVENTS)


def plan_sessions(n: int, users: list[SimUser], queries: list[tuple[str, str]], seed: int) -> list[PlannedSession]:
    """``n`` sessions, each a uniformly drawn shopper and query (same seed, same plan)."""
    import numpy as np

    rng = np.random.default_rng([seed, 1])
    who = rng.integers(len(users), size=n)
    what = rng.integers(len(queries), size=n)
    return [PlannedSession(i, users[int(u)], *queries[int(q)]) for i, (u, q) in enumerate(zip(who, what))]


def _signing_key() -> bytes | None:
    """The API's event signing key when this machine's settings hold it (the configured key, or the file the API
    generated under the same home), so simulated shoppers can prove who they are as a shop's backend would; None
    otherwise (never generated here: a key only this run knew would prove nothing to the API)."""
    from shopsearch.settings import load_settings

    from .hit_tokens import signing_key

    settings = load_settings()
    if settings.event_signing_key is None and not Path(settings.event_signing_key_file).is_file():
        return None
    try:
        return signing_key(settings)
    except (OSError, ValueError):
        return None


class Traffic:
    """One run's shared state: the client, the judgments, the shopper model and what the API accepts."""

    def __init__(self, client: ApiClient, features: ApiFeatures, data: JudgedData, params: SimParams,
                 seed: int, signing_key: bytes | None = None) -> None:
        self.client, self.features, self.data, self.params, self.seed = client, features, data, params, seed
        self.signing_key = signing_key  # the API's event signing key: the shoppers' client_tokens
        self.run_id = uuid.uuid4().hex[:8]  # session ids stay unique across runs against the same API

    def session(self, plan: PlannedSession) -> TrafficSummary:
        """Search, decide and post one session's events; its counts (a session whose retries ran out: an error).

        Raises:
            TrafficError: the API rejected a request as malformed (4xx) or stopped answering.
        """
        import numpy as np

        from shopsearch.reranker.simulate import decide, summarize

        tally = TrafficSummary()
        sid = f"simt-{self.run_id}-{plan.index:06d}"
        try:
            body = self._search(plan, sid, tally)
            shown = self._shown(plan.qid, body["hits"])
            rng = np.random.default_rng([self.seed, 2, plan.index])  # per session: independent of concurrency
            actions = decide(self.params, shown, plan.user, self.data.max_grade, rng)
            events = self._events(plan, sid, body["query_id"], shown, actions)
            bodies = ubi_bodies(events, plan.user.id, {str(h["id"]): h.get("token") for h in body["hits"]})
            for i in range(0, len(bodies), self.features.max_events):
                self._post(bodies[i:i + self.features.max_events], tally)
        except RetriesExhausted:
            tally.errors += 1
            return tally
        summarize(events, tally.shoppers)
        tally.events = len(events)
        return tally

    def _search(self, plan: PlannedSession, sid: str, tally: TrafficSummary) -> dict:
        """GET /search as the shopper; the response body."""
        params = {"q": plan.query, "size": self.params.page_size, "session_id": sid, "user_id": plan.user.id}
        if "client_id" in self.features.search_params:
            params["client_id"] = plan.user.id  # a client that outlives sessions, as a browser does
        if "simulated" in self.features.search_params:
            params["simulated"] = "true"
        if self.signing_key is not None and "client_token" in self.features.search_params:
            from .hit_tokens import client_token

            params["client_token"] = client_token(self.signing_key, plan.user.id)  # their affinity ranks for them
        resp = self.client.request("GET", "/search", tally, params=params)
        if resp.status_code != 200:
            raise TrafficError(f"GET /search?q={plan.query!r} answered {_describe(resp)}")
        try:
            body = resp.json()
            if not isinstance(body["query_id"], str) or not isinstance(body["hits"], list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise TrafficError(f"GET /search?q={plan.query!r} answered 200 without a query_id and hits; is --url "
                               f"a shopsearch API?") from None
        tally.searches += 1
        return body

    def _shown(self, qid: str, hits: list[dict]) -> list[ShownProduct]:
        """The shown list as the shopper model reads it; a product without price/rating/brand/category gets the
        SIMULATED one the offline simulator gives it, so both judge the same product the same way."""
        from shopsearch.indexer.records import Product
        from shopsearch.reranker.sim_catalog import with_simulated_attributes
        from shopsearch.reranker.simulate import ShownProduct

        grades = self.data.qrels.get(qid, {})
        # A degraded page (its products not fetched before the deadline) has ids and scores only.
        return [ShownProduct(int(h["rank"]), with_simulated_attributes(Product.from_source({"title": "", **h})),
                             grades.get(str(h["id"]), 0)) for h in hits]

    def _events(self, plan: PlannedSession, sid: str, query_id: str, shown: list[ShownProduct],
                actions: list[Action]) -> list[Event]:
        """Impressions of the shown list, then the actions, as events marked simulated, each with an event_id of
        its own (so a retried POST is answered duplicate instead of counted twice)."""
        from shopsearch.events import Event
        from shopsearch.timestamps import format_timestamp

        price = {s.product.id: s.product.price for s in shown}
        kinds = [("impression", s.position, s.product.id) for s in shown]
        kinds += [(a.type, a.position, a.product_id) for a in actions]
        # Real time, not the simulated dwell: a future timestamp would sort after searches made meanwhile.
        return [Event(type=kind, query_id=query_id, query=plan.query, product_id=pid, position=position,
                      user_id=plan.user.id, session_id=sid, price=price[pid], simulated=True,
                      timestamp=format_timestamp(datetime.now(timezone.utc)), event_id=uuid.uuid4().hex)
                for kind, position, pid in kinds]

    def _post(self, batch: list[dict], tally: TrafficSummary) -> None:
        """POST one batch to /events.

        Raises:
            TrafficError: the API did not accept it (200/202).
        """
        resp = self.client.request("POST", "/events", tally, json=batch)
        if resp.status_code not in (200, 202):
            raise TrafficError(f"POST /events answered {_describe(resp)}")


def ubi_bodies(events: list[Event], client_id: str, tokens: dict[str, str | None]) -> list[dict]:
    """POST /events bodies: each event as a UBI 1.0 event (``event_attributes.simulated`` and ``event_id`` kept)
    of ``client_id``, with its hit's ``event_attributes.token`` from the /search response (``tokens``: product id
    -> token), which the API needs to accept an event naming a query.

    The client is the shopper, as on /search, so an experiment keeps a shopper in one arm across sessions.
    """
    from shopsearch.ubi import to_ubi_event

    bodies = []
    for ev in events:
        body = to_ubi_event(ev).model_copy(update={"client_id": client_id}).model_dump(mode="json", exclude_none=True)
        if tokens.get(ev.product_id) is not None:
            body["event_attributes"]["token"] = tokens[ev.product_id]
        bodies.append(body)
    return bodies


def _queries(data: JudgedData, path: str | None) -> list[tuple[str, str]]:
    """(qid, text) to search: ``path``'s queries judged in ``data``, else every judged query of ``data``.

    Raises:
        ValueError: none of ``path``'s queries is judged in the data folder.
    """
    if path is None:
        return sorted(data.queries.items())
    from shopsearch.judgments import read_queries

    given = read_queries(path)
    judged = [(q.qid, q.text) for q in given if q.qid in data.qrels]
    if not judged:
        raise ValueError(f"--queries {path!r}: none of its {len(given)} queries is judged in the data folder")
    if len(judged) < len(given):
        print(f"simulate-traffic: {len(given) - len(judged)} of {len(given)} queries in {path} have no judgments "
              f"in the data folder; skipped", file=sys.stderr)
    return judged


def _check(args: argparse.Namespace) -> None:
    """Raise ValueError naming the first bad argument."""
    if not args.url.startswith(("http://", "https://")):
        raise ValueError(f"--url must start with http:// or https://; got {args.url!r}")
    for name, low in (("sessions", 1), ("concurrency", 1), ("retries", 0), ("seed", 0)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name} must be >= {low}; got {getattr(args, name)}")
    if args.concurrency > 256:
        raise ValueError(f"--concurrency must be <= 256; got {args.concurrency}")
    if args.backoff < 0:
        raise ValueError(f"--backoff must be >= 0 seconds; got {args.backoff}")


def run(args: argparse.Namespace) -> int:
    """Run the sessions; prints the summary line. Returns 0, or 1 when a request failed (the message says which).

    Raises:
        ValueError / FileNotFoundError: a bad argument or data folder (the CLI prints it as one line).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    import numpy as np
    from tqdm import tqdm

    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.simulate import SimParams, make_users

    _check(args)
    params = SimParams(sessions=args.sessions, users=args.users, seed=args.seed, page_size=args.page_size)
    data = load_judged(args.data)
    if not data.queries:
        raise ValueError(f"--data {args.data!r} has no judged query")
    queries = _queries(data, args.queries)
    # The offline simulator's shoppers, renamed per seed: another seed's simu-00001 likes other brands.
    users = [replace(u, id=f"{u.id}.s{args.seed}") for u in make_users(params, np.random.default_rng(args.seed))]
    plan = plan_sessions(args.sessions, users, queries, args.seed)
    key = args.key
    if key is None:
        from shopsearch.settings import load_settings

        secret = load_settings().api_key
        key = secret.get_secret_value() if secret else None
    client = ApiClient(args.url, args.retries, args.backoff, key=key)
    summary = TrafficSummary()
    try:
        features = api_features(client)
        missing = [p for p in ("client_id", "simulated") if p not in features.search_params]
        if missing:  # an older API: the searches go unmarked (the events are marked all the same)
            print(f"simulate-traffic: note: /search takes no {' or '.join(missing)} parameter; searches are sent "
                  f"without", file=sys.stderr)
        traffic = Traffic(client, features, data, params, args.seed, _signing_key())
        if traffic.signing_key is None:
            print("simulate-traffic: note: no event signing key here (event_signing_key, or its file under this "
                  "home): the shoppers' searches are not ranked by their own affinity", file=sys.stderr)
        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool, \
                    tqdm(total=len(plan), desc="simulate-traffic", unit="session") as bar:
                futures = [pool.submit(traffic.session, p) for p in plan]
                try:
                    for fut in as_completed(futures):
                        summary.add(fut.result())
                        bar.update(1)
                except BaseException:  # a fatal error or Ctrl-C: start no more sessions
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            summary.seconds = time.perf_counter() - t0
    except TrafficError as exc:
        print(f"shopsearch simulate-traffic: error: {exc}", file=sys.stderr)
        print(summary.line())
        return 1
    print(summary.line())
    return 1 if summary.errors else 0
