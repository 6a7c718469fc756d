"""``./puter.sh stats``: what the record says, as a table and a picture.

Reads ``metacognition.jsonl`` (the Architect's cycles; the self-tuning loop's practice
cycles are left out) and prints, per bucket of cycles (a day, or a hundred cycles when
the record spans one day or less): cycles, pass rate, median cycle time and mean CEM,
then the adaptations.  Writes a PNG (matplotlib): cycles over time, pass rate and
median cycle time per bucket, CEM per cycle, and the adaptations marked on the
timeline (adopted solid, refused dotted).

    python -m batos.stats [--log FILE] [--png FILE] [--per day|100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from batos.autotelic import read_events


def buckets(events: list[dict], per: str | None = None) -> tuple[str, list[dict]]:
    """(how, rows): one row per day (or per 100 cycles) of the Architect's cycles."""
    ends = [e for e in events if e.get("event") == "cycle_end" and not e.get("practice")
            and isinstance(e.get("ts"), (int, float))]
    if not ends:
        return "day", []
    span = ends[-1]["ts"] - ends[0]["ts"]
    how = per or ("day" if span > 86400 else "100")
    groups: dict[str, list[dict]] = {}
    for i, e in enumerate(ends):
        key = time.strftime("%Y-%m-%d", time.localtime(e["ts"])) if how == "day" else \
            f"{i // 100 * 100 + 1}-{i // 100 * 100 + 100}"
        groups.setdefault(key, []).append(e)
    rows = []
    for key, group in groups.items():
        scores = [e["cem"]["score"] for e in group if isinstance(e.get("cem"), dict)]
        rows.append({"bucket": key, "cycles": len(group),
                     "pass_rate": sum(e.get("state") == "COMPLETE" for e in group) / len(group),
                     "median_s": statistics.median(float(e.get("duration_s") or 0) for e in group),
                     "mean_cem": statistics.fmean(scores) if scores else None})
    return how, rows


def adaptations(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("event") == "adaptation"]


def table(events: list[dict], per: str | None = None) -> str:
    how, rows = buckets(events, per)
    if not rows:
        return "no cycles in the record yet"
    lines = [f"{'cycles' if how == '100' else 'day':<12} {'n':>5} {'pass':>6} {'median s':>9} {'CEM':>6}"]
    for r in rows:
        cem = f"{r['mean_cem']:.3f}" if r["mean_cem"] is not None else "-"
        lines.append(f"{r['bucket']:<12} {r['cycles']:>5} {r['pass_rate']:>6.0%} {r['median_s']:>9.1f} {cem:>6}")
    ads = adaptations(events)
    if ads:
        lines.append("")
        lines.append(f"adaptations: {len(ads)} rounds, {sum(bool(a.get('adopted')) for a in ads)} adopted")
        for a in ads[-10:]:
            p = a.get("proposal") or {}
            value = p.get('value') if isinstance(p.get('value'), int) else repr(str(p.get('value'))[:40])
            what = f"{p.get('kind')} {p.get('target')}={value}" if p else "-"
            lines.append(f"  {time.strftime('%m-%d %H:%M', time.localtime(a.get('ts', 0)))} "
                         f"{'adopted ' if a.get('adopted') else 'refused '} {what}  {str(a.get('outcome'))[:60]}")
    return "\n".join(lines)


def plot(events: list[dict], path: Path, per: str | None = None) -> Path:
    """The PNG: cycles over time, pass rate and median time per bucket, CEM, adaptations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ends = [e for e in events if e.get("event") == "cycle_end" and not e.get("practice")
            and isinstance(e.get("ts"), (int, float))]
    how, rows = buckets(events, per)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), constrained_layout=True)
    t = [e["ts"] for e in ends]
    t0 = t[0] if t else time.time()
    hours = [(x - t0) / 3600 for x in t]
    axes[0].plot(hours, range(1, len(hours) + 1), color="tab:blue")
    axes[0].set_ylabel("cycles (cumulative)")
    axes[0].set_xlabel("hours since the first cycle")
    cem_points = [((e["ts"] - t0) / 3600, e["cem"]["score"]) for e in ends if isinstance(e.get("cem"), dict)]
    if cem_points:
        ax = axes[0].twinx()
        ax.scatter(*zip(*cem_points), s=8, color="tab:green", label="CEM")
        ax.set_ylabel("CEM score")
        ax.set_ylim(0, 1)
    for a in adaptations(events):
        x = (a.get("ts", t0) - t0) / 3600
        axes[0].axvline(x, color="tab:red", linestyle="-" if a.get("adopted") else ":", linewidth=1)
    labels = [r["bucket"] for r in rows]
    axes[1].bar(labels, [r["pass_rate"] * 100 for r in rows], color="tab:blue")
    axes[1].set_ylabel("pass rate %")
    axes[1].set_ylim(0, 100)
    axes[2].bar(labels, [r["median_s"] for r in rows], color="tab:orange")
    axes[2].set_ylabel("median cycle s")
    axes[2].set_xlabel("per day" if how == "day" else "per hundred cycles")
    fig.suptitle(f"BAT OS: {len(ends)} cycles, {len(adaptations(events))} adaptation rounds "
                 "(red: adopted solid, refused dotted)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    import config
    ap = argparse.ArgumentParser(prog="python -m batos.stats", description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", help="the metacognition log (default: BATOS_HOME's)")
    ap.add_argument("--png", help="where to write the picture (default: BATOS_HOME/stats.png)")
    ap.add_argument("--per", choices=("day", "100"), help="bucket by day or by a hundred cycles")
    args = ap.parse_args(argv)
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    log = Path(args.log) if args.log else settings.log_path
    if not log.exists():
        print(f"stats: no record at {log} yet (the kernel writes it as cycles run)", file=sys.stderr)
        return 1
    events: list[Any] = read_events(log, limit=10 ** 7)
    print(table(events, args.per))
    png = plot(events, Path(args.png) if args.png else settings.HOME / "stats.png", args.per)
    print(f"\npicture: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
