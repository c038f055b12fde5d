"""``--quantize auto``: the per-weight storage types that minimise bytes with AP within the budget of PyTorch's.

The convert command lends an ``AutoQuantizer`` to the TFJS stage (``converters.tfjs_mixed``), which calls
``plan(request)`` with the float32 TFJS weights, the simplified ONNX model and a ``write`` that converts for real.

1. data (``halves``): PyTorch on every image; the choice half decides, the held-back half only reports;
2. units (``weight_units``): TFJS weights matched to their ONNX twins; units without one get a fixed type;
3. sensitivity (``estimate``): each unit alone in uint8 on the simulator, its output error (``fidelity``) on the
   first choice images;
4. walk (``walk``): everything uint8, then units promoted to float16 by error per byte, to the first mix whose
   output error per choice image is within ``walk.ERROR_PER_IMAGE`` and whose AP on the choice half is within the
   budget of PyTorch's there (both estimated on the simulator);
5. confirmation: that assignment converted by tensorflowjs and run by TFJS itself in Node on every image: the
   choice half's AP must be within the budget too, else the walk goes on (at most ``CONFIRMATIONS`` times, then
   float32). The held-back half's AP of the final artifact is measured in the same run and only recorded.
"""
from __future__ import annotations

import time
from pathlib import Path

from contracts.errors import UserError
from contracts.hashing import hash_json, sha256_file, source_hash
from contracts.io_spec import IoSpec
from contracts.paths import PROJECT_ROOT
from contracts.signature import output_names

from .fidelity import output_error
from .walk import ERROR_PER_IMAGE, Step, prefix_sizes, promotion_order, walk

CONFIRMATIONS = 3
SEARCH_SOURCES = ("validation/quantize_search/*.py", "validation/comparators.py", "validation/coco_ap.py",
                  "validation/dataset.py", "nanodet_ref/decode.py")


class AutoQuantizer:
    """The search, lent to the TFJS stage under ``converters.tfjs_mixed.AUTO_HOOK``."""

    def __init__(self, source, images=None, annotations=None, log=print, sensitivity_images: int | None = None):
        """``sensitivity_images``: how many choice images rank the weights (default ``SENSITIVITY_IMAGES``; fewer
        is faster and coarser)."""
        from .estimate import SENSITIVITY_IMAGES

        self.source, self.images, self.annotations, self.log = source, images, annotations, log
        self.sensitivity_images = sensitivity_images or SENSITIVITY_IMAGES
        if source.checkpoint is None:   # refused before anything is built
            raise UserError(f"--quantize auto: {source.name} has no checkpoint (random weights): its AP means "
                            f"nothing, so there is no AP to keep; give --checkpoint")

    def key(self) -> dict:
        """What the stage's cache key holds for the search: its code and the images and annotations it decides
        on (names and sha256)."""
        from validation.dataset import resolve_images

        files = []
        for pattern in SEARCH_SOURCES:
            files.extend(PROJECT_ROOT.glob(pattern))
        image_set = resolve_images(self.images, self.annotations)
        ann = image_set.annotations
        return {"code": source_hash(files, PROJECT_ROOT), "sensitivity_images": self.sensitivity_images,
                "images": hash_json(sorted((p.name, sha256_file(p)) for p in image_set.paths)),
                "annotations": sha256_file(ann) if ann is not None and Path(ann).is_file() else None}

    def reference(self):
        from validation.runners.pytorch import TorchRunner

        return TorchRunner.from_config(self.source.cfg, checkpoint=self.source.checkpoint, seed=self.source.seed)

    def plan(self, request) -> tuple[dict[str, str], dict, dict]:
        """(assignment {TFJS weight name: type}, the stage facts of its final write, the search's record)."""
        from .estimate import Estimator, fixed_types
        from .halves import SearchData
        from .simulator import WeightSimulator
        from .weight_units import build_units

        cfg, log, t0 = self.source.cfg, request.log, time.perf_counter()
        data = SearchData(cfg, self.reference(), self.images, self.annotations, log)
        io = IoSpec.of(request.onnx_io_spec, "onnx_sim io spec", output_names(cfg.strides)) \
            if request.onnx_io_spec else IoSpec.identity(output_names(cfg.strides))
        sim = WeightSimulator(request.onnx_path, io)
        units = build_units(request.weights, sim.model)
        fixed = fixed_types(units)
        est = Estimator(sim, units, cfg)
        log(f"      {len(units)} weight units ({len(fixed)} without an ONNX twin); sensitivity on "
            f"{self.sensitivity_images} choice images ...")
        t1 = time.perf_counter()
        errors = est.sensitivities(data.tensor(data.choice, self.sensitivity_images), log)
        t_sens = time.perf_counter() - t1
        order = promotion_order(errors, {u.key: u.count for u in units})
        search = _Walker(est, data, units, fixed, order, request.ap_budget, log)
        types, confirmations, facts = search.run(request)
        assignment = {n: types[u.key] for u in units for n in u.tfjs_names}
        record = search.record(errors, confirmations, t_sens, time.perf_counter() - t0)
        record["sensitivity_images"] = self.sensitivity_images
        return assignment, facts, record


