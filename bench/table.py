"""The benchmark's table: figures of ours, the floor and a peer, their ratios, a goal and a verdict per row."""

from __future__ import annotations

from typing import Any

HEADER = ("figure", "ours", "floor", "peer", "ours/floor", "ours/peer", "goal", "verdict")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def ratio(ours: Any, other: Any) -> str:
    if not isinstance(ours, (int, float)) or not isinstance(other, (int, float)):
        return "-"
    if other == 0:
        return "-" if ours == 0 else "inf"
    return f"{ours / other:.2f}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


class Table:
    """Rows in the order added; :meth:`goal` also records a verdict for the summary under the table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.goals: list[tuple[str, bool]] = []

    def section(self, title: str) -> None:
        self.rows.append((title,) + ("",) * (len(HEADER) - 1))

    def add(self, label: str, ours: Any, floor: Any = None, peer: Any = None, goal: str = "",
            ok: bool | None = None, digits: int = 1, ratios: bool = True, name: str | None = None) -> None:
        """One row; with ``ok`` given, the goal counts in the summary under ``name`` (default: the label)."""
        cells = (label.rstrip(), fmt(ours, digits), fmt(floor, digits), fmt(peer, digits),
                 ratio(ours, floor) if ratios else "-", ratio(ours, peer) if ratios else "-",
                 goal, "" if ok is None else verdict(ok))
        self.rows.append(cells)
        if ok is not None:
            self.goals.append((name or label.strip(), ok))

    def render(self) -> str:
        widths = [max(len(row[i]) for row in self.rows + [HEADER]) for i in range(len(HEADER))]

        def line(row: tuple[str, ...]) -> str:
            return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

        out = [line(HEADER), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        out += [line(row) for row in self.rows]
        out.append("")
        out += [f"- {verdict(ok)}: {name}" for name, ok in self.goals]
        return "\n".join(out)


def fire_rows(table: Table, ours, floor, peer, goals: bool) -> None:
    """Rows of one fire-accuracy comparison (:class:`measure.Accuracy` each; ``floor`` may be None)."""
    calls = lambda acc: None if acc is None else f"{acc.made}/{acc.expected}"  # noqa: E731
    get = lambda acc, name: None if acc is None else getattr(acc, name)  # noqa: E731
    ok = ours.missed == 0 and ours.extra == 0
    table.add("  calls made / expected", calls(ours), calls(floor), calls(peer), *(("no missed", ok) if goals else ()),
              name="no missed calls")
    p50_ok = floor is not None and ours.p50_ms <= 2.0 * floor.p50_ms
    table.add("  lateness p50 (ms)", ours.p50_ms, get(floor, "p50_ms"), peer.p50_ms,
              *(("floor <= 2x", p50_ok) if goals else ()), digits=2, name="lateness p50 <= 2x the floor's")
    if goals:
        p99_floor = ours.p99_ms <= 1.5 * floor.p99_ms
        p99_peer = ours.p99_ms <= 0.5 * peer.p99_ms
        table.add("  lateness p99 (ms)", ours.p99_ms, floor.p99_ms, peer.p99_ms, "floor <= 1.5x",
                  p99_floor, digits=2, name="lateness p99 <= 1.5x the floor's")
        table.rows.append(("  lateness p99, against the peer", "", "", "", "", ratio(ours.p99_ms, peer.p99_ms),
                           "peer <= 0.5x", verdict(p99_peer)))
        table.goals.append(("lateness p99 <= 0.5x the fair APScheduler's", p99_peer))
    else:
        ok = ours.p99_ms <= peer.p99_ms
        table.add("  lateness p99 (ms)", ours.p99_ms, None, peer.p99_ms, "peer <= 1.0x", ok, digits=2,
                  name="lateness p99 under HTTP load <= APScheduler's")
    table.add("  lateness max (ms)", ours.max_ms, get(floor, "max_ms"), peer.max_ms, digits=2)
    ok = abs(ours.drift_ms) <= 5.0
    table.add("  drift over the run (ms)", ours.drift_ms, get(floor, "drift_ms"), peer.drift_ms,
              *(("within +-5", ok) if goals else ()), digits=2, ratios=False, name="drift within +-5 ms")


def cost_rows(table: Table, costs: list, plan) -> None:
    """Rows of the cost-growth benchmark (:class:`costs.Cost` each) and of ``plan``'s speed."""
    for records in sorted({cost.records for cost in costs}):
        row = [cost for cost in costs if cost.records == records]
        sizes = "/".join(str(cost.rounds) for cost in row)
        for label, field in (("tick", "tick_us"), ("/status", "status_us")):
            values = [getattr(cost, field) for cost in row]
            spread = max(values) / min(values)
            table.rows.append((f"  {label} (us), {sizes} rounds, {records} rec.",
                               " / ".join(f"{value:.1f}" for value in values), "-", "-", "-",
                               f"{spread:.2f} (max/min)", "flat within 1.5x", verdict(spread <= 1.5)))
            table.goals.append((f"{label} cost flat within 1.5x from {row[0].rounds} to {row[-1].rounds} rounds, "
                                f"{records} records", spread <= 1.5))
    row = [cost for cost in costs if cost.records == costs[0].records]
    table.rows.append(("  mode re-evaluated at a boundary (us)", " / ".join(f"{c.boundary_us:.0f}" for c in row),
                       "-", "-", "-", "-", "", ""))
    ok = plan.race_weekend_s <= 1.3 * plan.off_season_s
    table.add("  plan 48 h: race weekend (peer: off-season), s", plan.race_weekend_s, None, plan.off_season_s,
              "peer <= 1.3x", ok, digits=3, name="race-weekend plan <= 1.3x an off-season one")
    table.add("  plan 48 h race weekend: lines printed", plan.race_weekend_lines, None, None, "< 60",
              plan.race_weekend_lines < 60, digits=0, ratios=False, name="race-weekend plan under 60 lines")
