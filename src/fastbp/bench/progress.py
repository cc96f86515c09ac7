"""A one-line progress bar on stderr, drawn only on a terminal.

Redirected to a file or a CI log, stderr gets nothing from it: carriage
returns make such logs unreadable.
"""

import sys


class Progress:
    def __init__(self, stream=None, width=24, enabled=None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self._last_len = 0

    def update(self, done, total, label):
        if not self.enabled:
            return
        filled = self.width * done // max(total, 1)
        line = f"\r[{'#' * filled}{' ' * (self.width - filled)}] {done}/{total} {label}"
        pad = max(0, self._last_len - len(line))
        self.stream.write(line + " " * pad)
        self.stream.flush()
        self._last_len = len(line)

    def close(self):
        """Clear the bar so the table starts on a clean line."""
        if self.enabled and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self.stream.flush()
            self._last_len = 0
