"""validation/bench/: the artifact readers, the target lines and kernel table it prints, and its exit codes."""
from __future__ import annotations

from validation.bench import artifact_facts, rendering, variants
from commands.bench import main


def test_bench_reads_the_peer_artifact(shared):
    mj = shared / "reference" / "vladmandic-nanodet-m" / "nanodet-m.json"
    assert artifact_facts.tfjs_size(mj) == 2_148_517
    ops = artifact_facts.op_counts(mj)
    assert ops["Transpose"] == 138 and ops["Conv2D"] == 48 and ops["ResizeBilinear"] == 4


def rows(ours_ms=80.0, peer_ms=120.0, conv_ms=59.0, total_ms=72.0, ours_ap=0.329):
    profile = {"runs": 5, "conv_ms": conv_ms, "total_ms": total_ms,
               "kernels_ms": {"FusedConv2D": conv_ms - 6, "FusedDepthwiseConv2D": 6.0, "Concat": 5.0}}
    return [
        {"label": "PyTorch", "python": {"median_ms": 35.0}, "ap": {"ap": 0.329, "ap50": 0.475}},
        {"label": variants.PROFILED, "size": 2_000_000, "wasm": {"median_ms": ours_ms},
         "ap": {"ap": ours_ap, "ap50": 0.475}, "profile": profile},
        {"label": "tf_nhwc float16", "size": 2_100_000, "wasm": {"median_ms": ours_ms - 1},
         "ap": {"ap": 0.332, "ap50": 0.479}},
        {"label": "peer (vladmandic)", "peer": True, "size": 2_148_517, "wasm": {"median_ms": peer_ms},
         "ap": {"ap": 0.332, "ap50": 0.479},
         "profile": {"runs": 5, "conv_ms": 0.0, "total_ms": 110.0,
                     "kernels_ms": {"Conv2D": 50.0, "Transpose": 23.0, "LeakyRelu": 15.0}}},
    ]


def test_speed_target_uses_the_fastest_row_within_the_ap_window():
    lines = rendering.targets(rows())
    # float16 is faster but 0.003 off PyTorch's AP: the float32 row is the one measured
    assert f"{variants.PROFILED}, 80.0 ms vs peer 120.0 ms = 1.50x (target >= 2.0x): NOT MET" in lines[0]
    faster_than_needed = rendering.targets(rows(peer_ms=170.0))[0]
    assert "MET" in faster_than_needed and "NOT MET" not in faster_than_needed
    assert rendering.targets(rows(ours_ap=0.320))[0].startswith("no TFJS model has AP within 0.002")
    assert "tf_nhwc float16 size 2,100,000 vs peer 2,148,517 bytes: MET" in lines


def test_convolution_share_verdict_switches_at_half_the_peer():
    fits = next(l for l in rendering.targets(rows(conv_ms=59.0)) if l.startswith("where"))
    assert "where tf_nhwc float32's 80.0 ms go: the network's convolutions" in fits
    assert "59.0 ms, everything else (other kernels 13.0 ms, graph execution, feed and read-back) 21.0 ms" in fits
    assert "needs <= 60.0 ms in all: everything but the convolutions would have to fit in 1.0 ms (now 21.0 ms)" in fits
    over = next(l for l in rendering.targets(rows(conv_ms=61.0)) if l.startswith("where"))
    assert "the convolutions alone are above that: out of reach" in over


def test_kernel_table_puts_the_profiled_rows_side_by_side():
    text = "\n".join(rendering.kernel_table(rows()))
    assert f"| kernel | {variants.PROFILED} ms | peer (vladmandic) ms |" in text
    assert "| FusedConv2D | 53.00 | - |" in text and "| Transpose | - | 23.00 |" in text
    assert "| **all kernels** | **72.0** | **110.0** |" in text


def test_a_failed_variant_fails_the_bench_and_says_why(shared, tmp_path, monkeypatch, capsys):
    """A variant whose conversion fails (on a machine without Node the converter refuses at once: its audit runs
    the TFJS model in Node): the bench still writes its table, marks the row, and exits 1 with the converter's
    own error in its last line."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("NANODET_ARTIFACTS", str(tmp_path / "artifacts"))
    code = main(["--model", "m-416", "--only", "tf_nhwc float32", "--images", "1",
                 "--out", str(tmp_path / "bench")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    converter_error = next(line for line in err if line.startswith("error: node"))
    assert err[-1].startswith("error: 1 bench measurement(s) failed (marked in the table): tf_nhwc float32: "
                              "convert m-416 failed (exit 2): node (Node.js) not found on PATH"), err[-1]
    assert converter_error[len("error: "):] in err[-1]
    table = (tmp_path / "bench" / "m-416.md").read_text()
    assert "| tf_nhwc float32 | error: convert m-416 failed (exit 2): node (Node.js) not found" in table


def test_a_child_that_dies_is_named_with_its_last_words(capsys):
    """A converter killed by a signal (TensorFlow's abort) still leaves a reason: its signal and last line."""
    import sys

    child = "import os, sys; sys.stderr.write('F tensor_format.h:428] Check failed: index >= 0'); os.abort()"
    code, tail = variants.run_streaming_stderr([sys.executable, "-c", child])
    assert variants.exit_text(code) == "killed by SIGABRT"
    assert variants.failure_line(tail) == "F tensor_format.h:428] Check failed: index >= 0"
    assert "Check failed" in capsys.readouterr().err   # streamed through as it came
    assert variants.failure_line(["progress", "error: node (Node.js) not found", ""]) == "node (Node.js) not found"
    assert variants.failure_line([]) == "it printed nothing on stderr"


def test_tfjs_rows_run_through_validations_node_runner(shared):
    """The peer through validation's TfjsNodeRunner, as the bench runs every TFJS row: one warm-up inference (the
    table's "first" column), one timed inference per image, the AP of its outputs on the shared images; then the
    kernel split under tf.profile."""
    from nanodet_ref.config import load_config
    from validation.bench.data import load_bench_data
    from validation.bench.measurement import kernel_profile, measure_tfjs

    data = load_bench_data(load_config("m-416"), limit=2)
    peer = variants.peer_target()
    res = measure_tfjs(peer, data, cpu_runs=1)
    assert res["wasm"]["runs"] == 2 and res["wasm"]["first_ms"] > 0 and res["wasm"]["simd"] is True
    assert res["cpu"]["runs"] == 1 and res["cpu"]["first_ms"] > 0
    assert 0.0 < res["ap"]["ap"] <= 1.0
    profile = kernel_profile(peer, data.tensor[:1])
    assert profile["runs"] == 1 and profile["kernels_ms"]["Conv2D"] > 0
    assert profile["conv_ms"] == 0.0   # the peer's convolutions are not fused: none counts as the network's
