"""The chat phase as `crawl2chat run` materializes it on the sample: search index, SFT conversations, sft_model,
rl_model, the preference rankings, reward_model and rlhf_model, and `crawl2chat chat` talking to the result with its
tools."""

from __future__ import annotations

import dagster as dg
import pytest

from assets_defs.cli import main
from training.sft_data import IDENTITY_ANSWER


def _metadata(instance: dg.DagsterInstance, asset: str, limit: int = 10) -> list[dict]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records
    return [r.asset_materialization.metadata for r in records]


@pytest.fixture
def instance(sample_run, monkeypatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(sample_run / "home"))
    return dg.DagsterInstance.get()


@pytest.mark.slow
def test_search_index_and_conversations_are_recorded(instance):
    (index,) = _metadata(instance, "search_index")
    assert index["documents"].value > 100 and index["passages"].value > index["documents"].value
    assert len(index["fingerprint"].value) >= 12 and "[1] http" in index["example"].value
    (probe,) = _metadata(instance, "knowledge_probe")
    probed = {verdict: probe[verdict].value for verdict in ("known", "unknown", "uncertain")}
    assert probe["questions"].value == sum(probed.values()) >= 40  # the sample's definitions, asked of the toy
    rates = probe["rates_before_sft"].value
    assert rates["questions"] == probe["questions"].value and rates["unknown"] == probed["unknown"] > 0
    assert probe["base_checkpoint"].value.endswith("checkpoints/base/step-000200")
    (conversations,) = _metadata(instance, "sft_conversations")
    by_source = conversations["by_source"].value
    totals = {source: n["train"] + n["held_out"] for source, n in by_source.items()}
    assert totals == {"identity": 150, "sums": 75, "arithmetic": 75, "letter_counting": 200, "unknown": 150,
                      "search": 150, "multi_turn": 100, "probed_unknown": probed["unknown"],
                      **({"probed_known": probed["known"]} if probed["known"] else {})}
    assert {source: n["held_out"] for source, n in by_source.items() if not source.startswith("probed")} == {
        "identity": 15, "sums": 8, "arithmetic": 8, "letter_counting": 20, "unknown": 15, "search": 15,
        "multi_turn": 10}
    assert by_source["probed_unknown"]["held_out"] > 0
    assert conversations["conversations"].value == sum(totals.values())
    assert conversations["held_out"].value == sum(n["held_out"] for n in by_source.values())
    assert conversations["held_out_questions_also_trained_on"].value == 0


@pytest.mark.slow
def test_each_sft_checkpoint_is_a_materialization_that_points_at_its_base(instance):
    by_step = {m["step"].value: m for m in _metadata(instance, "sft_model")}
    assert sorted(by_step) == [150, 300]  # SFTConfig's checkpoint_every and max_steps
    last = by_step[300]
    assert last["checkpoint"].value.endswith("checkpoints/sft/step-000300")
    assert last["base_checkpoint"].value.endswith("checkpoints/base/step-000200")  # the lineage of the weights
    accuracy = last["accuracy"].value
    assert set(accuracy) - {"probed_known"} == {"identity", "sums", "arithmetic", "letter_counting", "unknown",
                                                "search", "multi_turn", "probed_unknown"}  # probed_known: if the toy
    # knows one
    assert all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert last["finished"].value >= 0.8  # the held-out replies end their turn: the format is learned
    assert last["val_loss"].value < by_step[150]["train_loss"].value * 2 and last["val_loss"].value > 0
    (check,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("sft_model"), "learned_the_format"), limit=1)
    assert check.status.value == "SUCCEEDED"


def test_the_format_check_asks_for_ended_turns_not_right_answers():
    from assets_defs.chat_assets import learned_the_format

    wrong_but_ended = learned_the_format({"finished": 0.95, "accuracy": {"identity": 0.0}})
    assert wrong_but_ended.passed and wrong_but_ended.metadata["finished"].value == 0.95
    assert not learned_the_format({"finished": 0.3, "accuracy": {"identity": 1.0}}).passed  # runs on past its turn
    assert not learned_the_format({"accuracy": {"identity": 1.0}}).passed  # no evaluation, no pass


