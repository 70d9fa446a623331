"""What a restart costs the API's event history: the whole event log is read again, and the first
GET /recommendations waits for it (reranker/event_context.py).

    python bench/history_restart.py --events 1000000

Writes ``--events`` SIMULATED events (70% impressions, 20% clicks, 6% add-to-carts, 4% purchases; 50,000
shoppers, 10,000 products; seeded) into a temporary event log, then, each in a fresh process so each peak RSS is
its own, reads it back:

- ``chunked``: what serving does, ``EventLogHistory.refresh()``, which reads and applies ``max_events`` at a time;
- ``whole``: the baseline, the log read into one list first (``EventLog.read_new()`` without a limit, as serving
  read it before), then applied in the same chunks.

Prints seconds, events per second and peak RSS side by side, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _main import finish

READ = """
import json, resource, sys, time
from shopsearch.reranker.event_context import EventLogHistory
directory, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
h = EventLogHistory(directory, lambda pid: None, refresh_s=0)
if mode == "whole":
    events, _ = h._log.read_new()
    for start in range(0, len(events), h.max_events):
        h._apply(events[start:start + h.max_events])
    applied = len(events)
else:
    applied = h.refresh()
print(json.dumps({"applied": applied, "seconds": time.perf_counter() - t,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_log(directory: Path, n: int, seed: int) -> None:
    """``n`` SIMULATED events over one month, appended in batches of 50,000."""
    import random

    from tqdm import tqdm

    from shopsearch.events import Event, EventLog

    rng, log, batch = random.Random(seed), EventLog(directory), []
    kinds, weights = ["impression", "click", "add_to_cart", "purchase"], [70, 20, 6, 4]
    for i in tqdm(range(n), desc="write events", unit=" events", mininterval=1.0):
        user, kind = rng.randrange(50_000), rng.choices(kinds, weights)[0]
        batch.append(Event(type=kind, product_id=f"p{rng.randrange(10_000)}", user_id=f"u{user}",
                           session_id=f"s{user}", timestamp=f"2026-11-{1 + i * 30 // n:02d}T00:00:00Z",
                           simulated=True, **({"query_id": "q", "position": 1} if kind in ("impression", "click")
                                              else {})))
        if len(batch) == 50_000:
            log.append(batch)
            batch = []
    if batch:
        log.append(batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="history-restart-") as tmp:
        write_log(Path(tmp), args.events, args.seed)
        rows = {mode: json.loads(subprocess.run([sys.executable, "-c", READ, tmp, mode], check=True,
                                                capture_output=True, text=True).stdout)
                for mode in ("whole", "chunked")}
    print(f"\n{'read':<22}{'applied':>12}{'seconds':>10}{'events/s':>12}{'peak RSS MiB':>14}")
    for mode, label in (("whole", "whole log, then apply"), ("chunked", "chunked (serving)")):
        r = rows[mode]
        print(f"{label:<22}{r['applied']:>12,}{r['seconds']:>10.1f}{r['applied'] / r['seconds']:>12,.0f}"
              f"{r['rss_mib']:>14.0f}")
    w, c = rows["whole"], rows["chunked"]
    print(f"\nrestart of a {args.events:,}-event log: {c['seconds']:.1f} s chunked ({c['rss_mib']:.0f} MiB peak) "
          f"against {w['seconds']:.1f} s whole ({w['rss_mib']:.0f} MiB peak)")
    return 0


if __name__ == "__main__":
    finish(main)
