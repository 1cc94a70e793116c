"""Running a trained model's network over whole volumes: slices in, volumes out (any model family).

The stack (C, z, y, x, normalized, on the reference grid) is cut into the network's axial slices
(slicing.py), slices without brain are skipped, the rest go through the generator in batches
under `torch.inference_mode`, the available channels are replaced by the real ones (implicit
conditioning), and the slices are put back on the reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..core.contrasts import Scenario
from ..core.volume import Volume
from ..models.family import FamilyConfig
from ..models.slicing import SlicingConfig, from_slices, plan_slices, to_slices, with_context


@dataclass
class InferenceOptions:
    """How to run the generator; fp32 is the safe default, bf16/fp16 are opt-in."""

    device: str = "cpu"
    batch_size: int = 16
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    channels_last: bool = True
    stochastic: bool = False  # dropout on (for uncertainty); off = the deterministic estimate
    # Test-time flip: each slice also goes through mirrored left-right and the two outputs are averaged
    # (twice the compute). A model trained with augment_flip sees both sides as equally likely.
    flip_average: bool = False


class SliceImputer:
    """An Imputer (evaluation/harness.py) backed by a slice-wise network of any model family (MM-GAN by default).

    `predict(stack, scenario, frame=..., mask=...)`: `frame` is a Volume on the reference grid
    (for the slice axis and spacing) and `mask` the brain mask that decides which slices are run.
    """

    name = "MM-GAN"
    wants_frame = True

    def __init__(self, generator, model_config: FamilyConfig, slicing: SlicingConfig,
                 options: InferenceOptions | None = None, name: str | None = None,
                 served: Sequence[str] | None = None) -> None:
        import torch

        self.model_config, self.slicing = model_config, slicing
        self.served = None if served is None else set(served)  # scenario bit strings; None: every one
        self.options = options or InferenceOptions()
        self.device = torch.device(self.options.device)
        self.generator = generator.to(self.device)
        self.generator.train(self.options.stochastic)
        # CUDA only: on CPU it brought no gain here, and it would change a model still being trained.
        self.channels_last = self.options.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        if name:
            self.name = name
        self.oom_retries = 0

    def synthesizes(self, scenario: Scenario) -> list[int]:
        """Every missing channel of a scenario the model serves; none of any other (evaluation/harness.py)."""
        if self.served is not None and scenario.bits not in self.served:
            return []
        return [i for i, available in enumerate(scenario.mask) if not available]

    def _dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.options.precision]

    def predict_slices(self, slices: np.ndarray, scenario: Scenario) -> np.ndarray:
        """(Z, C, S, S) normalized slices (missing channels ignored) -> (Z, C, S, S) with the missing synthesized.
        The slices are consecutive: a 2.5-D network takes each one's neighbours from among them.

        A CUDA out-of-memory error halves the batch and retries instead of failing.
        """
        import torch

        while True:
            try:
                return self._run_batches(slices, scenario)
            except torch.cuda.OutOfMemoryError:
                if self.options.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.options.batch_size = max(1, self.options.batch_size // 2)
                self.oom_retries += 1

    def _run_batches(self, slices: np.ndarray, scenario: Scenario) -> np.ndarray:
        import torch

        from ..models.family import Execution, availability, context_slices, family_of

        family = family_of(self.model_config)
        execution = Execution(self.device.type, self._dtype(), self.channels_last)
        out = np.empty_like(slices, dtype=np.float32)
        k = context_slices(self.model_config)
        with torch.inference_mode():
            for start in range(0, slices.shape[0], self.options.batch_size):
                stop = min(start + self.options.batch_size, slices.shape[0])
                # A 2.5-D network's neighbours, built per batch (the whole volume's would be 1 + 2k times its size).
                low = max(0, start - k)
                batch = np.ascontiguousarray(with_context(slices[low:stop + k], k)[start - low:stop - low])
                real = torch.from_numpy(batch).to(self.device)
                available = availability(scenario, real.shape[0], self.device)
                imputed = family.impute_batch(self.model_config, self.generator, real, available, execution)
                if self.options.flip_average:
                    mirrored = family.impute_batch(self.model_config, self.generator, real.flip(-1), available, execution)
                    imputed = 0.5 * (imputed + mirrored.flip(-1))
                out[start:start + real.shape[0]] = imputed.cpu().numpy()
        return out

    def predict(self, stack: np.ndarray, scenario: Scenario, frame: Volume | None = None,
                mask: np.ndarray | None = None) -> np.ndarray:
        """(C, z, y, x) normalized -> (C, z, y, x): available channels as given, missing ones synthesized."""
        frame = frame or Volume(np.zeros(stack.shape[1:], np.float32))
        geometry = plan_slices(frame, mask, self.model_config.image_size, crop=self.slicing.crop,
                               skip_empty=self.slicing.skip_empty, margin_mm=self.slicing.margin_mm)
        available = np.asarray(scenario.mask)
        stack = np.where(available[:, None, None, None], stack, 0).astype(np.float32)
        synthesized = from_slices(self._network_slices(stack, geometry, scenario), geometry)
        # Outside the network's slices and box nothing was synthesized: keep the given channels exact.
        synthesized[available] = stack[available]
        return synthesized

    def _network_slices(self, stack: np.ndarray, geometry, scenario: Scenario) -> np.ndarray:
        """The synthesized network slices of `geometry`'s range. A 2.5-D network is also given the k slices
        beyond each end of the range where the volume has them (as in training on whole volumes); their
        own outputs are dropped."""
        from ..models.family import context_slices

        k = context_slices(self.model_config)
        if not k:
            return self.predict_slices(to_slices(stack, geometry), scenario)
        start, stop = geometry.slice_range
        wider = replace(geometry, slice_range=(max(0, start - k), min(geometry.oriented_shape[0], stop + k)))
        inner = start - wider.slice_range[0]
        return self.predict_slices(to_slices(stack, wider), scenario)[inner:inner + stop - start]