@pytest.mark.slow
def test_the_knowledge_probe_asks_its_held_out_questions_again_after_sft(instance):
    """Before and after on the same questions: the base model's answers, then the chat model's (Llama 3, 4.3.6)."""
    (probe,) = _metadata(instance, "knowledge_probe")
    (after,) = [m["knowledge_probe_after_sft"].value for m in _metadata(instance, "sft_model")
                if "knowledge_probe_after_sft" in m]
    assert after["sft_checkpoint"].endswith("checkpoints/sft/step-000300")
    before, now = after["before"], after["after"]
    assert 0 < after["held_out_questions"] == before["known"] + before["unknown"] == now["known"] + now["unknown"]
    assert after["held_out_questions"] < probe["questions"].value  # the trained-on questions are not asked again
    # unknown means never right before: each answer was a refusal or a confident wrong one
    assert before["hallucination_rate_on_unknown"] + before["idk_rate_on_unknown"] == pytest.approx(1.0)
    assert now["hallucination_rate_on_unknown"] + now["idk_rate_on_unknown"] <= 1.0
    assert len(after["examples"]) == min(5, after["held_out_questions"]) and after["examples"][0]["answer"]


@pytest.mark.slow
def test_each_rl_checkpoint_records_its_reward_and_accuracy_next_to_the_sft_start(instance, sample_run):
    by_step = {m["step"].value: m for m in _metadata(instance, "rl_model")}
    assert sorted(by_step) == [5, 10]  # tests/data/sample_run.yaml's checkpoint_every and max_steps
    last = by_step[10]
    assert last["checkpoint"].value.endswith("checkpoints/rl/step-000010")
    assert last["base_checkpoint"].value.endswith("checkpoints/sft/step-000300")
    assert 0.0 <= last["reward"].value <= 1.0
    assert set(last["accuracy"].value) == set(last["start_accuracy"].value) == {"arithmetic", "letter_counting"}
    assert last["reward_curve"].value.startswith("![reward](data:image/png;base64,")
    assert last["accuracy_curve"].value.startswith("![accuracy](data:image/png;base64,")
    assert set(last["pass_at_k"].value) == {"arithmetic", "letter_counting"} and last["pass_k"].value == 4
    assert all(0.0 <= solved <= 1.0 for solved in last["pass_at_k"].value.values())
    sampled = last["sampled_pass_at_1"].value  # the share of the pass@k replies right: at most pass@k's share
    assert all(0.0 <= sampled[task] <= last["pass_at_k"].value[task] for task in ("arithmetic", "letter_counting"))
    assert last["sampled_pass_at_1_mean"].value == pytest.approx(sum(sampled.values()) / 2)
    assert last["pass_at_1_mean"].value == sum(last["accuracy"].value.values()) / 2
    assert last["start_pass_at_1_mean"].value == sum(last["start_accuracy"].value.values()) / 2
    assert 1 <= last["eval_reply_tokens"].value <= 48  # RLConfig's max_new_tokens
    (check,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("rl_model"), "no_worse_than_sft"), limit=1)
    assert check.status.value == "SUCCEEDED"
    stdout = " ".join((sample_run / "stdout.txt").read_text().split())
    assert "rl_model: step 10, reward" in stdout and "held-out accuracy (SFT -> RL): arithmetic" in stdout


@pytest.mark.slow
def test_the_reward_model_orders_held_out_preference_pairs(instance, sample_run):
    (rankings,) = _metadata(instance, "preference_rankings")
    by_kind = rankings["pairs_by_kind"].value
    assert by_kind == {kind: {"train": 200, "held_out": 30} for kind in (  # PreferenceConfig's defaults
        "correct_vs_wrong", "answer_vs_refusal", "refusal_vs_invention", "fluent_vs_degenerate")}
    assert rankings["human_rankings"].value == 0 and rankings["agreement"].value["kendall_tau"] is None
    by_step = {m["step"].value: m for m in _metadata(instance, "reward_model")}
    assert sorted(by_step) == [15, 30]  # tests/data/sample_run.yaml's checkpoint_every and max_steps
    last = by_step[30]
    assert last["base_checkpoint"].value.endswith("checkpoints/sft/step-000300")
    assert last["pairs"].value == {"train": 800, "held_out": 120, "too_long": 0}
    # the toy tells refusals, inventions and degenerate replies apart; checking a sum's working needs the copying
    # it lacks (the make-small model orders those too: bench/BENCHMARKS.md)
    assert last["pairwise_accuracy"].value >= 0.75
    assert last["accuracy_by_kind"].value["refusal_vs_invention"] >= 0.9
    assert last["pairwise_curve"].value.startswith("![pairwise](data:image/png;base64,")
    (check,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("reward_model"), "orders_held_out_pairs"), limit=1)
    assert check.status.value == "SUCCEEDED"
    stdout = " ".join((sample_run / "stdout.txt").read_text().split())
    assert "reward_model: step 30, held-out pairs ordered right" in stdout and "correct_vs_wrong" in stdout


