"""TokenLoader: litdata's ``StreamingDataLoader`` that resumes mid-epoch once, not at every later epoch.

After ``load_state_dict`` (a resumed ``fit``), litdata replays the loaded position at the start of
every epoch until one epoch runs its iterator to exhaustion. Lightning ends an epoch by counting
batches, so a resumed epoch never exhausts it, and every later epoch started again at the
resumed sample (a run resumed at step 50 of a 118-batch epoch repeated samples 400–943 each
epoch). Here a new epoch after the resumed one starts from the beginning, as in a run that was
never interrupted.
"""

from __future__ import annotations

from typing import Any

from litdata import StreamingDataLoader


class TokenLoader(StreamingDataLoader):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resumed_epoch_started = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._resumed_epoch_started = False

    def __iter__(self) -> Any:
        if self.restore and self._resumed_epoch_started:
            self.restore = False  # the resumed epoch is over: this one starts at its first sample
        self._resumed_epoch_started = self.restore
        return super().__iter__()
