"""A hand-written one-line progress bar: position, running loss, throughput."""
import sys
import time


class ProgressBar:
    def __init__(self, total: int, description: str, enabled: bool = True, stream=sys.stderr, width: int = 24):
        self.total, self.description, self.enabled = total, description, enabled
        self.stream, self.width = stream, width
        self.start = time.perf_counter()
        self.items = 0

    def update(self, step: int, items: int, **values) -> None:
        """step: batches done so far; items: samples in this batch; values: shown as name=value."""
        self.items += items
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        filled = self.width * step // max(self.total, 1)
        shown = " ".join(f"{name}={value:.4g}" for name, value in values.items())
        rate = self.items / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r{self.description} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{step}/{self.total} {shown} {rate:.1f} img/s")
        self.stream.flush()

    def close(self) -> float:
        """Ends the line; returns the throughput in samples per second."""
        elapsed = time.perf_counter() - self.start
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
        return self.items / elapsed if elapsed > 0 else 0.0
