"""RL on verifiable answers: the pieces of the policy gradient, a killed run that resumes to the same weights, and
two processes under torchrun that take the steps of one."""

from __future__ import annotations

import copy
import random
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import run_module

from pipeline.search import SearchIndex
from pipeline.storage import Store

from training.chat import parse_reply, render_prompt
from training.checkpoint import load_checkpoint, save_checkpoint
from training.engine import Engine, Sampling
from training.evals import reward
from training.model import GPT, GPTConfig
from training.rl import (ADVANTAGES, TASKS, TaskTools, advantages, generated_mask, learning_rate, main, policy_loss,
                         parse_args, problems, rollout, step_turns, task_tools, task_turns)
from training.sft_data import HELD_OUT, PRODUCT_QUESTIONS, SEARCH_QUESTIONS, TRAIN, WORDS, asked_query, search, split_of


def test_problems_of_every_task_come_from_their_side_of_the_split(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(SystemExit, match="the search task needs a search_index"):
        task_tools(store, ["search"])
    docs = [(f"d{i}", f"https://example.org/{a}", f"The {a} service keeps {b} records. It rotates {c} logs weekly.")
            for i, (a, b, c) in enumerate(zip(*[iter(WORDS[:90])] * 3))]
    SearchIndex.build(docs).save(store)
    env = task_tools(store, list(TASKS))
    assert "rotates" in env.words and len(env.passages) == len(docs)
    for split in (TRAIN, HELD_OUT):
        items = problems(random.Random(0), list(TASKS), 2 * len(TASKS), env, split)
        sources = [{"follow_up": "multi_turn"}.get(task, task) for task in TASKS]
        assert [it["source"] for it in items] == sources * 2 and {it["split"] for it in items} == {split}
        for it in (it for it in items if it["source"] == "search"):
            query = asked_query(it)
            assert query in it["messages"][0]["content"] and split_of(query) == split  # a query of its own side
            # (keyed by the query: passages can share one)
        for it in (it for it in items if it["source"] == "gsm8k"):
            assert it in env.gsm8k and it["answer"].isdigit()  # the file's items keep their split
        for it in (it for it in items if it["source"] == "multi_turn"):  # a follow-up on a product or a count
            assert len(it["messages"]) == 4 and it["messages"][0]["content"] != it["messages"][2]["content"]


def test_a_weighted_task_is_drawn_that_many_times_as_often_and_evaluated_once():
    args = parse_args(["--data", "d", "--tasks", "letter_counting:3, arithmetic"])
    assert args.turns == ["letter_counting"] * 3 + ["arithmetic"] and args.tasks == ["letter_counting", "arithmetic"]
    items = problems(random.Random(0), args.turns, 8, TaskTools({}, [], WORDS, []))
    assert [it["source"] for it in items].count("letter_counting") == 6
    assert len({it["messages"][0]["content"] for it in items}) == 8  # each turn draws problems of its own
    drawn = [problems(random.Random(step), step_turns(args.turns, step, 3), 3, TaskTools({}, [], WORDS, []))
             for step in range(4)]  # fewer a step than turns: they go on from the last step's
    assert [it["source"] for items in drawn for it in items] == (["letter_counting"] * 3 + ["arithmetic"]) * 3
    for spec, named in (("chess", "unknown task 'chess'"), ("search:0", "weight '0'"), ("search:x", "weight 'x'"),
                        ("search,search:2", "named twice"), (" , ", "no task")):
        with pytest.raises(ValueError, match=named):
            task_turns(spec.split(","))


@pytest.mark.parametrize("task, most", [("long_arithmetic", (999_999, 9_999)),
                                        ("longer_arithmetic", (9_999_999_999, 99_999_999))])
def test_long_arithmetic_asks_products_longer_than_sft_practises_and_holds_out_its_own(task, most):
    env = TaskTools({}, [], list(WORDS))
    drawn = {split: problems(random.Random(1), [task], 200, env, split) for split in (TRAIN, HELD_OUT)}
    operands = {split: [tuple(map(int, re.findall(r"\d+", it["messages"][0]["content"]))) for it in items]
                for split, items in drawn.items()}
    for split, pairs in operands.items():
        assert all(100 <= a <= most[0] and 100 <= b <= most[1] for a, b in pairs)
        asked = {re.sub(r"\d+", "N", it["messages"][0]["content"]) for it in drawn[split]}
        assert len(asked) == (1 if task == "long_arithmetic" else len(PRODUCT_QUESTIONS[split]))  # as SFT asks
        assert sum(a > most[0] // 10 for a, _ in pairs) > 150  # most have the longest operand: SFT's stop at 4 by 3
        assert all(it["answer"] == str(a * b) and it["source"] == task for it, (a, b) in zip(drawn[split], pairs))
    assert not set(operands[TRAIN]) & set(operands[HELD_OUT])


def test_phrased_arithmetic_asks_held_out_products_in_phrasings_never_trained_on():
    env = TaskTools({}, [], list(WORDS))
    asked = {}
    for split in (TRAIN, HELD_OUT):
        items = problems(random.Random(2), ["phrased_arithmetic"], 300, env, split)
        asked[split] = {re.sub(r"\d+", "N", it["messages"][0]["content"]) for it in items}
        for it in items:
            a, b = map(int, re.findall(r"\d+", it["messages"][0]["content"]))
            assert it["answer"] == str(a * b) and it["messages"][1]["content"][0]["text"] == f"{a} * {b}"
    assert len(asked[TRAIN]) == 18 and len(asked[HELD_OUT]) == 3 and not asked[TRAIN] & asked[HELD_OUT]


def test_the_gsm8k_task_draws_the_shipped_problems_or_a_file_given(tmp_path):
    shipped = task_tools(Store(str(tmp_path)), ["gsm8k"]).gsm8k
    assert len(shipped) == 100 and {it["split"] for it in shipped} == {TRAIN, HELD_OUT}
    held_out = problems(random.Random(0), ["gsm8k"], 50, task_tools(Store(str(tmp_path)), ["gsm8k"]), HELD_OUT)
    distinct = {it["messages"][0]["content"] for it in held_out}
    assert distinct == {it["messages"][0]["content"] for it in shipped if it["split"] == HELD_OUT}
    own = tmp_path / "mine.jsonl"
    own.write_text('{"question": "Ann has 3 pens and buys 4. How many pens?", "answer": "3+4=<<3+4=7>>7\\n#### 7"}\n')
    mine = task_tools(Store(str(tmp_path)), ["gsm8k"], str(own)).gsm8k
    assert [it["answer"] for it in mine] == ["7"]
    side = mine[0]["split"]
    other = HELD_OUT if side == TRAIN else TRAIN
    assert problems(random.Random(0), ["gsm8k"], 2, TaskTools({}, [], [], mine), side) == mine * 2
    with pytest.raises(SystemExit, match=f"no {other} problems"):
        problems(random.Random(0), ["gsm8k"], 1, TaskTools({}, [], [], mine), other)


def test_the_baseline_is_the_mean_reward_of_the_replies_to_the_same_problem():
    assert advantages([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], group=3) == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])


