"""bmssl: few-shot learners meta-trained on unlabelled images (BMSSL), from Python.

    import bmssl, numpy as np
    model = bmssl.load("runs/bmssl-paper-seed0")          # a run directory or a checkpoint file
    feats = model.embed(x)                                 # x: float32 [N, C, H, W] in [0, 1]
    adapted = model.adapt(support_x, support_y)            # a fresh head, the inner loop
    pred = adapted.predict(query_x)                        # class indices
    bmssl.evaluate(model, "omniglot", ways=5, shots=1, episodes=200)
    bmssl.train({"method": "bmssl", "meta_steps": 300}, "runs/mine")

Errors are `bmssl.BmsslError` (a ValueError) with the CLI's one-line message.
"""

from ._bmssl import AdaptedModel, BmsslError, Model, evaluate, load, train

__all__ = ["AdaptedModel", "BmsslError", "Model", "evaluate", "load", "train"]
