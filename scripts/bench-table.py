#!/usr/bin/env python3
"""Collects the `metric <name> <value>` lines the benches print into one table of measured
value, goal and ratio; prints it and puts it into docs/BENCHMARKS.md between its markers
(replacing the previous run's table). Usage: bench-table.py OUTDIR BENCHMARKS.md COMMIT [--print]
(--print: a partial run; the table is printed, not written, and missing rows are left out)."""

import datetime
import pathlib
import sys

# name: (what, unit, "<=" or ">=", goal, issue)
GOALS = {
    "vaults_per_gib_resting": ("idle resident vaults per GiB (at rest)", "", ">=", 25000, 18),
    "vaults_per_gib_open": ("idle resident vaults per GiB (open)", "", ">=", None, 18),
    "wake_read_ms": ("read of a resting vault (wakes it)", "ms", "<=", 1.0, 18),
    "fsyncs_per_write_path": ("fsyncs per acknowledged write, write path", "", "<=", 2.0, 18),
    "fsyncs_per_write": ("fsyncs per acknowledged write, compaction included", "", "<=", None, 18),
    "durable_writes_per_s_32": ("durable writes/s across 32 vaults", "/s", ">=", 2000, 18),
    "durable_writes_ratio_raw": ("durable writes/s across 32 vaults / raw one at a time", "", ">=", None, 18),
    "durable_writes_ratio_raw_32": ("durable writes/s across 32 vaults / raw 32 at once", "", ">=", None, 18),
    "vaults_per_gib_10k": ("vaults per GiB with 10,000 resting", "", ">=", 25000, 18),
    "accounted_vs_rss_10k": ("memory accounted / RSS, 10,000 vaults", "", ">=", None, 18),
    "change_1kib_ms": ("1 KiB change, 1 MiB vault, median", "ms", "<=", None, 4),
    "write_cost_ratio_100mib": ("write cost 100 MiB / 1 MiB vault", "x", "<=", 1.2, 4),
    "cold_load_10mib_ms": ("cold load 10 MiB vault excl. Argon2id", "ms", "<=", 25.0, 18),
    "warm_echo_p50": ("warm vault op / raw NATS echo by another process, p50", "x", "<=", 1.3, 18),
    "warm_echo_p99": ("warm vault op / raw NATS echo by another process, p99", "x", "<=", 1.3, 18),
    "warm_echo_inprocess_p50": ("warm vault op / raw echo answered in-process, p50", "x", "<=", None, 18),
    "throughput_ratio_1": ("throughput vs raw echo, 1 in flight", "", ">=", None, 18),
    "throughput_ratio_8": ("throughput vs raw echo, 8 in flight", "", ">=", None, 18),
    "throughput_ratio_32": ("throughput vs raw echo, 32 in flight", "", ">=", 0.5, 18),
    "item_create_ms": ("item create through the session, median", "ms", "<=", 1.2, 18),
    "item_update_ms": ("item update, 10,000 items, median", "ms", "<=", None, 6),
    "peer_setup_ms": ("connection setup, invite to active", "ms", "<=", None, 14),
    "peer_throughput_ratio": ("messages/s vs raw JetStream publish+ack", "", ">=", 0.3, 14),
    "peer_throughput_synced_ratio": ("messages/s vs JetStream publish+ack synced per message", "", ">=", None, 14),
    "peer_latency_ratio": ("one message app to app / two NATS round trips", "x", "<=", None, 14),
    "backup_ratio_raw_aead": ("backup throughput / raw AEAD", "", ">=", None, 13),
    "restore_ratio_raw_aead": ("restore throughput / raw AEAD", "", ">=", None, 13),
}

BEGIN = "<!-- scripts/bench: begin -->"
END = "<!-- scripts/bench: end -->"


def main() -> None:
    outdir, doc, commit = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    partial = "--print" in sys.argv[4:]
    measured = {}
    for f in sorted(outdir.glob("*.txt")):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "metric":
                measured[parts[1]] = float(parts[2])
    rows = ["| measured | value | goal | ratio to goal | met |", "|---|---:|---:|---:|:-:|"]
    for name, (what, unit, op, goal, issue) in GOALS.items():
        if name not in measured:
            if not partial and goal is not None:
                rows.append(f"| {what} (issue {issue}) | not measured | {op.replace('<=', '≤').replace('>=', '≥')} {goal:g} {unit} | — | **no** |")
            continue
        v = measured[name]
        value = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
        if goal is None:
            rows.append(f"| {what} (issue {issue}) | {value} {unit} | — | — | |")
            continue
        met = v <= goal if op == "<=" else v >= goal
        # Ratio > 1 means better than the goal, whichever way the goal points.
        ratio = (goal / v if v else float("inf")) if op == "<=" else v / goal
        g = f"{goal:,.0f}" if goal >= 100 else f"{goal:g}"
        rows.append(
            f"| {what} (issue {issue}) | {value} {unit} | {op.replace('<=', '≤').replace('>=', '≥')} {g} {unit} | {ratio:.2f} | {'yes' if met else '**no**'} |"
        )
    unknown = sorted(set(measured) - set(GOALS))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        [
            f"Latest `./scripts/bench` run: {when}, commit {commit}, this machine (2 vCPU). "
            "Ratio to goal > 1 is better than the goal.",
            "",
            *rows,
        ]
        + ([f"\nMetrics without a goal entry: {', '.join(unknown)}"] if unknown else [])
    )
    print(table)
    if partial:
        print(f"\n(a partial run: {doc} is left as it was)")
        return
    text = doc.read_text()
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        sys.exit(f"{doc} has no {BEGIN} … {END} markers to put the table between")
    doc.write_text(text)


if __name__ == "__main__":
    main()
