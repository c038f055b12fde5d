"""``python -m validation.bench --model m-416`` (``make bench``): size, graph ops, latency and AP of every artifact.

One run measures, for each artifact: size on disk (model.json + weight shards), graph op count and Transposes
(from model.json), latency in Node with TFJS itself (wasm, single-threaded SIMD, and cpu; load, first inference,
median of the warm ones) and COCO AP on the shared images. Rows: PyTorch and onnxruntime (latency in Python),
our TFJS models from the onnx-tf, onnx2tf and tf_nhwc backends in float32 / float16 / uint8, and the peer artifact (the
vladmandic TFJS NanoDet-m). Ratios are to the peer. All TFJS rows run with the same wasm runtime in the same run.

The TFJS numbers come from the validation runner (``js/run_graph_model.mjs`` through
``validation.runners.tfjs_node.run_tfjs_graph``): it loads the model (timed), runs one warm-up inference (the
"first" inference), then one inference per image, each timed; the wasm median is over all the images (the same
run gives the AP), the cpu median over a few. Variants not built yet are converted through the pipeline
(``python -m converters.cli convert ... --no-validate``; cached when already converted).

Then the kernel split: the ``tf_nhwc float32`` model and the peer run a few inferences under ``tf.profile``
(``--profile-runs``, a separate run: profiling slows it), a table of milliseconds per TFJS kernel side by side, and a
target line on the share of our time the network's convolutions take (what bounds the speed-up).

Writes ``artifacts/bench/<model>.md`` (the tables) and ``<model>.json`` (everything, with per-op-type counts and
per-kernel times). Exit code 1 when any row or measurement failed (the tables are still written; a failed row
says why, and so does the last line, ``error: ...``), 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

from nanodet_ref.errors import ReportedError, UserError, run_main
from nanodet_ref.paths import PROJECT_ROOT, artifacts_dir, shared_path

PEER_DIR = ("reference", "vladmandic-nanodet-m")
PEER_IO = {"input": {"name": "input_1:0", "layout": "NCHW"},
           "outputs": {"cls_pred_stride_8": "Identity:0", "cls_pred_stride_16": "Identity_1:0",
                       "cls_pred_stride_32": "Identity_2:0", "dis_pred_stride_8": "Identity_3:0",
                       "dis_pred_stride_16": "Identity_4:0", "dis_pred_stride_32": "Identity_5:0"}}
PEER_MODELS = {"m-416"}  # the peer artifact is NanoDet-m 416
VARIANTS = [  # (row label, --backend, --quantize)
    ("onnx-tf float32", "onnx_tf", None), ("onnx-tf float16", "onnx_tf", "float16"),
    ("onnx-tf uint8", "onnx_tf", "uint8"),
    ("onnx2tf float32", "onnx2tf", None), ("onnx2tf float16", "onnx2tf", "float16"),
    ("onnx2tf uint8", "onnx2tf", "uint8"),
    ("tf_nhwc float32", "tf_nhwc", None), ("tf_nhwc float16", "tf_nhwc", "float16"),
    ("tf_nhwc uint8", "tf_nhwc", "uint8"),
]
AP_TOLERANCE = 0.002      # "same accuracy as PyTorch" for the speed target
SPEED_TARGET = 2.0        # x faster than the peer (median warm, wasm)
PROFILED = "tf_nhwc float32"  # kernel-profiled next to the peer: where the time goes, and the convolutions' share
# the network's convolutions in our models: each carries a bias (batch norm folded), so TFJS fuses every one;
# an unfused conv is graph glue (tf_nhwc: the fixed depthwise kernel of the exact x2 upsampling)
CONV_KERNELS = ("FusedConv2D", "FusedDepthwiseConv2D")
BOOKKEEPING_OPS = {"Const", "Placeholder", "Identity", "NoOp"}


class BenchFailed(ReportedError):
    """A row or measurement of the bench failed: the tables are still written, the exit code is 1."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- artifacts


