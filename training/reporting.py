"""How a training script reports: to Dagster through Pipes when Dagster launched it (log lines, one custom message
a checkpoint), else plain lines on stdout. The scripts never import dagster; dagster_pipes is its standalone
client library."""

from __future__ import annotations

import math

MAX_REPORTED_HISTORY = 1000  # points of the loss curve sent to Dagster; the checkpoint keeps every step


class Reporter:
    """Progress lines and checkpoint reports: to Dagster through Pipes when it launched us, else to stdout."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.pipes = None
        self.bar = None

    def __enter__(self) -> Reporter:
        if self.enabled:
            from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

            if PipesEnvVarParamsLoader().is_dagster_pipes_process():
                self.pipes = open_dagster_pipes()
                self.pipes.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.pipes is not None:
            self.pipes.__exit__(*exc)  # reports an exception, if any, to Dagster

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.pipes is not None:
            self.pipes.log.info(message)
        elif self.bar is not None:
            self.bar.write(message)  # above the bar, which stays at the bottom
        else:
            print(message, flush=True)

    def steps(self, start: int, end: int, desc: str):
        """range(start, end), with a progress bar on the command line. Under Pipes the log lines are the progress:
        a bar would also break the lines that carry Pipes messages when they travel on stderr (PipesK8sClient
        reads them from the pod's log); other processes of a distributed run draw none."""
        if not self.enabled or self.pipes is not None:
            yield from range(start, end)
            return
        from tqdm import tqdm

        self.bar = tqdm(total=end, initial=start, desc=desc, unit="step", dynamic_ncols=True)
        try:
            for step in range(start, end):
                yield step
                self.bar.update(1)
        finally:  # also when the loop stops early
            self.bar.close()
            self.bar = None

    def postfix(self, **figures: str) -> None:
        """Figures shown at the end of the progress bar (the latest loss, the rate), where there is one."""
        if self.bar is not None:
            self.bar.set_postfix(figures, refresh=False)

    def checkpoint(self, report: dict) -> None:
        if not self.enabled:
            return
        if self.pipes is not None:
            history = report["history"]
            every = math.ceil(len(history) / MAX_REPORTED_HISTORY)
            thinned = [h for i, h in enumerate(history)
                       if i % every == 0 or "val_loss" in h or "accuracy" in h or i == len(history) - 1]
            self.pipes.report_custom_message({**report, "history": thinned})
        else:
            shown = {"train": "train_loss", "val": "val_loss", "bpb": "val_bpb", "reward": "reward"}
            self.log(f"checkpoint {report['checkpoint']} step {report['step']}"
                     + "".join(f" {name} {fmt(report.get(key))}" for name, key in shown.items() if key in report))


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
