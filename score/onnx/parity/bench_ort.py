"""Times onnxruntime on rf100_d8.onnx, the model BenchmarkRF100* time in Go.

Single thread (intra_op_num_threads=1), batch 1 and batch 100, the same rows
as the Go benchmark; prints the median over repeats of per-row time.

Usage: .venv/bin/python score/onnx/parity/bench_ort.py [DIR]
"""

import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "testdata", "generated")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(d, "rf100_d8.onnx"), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rows = np.loadtxt(os.path.join(d, "rows_rf100_d8.csv"), delimiter=",", dtype=np.float32)
    n = rows.shape[0]
    for batch, calls in ((1, 3000), (100, 300)):
        chunks = [np.ascontiguousarray(rows[i:i + batch]) for i in range(0, n - batch + 1, batch)]
        for c in chunks[:50]:
            sess.run(None, {name: c})  # warm up
        medians = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            for i in range(calls):
                sess.run(None, {name: chunks[i % len(chunks)]})
            medians.append((time.perf_counter_ns() - t0) / (calls * batch))
        print(f"onnxruntime {ort.__version__} batch {batch}: {statistics.median(medians):.0f} ns/row "
              f"(median of 7 x {calls} calls; min {min(medians):.0f}, max {max(medians):.0f})")


if __name__ == "__main__":
    main()
