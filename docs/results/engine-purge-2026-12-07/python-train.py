"""Seconds for a short BMSSL training run (defaults otherwise) through the Python package:
    python python-train.py DATA_DIR META_STEPS
Prints one line: meta-steps and seconds."""
import sys
import tempfile
import time

import bmssl

data, steps = sys.argv[1], int(sys.argv[2])
cfg = {"method": "bmssl", "meta_steps": steps, "checkpoint_every": steps, "validation_episodes": 0}
with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    bmssl.train(cfg, d, data_dir=data)
    dt = time.perf_counter() - t
print(f"meta_steps {steps} seconds {dt:.2f}")
