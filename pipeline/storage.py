"""Parquet partitions on local disk or S3, through fsspec, written so that a killed run leaves nothing trusted.

Layout (ARCHITECTURE.md): kept rows in `{root}/{asset}/{crawl}/{shard}/part-*.parquet`, dropped rows in
`{root}/dropped/{asset}/{crawl}/{shard}/part-*.parquet`. Every part is written whole under its final name
(a local temporary file renamed into place; one PUT on S3), and a partition's `_manifest.json` is written last,
naming its parts and the config that made them. Readers read only the parts a manifest names, so a half-done
rerun, a part left by a killed run or a part from an earlier config is never mixed in.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid

import fsspec
import polars as pl
from fsspec.implementations.local import LocalFileSystem

from pipeline.documents import EXCLUSION_SCHEMA

MANIFEST = "_manifest.json"


class PartitionMissing(FileNotFoundError):
    """An upstream partition has no manifest: it was never materialized, or its run was killed."""


class Store:
    def __init__(self, root: str, storage_options: dict | None = None):
        self.root = root.rstrip("/") or "/"
        self.storage_options = storage_options or {}
        self.fs, self.base = fsspec.core.url_to_fs(self.root, **self.storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # paths ---------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts)

    def uri(self, *parts: str) -> str:
        """The path as a URI a person can paste (s3://... or a local path)."""
        return self.fs.unstrip_protocol(self.path(*parts)) if not self.is_local else self.path(*parts)

    def partition_dir(self, asset: str, crawl: str, shard: str, dropped: bool = False) -> str:
        return self.path(*(["dropped"] if dropped else []), asset, crawl, shard)

    # bytes and json ------------------------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> None:
        """Writes `data` to `path` so that readers see the old file or the whole new one, never a part."""
        if self.is_local:
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)  # an object store PUT is atomic

    def write_json(self, path: str, obj) -> None:
        self.write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def read_json(self, path: str):
        with self.fs.open(path, "rb") as f:
            return json.load(f)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    # partitions ----------------------------------------------------------------------------------------------
    def write_part(self, asset: str, crawl: str, shard: str, part: str, df: pl.DataFrame, dropped=False) -> str:
        buf = io.BytesIO()
        df.write_parquet(buf, compression="zstd", statistics=False)
        path = posixpath.join(self.partition_dir(asset, crawl, shard, dropped), f"part-{part}.parquet")
        self.write_bytes(path, buf.getvalue())
        return path

    def commit(
        self, asset: str, crawl: str, shard: str, parts: list[str], info: dict, dropped=False, files: list[str] = ()
    ) -> None:
        """Publishes a partition: writes its manifest, then deletes files no manifest names (leftovers).

        `files` names other files of the partition (not parquet parts: token .bin files, a tokenizer's files).
        """
        directory = self.partition_dir(asset, crawl, shard, dropped)
        self.write_json(posixpath.join(directory, MANIFEST), {"parts": parts, **({"files": list(files)} if files else {}), **info})
        wanted = {f"part-{p}.parquet" for p in parts} | set(files) | {MANIFEST}
        for path in self.fs.ls(directory, detail=False) if self.fs.exists(directory) else []:
            if posixpath.basename(path) not in wanted:
                self.fs.rm(path)

    def manifest(self, asset: str, crawl: str, shard: str, dropped=False) -> dict:
        path = posixpath.join(self.partition_dir(asset, crawl, shard, dropped), MANIFEST)
        try:
            return self.read_json(path)
        except FileNotFoundError:
            raise PartitionMissing(
                f"{asset} has no committed partition crawl={crawl!r} shard={shard!r} (no {self.uri(path)}): "
                "materialize it first"
            ) from None

    def committed(self, asset: str, crawl: str, shard: str) -> bool:
        """Whether the partition has a manifest (a finished write)."""
        return self.exists(posixpath.join(self.partition_dir(asset, crawl, shard), MANIFEST))

    def parts(self, asset: str, crawl: str, shard: str, dropped=False) -> list[str]:
        return list(self.manifest(asset, crawl, shard, dropped)["parts"])

    def read_part(self, asset: str, crawl: str, shard: str, part: str, dropped=False) -> pl.DataFrame:
        path = posixpath.join(self.partition_dir(asset, crawl, shard, dropped), f"part-{part}.parquet")
        with self.fs.open(path, "rb") as f:
            return pl.read_parquet(f)

    def read_file(self, asset: str, crawl: str, shard: str, name: str) -> bytes:
        """One of the `files` a committed partition names."""
        if name not in self.manifest(asset, crawl, shard).get("files", []):
            raise PartitionMissing(f"{asset} partition crawl={crawl!r} shard={shard!r} has no committed file {name!r}")
        return self.fs.cat_file(posixpath.join(self.partition_dir(asset, crawl, shard), name))

    def read(self, asset: str, crawl: str, shard: str, dropped=False) -> pl.DataFrame:
        frames = [self.read_part(asset, crawl, shard, p, dropped) for p in self.parts(asset, crawl, shard, dropped)]
        if frames:
            return pl.concat(frames, how="vertical")
        # a stage that dropped nothing commits no dropped part; its (empty) exclusions still have their columns
        return pl.DataFrame(schema=EXCLUSION_SCHEMA if dropped else None)