def test_the_learning_rate_rises_over_the_warmup_then_stays_or_falls_to_zero():
    assert [learning_rate(step, 3e-4, 3) for step in range(5)] == pytest.approx([1e-4, 2e-4, 3e-4, 3e-4, 3e-4])
    assert learning_rate(0, 3e-4, 0) == learning_rate(0, 3e-4, 1) == 3e-4
    decayed = [learning_rate(step, 3e-4, 2, max_steps=6) for step in range(6)]  # the last step still moves
    assert decayed == pytest.approx([1.5e-4, 3e-4, 3e-4, 2.25e-4, 1.5e-4, 0.75e-4])


def test_positive_advantages_keep_only_the_replies_above_their_group_mean():
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert advantages(rewards, group=3, kind="positive") == pytest.approx([2 / 3, 0, 0, 1 / 3, 1 / 3, 0, 0, 0, 0])


def test_tokens_a_tool_pasted_in_carry_no_gradient():
    start, end = 90, 91
    assert generated_mask([5, 6, start, 7, 8, end, 9, 10], start, end) == [1, 1, 0, 0, 0, 0, 1, 1]
    assert generated_mask([5, start, 7], start, end) == [1, 0, 0]  # cut off inside the output


@pytest.mark.parametrize("marker", ["<|output_end|>", "<|output_start|>"])
def test_a_reply_that_writes_a_tool_output_marker_itself_gets_no_reward(two_tokenizers, scripted_model, marker):
    """Both models answer 5, the right answer; one then writes a tool's output marker itself. Its reply ends there
    and is rewarded 0 (the text alone would have earned 1), the rollout counts it, and the marker itself is trained
    on, so the 0 pushes it down."""
    tok = two_tokenizers[0]
    item = {"source": "arithmetic", "answer": "5",
            "messages": [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]}
    im_sep, im_end, forged = (tok.encode_special(n) for n in ("<|im_sep|>", "<|im_end|>", marker))
    sampling = Sampling(max_new_tokens=16, temperature=1.0, stop_tokens=(im_end,), seed=0)
    honest = rollout(scripted_model(tok.n_vocab, [im_sep, *tok.encode("5"), im_end]), tok, [item], 2, sampling, {})
    assert honest.rewards == [1.0, 1.0] and honest.forged_tool_output == 0
    forging = rollout(scripted_model(tok.n_vocab, [im_sep, *tok.encode("5"), forged]), tok, [item], 2, sampling, {})
    assert forging.replies == [[*tok.encode("5"), forged]] * 2
    assert forging.rewards == [0.0, 0.0] and forging.forged_tool_output == 2
    assert reward(item, parse_reply(tok, forging.replies[0])) == 1.0, "the reply's text alone gives the answer"
    assert forging.masks == [[1] * len(forging.replies[0])] * 2
    assert forging.prompts == [render_prompt(tok, item["messages"][:1])] * 2
    other = {**item, "answer": "6", "messages": [{"role": "user", "content": "What is 3 + 3?"}, item["messages"][1]]}
    split = rollout(scripted_model(tok.n_vocab, [im_sep, *tok.encode("5"), im_end]), tok, [other, item], 2, sampling,
                    {}, per_batch=1)  # one problem a batch, put back together in order
    assert split.rewards == [0.0, 0.0, 1.0, 1.0] and split.prompts[1:3] == [render_prompt(tok, other["messages"][:1]),
                                                                              honest.prompts[0]]
    forged_split = rollout(scripted_model(tok.n_vocab, [im_sep, *tok.encode("5"), forged]), tok, [other, item], 2,
                           sampling, {}, per_batch=1)
    assert forged_split.forged == {0, 1, 2, 3} and len(forged_split.masks) == 4  # rows counted across the batches