class _Walker:
    """The walk over promotion prefixes with its TFJS confirmations (``AutoQuantizer.plan`` steps 4 and 5)."""

    def __init__(self, est, data, units, fixed, order, budget, log):
        self.est, self.data, self.units, self.fixed, self.order = est, data, units, fixed, order
        self.budget, self.log = budget, log
        self.sizes = prefix_sizes(len(order))
        self.steps: dict[int, Step] = {}
        self.choice_batch = data.tensor(data.choice)
        self.float32 = est.run(self.choice_batch, self.types(None))

    def types(self, k: int | None) -> dict[str, str]:
        """The first k units of the order float16, the other simulated units uint8 (None: all float32)."""
        if k is None:
            return {u.key: "float32" for u in self.units}
        promoted = set(self.order[:k])
        return {u.key: self.fixed.get(u.key) or ("float16" if u.key in promoted else "uint8") for u in self.units}

    def evaluate(self, k: int) -> Step:
        if k not in self.steps:
            types = self.types(k)
            got = self.est.run(self.choice_batch, types)
            judged = self.data.judge(got, self.data.choice)
            error = output_error(got, self.float32, self.data.cfg) / len(self.choice_batch)
            step = Step(k, judged["ap"], judged["ap_delta"] <= self.budget, error,
                        {"bytes": self.est.weight_bytes(types), "matched_fraction": judged["matched_fraction"]})
            self.steps[k] = step
            self.log(f"      estimate: {k:3d} float16 -> error {error:7.2f} per image "
                     f"({'within' if step.quiet else 'above'} {ERROR_PER_IMAGE}), AP {step.ap:.4f} (PyTorch "
                     f"{judged['pytorch_ap']:.4f}) {'within' if step.within else 'outside'} the budget, "
                     f"{step.extra['bytes']} weight bytes")
        return self.steps[k]

    def confirm(self, request, k: int | None) -> tuple[bool, dict, dict]:
        """Write the assignment of prefix k for real, run it in TFJS on every image; (within budget on the
        choice half, the stage facts, what TFJS measured on both halves)."""
        from validation.runners.tfjs_node import TfjsNodeRunner

        types = self.types(k)
        facts = request.write({n: types[u.key] for u in self.units for n in u.tfjs_names})
        runner = TfjsNodeRunner(Path(request.output) / "model.json", IoSpec.from_dict(facts["io_spec"], "TFJS io spec"))
        got = runner.run(self.data.batch.tensor)
        measured = {}
        for half in (self.data.choice, self.data.held):
            measured[half.name] = self.data.judge({n: v[half.index] for n, v in got.items()}, half)
        choice = measured["choice"]
        ok = choice["ap_delta"] <= self.budget
        self.log(f"      TFJS ({'float32' if k is None else f'{k} float16'}): choice-half AP {choice['ap']:.4f} "
                 f"(PyTorch {choice['pytorch_ap']:.4f}) {'within' if ok else 'OUTSIDE'} the budget")
        return ok, facts, {"k": k, "bytes": self.est.weight_bytes(types), **measured}

    def run(self, request) -> tuple[dict[str, str], list[dict], dict]:
        """(the final types by unit, every TFJS confirmation, the stage facts of the final write)."""
        confirmations, after = [], -1
        for _ in range(CONFIRMATIONS):
            accepted = walk(self.sizes, self.evaluate, after)
            if accepted is None:
                break
            ok, facts, measured = self.confirm(request, accepted.k)
            confirmations.append(measured)
            if ok:
                return self.types(accepted.k), confirmations, facts
            after = accepted.k
        self.log("      no mix kept the AP within the budget: float32")
        ok, facts, measured = self.confirm(request, None)
        confirmations.append(measured)
        return self.types(None), confirmations, facts

    def record(self, errors: dict, confirmations: list[dict], t_sens: float, seconds: float) -> dict:
        """The manifest's ``quantize_search``: what was measured, decided and confirmed."""
        final = confirmations[-1]
        by_key = {u.key: u for u in self.units}
        k = final["k"]
        types = self.types(k)
        all_uint8 = self.est.weight_bytes({u.key: "uint8" for u in self.units})
        held = final["held-back"]
        return {
            "ap_budget": self.budget, "error_per_image_limit": ERROR_PER_IMAGE,
            "images": {"source": self.data.source, "choice": self.data.choice.files,
                       "held_back": self.data.held.files, "split": "sorted by file name: even positions choose, "
                                                                   "odd positions are held back"},
            "promoted": k, "result": "float32" if k is None else "mixed",
            "error_per_image": None if k is None else round(self.steps[k].error, 4),
            "weight_bytes": self.est.weight_bytes(types), "all_uint8_weight_bytes": all_uint8,
            "kept_wider": [{"names": by_key[key].tfjs_names, "type": t, "layer": by_key[key].label,
                            "numbers": by_key[key].count, "measured": key in errors,
                            "uint8_error": round(errors[key], 6) if key in errors else None}
                           for key, t in types.items() if t != "uint8"],
            "sensitivity_top": [{"names": by_key[key].tfjs_names, "layer": by_key[key].label,
                                 "uint8_error": round(errors[key], 6), "numbers": by_key[key].count}
                                for key in self.order[:10]],
            "estimates": [{"k": s.k, "ap": round(s.ap, 6), "within": s.within, "error_per_image": round(s.error, 4),
                           "quiet": s.quiet, **s.extra}
                          for s in sorted(self.steps.values(), key=lambda s: s.k)],
            "confirmations": confirmations,
            "held_back": {**held, "within_budget": held["ap_delta"] <= self.budget},
            "seconds": {"sensitivity": round(t_sens, 1), "total": round(seconds, 1)},
        }
