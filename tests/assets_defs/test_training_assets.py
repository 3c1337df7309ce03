"""base_model as `crawl2chat run` materializes it on the sample: torchrun through Pipes, each checkpoint recorded."""

from __future__ import annotations

import math

import dagster as dg
import pytest


@pytest.mark.slow
def test_each_checkpoint_is_a_materialization_with_its_metrics(sample_run, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(sample_run / "home"))
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(dg.AssetKey("base_model"), limit=10).records
    by_step = {r.asset_materialization.metadata["step"].value: r.asset_materialization.metadata for r in records}
    assert sorted(by_step) == [100, 200]  # the CPU toy's checkpoint_every and max_steps
    last = by_step[200]
    assert last["tokens_seen"].value == 200 * 8 * 128
    assert last["val_loss"].value < last["unigram_loss"].value and last["val_bpb"].value > 0
    assert last["checkpoint"].value.endswith("checkpoints/base/step-000200")
    assert last["loss_curve"].value.startswith("![loss](data:image/png;base64,")
    assert last["samples"].value.startswith("> ")
    assert math.isfinite(last["icl_gain"].value)  # few-shot readiness, measured at every eval
    for check in ("loss_finite", "beats_unigram", "still_improving"):
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("base_model"), check), limit=1)
        assert history and history[0].status.value == "SUCCEEDED", check


@pytest.mark.slow
def test_make_run_reports_tokens_and_the_checkpoint(sample_run):
    stdout = " ".join((sample_run / "stdout.txt").read_text().split())
    assert "token_shards:" in stdout and "bytes/token (tokenizer: 4,096 ids)" in stdout
    assert "base_model: step 200, 204,800 tokens seen" in stdout


def test_still_improving_compares_the_last_two_evaluations():
    from assets_defs.training_assets import still_improving

    history = [{"step": 1, "train_loss": 5.0}, {"step": 50, "train_loss": 4.0, "val_loss": 4.2},
               {"step": 100, "train_loss": 3.9, "val_loss": 4.1}]
    assert still_improving(history).passed
    assert not still_improving([*history, {"step": 150, "train_loss": 3.8, "val_loss": 4.3}]).passed
    assert still_improving(history[:2]).passed  # one evaluation: nothing to compare yet
