"""base_model through the other Pipes launchers: over stderr (PipesK8sClient's wire protocol: context in the
environment, messages in the process's log stream), and the launcher names Definitions accept."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from assets_defs.chat_assets import RLConfig, SFTConfig
from assets_defs.launchers import PipesStderrClient, pipes_client
from assets_defs.resources import PipelineConfig
from assets_defs.training_assets import PretrainConfig, base_model


@pytest.mark.slow
def test_base_model_over_stderr_records_every_checkpoint(sample_run, tmp_path, dagster_instance, capfd):
    data = tmp_path / "data"
    shutil.copytree(sample_run / "data" / "tokenizer", data / "tokenizer")
    shutil.copytree(sample_run / "data" / "token_shards", data / "token_shards")
    pretrain = PretrainConfig(depth=1, seq_len=64, max_steps=30, warmup_steps=3, eval_every=10, checkpoint_every=10)
    result = dg.materialize([base_model], instance=dagster_instance, raise_on_error=False, resources={
        "settings": PipelineConfig(data_root=str(data)), "pretrain": pretrain, "pipes": PipesStderrClient()})
    # 30 steps of a 1-layer model do not beat the unigram baseline: its blocking check fails the step, after the run
    # has reported every checkpoint (the protocol under test)
    (check,) = dagster_instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("base_model"), "beats_unigram"), limit=1)
    assert check.status.value in ("SUCCEEDED", "FAILED") and result.success == (check.status.value == "SUCCEEDED")
    records = dagster_instance.fetch_materializations(dg.AssetKey("base_model"), limit=10).records
    steps = sorted(r.asset_materialization.metadata["step"].value for r in records)
    assert steps == [10, 20, 30]  # every checkpoint's message came through the log stream intact
    logs = [entry.user_message for entry in dagster_instance.all_logs(result.run_id)]
    assert any(m.startswith("step 30/30 | loss") for m in logs), "the script's log lines reach Dagster's event log"
    assert '"__dagster_pipes_version"' not in capfd.readouterr().err, "Pipes messages are consumed, not echoed"


def test_launcher_names():
    assert isinstance(pipes_client("subprocess"), dg.PipesSubprocessClient)
    assert isinstance(pipes_client("stderr"), PipesStderrClient)
    with pytest.raises(ValueError, match="expected one of subprocess, stderr, k8s"):
        pipes_client("slurm")


def test_a_pod_asks_for_one_gpu_a_process():
    options = PretrainConfig(nproc=8, image="crawl2chat:latest").launch_options("s3://b/c2c", "s3://b/c2c/ck")
    assert options["image"] == "crawl2chat:latest"
    assert options["base_pod_spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 8}
    assert options["command"][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert set(PretrainConfig().launch_options("data", "out")) == {"command"}
    tied = PretrainConfig(tie_embeddings=True, smear_keys=True, repeat_frac=0.2).command("data", "out")
    assert "--tie-embeddings" in tied and "--smear-keys" in tied and tied[tied.index("--repeat-frac") + 1] == "0.2"
    assert "--tie-embeddings" not in PretrainConfig().command("data", "out")  # a False switch is left out
    from training.pretrain import parse_args

    assert parse_args(tied[tied.index("--data"):]).tie_embeddings  # the script reads what the asset passes
    convolved = PretrainConfig(qk_conv=3).command("data", "out")
    assert parse_args(convolved[convolved.index("--data"):]).qk_conv == 3
    with pytest.raises(ValueError, match="qk_conv"):  # at load time, naming the field
        PretrainConfig(qk_conv=1)


def test_fine_tuning_stages_run_in_the_same_image_on_one_gpu_or_under_torchrun_on_several():
    for config, script in ((SFTConfig(image="crawl2chat:latest"), "training.sft"),
                           (RLConfig(image="crawl2chat:latest"), "training.rl")):
        options = config.pod_options(config.command("s3://b/c2c"))
        assert options["image"] == "crawl2chat:latest" and options["command"][1:3] == ["-m", script]
        assert options["base_pod_spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
        several = config.model_copy(update={"nproc": 4})
        options = several.pod_options(several.command("s3://b/c2c"))
        assert options["command"][1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
        assert options["command"][6] == script
        assert options["base_pod_spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert set(SFTConfig().pod_options(["x"])) == {"command"}


def test_the_rl_script_reads_every_setting_the_asset_passes():
    from training.rl import parse_args

    config = RLConfig(tasks=["search", "gsm8k"], advantage="positive", gsm8k_file="s3://b/gsm.jsonl", lr=3e-4,
                      kl=0.05)
    command = config.command("s3://b/c2c")
    args = parse_args(command[command.index("--data"):])
    assert (args.tasks, args.advantage, args.gsm8k_file, args.lr, args.kl) == (["search", "gsm8k"], "positive",
                                                                                "s3://b/gsm.jsonl", 3e-4, 0.05)
    assert "--gsm8k-file" not in RLConfig().command("d")  # the shipped file unless one is named
    with pytest.raises(ValueError, match="advantage"):
        RLConfig(advantage="negative")
    with pytest.raises(ValueError, match="kl"):
        RLConfig(kl=-1)


def test_a_message_caught_half_written_is_read_when_its_line_ends():
    """The file reader behind the subprocess launcher: a long message written in two pieces, the reader polling in
    between, arrives whole; a later message still arrives (Dagster's reader would have died on the first half)."""
    import threading
    import time

    from assets_defs.launchers import WholeLineFileReader
    from dagster_pipes import PipesDefaultMessageWriter

    class Handler:  # what open_pipes_session gives a reader: it records what arrives
        def __init__(self) -> None:
            self.messages, self.errors = [], []

        def handle_message(self, message) -> None:
            self.messages.append(message)

        def report_pipes_framework_exception(self, where, exc_info) -> None:
            self.errors.append((where, exc_info))

    handler = Handler()
    report = {"__dagster_pipes_version": "0.1", "method": "report_custom_message",
              "params": {"payload": {"history": [{"step": i, "train_loss": 1.0 / (i + 1)} for i in range(2000)]}}}
    line = json.dumps(report) + "\n"
    with WholeLineFileReader().read_messages(handler) as params:
        path = params[PipesDefaultMessageWriter.FILE_PATH_KEY]
        with open(path, "a", encoding="utf-8") as f:
            f.write(line[:5000])
            f.flush()
            time.sleep(0.1)  # the reader polls every 10 ms: it sees the half line many times
            assert handler.messages == [] and handler.errors == [] and threading.active_count() >= 2
            f.write(line[5000:])
            f.write(json.dumps({"__dagster_pipes_version": "0.1", "method": "closed", "params": {}}) + "\n")
    assert handler.errors == []
    assert [m["method"] for m in handler.messages] == ["report_custom_message", "closed"]
    assert handler.messages[0] == report
