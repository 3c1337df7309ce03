"""Connected components of a graph larger than memory: Large-Star and Small-Star rounds over edges on local disk.

The algorithm is Kiveris et al. 2014, "Connected Components in MapReduce and Beyond": every node u with its
neighbourhood, m(u) its smallest neighbour or itself,
  - Large-Star links every larger neighbour v > u of u to m(u);
  - Small-Star links u and every smaller neighbour of u to the smallest of them;
each keeps the components and alternating them ends in one star a component, centred on its smallest node, in
O(log n) rounds (a path of 5,000 nodes takes ~15). Both are per node, so the edges live in N files of int64
(node, neighbour) rows, a node's rows all in file hash(node) mod N, and a step reads one file, sorts it by node, reduces
each node's neighbours (smallest, largest) in numpy and appends what it emits to the files of the nodes it names.
The rounds stop at a Large-Star pass that finds every node with a smaller neighbour to have no other neighbour:
that holds exactly when the edges are one star a component, centred on its smallest node (an exact test).

Memory is one chunk of a file's rows at BYTES_PER_EDGE: N is chosen so that a file of the first round fits the
budget (no round holds more rows than the first: every emitted edge is charged to an edge read), and a file above it
is read in chunks that fit, twice: first for each node's smallest and largest neighbour over the whole file, then to
emit. That is a node of huge degree, whose rows are all in its file (~100 MB a million documents in one cluster,
which a crawl's boilerplate pages reach). Disk is two generations of files: at most 48 bytes an input pair (36 at
100M synthetic documents, bench/bench_cluster_scale.py).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.minhash import _fmix64

BYTES_PER_EDGE = 112  # peak bytes a (node, neighbour) row costs while its file is processed (bench_cluster_scale)
MAX_FILES = 4096  # one step appends to every file: N^2 appends a pass


class PairFiles:
    """N binary files of int64 (first, second) rows, appended to by row and read back one file at a time."""

    def __init__(self, folder: str, n: int):
        if not 1 <= n <= 65536:
            raise ValueError(f"need 1 to 65536 files, got {n}")
        os.makedirs(folder, exist_ok=True)
        self.folder, self.n = folder, n
        self.rows = np.zeros(n, dtype=np.int64)

    def path(self, i: int) -> str:
        return os.path.join(self.folder, f"{i:05d}.bin")

    def append(self, first: np.ndarray, second: np.ndarray, files: np.ndarray) -> None:
        """Appends row (first[i], second[i]) to file files[i] (any integer array)."""
        if not len(first):
            return
        files = files.astype(np.uint16)  # numpy sorts 16-bit integers by radix
        order = np.argsort(files, kind="stable")
        rows = np.empty((len(first), 2), dtype=np.int64)
        rows[:, 0], rows[:, 1] = first[order], second[order]
        del order
        counts = np.bincount(files, minlength=self.n)
        self.rows += counts
        offsets = np.concatenate(([0], np.cumsum(counts)))
        for i in np.flatnonzero(counts):
            with open(self.path(i), "ab") as f:
                rows[offsets[i] : offsets[i + 1]].tofile(f)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(first, second) of every row of file i."""
        if not self.rows[i]:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rows = np.fromfile(self.path(i), dtype=np.int64).reshape(-1, 2)
        return rows[:, 0].copy(), rows[:, 1].copy()

    def chunks(self, i: int, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(first, second) of file i's rows, at most `rows` at a time."""
        total = int(self.rows[i])
        for start in range(0, total, rows):
            block = np.fromfile(self.path(i), dtype=np.int64, count=2 * min(rows, total - start), offset=16 * start)
            yield block[0::2].copy(), block[1::2].copy()

    def bytes(self) -> int:
        return int(self.rows.sum()) * 16

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def file_of(nodes: np.ndarray, n: int) -> np.ndarray:
    """The file (0..n-1) of each node: a hash, so that doc_keys of one shard (consecutive) spread over every file."""
    return (_fmix64(nodes.view(np.uint64)) % np.uint64(n)).astype(np.int64)


def _grouped(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows sorted by (first, second), with each node's first and end row: (nodes, neighbours, starts,
    ends). polars sorts the two columns ~3.5x faster than np.lexsort on 2 cores."""
    rows = pl.DataFrame({"u": first, "v": second}).sort("u", "v")
    del first, second
    u, v = rows["u"].to_numpy(), rows["v"].to_numpy()
    del rows
    if len(u):
        keep = np.concatenate(([True], (u[1:] != u[:-1]) | (v[1:] != v[:-1])))
        u, v = u[keep], v[keep]
        del keep
    starts = np.flatnonzero(np.concatenate(([True], u[1:] != u[:-1]))) if len(u) else np.zeros(0, dtype=np.int64)
    return u, v, starts, np.append(starts[1:], len(u))


def _extremes(files: PairFiles, i: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every node of file i (sorted) with its smallest and largest neighbour: (nodes, lowest, highest), from the
    file read `rows` at a time; memory is a chunk and the file's distinct nodes, not its rows."""
    merged = None
    for first, second in files.chunks(i, rows):
        u, v, starts, ends = _grouped(first, second)
        part = pl.DataFrame({"u": u[starts], "lo": v[starts], "hi": v[ends - 1]})
        merged = part if merged is None else pl.concat([merged, part]).group_by("u").agg(
            pl.col("lo").min(), pl.col("hi").max())
    if merged is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    merged = merged.sort("u")
    return merged["u"].to_numpy(), merged["lo"].to_numpy(), merged["hi"].to_numpy()


def _neighbourhoods(files: PairFiles, i: int, rows: int) -> Iterator[tuple[np.ndarray, ...]]:
    """File i's distinct rows, sorted, a chunk of at most `rows` at a time, each with its node's smallest and
    largest neighbour over the whole file: (u, v, lowest, highest, the chunk's first row of each node). A file
    within `rows` is one chunk; a larger one is read twice (_extremes first)."""
    whole = _extremes(files, i, rows) if files.rows[i] > rows else None
    for first, second in files.chunks(i, rows):
        u, v, starts, ends = _grouped(first, second)
        if whole is None:
            lowest, highest = np.repeat(v[starts], ends - starts), np.repeat(v[ends - 1], ends - starts)
        else:
            at = np.searchsorted(whole[0], u)
            lowest, highest = whole[1][at], whole[2][at]
        yield u, v, lowest, highest, starts


@dataclass
class Components:
    """The final star of every component on disk: `labels()` gives each node with its component's smallest node."""

    stars: PairFiles
    rounds: int  # Large-Star passes (the last found nothing to change)
    files: int
    chunk_rows: int  # the most rows a step holds: a file's, or a chunk of a larger file's
    peak_disk_bytes: int

    def labels(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(nodes, smallest node of their component) of one file at a time; every node of some edge exactly once,
        the smallest node of a component with itself."""
        for i in range(self.stars.n):
            nodes, lowest, _ = _extremes(self.stars, i, self.chunk_rows)
            yield nodes, np.minimum(nodes, lowest)


def connected_components(edge_sets: Iterable[tuple[np.ndarray, np.ndarray]], n_edges: int, folder: str,
                         memory_mb: float) -> Components:
    """The connected components of the undirected edges (a[i], b[i]) of every set (int64 node ids), read once.

    `n_edges` (the sets' total rows; an estimate is fine) sizes the files so that one holds ~memory_mb of rows in
    processing: memory is bounded by `memory_mb` plus the edge set being read (written in slices that fit the
    budget), not by the graph (see the module). Self-loops are ignored. The files are under `folder` (local disk),
    which the caller removes.
    """
    chunk = max(1, int(memory_mb * 2**20 / BYTES_PER_EDGE))  # rows a step holds
    n = min(MAX_FILES, max(1, math.ceil(2 * max(n_edges, 1) / (0.8 * chunk))))  # files of ~80% of a chunk
    current = PairFiles(os.path.join(folder, "0"), n)  # Large-Star input: each edge as (u, v) and (v, u)
    half = max(1, chunk // 2)  # an edge goes in as two rows
    for edges_a, edges_b in edge_sets:
        for start in range(0, len(edges_a), half):  # a set of any size, in slices that fit
            a, b = edges_a[start : start + half], edges_b[start : start + half]
            a, b = a[a != b], b[a != b]
            current.append(np.concatenate([a, b]), np.concatenate([b, a]), file_of(np.concatenate([a, b]), n))
    peak, rounds = current.bytes(), 0
    while True:
        rounds += 1
        large = PairFiles(os.path.join(folder, f"{rounds}L"), n)  # Small-Star input: (larger, smaller) by larger
        changed = False
        for i in range(n):
            for u, v, lowest, highest, _ in _neighbourhoods(current, i, chunk):
                # a star centred on its smallest node is the one graph whose larger ends all have one neighbour
                changed |= bool(np.any((lowest < u) & (highest != lowest)))
                m = np.minimum(u, lowest)
                above = v > u
                large.append(v[above], m[above], file_of(v[above], n))
        peak = max(peak, current.bytes() + large.bytes())
        if not changed:
            large.remove()
            return Components(current, rounds, n, chunk, peak)
        current.remove()
        small = PairFiles(os.path.join(folder, f"{rounds}S"), n)  # Large-Star input again
        for i in range(n):
            for u, v, m, _, starts in _neighbourhoods(large, i, chunk):
                # every row is (node, smaller neighbour); m: the smallest of them
                linked = v != m
                ends_a = np.concatenate([v[linked], u[starts]])
                ends_b = np.concatenate([m[linked], m[starts]])
                both_a, both_b = np.concatenate([ends_a, ends_b]), np.concatenate([ends_b, ends_a])
                small.append(both_a, both_b, file_of(both_a, n))
        peak = max(peak, large.bytes() + small.bytes())
        large.remove()
        current = small
