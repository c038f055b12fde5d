"""The estimate: each weight unit's error in uint8, measured on the simulator, and any assignment's outputs.

A unit with an ONNX twin is simulated exactly (``affine.as_stored`` on the twin's values, fed to the simulator;
for a block twin, on that block of rows alone, the rest of the initializer as the other units store it).
A unit without one cannot be: it goes uint8 where uint8 stores it exactly (a tensor of one value), else float16
where that is exact, else it stays float32 (``fixed_types``), and the search never moves it.
"""
from __future__ import annotations

import time

import numpy as np

from .affine import BYTES, as_stored, exact_in
from .fidelity import output_error
from .weight_units import Unit

SENSITIVITY_IMAGES = 8   # the first choice images: enough to rank weights (the noise of rounding is dense)


def fixed_types(units: list[Unit]) -> dict[str, str]:
    """{unit key: type} for the units the simulator cannot run (no ONNX twin)."""
    out = {}
    for u in units:
        if not u.simulated:
            out[u.key] = "uint8" if exact_in(u.values, "uint8") else "float16" if exact_in(u.values, "float16") \
                else "float32"
    return out


class Estimator:
    """Runs assignments {unit key: type} on the simulator."""

    def __init__(self, simulator, units: list[Unit], cfg):
        self.sim, self.cfg = simulator, cfg
        self.units = {u.key: u for u in units}
        self._stored: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def overrides(self, types: dict[str, str]) -> dict[str, np.ndarray]:
        """The simulator feeds for an assignment (float32 units and units without twins need none)."""
        feeds, inits = {}, self.sim.initializers
        for key, dtype in types.items():
            unit = self.units[key]
            if dtype == "float32" or not unit.simulated:
                continue
            if (key, dtype) not in self._stored:
                stored = {n: as_stored(inits[n], dtype) for n in unit.onnx_names}
                stored.update({(n, a, b): as_stored(inits[n][a:b], dtype) for n, a, b in unit.onnx_slices})
                self._stored[(key, dtype)] = stored
            for name, values in self._stored[(key, dtype)].items():
                if isinstance(name, str):
                    feeds[name] = values
                    continue
                whole, a, b = name
                if whole not in feeds:
                    feeds[whole] = inits[whole].copy()
                feeds[whole][a:b] = values
        return feeds

    def run(self, batch: np.ndarray, types: dict[str, str]) -> dict[str, np.ndarray]:
        return self.sim.run(batch, self.overrides(types))

    def sensitivities(self, batch: np.ndarray, log=print) -> dict[str, float]:
        """{unit key: output error of that unit alone in uint8, everything else float32} for every simulated unit
        (0 without running where uint8 stores it exactly)."""
        base = self.sim.run(batch)
        errors, t0 = {}, time.perf_counter()
        simulated = [u for u in self.units.values() if u.simulated]
        for i, unit in enumerate(simulated, 1):
            if exact_in(unit.values, "uint8"):
                errors[unit.key] = 0.0
                continue
            errors[unit.key] = output_error(self.run(batch, {unit.key: "uint8"}), base, self.cfg)
            if i % 25 == 0:
                log(f"      sensitivity: {i}/{len(simulated)} weights ({time.perf_counter() - t0:.0f} s)")
        return errors

    def weight_bytes(self, types: dict[str, str]) -> int:
        """Bytes of the float weights under an assignment."""
        return sum(self.units[k].count * BYTES[t] for k, t in types.items())
