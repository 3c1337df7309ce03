"""How the training scripts report on the command line: a progress bar on stderr, log lines above it."""

from __future__ import annotations

from training.reporting import Reporter


def test_steps_draw_a_bar_on_stderr_and_log_lines_go_above_it(capsys):
    with Reporter(True) as reporter:
        seen = []
        for step in reporter.steps(3, 8, "sft"):
            seen.append(step)
            reporter.postfix(loss=f"{1 / (step + 1):.4f}")
            if step == 5:
                reporter.log("step 6/8 | loss 0.1429")
                reporter.checkpoint({"checkpoint": "ck/step-000006", "step": 6, "train_loss": 0.1429})
        assert reporter.bar is None  # closed when the loop ends
    out, err = capsys.readouterr()
    assert seen == [3, 4, 5, 6, 7]
    assert "step 6/8 | loss 0.1429\ncheckpoint ck/step-000006 step 6 train 0.1429\n" in out  # tqdm.write: above the bar
    assert "sft" in err and "8/8" in err and "loss=" in err


def test_a_loop_stopped_early_closes_its_bar_and_prints_plainly_again(capsys):
    reporter = Reporter(True)
    for step in reporter.steps(0, 100, "rlhf"):
        if step == 2:
            break  # the guard stopping a run
    assert reporter.bar is None
    reporter.log("stopped at step 3")
    out, err = capsys.readouterr()
    assert out == "stopped at step 3\n" and "rlhf" in err


def test_no_bar_where_the_reporter_is_off(capsys):
    # the other processes of a distributed run: their steps, and nothing printed
    assert list(Reporter(False).steps(0, 4, "sft")) == [0, 1, 2, 3]
    out, err = capsys.readouterr()
    assert out == err == ""
