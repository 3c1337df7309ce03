"""The funnel: documents and bytes surviving each stage of a crawl, with drops by reason, from the manifests."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

from pipeline.storage import PartitionMissing, Store

DATA_STAGES = ("warc_records", "url_filtered", "extracted_text", "language_filtered", "quality_filtered")
FUNNEL_STAGES = (*DATA_STAGES, "deduplicated", "clean_documents")  # every stage that keeps or drops documents


@dataclass
class FunnelRow:
    stage: str
    shards: int = 0
    rows_in: int = 0
    rows_out: int = 0
    bytes_out: int = 0
    drops: Counter = field(default_factory=Counter)


def funnel(store: Store, crawl: str, shards: list[str], stages: tuple[str, ...] = DATA_STAGES) -> list[FunnelRow]:
    """Sums each stage's committed statistics over `shards`; stages not materialized yet are left out."""
    rows = []
    for stage in stages:
        row = FunnelRow(stage)
        for shard in shards:
            try:
                stats = store.manifest(stage, crawl, shard)["stats"]
            except PartitionMissing:
                continue
            row.shards += 1
            row.rows_in += stats["rows_in"]
            row.rows_out += stats["rows_out"]
            row.bytes_out += stats["bytes_out"]
            row.drops.update(stats["drops"])
        if row.shards:
            rows.append(row)
    return rows


def funnel_markdown(rows: list[FunnelRow]) -> str:
    lines = ["| stage | docs in | docs out | MB out | top drop reasons |", "|---|---:|---:|---:|---|"]
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in r.drops.most_common(4))
        lines.append(f"| {r.stage} | {r.rows_in} | {r.rows_out} | {r.bytes_out / 1e6:.2f} | {reasons} |")
    return "\n".join(lines)


def funnel_png(rows: list[FunnelRow], title: str) -> bytes:
    """A horizontal bar chart of documents surviving each stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
    names = [r.stage for r in rows][::-1]
    ax.barh(names, [r.rows_out for r in rows][::-1], color="#4c72b0")
    for i, r in enumerate(rows[::-1]):
        ax.text(r.rows_out, i, f" {r.rows_out}", va="center", fontsize=8)
    ax.set_xlabel("documents kept")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()
