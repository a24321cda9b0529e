"""Progress for training: a tqdm bar per epoch and one line per epoch; silent when quiet."""

from __future__ import annotations

from tqdm.auto import tqdm

from medclf.models.training.history import epoch_line


class EpochProgress:
    def __init__(self, n_examples: int, epochs: int, quiet: bool = False, label: str = ""):
        self.n, self.epochs, self.quiet, self.label = n_examples, epochs, quiet, label
        self.bar = None

    def step(self, done: int) -> None:
        """``done`` more examples of the current epoch are trained."""
        if self.quiet:
            return
        if self.bar is None:
            epoch = getattr(self, "epoch", 0) + 1
            self.epoch = epoch
            self.bar = tqdm(
                total=self.n,
                desc=f"{self.label} epoch {epoch}/{self.epochs}",
                unit="ex",
                leave=False,
                dynamic_ncols=True,
            )
        self.bar.update(done)

    def end_epoch(self, rec: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.epoch = rec["epoch"]
        if not self.quiet:
            tqdm.write(epoch_line(rec))
