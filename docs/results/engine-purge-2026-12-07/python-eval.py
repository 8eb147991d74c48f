"""Seconds for adapt-mode evaluation episodes through the Python package (one process per call):
    python python-eval.py CHECKPOINT DATA_DIR EPISODES
Prints one line: episodes, seconds, mean accuracy."""
import sys
import time

import bmssl

ckpt, data, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
r = bmssl.evaluate(ckpt, "omniglot", ways=5, shots=1, episodes=episodes, mode="adapt", data_dir=data)
dt = time.perf_counter() - t
print(f"episodes {episodes} seconds {dt:.2f} result {r}")
