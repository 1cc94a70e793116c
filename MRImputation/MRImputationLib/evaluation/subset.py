"""An imputer of some contrasts scored among more: a two-contrast CycleGAN (T1, FLAIR) beside
three-contrast models (T1, T1c, FLAIR) in one harness call, on the same subjects and cells.

In a scenario of the larger set, the wrapped imputer runs when every given contrast is one of its
own and it serves the scenario that makes on its own set; it fills only its own missing contrasts
(`synthesizes`), so the harness scores it in exactly those cells.

>>> import numpy as np
>>> from MRImputationLib.core.contrasts import ContrastSet, Scenario
>>> class Copy:
...     name = "copy"
...     def predict(self, stack, scenario):
...         return np.repeat(stack[scenario.mask.index(True)][None], len(stack), 0)
>>> wrapped = ContrastSubsetImputer(Copy(), ContrastSet(("T1", "FLAIR"), "T1"), ContrastSet(("T1", "T1c", "FLAIR"), "T1"))
>>> wrapped.synthesizes(Scenario("100")), wrapped.synthesizes(Scenario("110")), wrapped.synthesizes(Scenario("001"))
([2], [], [0])
>>> wrapped.predict(np.stack([np.full((1, 2, 2), v) for v in (1.0, 0.0, 0.0)]), Scenario("100"))[:, 0, 0, 0].tolist()
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

import numpy as np

from ..core.contrasts import ContrastSet, Scenario


class ContrastSubsetImputer:
    """`imputer` (of contrasts `inner`) acting on stacks of the larger contrast set `outer`."""

    def __init__(self, imputer, inner: ContrastSet, outer: ContrastSet) -> None:
        missing = [n for n in inner.names if n not in outer.names]
        if missing:
            raise ValueError(f"{', '.join(missing)} of the imputer are not among {', '.join(outer.names)}")
        self.imputer, self.inner, self.outer = imputer, inner, outer
        self.name = imputer.name
        self.wants_frame = getattr(imputer, "wants_frame", False)
        self.channels = [outer.names.index(n) for n in inner.names]

    def _inner_scenario(self, scenario: Scenario) -> Scenario | None:
        given = set(scenario.available(self.outer))
        if not given <= set(self.inner.names):
            return None
        bits = "".join("1" if n in given else "0" for n in self.inner.names)
        if "0" not in bits or "1" not in bits:
            return None
        return Scenario(bits)

    def synthesizes(self, scenario: Scenario) -> list[int]:
        inner = self._inner_scenario(scenario)
        if inner is None:
            return []
        from .harness import synthesized_channels

        return [self.channels[i] for i in synthesized_channels(self.imputer, inner)]

    def predict(self, stack: np.ndarray, scenario: Scenario, **grid) -> np.ndarray:
        inner = self._inner_scenario(scenario)
        out = np.array(stack, dtype=np.float32, copy=True)
        if inner is None:
            return out
        predicted = self.imputer.predict(np.ascontiguousarray(stack[self.channels]), inner, **grid)
        out[self.channels] = predicted
        return out
