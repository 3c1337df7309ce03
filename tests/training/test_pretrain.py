"""Pretraining for real on CPU: a tiny GPT on token shards of the bundled sample's pages learns, checkpoints,
resumes after a SIGKILL with the same losses, and gives the same losses on 2 DDP processes as on one."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_module

from pipeline.documents import CLEAN_SCHEMA
from pipeline.extract import decode_html, extract_text
from pipeline.sources import SAMPLE_SOURCE, resolve_source
from pipeline.storage import Store
from pipeline.token_io import TOKENS, load_tokenizer, read_tokens, train_tokenizer, write_token_shard
from pipeline.warc import read_warc
from training.checkpoint import committed_steps, load_checkpoint
from training.data import TokenStream, bytes_per_token, list_token_parts, split_segments

REPO = Path(__file__).resolve().parents[2]
CRAWL = "c"
TINY = ["--depth", "1", "--seq-len", "64", "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5",
        "--eval-batches", "4", "--log-every", "5"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """token_shards of crawl "c": one shard per sample WARC file, its pages cut into two clean_documents parts."""
    root = tmp_path_factory.mktemp("pretrain_data")
    store = Store(str(root))
    shards = []
    for index, path in enumerate(sorted(Path(resolve_source(SAMPLE_SOURCE)).glob("*.warc.gz"))[:4]):
        rows = [r for batch in read_warc(str(path)) for r in batch.records.iter_rows(named=True)]
        docs = [{"text": text, "id": r["id"], "dump": CRAWL, "url": r["url"], "date": r["date"], "file_path": str(path),
                 "language": "en", "language_score": 1.0, "token_count": None}
                for r in rows if (text := extract_text(decode_html(r["html"], r["charset"])[0]))]
        shard, half = f"{index:05d}", len(docs) // 2
        for part, chunk in (("00000-00000", docs[:half]), ("00000-00001", docs[half:])):
            store.write_part("clean_documents", CRAWL, shard, part, pl.DataFrame(chunk, schema=CLEAN_SCHEMA))
        store.commit("clean_documents", CRAWL, shard, ["00000-00000", "00000-00001"], {"stage": "clean_documents"})
        shards.append(shard)
    trained = train_tokenizer(store, {CRAWL: shards}, vocab_size=512, max_train_bytes=400_000)
    for shard in shards:
        write_token_shard(store, CRAWL, shard, trained["tokenizer"], trained["sha256"])
    return root


def pretrain(*args: str, nproc: int = 1, log: Path | None = None):
    return run_module("training.pretrain", *args, nproc=nproc, log=log)


def summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


def losses(history: list[dict]) -> dict[int, float]:
    return {h["step"]: h["train_loss"] for h in history}


# -- the loader ------------------------------------------------------------------------------------------------------

def test_validation_holds_out_every_tenth_part_or_the_last():
    from training.data import Segment

    parts = [Segment("c", f"{i // 3:05d}", f"{i % 3:05d}", 0, 100) for i in range(23)]
    assert [parts.index(s) for s in split_segments(parts, "val")] == [9, 19]
    assert len(split_segments(parts, "train")) == 21
    assert split_segments(parts[:4], "val") == [parts[3]]
    (train,), (val,) = split_segments(parts[:1], "train"), split_segments(parts[:1], "val")
    assert (train.start, train.stop, val.start, val.stop) == (0, 90, 90, 100)


def test_two_ranks_read_the_rows_of_one_and_resume_at_the_next_batch(data_root):
    store = Store(str(data_root))
    parts = list_token_parts(store)
    assert len(parts.segments) == 8 and parts.tokenizer_sha256 == load_tokenizer(store)[1]
    one = TokenStream(store, None, "train", seq_len=32, batch_size=6)
    ranks = [TokenStream(store, [CRAWL], "train", seq_len=32, batch_size=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        x, y = next(one)
        halves = [next(r) for r in ranks]
        assert torch.equal(x, torch.cat([h[0] for h in halves])) and torch.equal(y, torch.cat([h[1] for h in halves]))
        assert torch.equal(x[:, 1:], y[:, :-1]) and x.dtype == torch.int64
    # an epoch is every window of the train parts end to end, each once, shuffled, in a new order the next epoch
    stream = np.concatenate([read_tokens(store, s.crawl, s.shard, s.part) for s in one.segments])
    big = TokenStream(store, None, "train", seq_len=255, batch_size=64)
    epochs = [[np.concatenate([x, y[:, -1:]], axis=1) for x, y in (big.get(i, e) for i in range(big.batches_per_epoch))]
              for e in (0, 1)]
    windows = stream[: big.windows_per_epoch * 256].reshape(-1, 256)
    first_epoch = np.concatenate(epochs[0])
    assert sorted(map(bytes, first_epoch.astype(np.uint16))) == sorted(map(bytes, windows.astype(np.uint16)))
    assert not np.array_equal(first_epoch, windows) and not np.array_equal(first_epoch, np.concatenate(epochs[1]))
    resumed = TokenStream(store, None, "train", seq_len=32, batch_size=6)
    resumed.load_state_dict(one.state_dict())
    assert torch.equal(next(resumed)[0], next(one)[0])
    val = TokenStream(store, None, "val", seq_len=32, batch_size=6)
    assert val.n_tokens + one.n_tokens == sum(s.n_tokens for s in parts.segments)
    assert val.segments == [parts.segments[-1]]  # 8 parts: the last one is held out
    tokenizer = load_tokenizer(store)[0]
    nbytes = bytes_per_token(tokenizer)
    assert nbytes[tokenizer.eot_id] == 0 and nbytes[ord("a")] == 1 and nbytes.max() > 1


def _quoted_stretch(row: torch.Tensor, plain: torch.Tensor) -> tuple[int, int, int] | None:
    """(where, length, distance) of the one stretch where `row` differs from `plain` and repeats its own earlier
    tokens; None when the rows are equal. Fails if they differ any other way."""
    changed = (row != plain).nonzero().flatten().tolist()
    if not changed:
        return None
    lo, hi = changed[0], changed[-1] + 1
    for length in range(hi - lo, len(row) // 2 + 1):  # the copied stretch may start or end on equal tokens
        for second in range(max(0, hi - length), lo + 1):
            for first in range(0, second - length + 1):
                if torch.equal(row[second:second + length], row[first:first + length]) and torch.equal(
                        row[:second], plain[:second]) and torch.equal(row[second + length:], plain[second + length:]):
                    return second, length, second - first
    raise AssertionError(f"row differs at {changed} without repeating itself")


def test_repeated_rows_quote_a_stretch_at_varying_distances_and_ranks_still_agree(data_root):
    store = Store(str(data_root))
    plain = TokenStream(store, None, "train", seq_len=32, batch_size=64)
    some = TokenStream(store, None, "train", seq_len=32, batch_size=64, repeat_frac=0.25)
    x, y = plain.get(0)
    rx, ry = some.get(0)
    rows, plain_rows = torch.cat([rx, ry[:, -1:]], dim=1), torch.cat([x, y[:, -1:]], dim=1)  # windows of 33 tokens
    quotes = [q for i in range(64) if (q := _quoted_stretch(rows[i], plain_rows[i])) is not None]
    assert 6 <= len(quotes) <= 26, len(quotes)  # about a quarter
    assert len({distance for _, _, distance in quotes}) > 3  # no fixed distance to learn in place of copying
    ranks = [TokenStream(store, None, "train", seq_len=32, batch_size=32, rank=r, world_size=2, repeat_frac=0.25)
             for r in range(2)]
    assert torch.equal(torch.cat([r.get(0)[0] for r in ranks]), rx)
    assert torch.equal(TokenStream(store, None, "train", seq_len=32, batch_size=64, repeat_frac=0.25).get(0)[0], rx)
    with pytest.raises(ValueError, match="repeat_frac must be in"):
        TokenStream(store, None, "train", seq_len=32, batch_size=8, repeat_frac=1.5)


# -- the script ------------------------------------------------------------------------------------------------------

def test_a_short_run_learns_beats_the_unigram_baseline_and_checkpoints(data_root, tmp_path):
    out = tmp_path / "ckpt"
    pretrain("--data", str(data_root), "--out", str(out), "--max-steps", "100", "--eval-every", "50",
             "--checkpoint-every", "50", *TINY)
    result = summary(out)
    history = result["history"]
    assert len(history) == 100 and committed_steps(str(out)) == [50, 100]
    first, final = np.mean([h["train_loss"] for h in history[:3]]), np.mean([h["train_loss"] for h in history[-5:]])
    assert first > np.log(512) - 0.5 and final < first - 1.0, (first, final)
    assert result["val_loss"] < result["unigram_loss"] - 0.3, result
    assert np.isfinite(result["val_bpb"]) and 0 < result["val_bpb"] < 8
    assert result["tokens_per_s"] > 0 and result["mfu"] is None and result["tokens_seen"] == 100 * 8 * 64
    assert len(result["samples"]) == 2 and all(s.startswith(("The capital", "Once upon")) for s in result["samples"])
    ckpt = load_checkpoint(str(out))
    meta = ckpt["config"]
    assert ckpt["step"] == 100 and meta["tokenizer_sha256"] == load_tokenizer(Store(str(data_root)))[1]
    assert meta["val_loss"] == result["val_loss"]
    assert [h["step"] for h in meta["history"] if "val_loss" in h] == [50, 100]
    assert ckpt["state"]["loader"]["batch"] == 100 and ckpt["optimizer"]["state"]


def test_two_ddp_processes_give_the_losses_of_one_with_twice_the_batch(data_root, tmp_path):
    common = ["--data", str(data_root), "--max-steps", "4", "--eval-every", "4", "--checkpoint-every", "4",
              "--depth", "1", "--seq-len", "64", "--warmup-steps", "2", "--eval-batches", "2", "--grad-accum", "2"]
    pretrain(*common, "--out", str(tmp_path / "one"), "--batch-size", "4")
    pretrain(*common, "--out", str(tmp_path / "two"), "--batch-size", "2", nproc=2)
    one, two = summary(tmp_path / "one"), summary(tmp_path / "two")
    assert two["world_size"] == 2 and two["tokens_seen"] == one["tokens_seen"]
    np.testing.assert_allclose([h["train_loss"] for h in two["history"]], [h["train_loss"] for h in one["history"]],
                               rtol=1e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)


def test_a_run_killed_after_a_checkpoint_resumes_with_the_same_losses(data_root, tmp_path):
    steps = 80  # the killed run has ~75 steps and 15 checkpoints still to go when it is killed: a wide margin
    common = ["--data", str(data_root), "--max-steps", str(steps), "--checkpoint-every", "5", "--eval-every", "100",
              *TINY]
    pretrain(*common, "--out", str(tmp_path / "straight"))
    straight = losses(summary(tmp_path / "straight")["history"])

    killed = tmp_path / "killed"
    process = pretrain(*common, "--out", str(killed), log=tmp_path / "killed.log")
    deadline = time.monotonic() + 120
    while not (killed / "step-000005" / "_COMMITTED").exists():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at = committed_steps(str(killed))[-1]
    assert 5 <= at < steps and not (killed / "train_summary.json").exists()

    resumed = pretrain(*common, "--out", str(killed))
    assert f"resuming from {killed}/step-{at:06d}" in resumed.stdout
    history = losses(summary(killed)["history"])
    assert sorted(history) == list(range(1, steps + 1))
    assert [history[s] for s in sorted(history)] == [straight[s] for s in sorted(history)]  # bit for bit on CPU


def test_resuming_under_a_retrained_tokenizer_of_the_same_size_is_refused(data_root, tmp_path):
    data, out = tmp_path / "data", tmp_path / "ckpt"
    shutil.copytree(data_root, data)
    common = ["--data", str(data), "--out", str(out), "--checkpoint-every", "2", "--eval-every", "2", *TINY]
    pretrain(*common, "--max-steps", "2")
    store = Store(str(data))
    old_sha = load_tokenizer(store)[1]
    shards = sorted({s.shard for s in list_token_parts(store).segments})
    retrained = train_tokenizer(store, {CRAWL: shards}, vocab_size=512, max_train_bytes=100_000)
    assert retrained["tokenizer"].n_vocab == 512 and retrained["sha256"] != old_sha  # the same model shape
    for shard in shards:
        write_token_shard(store, CRAWL, shard, retrained["tokenizer"], retrained["sha256"])
    done = subprocess.run([sys.executable, "-m", "training.pretrain", *common, "--max-steps", "4"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    message = " ".join(done.stderr.split())
    assert done.returncode != 0 and f"checkpoint {out}/step-000002 was trained with tokenizer sha256 {old_sha}" in (
        message), done.stderr[-3000:]
    assert f"the tokenizer in use has sha256 {retrained['sha256']}" in message and "--no-resume" in message
    assert committed_steps(str(out)) == [2]


def test_no_token_shards_exits_nonzero_naming_the_path(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "training.pretrain", "--data", str(empty)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and str(empty / TOKENS) in done.stderr, done.stderr


def test_muon_learns_faster_than_adamw_and_resumes_identically(data_root, tmp_path):
    common = ("--data", str(data_root), "--max-steps", "40", "--eval-every", "40", "--checkpoint-every", "20", *TINY)
    pretrain(*common, "--out", str(tmp_path / "adamw"))
    pretrain(*common, "--out", str(tmp_path / "muon"), "--optimizer", "muon")
    adamw, muon = summary(tmp_path / "adamw"), summary(tmp_path / "muon")
    assert muon["val_loss"] < adamw["val_loss"], (muon["val_loss"], adamw["val_loss"])
    # resume from step 20 (the step-40 checkpoint removed): Muon's momentum buffers come back with the checkpoint
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "muon", resumed)
    shutil.rmtree(resumed / "step-000040")
    (resumed / "train_summary.json").unlink()
    pretrain(*common, "--out", str(resumed), "--optimizer", "muon")
    assert losses(summary(resumed)["history"]) == losses(muon["history"])