def test_rl_refuses_a_start_or_resume_checkpoint_of_another_tokenizer(two_tokenizers, chat_root, tmp_path):
    (root_a, sha_a), (root_b, sha_b) = (chat_root(tmp_path / n, t) for n, t in zip("ab", two_tokenizers))
    out = tmp_path / "rl"
    common = ["--data", root_a, "--out", str(out), "--max-steps", "1", "--prompts", "1", "--samples", "2",
              "--eval-items", "1", "--max-new-tokens", "4"]
    with pytest.raises(SystemExit) as refused:  # an SFT checkpoint trained with tokenizer b
        main([*common, "--start", f"{root_b}/checkpoints/base"])
    assert f"{root_b}/checkpoints/base/step-000001" in str(refused.value)
    assert sha_a in str(refused.value) and sha_b in str(refused.value)
    model = GPT(GPTConfig(vocab_size=two_tokenizers[1].n_vocab, depth=1, seq_len=64))
    save_checkpoint(str(out), 1, model, torch.optim.AdamW(model.parameters()), {"step": 1}, {"history": []},
                    tokenizer_sha256=sha_b)
    with pytest.raises(SystemExit) as refused:  # a start trained with a, but an RL run of b's to resume
        main([*common, "--start", f"{root_a}/checkpoints/base", "--max-steps", "2"])
    assert f"{out}/step-000001" in str(refused.value)
    assert sha_a in str(refused.value) and sha_b in str(refused.value)
    # with its start's tokenizer, a run goes through, counting forged tool outputs among its metrics
    assert main([*common, "--start", f"{root_a}/checkpoints/base", "--out", str(tmp_path / "rl_a")]) == 0
    config = load_checkpoint(str(tmp_path / "rl_a"))["config"]
    assert config["tokenizer_sha256"] == sha_a and config["history"][-1]["forged_tool_output"] in (0, 1, 2)


