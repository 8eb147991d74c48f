"""The machine's measured single-precision GEMM peak (PyTorch's CPU sgemm, 2048^3, best of 5),
the yardstick for the engine's GFLOP/s: python sgemm_peak.py (needs torch)."""
import time

import torch

n = 2048
a, b = torch.randn(n, n), torch.randn(n, n)
for threads in (1, 2):
    torch.set_num_threads(threads)
    torch.mm(a, b)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    print(f"sgemm {n}^3, {threads} thread(s): {2 * n**3 / best / 1e9:.1f} GFLOP/s")
