"""Times onnxruntime on the models the Go benchmarks time (onnx_timing_test.go).

Single thread (intra_op_num_threads=1), batch 1 and batch 100, the same rows
(and string columns) as the Go benchmarks; prints, per model and batch, the
median over REPEATS (default 7) repeats of per-row time.

TARGET_MS sizes each repeat to about that many milliseconds (default: 3000
calls at batch 1, 300 at batch 100); bench/onnx.go (the harness's scoring
scenario) sets it.

Usage: [REPEATS=3] [TARGET_MS=100] .venv/bin/python score/onnx/parity/bench_ort.py [DIR [MODEL ...]]
(default model: rf100_d8; bench/onnx.go and the Go benchmarks time it,
pipe_imputer_std_lr, iso_forest and str_onehot_gb)
"""

import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def feeds(sess, rows, strs):
    """Splits rows (and strs) across the model's inputs as generate.py does."""
    out, col, scol = {}, 0, 0
    types = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(int64)": np.int64}
    for inp in sess.get_inputs():
        w = int(np.prod(inp.shape[1:])) if len(inp.shape) > 1 else 1
        if inp.type == "tensor(string)":
            out[inp.name] = strs[:, scol:scol + w]
            scol += w
        else:
            out[inp.name] = np.ascontiguousarray(rows[:, col:col + w].astype(types[inp.type]))
            col += w
    return out


def bench(d, name):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(d, name + ".onnx"), so, providers=["CPUExecutionProvider"])
    with open(os.path.join(d, name + ".expected.json")) as f:
        exp = json.load(f)
    rows = np.genfromtxt(os.path.join(d, exp["rows"]), delimiter=",", dtype=np.float32, ndmin=2)
    strs = None
    if "strings" in exp:
        with open(os.path.join(d, exp["strings"])) as f:
            strs = np.array([line.rstrip("\n").split(",") for line in f], dtype=object)
    n = rows.shape[0]
    repeats = int(os.environ.get("REPEATS", "7"))
    target_ns = int(os.environ.get("TARGET_MS", "0")) * 1e6
    for batch, calls in ((1, 3000), (100, 300)):
        chunks = [feeds(sess, rows[i:i + batch], None if strs is None else strs[i:i + batch])
                  for i in range(0, n - batch + 1, batch)]
        t0 = time.perf_counter_ns()
        for c in chunks[:50]:
            sess.run(None, c)  # warm up
        if target_ns:  # as many calls as take about TARGET_MS per repeat
            per_call = (time.perf_counter_ns() - t0) / len(chunks[:50])
            calls = max(20, int(target_ns / per_call))
        medians = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            for i in range(calls):
                sess.run(None, chunks[i % len(chunks)])
            medians.append((time.perf_counter_ns() - t0) / (calls * batch))
        print(f"{name} onnxruntime {ort.__version__} batch {batch}: {statistics.median(medians):.0f} ns/row "
              f"(median of {repeats} x {calls} calls; min {min(medians):.0f}, max {max(medians):.0f})", flush=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "testdata", "generated")
    names = sys.argv[2:] or ["rf100_d8"]
    for name in names:
        bench(d, name)


if __name__ == "__main__":
    main()
