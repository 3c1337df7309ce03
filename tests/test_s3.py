"""s3fs against a real S3 API on loopback (moto's server): a crawl read from and written to s3:// gives the
same rows, tokenizer and token shards as the same crawl on local disk; checkpoints round-trip."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assets_defs.cli import materialize_crawl
from assets_defs.graph import ASSET_ORDER
from assets_defs.partitions import register_partitions
from assets_defs.resources import PipelineConfig
from pipeline.funnel import FUNNEL_STAGES
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.token_io import ALL, TOKENIZER, TOKENIZER_FILES, TOKENS

SHARDS = ["00000", "00002"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    # credentials come from the environment, as they would in production; moto accepts any
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def _run(settings: PipelineConfig, source: str, instance) -> None:
    """The whole data side, WARC to token shards, as `crawl2chat run --until token_shards` runs it."""
    crawl, _ = settings.registry().add("sample", source, files_per_shard=1)
    register_partitions(instance, "sample", crawl.shard_keys)
    assert materialize_crawl(instance, {"settings": settings}, crawl, ASSET_ORDER[: ASSET_ORDER.index("token_shards") + 1]) == []


def test_s3_crawl_and_outputs_match_local(tmp_path, s3_endpoint, dagster_instance):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("crawls")
    fs.mkdir("lake")
    files = tmp_path / "warcs"  # three of the sample's eight files (the whole data side runs twice)
    files.mkdir()
    for path in sorted(Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz"))[::3]:
        shutil.copy(path, files)
        fs.put_file(str(path), f"crawls/sample/{path.name}")

    local = PipelineConfig(data_root=str(tmp_path / "data"))
    remote = PipelineConfig(data_root="s3://lake/c2c", s3_endpoint_url=s3_endpoint)
    _run(local, str(files), dagster_instance)
    _run(remote, "s3://crawls/sample", dagster_instance)

    assert fs.exists("lake/c2c/crawls/sample.json")
    assert fs.exists("lake/c2c/quality_filtered/sample/00000/_manifest.json")
    for stage in FUNNEL_STAGES:
        for shard in SHARDS:
            for dropped in (False, True):
                a = local.store().read(stage, "sample", shard, dropped=dropped)
                b = remote.store().read(stage, "sample", shard, dropped=dropped)
                if "file_path" in a.columns:  # the one column that names where the WARC file lives
                    assert b["file_path"].str.starts_with("s3://crawls/sample/").all()
                    a, b = a.drop("file_path"), b.drop("file_path")
                if "detail" in a.columns:
                    a, b = a.drop("detail"), b.drop("detail")
                assert a.height == b.height and a.equals(b), (stage, shard, dropped)
    assert remote.store().read("clean_documents", "sample", "00000").height > 0
    # `crawl2chat trace` reads the same lineage from either root
    from pipeline.trace import trace_document

    crawls = {"sample": local.registry().get("sample").shard_keys}
    dropped = [i for s in crawls["sample"] for i in local.store().read("deduplicated", "sample", s, dropped=True)["id"]]
    for doc_id in dropped[:1] + local.store().read("clean_documents", "sample", "00002")["id"][:1].to_list():
        here, there = trace_document(local.store(), crawls, doc_id), trace_document(remote.store(), crawls, doc_id)
        assert there["record"]["file_path"].startswith("s3://crawls/sample/")
        assert here["stages"] == there["stages"] and here["record"]["offset"] == there["record"]["offset"]
    # the tokenizer trained on S3 is the local one, byte for byte, and so are the token shards
    for name in TOKENIZER_FILES:
        assert local.store().read_file(TOKENIZER, ALL, ALL, name) == remote.store().read_file(TOKENIZER, ALL, ALL, name)
    for shard in SHARDS:
        for part in local.store().parts(TOKENS, "sample", shard):
            a, b = (s.store().read_file(TOKENS, "sample", shard, f"part-{part}.bin") for s in (local, remote))
            assert len(a) > 0 and a == b, (shard, part)


def test_checkpoints_round_trip_through_s3(s3_endpoint):
    import s3fs
    import torch

    from training.checkpoint import TokenizerMismatch, committed_steps, load_checkpoint, save_checkpoint
    from training.model import GPT, GPTConfig

    options = {"endpoint_url": s3_endpoint}
    s3fs.S3FileSystem(**options).mkdir("ckpts")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, depth=1, seq_len=16))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 50, (1, 8)), torch.randint(0, 50, (1, 8))).backward()
    optimizer.step()
    uri = save_checkpoint("s3://ckpts/base", 7, model, optimizer, {"position": 3}, {"tokens_seen": 99}, options,
                          tokenizer_sha256="a" * 64)
    assert uri == "s3://ckpts/base/step-000007" and committed_steps("s3://ckpts/base", options) == [7]
    loaded = load_checkpoint("s3://ckpts/base", storage_options=options, tokenizer_sha256="a" * 64)
    assert loaded["state"] == {"position": 3} and loaded["config"]["tokens_seen"] == 99
    with pytest.raises(TokenizerMismatch, match=f"checkpoint {uri} was trained with tokenizer sha256 a{{64}}"):
        load_checkpoint("s3://ckpts/base", storage_options=options, tokenizer_sha256="b" * 64)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded["model"].state_dict()[name], tensor), name
    assert loaded["optimizer"]["state"].keys() == optimizer.state_dict()["state"].keys()
    from training.lineage import trace_checkpoint  # a fine-tuned child's lineage, read back from S3

    save_checkpoint("s3://ckpts/sft", 2, model, None, {}, {"stage": "sft", "base_checkpoint": uri}, options,
                    tokenizer_sha256="a" * 64)
    chain = trace_checkpoint("s3://ckpts/sft", storage_options=options)
    assert [(c["stage"], c["checkpoint"]) for c in chain] == [("sft", "s3://ckpts/sft/step-000002"), ("base", uri)]