@pytest.mark.slow
def test_rlhf_runs_its_steps_against_the_reward_model_with_the_guard_watching(instance, sample_run):
    by_step = {m["step"].value: m for m in _metadata(instance, "rlhf_model")}
    assert sorted(by_step) == [5, 10]  # tests/data/sample_run.yaml's checkpoint_every and max_steps
    last = by_step[10]
    assert last["base_checkpoint"].value.endswith("checkpoints/sft/step-000300")
    assert last["reward_checkpoint"].value.endswith("checkpoints/reward/step-000030")
    assert last["guard"].value == {"fired": False, "reason": None, "at_step": 10, "restored_step": None}
    assert set(last["accuracy"].value) == set(last["start_accuracy"].value) == {"identity", "sums", "unknown"}
    assert last["reward_curve"].value.startswith("![reward](data:image/png;base64,")
    assert last["accuracy_curve"].value.startswith("![accuracy](data:image/png;base64,")
    (check,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("rlhf_model"), "guard_quiet"), limit=1)
    assert check.status.value == "SUCCEEDED"
    stdout = " ".join((sample_run / "stdout.txt").read_text().split())
    assert "rlhf_model: step 10, reward" in stdout and "the guard stayed quiet" in stdout


@pytest.mark.slow
def test_chat_answers_who_it_is_after_rlhf(sample_run, capsys, monkeypatch):
    monkeypatch.chdir(sample_run)
    assert main(["chat", "--prompt", "Who are you?", "--data", str(sample_run / "data")]) == 0
    out = capsys.readouterr().out
    assert "rlhf step 10" in out and "tools: python, search" in out  # the latest stage by default
    assert IDENTITY_ANSWER[:40] in " ".join(out.split())


@pytest.mark.slow
def test_chat_counts_letters_with_the_python_tool(sample_run, capsys, monkeypatch):
    monkeypatch.chdir(sample_run)
    prompt = 'How many "r" are in the word "strawberry"?'
    assert main(["chat", "--prompt", prompt, "--stage", "sft", "--data", str(sample_run / "data")]) == 0
    out = capsys.readouterr().out
    assert "sft step 300" in out
    assert "[python]" in out, out  # the call the model wrote, run in the sandbox; its result follows
    assert "[python_output]" in out, out


def test_chat_refuses_a_missing_sft_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["chat", "--prompt", "hi", "--data", str(tmp_path / "nothing")]) == 2
    assert "no committed checkpoint under" in capsys.readouterr().out


@pytest.mark.slow
def test_chat_says_when_a_message_is_too_long_for_the_model(sample_run, capsys, monkeypatch):
    monkeypatch.chdir(sample_run)
    assert main(["chat", "--prompt", "word " * 2000, "--data", str(sample_run / "data")]) == 2
    assert "too long for the model" in capsys.readouterr().out


@pytest.mark.slow
def test_chat_reads_turns_from_stdin_until_it_ends(sample_run, capsys, monkeypatch):
    import io

    monkeypatch.chdir(sample_run)
    monkeypatch.setattr("sys.stdin", io.StringIO("Who are you?\nWhat is your name?\n/quit\nnever read\n"))
    assert main(["chat", "--data", str(sample_run / "data")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # one answer a turn, then /quit ends it before "never read" (the toy may get the second turn wrong)
    header, first, second, after_quit = out.split("you>")
    assert IDENTITY_ANSWER.split(", ", 1)[1][:50] in first and second.strip() and not after_quit.strip()


@pytest.mark.slow
def test_each_base_checkpoint_records_the_token_shards_it_trained_on(instance):
    shards = [m["token_shards"].value for m in _metadata(instance, "base_model")]
    assert shards and all(s == [f"sample/{i:05d}" for i in range(8)] for s in shards)  # `crawl2chat trace`'s links