def tfjs_files(model_json: Path) -> list[Path]:
    data = json.loads(model_json.read_text())
    shards = [model_json.parent / p for g in data.get("weightsManifest", []) for p in g["paths"]]
    return [model_json, *shards]


def tfjs_size(model_json: Path) -> int:
    return sum(p.stat().st_size for p in tfjs_files(model_json))


def op_counts(model_json: Path) -> Counter:
    data = json.loads(model_json.read_text())
    nodes = list(data["modelTopology"].get("node", []))
    for fn in (data["modelTopology"].get("library") or {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    return Counter(n["op"] for n in nodes)


def tfjs_io_spec(artifact: Path) -> dict:
    """The TFJS io spec from the manifest, else from model.json's signature (keys = signature names)."""
    manifest = artifact / "manifest.json"
    if manifest.is_file():
        spec = (json.loads(manifest.read_text()).get("io_specs") or {}).get("tfjs")
        if spec:
            return spec
    sig = json.loads((artifact / "tfjs" / "model.json").read_text()).get("signature") or {}
    (in_info,) = sig["inputs"].values()
    dims = [int(d["size"]) for d in in_info["tensorShape"]["dim"]]
    return {"input": {"name": in_info["name"], "layout": "NHWC" if dims[-1] == 3 else "NCHW"},
            "outputs": {k: v["name"] for k, v in sig["outputs"].items()}}


def convert_variant(model: str, backend: str, quantize: str | None) -> Path:
    """Convert one variant (``--no-validate``) in a child process; its progress streams to our stderr.

    RuntimeError where it fails, carrying the converter's own last ``error:`` line (or how the process died),
    so that the bench row and the final summary say why without scrolling back.
    """
    from converters.options import ConvertOptions, artifact_name
    name = artifact_name(model, ConvertOptions(backend=backend, quantize=quantize))
    cmd = [sys.executable, "-m", "converters.cli", "convert", "--model", model, "--no-validate"]
    if backend != "onnx_tf":
        cmd += ["--backend", backend]
    if quantize:
        cmd += ["--quantize", quantize]
    t0 = time.perf_counter()
    log(f"  {name}: converting (stages already built are reused; the converter's progress follows)")
    # the converter's progress (stderr) goes on to ours line by line; its stage table (stdout) is not needed here
    code, tail = run_streaming_stderr(cmd)
    if code != 0:
        raise RuntimeError(f"convert {name} failed ({exit_text(code)}): {failure_line(tail)}")
    log(f"  {name}: ready ({time.perf_counter() - t0:.0f} s)")
    return artifacts_dir() / name


def run_streaming_stderr(cmd: list[str], keep: int = 40) -> tuple[int, list[str]]:
    """Run ``cmd`` from the project root, writing its stderr on to ours as it comes; returns (exit code, its last
    ``keep`` stderr lines). Its stdout is dropped."""
    tail: deque[str] = deque(maxlen=keep)
    with subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          errors="replace") as proc:
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
        code = proc.wait()
    return code, list(tail)


def exit_text(code: int) -> str:
    """``exit 2``, or ``killed by SIGABRT`` for a negative return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def failure_line(tail: list[str]) -> str:
    """The child's last ``error:`` line without the prefix, else its last non-empty line, else a note."""
    errors = [line for line in tail if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    lines = [line.strip() for line in tail if line.strip()]
    return lines[-1] if lines else "it printed nothing on stderr"


# ---------------------------------------------------------------- data and AP


class Dataset:
    def __init__(self, cfg, limit: int | None = None):
        from nanodet_ref.preprocess import preprocess_file
        from validation.coco_ap import CocoAnnotations

        images_dir = shared_path("data", "coco-val2017-40", "images")
        ann = shared_path("data", "coco-val2017-40", "annotations", "instances_val2017_40.json")
        if images_dir is None or ann is None:
            raise UserError("bench needs the shared COCO images and annotations (set NANODET_SHARED)")
        self.cfg = cfg
        self.files = sorted(images_dir.glob("*.jpg"))[:limit]
        self.coco = CocoAnnotations(ann)
        self.items = [preprocess_file(f, cfg) for f in self.files]  # (tensor, warp, (h, w))
        self.batch = np.concatenate([x for x, _, _ in self.items])

    def ap(self, outputs: dict[str, np.ndarray]) -> dict:
        from nanodet_ref.decode import decode
        dets = {}
        for i, (f, (_, warp, hw)) in enumerate(zip(self.files, self.items)):
            dets[f.name] = decode(outputs, self.cfg, warp=warp, image_hw=hw, batch_index=i)
        return self.coco.evaluate(dets)


# ---------------------------------------------------------------- measurements


def median(values) -> float | None:
    return float(statistics.median(values)) if values else None


def bench_tfjs(model_json: Path, io: dict, data: Dataset, cpu_runs: int) -> dict:
    from validation.runners.base import IoSpec, stack_items
    from validation.runners.tfjs_node import run_tfjs_graph

    spec = IoSpec.from_dict(io, str(model_json))
    _, feeds, wanted = tfjs_job(model_json, io, data, len(data.batch))
    out: dict = {}
    results, meta = run_tfjs_graph(model_json, feeds, wanted, "wasm", warmup=1, return_meta=True)
    outputs = stack_items([spec.collect(r, str(model_json)) for r in results])
    out["wasm"] = {"load_ms": meta["load_ms"], "first_ms": meta["warmup_ms"][0],
                   "median_ms": median(meta["infer_ms"]), "runs": len(meta["infer_ms"]),
                   "ap_run_median_ms": median(meta["infer_ms"]),
                   "simd": meta.get("simd"), "threads": meta.get("threads"),
                   "execute_async": meta.get("execute_async"), "tfjs": meta.get("tfjs_version")}
    out["ap"] = data.ap(outputs)
    if cpu_runs:
        _, meta = run_tfjs_graph(model_json, feeds[:cpu_runs], wanted, "cpu", warmup=1, return_meta=True)
        out["cpu"] = {"load_ms": meta["load_ms"], "first_ms": meta["warmup_ms"][0],
                      "median_ms": median(meta["infer_ms"]), "runs": len(meta["infer_ms"])}
    return out


def tfjs_job(model_json: Path, io: dict, data: Dataset, per_round: int):
    """(model.json, feeds, output names) for ``per_round`` shared images through the artifact's io spec."""
    from validation.runners.base import IoSpec
    spec = IoSpec.from_dict(io, str(model_json))
    x = spec.prepare_input(data.batch[:per_round])
    feeds = [{spec.input_name.split(":")[0]: x[i:i + 1]} for i in range(len(x))]
    return model_json, feeds, [m.name for m in spec.outputs.values()]


def interleaved_wasm(rows: list[dict], jobs: dict, rounds: int) -> None:
    """Warm wasm latency, interleaved: each round runs every job once (1 warm-up + its timed feeds), so that
    load from other processes on the machine hits all rows alike. ``jobs``: row label -> (model.json, feeds,
    output names). Sets wasm.median_ms (whole inference: feed in, execute, outputs read) and
    wasm.execute_median_ms (``model.execute`` alone) over all rounds."""
    from validation.runners.tfjs_node import run_tfjs_graph

    times: dict[str, list[float]] = {label: [] for label in jobs}
    execute: dict[str, list[float]] = {label: [] for label in jobs}
    for _ in range(rounds):
        for label, (model_json, feeds, outputs) in jobs.items():
            _, meta = run_tfjs_graph(model_json, feeds, outputs, "wasm", warmup=1, return_meta=True)
            times[label] += meta["infer_ms"]
            execute[label] += meta.get("execute_ms", [])
    for row in rows:
        if row["label"] in times and times[row["label"]]:
            row["wasm"]["median_ms"] = median(times[row["label"]])
            row["wasm"]["execute_median_ms"] = median(execute[row["label"]])
            row["wasm"]["runs"] = len(times[row["label"]])
            row["wasm"]["interleaved"] = f"{rounds} rounds x {len(jobs[row['label']][1])}"


def kernel_profile(job: tuple, runs: int) -> dict:
    """Kernel time per kernel name (tf.profile in the Node runner, wasm), median over ``runs`` inferences."""
    from validation.runners.tfjs_node import run_tfjs_graph

    model_json, feeds, outputs = job
    _, meta = run_tfjs_graph(model_json, feeds[:runs], outputs, "wasm", warmup=1, return_meta=True, profile=True)
    per_run = meta["kernel_ms"]
    names = sorted({k for run in per_run for k in run})
    kernels = {k: median([run.get(k, 0.0) for run in per_run]) for k in names}
    return {"runs": len(per_run), "total_ms": median([sum(run.values()) for run in per_run]),
            "conv_ms": median([sum(v for k, v in run.items() if k in CONV_KERNELS) for run in per_run]),
            "kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1]))}


def bench_python(make_run, data: Dataset, warm: int) -> dict:
    """make_run() -> run(batch) (timed as 'load'); then first inference, ``warm`` timed ones, AP on all."""
    t0 = time.perf_counter()
    run = make_run()
    load = (time.perf_counter() - t0) * 1000
    one = data.batch[:1]
    t0 = time.perf_counter()
    run(one)
    first = (time.perf_counter() - t0) * 1000
    times = []
    for i in range(warm):
        xi = data.batch[i % len(data.batch):][:1]
        t0 = time.perf_counter()
        run(xi)
        times.append((time.perf_counter() - t0) * 1000)
    outs = [run(data.batch[i:i + 1]) for i in range(len(data.batch))]
    outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return {"python": {"load_ms": load, "first_ms": first, "median_ms": median(times), "runs": warm,
                       "threads": _threads()}, "ap": data.ap(outputs)}


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def pytorch_runner(cfg):
    def make():
        from nanodet_ref.checkpoint import load_weights
        from nanodet_ref.model import build_model, run_model
        model = build_model(cfg)
        load_weights(model, cfg)
        return lambda b: run_model(model, b)
    return make


def onnxruntime_runner(onnx_path: Path, cfg):
    def make():
        import onnxruntime as ort
        from nanodet_ref.model import output_names
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        names = output_names(cfg.strides)
        in_name = sess.get_inputs()[0].name
        return lambda b: dict(zip(names, sess.run(names, {in_name: b})))
    return make


# ---------------------------------------------------------------- the table


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def render(rows: list[dict], meta: dict) -> str:
    peer = next((r for r in rows if r.get("peer") and not r.get("error")), None)
    lines = [f"### `make bench MODEL={meta['model']}` ({meta['date']}, {meta['images']} images, "
             f"{meta['device']})", "",
             "| artifact | size (bytes) | ops (Transpose) | wasm load / first / median ms | "
             "cpu load / first / median ms | AP | AP50 | wasm speed vs peer | size vs peer |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['label']} | error: {r['error']} | | | | | | | |")
            continue
        ops = f"{r['ops']} ({r['transposes']})" if r.get("ops") is not None else "-"
        lat = r.get("wasm") or r.get("python")
        lat_txt = "-" if lat is None else (
            f"{fmt(lat['load_ms'], 0)} / {fmt(lat['first_ms'], 0)} / **{fmt(lat['median_ms'])}**"
            + (" (Python)" if "python" in r else ""))
        cpu = r.get("cpu")
        cpu_txt = "-" if cpu is None else f"{fmt(cpu['load_ms'], 0)} / {fmt(cpu['first_ms'], 0)} / {fmt(cpu['median_ms'])}"
        speed = size = "-"
        if peer and r.get("wasm") and r["wasm"].get("median_ms"):
            speed = f"{peer['wasm']['median_ms'] / r['wasm']['median_ms']:.2f}x"
        if peer and r.get("size") and r.get("wasm"):
            size = f"{r['size'] / peer['size']:.2f}"
        ap = r.get("ap") or {}
        lines.append(f"| {r['label']} | {fmt(r.get('size'))} | {ops} | {lat_txt} | {cpu_txt} | "
                     f"{fmt(ap.get('ap'), 3)} | {fmt(ap.get('ap50'), 3)} | {speed} | {size} |")
    lines += ["", "Latency: TFJS rows in Node (tfjs 4.22 " + meta.get("wasm_note", "") + "); the median is over "
              f"warm inferences (wasm: {meta.get('interleave', 'the AP run')}, every model once per round, so "
              "that load from other processes hits all rows alike; cpu: a few). PyTorch / onnxruntime rows: Python, "
              f"{meta.get('torch_threads')} threads, not comparable with the Node rows. Ops: graph nodes other "
              "than Const/Placeholder/Identity/NoOp."]
    lines += kernel_table(rows)
    if meta.get("targets"):
        lines += ["", "Targets:"] + [f"- {t}" for t in meta["targets"]]
    return "\n".join(lines) + "\n"


def kernel_table(rows: list[dict], top: int = 10) -> list[str]:
    """Kernel time per kernel name for the profiled rows, side by side (the slowest ``top`` of each)."""
    profiled = [r for r in rows if r.get("profile") and not r.get("error")]
    if not profiled:
        return []
    names: list[str] = []
    for r in profiled:
        names += [k for k in list(r["profile"]["kernels_ms"])[:top] if k not in names]
    head = " | ".join(f"{r['label']} ms" for r in profiled)
    lines = ["", f"Kernel time per inference (tf.profile, wasm, median of {profiled[0]['profile']['runs']}; "
             "the slowest kernels of each):", "", f"| kernel | {head} |",
             "|---|" + "---:|" * len(profiled)]
    for k in names:
        lines.append(f"| {k} | " + " | ".join(fmt(r["profile"]["kernels_ms"].get(k), 2) for r in profiled) + " |")
    lines.append("| **all kernels** | " + " | ".join(f"**{fmt(r['profile']['total_ms'])}**" for r in profiled)
                 + " |")
    return lines


def targets(rows: list[dict]) -> list[str]:
    peer = next((r for r in rows if r.get("peer") and not r.get("error")), None)
    torch_row = next((r for r in rows if r["label"] == "PyTorch" and not r.get("error")), None)
    if not peer or not torch_row:
        return []
    ref_ap = torch_row["ap"]["ap"]
    ours = [r for r in rows if r.get("wasm") and r.get("ap") and not r.get("peer") and not r.get("error")]
    good = [r for r in ours if abs(r["ap"]["ap"] - ref_ap) <= AP_TOLERANCE]
    out = []
    if good:
        best = min(good, key=lambda r: r["wasm"]["median_ms"])
        ratio = peer["wasm"]["median_ms"] / best["wasm"]["median_ms"]
        out.append(f"fastest TFJS model with AP within {AP_TOLERANCE} of PyTorch ({ref_ap:.3f}): {best['label']}, "
                   f"{best['wasm']['median_ms']:.1f} ms vs peer {peer['wasm']['median_ms']:.1f} ms = {ratio:.2f}x "
                   f"(target >= {SPEED_TARGET}x): {'MET' if ratio >= SPEED_TARGET else 'NOT MET'}")
    else:
        out.append(f"no TFJS model has AP within {AP_TOLERANCE} of PyTorch ({ref_ap:.3f}): speed target NOT MET")
    profiled = next((r for r in ours if r["label"] == PROFILED and r.get("profile")), None)
    if profiled:
        need = peer["wasm"]["median_ms"] / SPEED_TARGET
        prof, wall = profiled["profile"], profiled["wasm"]["median_ms"]
        conv, rest = prof["conv_ms"], wall - prof["conv_ms"]
        verdict = (f"the convolutions alone are above that: out of reach for any model that runs them with TFJS's "
                   "wasm kernels" if conv > need else
                   f"everything but the convolutions would have to fit in {need - conv:.1f} ms (now {rest:.1f} ms)")
        out.append(f"where {PROFILED}'s {wall:.1f} ms go: the network's convolutions (fused conv / depthwise "
                   f"kernels, tf.profile, median of {prof['runs']}) {conv:.1f} ms, everything else (other kernels "
                   f"{prof['total_ms'] - conv:.1f} ms, graph execution, feed and read-back) {rest:.1f} ms; 2x the "
                   f"peer needs <= {need:.1f} ms in all: {verdict}")
    f16 = [r for r in ours if "float16" in r["label"]]
    for r in f16:
        ok = r["size"] <= peer["size"]
        out.append(f"{r['label']} size {r['size']:,} vs peer {peer['size']:,} bytes: {'MET' if ok else 'NOT MET'}")
    return out


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m validation.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="m-416", help="model name in configs/ (default m-416)")
    p.add_argument("--config", help="(not supported: bench compares named models with the peer)")
    p.add_argument("--checkpoint", help="(not supported by bench)")
    p.add_argument("--images", type=int, default=None, help="use only the first N shared images")
    p.add_argument("--cpu-runs", type=int, default=2, help="warm inferences on the TFJS cpu backend (0: skip)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved wasm latency rounds (0: use the AP run)")
    p.add_argument("--per-round", type=int, default=10, help="timed wasm inferences per model per round")
    p.add_argument("--profile-runs", type=int, default=5,
                   help=f"inferences under tf.profile for the {PROFILED} and peer kernel split (0: skip)")
    p.add_argument("--python-runs", type=int, default=10, help="warm inferences for PyTorch / onnxruntime")
    p.add_argument("--only", default=None, help="comma-separated labels to run (e.g. 'onnx2tf float32,peer')")
    p.add_argument("--no-convert", action="store_true", help="skip variants not converted yet")
    p.add_argument("--out", default=None, help="output folder (default artifacts/bench)")
    return run(p.parse_args(argv))


def run(args) -> int:
    from converters.options import ConvertOptions, artifact_name
    from nanodet_ref.config import load_config

    if args.config or args.checkpoint:
        raise UserError("--config/--checkpoint: bench runs on named models only (use --model)")
    cfg = load_config(args.model)
    t_start = time.perf_counter()
    wanted = set(s.strip() for s in args.only.split(",")) if args.only else None
    use = (lambda label: wanted is None or label in wanted)
    data = Dataset(cfg, args.images)
    log(f"bench {args.model}: {len(data.files)} images")
    rows: list[dict] = []

    def guarded(label, fn, **extra):
        if not use(label):
            return
        log(f"- {label}")
        row = {"label": label, **extra}
        try:
            row.update(fn())
        except (UserError, RuntimeError, OSError, KeyError, ValueError) as exc:
            row["error"] = str(exc).splitlines()[0].replace(str(PROJECT_ROOT) + os.sep, "")[:200]
            log(f"  error: {row['error']}")
        rows.append(row)

    # convert first (cached when already built), so that every measurement below sees the final artifacts
    artifacts: dict[str, Path | Exception] = {}
    for label, backend, quantize in VARIANTS:
        if not use(label):
            continue
        artifact = artifacts_dir() / artifact_name(args.model, ConvertOptions(backend=backend, quantize=quantize))
        try:
            if not args.no_convert:
                artifact = convert_variant(args.model, backend, quantize)
            elif not (artifact / "tfjs" / "model.json").is_file():
                raise RuntimeError(f"{artifact} not converted (run without --no-convert)")
            artifacts[label] = artifact
        except RuntimeError as exc:
            artifacts[label] = exc
            log(f"  {label}: {exc}")

    guarded("PyTorch", lambda: bench_python(pytorch_runner(cfg), data, args.python_runs))
    base = artifacts_dir() / args.model

    def ort_row():
        if not (base / "model.onnx").is_file():
            raise RuntimeError(f"{base / 'model.onnx'} not built")
        return {"size": (base / "model.onnx").stat().st_size,
                **bench_python(onnxruntime_runner(base / "model.onnx", cfg), data, args.python_runs)}
    guarded("onnxruntime", ort_row)

    def tfjs_row(artifact: Path):
        mj = artifact / "tfjs" / "model.json"
        ops = op_counts(mj)
        res = {"artifact": artifact.name, "size": tfjs_size(mj),
               "ops": sum(v for k, v in ops.items() if k not in BOOKKEEPING_OPS),
               "transposes": ops.get("Transpose", 0), "op_types": dict(ops.most_common())}
        io = tfjs_io_spec(artifact)
        res.update(bench_tfjs(mj, io, data, args.cpu_runs))
        tfjs_inputs[artifact.name] = (mj, io)
        return res

    tfjs_inputs: dict = {}  # artifact name (peer: label) -> (model.json, io spec)
    for label, _, _ in VARIANTS:
        if label not in artifacts:
            continue
        def one(found=artifacts[label]):
            if isinstance(found, Exception):
                raise found
            return tfjs_row(found)
        guarded(label, one)

    if args.model in PEER_MODELS:
        def peer():
            folder = shared_path(*PEER_DIR)
            if folder is None:
                raise UserError("peer artifact not found in the shared folder")
            mj = folder / "nanodet-m.json"
            ops = op_counts(mj)
            res = {"artifact": "shared/" + "/".join(PEER_DIR), "size": tfjs_size(mj),
                   "ops": sum(v for k, v in ops.items() if k not in BOOKKEEPING_OPS),
                   "transposes": ops.get("Transpose", 0), "op_types": dict(ops.most_common())}
            res.update(bench_tfjs(mj, PEER_IO, data, args.cpu_runs))
            tfjs_inputs["peer (vladmandic)"] = (mj, PEER_IO)
            return res
        guarded("peer (vladmandic)", peer, peer=True)

    # latency jobs by row label
    failures = [f"{row['label']}: {row['error']}" for row in rows if row.get("error")]
    jobs = {}
    for row in rows:
        key = row.get("artifact") if not row.get("peer") else row["label"]
        if row.get("wasm") and key in tfjs_inputs:
            jobs[row["label"]] = tfjs_job(*tfjs_inputs[key], data, max(args.per_round, args.profile_runs))
    if args.profile_runs:
        for row in rows:
            if row["label"] in jobs and (row["label"] == PROFILED or row.get("peer")):
                log(f"- kernel profile: {row['label']} (tf.profile, {args.profile_runs} inferences)")
                try:
                    row["profile"] = kernel_profile(jobs[row["label"]], args.profile_runs)
                except (UserError, RuntimeError) as exc:
                    log(f"  error: {exc}")
                    failures.append(f"kernel profile of {row['label']}: {exc}")
    if jobs and args.rounds:
        log(f"- warm wasm latency, interleaved ({args.rounds} rounds x {args.per_round})")
        try:
            interleaved_wasm(rows, jobs, args.rounds)
        except (UserError, RuntimeError) as exc:
            log(f"  error: {exc} (medians stay those of the AP runs)")
            failures.append(f"interleaved wasm latency: {exc}")

    out_dir = Path(args.out) if args.out else artifacts_dir() / "bench"
    wasm_meta = next((r["wasm"] for r in rows if r.get("wasm")), {})
    meta = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "images": len(data.files),
            "device": f"{os.cpu_count()} CPU cores, Node {_node_version()}",
            "wasm_note": f"wasm: SIMD {wasm_meta.get('simd')}, {wasm_meta.get('threads')} thread",
            "torch_threads": _threads(),
            "interleave": f"{args.rounds} interleaved rounds x {args.per_round} per model" if args.rounds else None, "seconds": round(time.perf_counter() - t_start, 1)}
    meta["targets"] = targets(rows)
    text = render(rows, meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in ((f"{args.model}.md", text),
                          (f"{args.model}.json", json.dumps({"meta": meta, "rows": rows}, indent=1))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(out_dir / name)
    print(text)
    log(f"bench took {meta['seconds']} s; wrote {out_dir / (args.model + '.md')} and .json")
    if failures:
        raise BenchFailed(f"{len(failures)} bench measurement(s) failed (marked in the table): "
                          + "; ".join(failures))
    return 0


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def main(argv=None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
