"""Tests of the Python package (run by .ci/run: python -m unittest discover -s crates/bmssl-py/python/tests)."""

import json
import os
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import numpy as np

import bmssl

REPO = Path(__file__).resolve().parents[4]
GOLDEN = REPO / "crates/bmssl/tests/golden"
CKPT = GOLDEN / "interop-conv4.safetensors"
DATA = REPO / "data"


def read_safetensors(path):
    """{name: float32 array} of a safetensors file, without the safetensors package."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=np.float32).reshape(info["shape"])
    return out


FIXTURE = read_safetensors(GOLDEN / "interop-conv4-features.safetensors")


class Embed(unittest.TestCase):
    def setUp(self):
        self.model = bmssl.load(CKPT)
        self.x = np.ascontiguousarray(FIXTURE["images"])

    def test_embed_gives_the_features_pytorch_computes(self):
        self.assertEqual(self.model.image_shape, (1, 28, 28))
        self.assertEqual(self.model.arch["backbone"], "conv4")
        for name, kw in [
            ("backbone_set", {}),
            ("projection_set", {"features": "projection"}),
            ("backbone_batch8", {"batch_norm": "batch", "batch_size": 8}),
            ("backbone_set", {"batch_size": 5}),
        ]:
            f = self.model.embed(self.x, **kw)
            self.assertEqual(f.dtype, np.float32)
            self.assertEqual(f.shape, FIXTURE[name].shape)
            self.assertLess(np.abs(f - FIXTURE[name]).max(), 1e-5, (name, kw))

    def test_a_run_directory_loads_its_final_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            ck = Path(d, "checkpoints")
            ck.mkdir()
            (ck / "step-0000300.safetensors").write_bytes(CKPT.read_bytes())
            m = bmssl.load(d)
            self.assertTrue(m.path.endswith("step-0000300.safetensors"))

    def test_adapt_then_predict(self):
        y = np.arange(16) % 4
        adapted = self.model.adapt(self.x, y, steps=10, lr=0.1)
        self.assertEqual(adapted.ways, 4)
        pred = adapted.predict(self.x)
        self.assertEqual(pred.shape, (16,))
        self.assertEqual(pred.dtype, np.int64)
        # Adapted on these very images: it classifies most of them right.
        self.assertGreaterEqual(np.mean(pred == y), 0.75)
        p = adapted.predict_proba(self.x)
        self.assertEqual(p.shape, (16, 4))
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(p.argmax(1), pred)

    def test_the_gil_is_released_while_embedding(self):
        x = np.repeat(self.x, 64, axis=0)  # 1024 images: several passes
        ticks = []
        done = threading.Event()

        def tick():
            while not done.is_set():
                ticks.append(time.perf_counter())
                time.sleep(0.001)

        t = threading.Thread(target=tick)
        t.start()
        start = time.perf_counter()
        self.model.embed(x)
        elapsed = time.perf_counter() - start
        done.set()
        t.join()
        during = [s for s in ticks if start <= s <= start + elapsed]
        # The ticking thread ran while Rust worked (with the GIL held it could not).
        self.assertGreater(len(during), 2, (elapsed, len(during)))


class Errors(unittest.TestCase):
    """Bad input: a bmssl.BmsslError (a ValueError) with one line, never a crash."""

    def setUp(self):
        self.model = bmssl.load(CKPT)

    def assertError(self, fn, *parts):
        with self.assertRaises(bmssl.BmsslError) as e:
            fn()
        msg = str(e.exception)
        self.assertNotIn("\n", msg)
        for p in parts:
            self.assertIn(p, msg)
        self.assertIsInstance(e.exception, ValueError)
        return msg

    def test_wrong_shape_and_dtype(self):
        self.assertError(lambda: self.model.embed(np.zeros((2, 3, 28, 28), np.float32)), "shape [2, 3, 28, 28]", "[N, 1, 28, 28]")
        self.assertError(lambda: self.model.embed(np.zeros((2, 28, 28), np.float32)), "shape [2, 28, 28]")
        self.assertError(lambda: self.model.embed(np.zeros((2, 1, 28, 28))), "float32", "float64")
        self.assertError(lambda: self.model.embed([[0.0]]), "numpy float32 array")
        self.assertError(lambda: self.model.embed(np.zeros((2, 1, 28, 28), np.float32), features="logits"), "features", "backbone, projection")

    def test_nan_input(self):
        x = np.zeros((3, 1, 28, 28), np.float32)
        x[1, 0, 2, 3] = np.nan
        self.assertError(lambda: self.model.embed(x), "image 1", "NaN", "finite")
        self.assertError(lambda: self.model.adapt(x, [0, 1, 1]), "support image 1", "NaN")
        good = np.zeros((2, 1, 28, 28), np.float32)
        adapted = self.model.adapt(good, [0, 1], steps=1)
        self.assertError(lambda: adapted.predict(x), "image 1", "NaN")

    def test_bad_labels(self):
        x = np.zeros((3, 1, 28, 28), np.float32)
        self.assertError(lambda: self.model.adapt(x, [0, 0, 0]), "at least 2 classes")
        self.assertError(lambda: self.model.adapt(x, [0, 2, 2]), "class 1 has no support image")
        self.assertError(lambda: self.model.adapt(x, [0, 1]), "2 labels for 3 support images")

    def test_a_corrupt_checkpoint_gives_the_cli_message(self):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d, "model.safetensors")
            p.write_bytes(b"\x10\0\0\0\0\0\0\0{\"a\":1}")
            msg = self.assertError(lambda: bmssl.load(p), "model.safetensors", "not a safetensors file")
            cli = REPO / "target/release/bmssl"
            if cli.exists():
                r = subprocess.run([cli, "eval", "--checkpoint", p, "--quiet"], capture_output=True, text=True)
                self.assertEqual(r.stderr.strip(), "error: " + msg)
            self.assertError(lambda: bmssl.load(Path(d, "missing.safetensors")), "missing.safetensors")


class EvaluateAndTrain(unittest.TestCase):
    def test_evaluate_on_omniglot(self):
        r = bmssl.evaluate(str(CKPT), "omniglot", ways=5, shots=1, queries=5, episodes=10, mode="proto", data_dir=str(DATA))
        self.assertEqual(r["episodes"], 10)
        self.assertEqual(len(r["accuracies"]), 10)
        self.assertTrue(0.5 < r["mean"] <= 1.0, r)
        m = bmssl.load(CKPT)
        again = bmssl.evaluate(m, "omniglot", queries=5, episodes=10, mode="proto", data_dir=str(DATA))
        self.assertEqual(r["accuracies"], again["accuracies"])

    def test_train_a_tiny_run_then_load_it(self):
        cfg = {
            "method": "bmssl",
            "images_per_batch": 6,
            "tasks_per_batch": 2,
            "views": 3,
            "support_views": 1,
            "query_views": 2,
            "inner_steps": 1,
            "bootstrap_steps": 1,
            "meta_steps": 2,
            "checkpoint_every": 2,
            "validation_episodes": 0,
        }
        with tempfile.TemporaryDirectory() as d:
            final = bmssl.train(cfg, d, data_dir=str(DATA))
            self.assertTrue(final.endswith("step-0000002.safetensors"), final)
            m = bmssl.load(d)
            self.assertEqual(m.embed(np.zeros((4, 1, 28, 28), np.float32)).shape, (4, 64))
            with self.assertRaises(bmssl.BmsslError) as e:
                bmssl.train({"meta_stepz": 2}, os.path.join(d, "x"))
            self.assertIn("meta_stepz", str(e.exception))


if __name__ == "__main__":
    unittest.main()