def test_the_policy_gradient_raises_the_rewarded_reply_and_lowers_the_other():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, depth=1, seq_len=16))
    prompts, replies = [[1, 2], [1, 2]], [[3, 4], [5, 6]]

    @torch.no_grad()
    def logp(reply):
        logits = model(torch.tensor([[1, 2, *reply[:-1]]]))[0, 1:].float().log_softmax(-1)
        return float(logits.gather(-1, torch.tensor(reply)[:, None]).sum())

    before = [logp(r) for r in replies]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = policy_loss(model, prompts, replies, [[1, 1], [1, 1]], advantages([1.0, 0.0], 2), torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = [logp(r) for r in replies]
    assert after[0] > before[0] + 0.1 and after[1] < before[1] - 0.1


def test_the_kl_term_pulls_the_policy_back_to_the_reference_and_is_zero_where_they_agree():
    torch.manual_seed(0)
    reference = GPT(GPTConfig(vocab_size=32, depth=1, seq_len=16))
    model = copy.deepcopy(reference)
    prompts, replies, masks = [[1, 2], [1, 2]], [[3, 4, 5], [6, 7]], [[1, 1, 1], [1, 1]]
    stats = {}
    loss = policy_loss(model, prompts, replies, masks, [0.0, 0.0], torch.device("cpu"), reference=reference, kl=1.0,
                       stats=stats)
    assert stats["kl_sum"] == pytest.approx(0.0, abs=1e-6) and float(loss) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    kls = []
    for _ in range(20):
        loss = policy_loss(model, prompts, replies, masks, [0.0, 0.0], torch.device("cpu"), reference=reference,
                           kl=1.0, stats=stats)
        kls.append(stats["kl_sum"] / 5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert kls[0] > 0.01 and kls[-1] < kls[0] / 2  # without advantages, only the pull back moves the weights


@pytest.fixture
def data(sample_run, tmp_path):
    root = tmp_path / "data"
    for name in ("tokenizer", "search_index", "checkpoints/sft"):
        shutil.copytree(sample_run / "data" / name, root / name)
    return root


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data):
    common = ["--data", str(data), "--prompts", "2", "--samples", "4", "--max-new-tokens", "24",
              "--checkpoint-every", "2", "--eval-every", "100", "--eval-items", "2", "--max-steps", "4"]
    assert main([*common, "--out", str(data / "straight")]) == 0
    assert main([*common, "--out", str(data / "resumed")]) == 0
    shutil.rmtree(data / "resumed" / "step-000004")  # as if killed after the checkpoint at step 2
    assert main([*common, "--out", str(data / "resumed")]) == 0
    straight, resumed = (load_checkpoint(str(data / d), 4) for d in ("straight", "resumed"))
    for name, weight in straight["model"].state_dict().items():
        assert torch.equal(weight, resumed["model"].state_dict()[name]), name
    config = straight["config"]
    assert config["stage"] == "rl" and config["base_checkpoint"].endswith("checkpoints/sft/step-000300")
    assert config["history"] == resumed["config"]["history"] and [h["step"] for h in config["history"]] == [0, 1, 2, 3, 4]
    assert set(config["accuracy"]) == set(config["start_accuracy"]) == {"arithmetic", "letter_counting"}
    assert config["start_accuracy"] == config["history"][0]["accuracy"]  # the SFT model's, before any RL step


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one_with_twice_the_problems(data):
    common = ["--data", str(data), "--tasks", "letter_counting", "--samples", "4", "--max-new-tokens", "48",
              "--max-steps", "3", "--checkpoint-every", "3", "--eval-every", "100", "--eval-items", "2", "--lr", "1e-4"]
    common += ["--rollout-batch", "1"]  # a problem's replies a batch in either run: batches of one shape, one rounding
    run_module("training.rl", *common, "--out", str(data / "one"), "--prompts", "4")
    run_module("training.rl", *common, "--out", str(data / "two"), "--prompts", "2", nproc=2)
    one, two = (load_checkpoint(str(data / name)) for name in ("one", "two"))
    assert (one["config"]["world_size"], two["config"]["world_size"]) == (1, 2)
    history = [ckpt["config"]["history"][1:] for ckpt in (one, two)]  # [0] is the start's accuracy
    assert [h["reward"] for h in history[1]] == [h["reward"] for h in history[0]]  # the same replies sampled
    assert [h["reply_tokens"] for h in history[1]] == [h["reply_tokens"] for h in history[0]]
    trained = [[h["train_loss"] for h in part if "train_loss" in h] for part in history]
    assert trained[0], "some step had replies that scored apart"
    np.testing.assert_allclose(trained[1], trained[0], rtol=1e-4, atol=1e-7)
    for name, weight in one["model"].state_dict().items():
        # Adam divides by the root of tiny second moments: the all-reduce's other summation order moves a weight
        # whose gradients are near zero by up to ~1e-5 (one in 65,536 here), every other one by far less
        torch.testing.assert_close(two["model"].state_dict()[name], weight, rtol=1e-4, atol=1e-5)


def test_each_row_samples_the_same_tokens_in_any_batch():
    torch.manual_seed(0)
    engine = Engine(GPT(GPTConfig(vocab_size=32, depth=1, seq_len=32)))
    sampling = Sampling(max_new_tokens=12, temperature=1.0)
    together = engine.generate_all([[1, 2], [3], [4, 5, 6]], sampling, row_seeds=[10, 11, 12])
    alone = [engine.generate_all([p], sampling, row_seeds=[s])[0] for p, s in (([1, 2], 10), ([3], 11), ([4, 5, 6], 12))]
    assert together == alone and len({tuple(r) for r in together}) == 3
    with pytest.raises(ValueError, match="2 row seeds for 3 prompts"):
        engine.generate_all([[1], [2], [3]], sampling, row_seeds=[1, 2])


@pytest.mark.parametrize("kind", ADVANTAGES)
def test_sampling_scoring_and_stepping_raise_the_reward(kind):
    """The loop of rl.main on a task a model can learn in a few steps: reply with token 7 after the prompt [1]."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, depth=1, seq_len=8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    prompts, rewards_by_step = [[1]] * 16, []
    for step in range(40):
        model.eval()
        with torch.no_grad():
            replies = Engine(model).generate_all(prompts, Sampling(max_new_tokens=1, temperature=1.0, seed=step))
        model.train()
        rewards = [float(r == [7]) for r in replies]
        rewards_by_step.append(sum(rewards) / len(rewards))
        if any(advantage := advantages(rewards, 16, kind)):
            loss = policy_loss(model, prompts, replies, [[1]] * 16, advantage, torch.device("cpu"))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert sum(rewards_by_step[:5]) / 5 < 0.2 and sum(rewards_by_step[-5:]) / 5 > 0.8, rewards_by_step


def test_bench_rl_phrasings_rewrites_only_the_question():
    from bench.bench_rl_phrasings import PRODUCTS, SEARCHES, rephrased

    items = problems(random.Random(3), ["long_arithmetic"], 5, TaskTools({}, [], list(WORDS)), HELD_OUT)
    for phrasing in PRODUCTS:
        for before, after in zip(items, rephrased(items, phrasing)):
            a, b = re.findall(r"\d+", before["messages"][0]["content"])
            assert after["messages"][0]["content"] == phrasing.format(a=a, b=b)
            assert after["messages"][1:] == before["messages"][1:] and after["answer"] == before["answer"]
    passages = [{"url": "https://docs.example/a", "text": "Unpacking needs permissions configured beforehand."}]
    search_tool = lambda query: f"[1] {passages[0]['url']}\n{passages[0]['text']}"  # noqa: E731
    query = "permissions beforehand configured"  # the passage's three longest words
    asked = search(random.Random(0), 1, passages, search_tool, split_of(query))
    assert asked and query in asked[0]["messages"][0]["content"] and asked_query(asked[0]) == query
    for phrasing in SEARCHES:
        assert phrasing not in SEARCH_QUESTIONS[TRAIN] + SEARCH_QUESTIONS[HELD_OUT]  # none is the generator's
        after = rephrased(asked, phrasing, "search")[0]
        assert after["messages"][0]["content"] == phrasing.format(query=query)
        assert after["messages"][1:] == asked[0]["messages"][1:] and after["answer"] == asked[0]["answer"]


def test_the_unknown_task_pays_for_i_dont_know_and_not_for_a_search():
    items = problems(random.Random(0), ["unknown"], 6, TaskTools({}, [], list(WORDS)), HELD_OUT)
    assert {it["source"] for it in items} == {"unknown"} and {it["split"] for it in items} == {HELD_OUT}
    for it in items:
        assert reward(it, [{"type": "text", "text": it["messages"][1]["content"]}]) == 1.0
        searched = [{"type": "search", "text": " Velmor"}, {"type": "search_output", "text": "[1] https://x\nVelmor."},
                    {"type": "text", "text": "The documentation says:\nVelmor."}]
        assert reward(it, searched) == 0.0
