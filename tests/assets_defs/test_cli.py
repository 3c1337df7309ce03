"""The `crawl2chat` command: the funnel, clear errors, and a killed run that reruns to the same outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from assets_defs.cli import main
from pipeline.funnel import FUNNEL_STAGES
from pipeline.storage import Store

CLI = [sys.executable, "-m", "assets_defs.cli"]


def _env(tmp: Path) -> dict:
    return {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "CRAWL2CHAT_DATA_ROOT": str(tmp / "data")}


def _outputs(root: Path, shards: list[str]) -> dict:
    store = Store(str(root))
    out = {}
    for stage in FUNNEL_STAGES:
        for shard in shards:
            for dropped in (False, True):
                df = store.read(stage, "sample", shard, dropped=dropped)
                out[(stage, shard, dropped)] = df.sort("id") if df.height else df
    return out


@pytest.mark.slow
def test_killed_run_reruns_to_the_same_outputs(tmp_path, sample_run):
    clean, killed = sample_run, tmp_path / "killed"
    (killed / "home").mkdir(parents=True)
    stdout = (clean / "stdout.txt").read_text()
    assert "quality_filtered" in stdout and "dropped, by stage and reason" in stdout

    proc = subprocess.Popen(CLI + ["run"], env=_env(killed), cwd=killed, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120  # kill it once some shard has committed and others have not
    while not list((killed / "data").glob("quality_filtered/sample/*/_manifest.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list((killed / "data").glob("quality_filtered/sample/*/_manifest.json"))) < 8, "run ended before the kill"

    # the data outputs are what this compares; a killed training run's resume is tests/training's
    rerun = subprocess.run(CLI + ["run", "--until", "token_shards"], env=_env(killed), cwd=killed,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    shards = [f"{i:05d}" for i in range(8)]
    a, b = _outputs(clean / "data", shards), _outputs(killed / "data", shards)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equals(b[key]), key
    assert not list((killed / "data").rglob("*.tmp-*")), "a temporary file survived the rerun"
    # the tokenizer and the token shards are byte-identical too (training and encoding are deterministic)
    binaries = sorted(p.relative_to(clean / "data") for p in (clean / "data").glob("t*/**/*") if p.is_file()
                      and p.suffix in (".bin", ".tiktoken", ".json") and p.name != "_manifest.json")
    assert any(p.suffix == ".bin" for p in binaries) and any(p.suffix == ".tiktoken" for p in binaries)
    for path in binaries:
        assert (clean / "data" / path).read_bytes() == (killed / "data" / path).read_bytes(), path


def test_tokenize_shows_ids_and_pieces(sample_run, capsys, monkeypatch):
    monkeypatch.chdir(sample_run)
    text = "Debian's apt, 😀 and <|im_end|>"
    assert main(["tokenize", text, "--data", str(sample_run / "data")]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and "bytes" in out and "im_end" in out
    from pipeline.storage import Store
    from pipeline.token_io import load_tokenizer

    tok, _ = load_tokenizer(Store(str(sample_run / "data")))
    assert f"{len(tok.encode(text))} tokens, {len(text.encode())} bytes" in out


def test_tokenize_without_a_tokenizer_says_what_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["tokenize", "hello", "--data", str(tmp_path / "d")]) == 2
    assert "crawl2chat run --until tokenizer" in " ".join(capsys.readouterr().out.split())  # rich wraps lines


def test_bad_config_file_is_refused_naming_the_field(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("language_threshold: 7\n")
    assert main(["run", "--config", str(bad), "--data", str(tmp_path / "d")]) == 2
    assert "language_threshold" in capsys.readouterr().out
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("languagess: [en]\n")
    assert main(["run", "--config", str(unknown), "--data", str(tmp_path / "d")]) == 2
    assert "languagess" in capsys.readouterr().out
    for section, text, named in (("sft", "sft:\n  max_steps: 0\n", "max_steps"),
                                 ("rl", "rl:\n  tasks: [chess]\n", "unknown task 'chess'"),
                                 ("rl", "rl:\n  tasks: ['search:0']\n", "weight '0' of 'search'")):
        bad = tmp_path / f"{section}.yaml"
        bad.write_text(text)
        assert main(["run", "--config", str(bad), "--data", str(tmp_path / "d")]) == 2
        assert named in " ".join(capsys.readouterr().out.split()), section
    assert not (tmp_path / "d").exists()  # refused before any work


def test_missing_source_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["crawl", "add", "web", str(tmp_path / "nowhere"), "--data", str(tmp_path / "d")]) == 2
    assert "crawl source not found" in capsys.readouterr().out
    assert main(["run", "--crawl", "web", "--data", str(tmp_path / "d")]) == 2
    assert "no crawl named 'web'" in capsys.readouterr().out


def test_crawl_add_and_list(tmp_path, capsys, monkeypatch, good_page):
    from conftest import write_warc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_warc(src / f"f{i}.warc.gz", [{"url": f"https://a.org/{i}", "body": good_page}])
    assert main(["crawl", "add", "web", str(src), "--files-per-shard", "2", "--data", str(tmp_path / "d")]) == 0
    assert "2 shard(s), 2 new" in capsys.readouterr().out
    assert main(["crawl", "list", "--data", str(tmp_path / "d")]) == 0
    assert "web\t2 shards\t3 files" in capsys.readouterr().out
    assert main(["run", "--crawl", "web", "--until", "extracted_text", "--data", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "extracted_text" in out and "language_filtered" not in out
    assert pl.read_parquet(tmp_path / "d/extracted_text/web/00001/part-00000-00000.parquet")["url"].to_list() == ["https://a.org/2"]


def test_the_small_profile_loads_and_asks_for_a_base_model_that_copies(monkeypatch, tmp_path):
    """`make small`'s profile (infra/profiles/small.yaml) passes every section's validation, and its pretraining
    has what BENCHMARKS.md found a small model needs to copy from its context."""
    from assets_defs.cli import TRAINING_SECTIONS, load_config, load_section

    profile = str(Path(__file__).parents[2] / "infra" / "profiles" / "small.yaml")
    monkeypatch.setenv("CRAWL2CHAT_DATA_ROOT", str(tmp_path))  # load_config sets it; restored after the test
    load_config(profile, str(tmp_path))
    sections = {s: load_section(profile, s) for s in TRAINING_SECTIONS}
    command = sections["pretrain"].command("data", "out")
    assert "--tie-embeddings" in command and int(command[command.index("--qk-conv") + 1]) >= 3
    assert float(command[command.index("--repeat-frac") + 1]) > 0
    assert command[command.index("--optimizer") + 1] == "muon"
    assert sections["sft"].arithmetic >= 1000 and sections["rl"].max_steps > 20
    rl = sections["rl"].command("data")  # what lifted RL and kept the other skills (BENCHMARKS.md)
    assert rl[rl.index("--tasks") + 1] == "longer_arithmetic:2,follow_up,unknown,search"
    assert rl[rl.index("--advantage") + 1] == "positive"
    assert int(rl[rl.index("--warmup-steps") + 1]) > 0 and "--decay" in rl and float(rl[rl.index("--kl") + 1]) > 0
