#!/usr/bin/env python3
"""Run a bmssl checkpoint in PyTorch: the same network, the same features as `bmssl embed`.

A bmssl checkpoint is a safetensors file. Its tensors carry the PyTorch reference's parameter
names (conv0.weight, bn0.bias, proj.2.weight, classifier.bias, ...); its metadata holds the
architecture (`arch`, JSON) and the inner loop it was meta-trained with (`adapt`). This file
builds the Conv4/Conv5 learner from `arch`, loads the tensors by name and embeds images:

    x [N, C, H, W] in [0, 1]
      -> blocks x [Conv2d(3x3, pad 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2)] -> flatten: backbone
      -> proj: Linear(F, P) -> ReLU -> Linear(P, P)                           : projection
      -> classifier: Linear(F, ways)            (the training head; adapt replaces it)

Batch norm keeps no running statistics (MAML practice): it always normalises with the
statistics of the images it is given together, as `bmssl embed` does. `batch_norm="set"` passes
the whole set as one batch (bmssl's default `--batch-norm set`); `batch_norm="batch"` passes
runs of `batch_size` images (`--batch-norm batch --batch-size B`).

As a library:

    from pytorch_load import load, embed
    model = load("runs/bmssl-paper-seed0/checkpoints/step-0000300.safetensors")
    feats = embed(model, x)                      # torch.Tensor [N, F]

As a command (images: an .npy of [N, C, H, W] or [N, C*H*W] float32, as the network sees them):

    python examples/pytorch_load.py CKPT --images x.npy --out torch.npy [--compare bmssl.npy]

Needs torch, numpy and safetensors (pip install torch numpy safetensors).
"""

import argparse
import json
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn
from torch.nn import functional as F


class Learner(nn.Module):
    """bmssl's learner (`crates/bmssl/src/model.rs`), parameter names as in its checkpoints."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        blocks = {"conv4": 4, "conv5": 5}[arch["backbone"]]
        hidden, proj = arch["hidden"], arch["proj_dim"]
        c_in, side = arch["in_channels"], arch["image_size"]
        self.blocks = blocks
        for i in range(blocks):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, hidden, 3, padding=1))
            # No running statistics: batch statistics in training and evaluation alike.
            setattr(self, f"bn{i}", nn.BatchNorm2d(hidden, eps=1e-5, track_running_stats=False))
            c_in, side = hidden, side // 2
        feature_dim = hidden * side * side
        self.feature_dim = feature_dim
        self.proj = nn.Sequential(nn.Linear(feature_dim, proj), nn.ReLU(), nn.Linear(proj, proj))
        self.classifier = nn.Linear(feature_dim, arch["ways"])
        if arch.get("prototypes", 0) > 0:
            self.prototypes = nn.Linear(proj, arch["prototypes"], bias=False)
        if arch.get("predictor", False):
            self.pred = nn.Sequential(nn.Linear(proj, proj), nn.ReLU(), nn.Linear(proj, proj))

    def backbone(self, x):
        """Flattened backbone features [N, F] (C, y, x order)."""
        for i in range(self.blocks):
            x = getattr(self, f"conv{i}")(x)
            x = getattr(self, f"bn{i}")(x)
            x = F.max_pool2d(F.relu(x), 2)
        return x.flatten(1)

    def forward(self, x, features="backbone"):
        f = self.backbone(x)
        if features == "backbone":
            return f
        if features == "projection":
            return self.proj(f)
        if features == "logits":
            return self.classifier(f)
        raise ValueError(f"features: {features!r} is not backbone, projection or logits")


def load(path):
    """The checkpoint at `path` as a Learner (float32, CPU); `model.meta` holds its metadata."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "bmssl-checkpoint-v1":
            raise ValueError(f"{path}: not a bmssl checkpoint (format {meta.get('format')!r})")
        arch = json.loads(meta["arch"])
        model = Learner(arch)
        names = set(model.state_dict())
        # Optimiser moments (optimizer.m/...) and training state (state/...) are not the model.
        state = {k: f.get_tensor(k) for k in f.keys() if k in names}
    missing = names - set(state)
    if missing:
        raise ValueError(f"{path}: tensors missing for {sorted(missing)}")
    model.load_state_dict(state, strict=True)
    model.meta = meta
    return model.float().eval()


@torch.no_grad()
def embed(model, x, features="backbone", batch_norm="set", batch_size=256):
    """Features of images `x` ([N, C, H, W] float32 in [0, 1], numpy or torch): the rows of
    `bmssl embed --features FEATURES --batch-norm BATCH_NORM --batch-size BATCH_SIZE`."""
    a = model.arch
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(
        -1, a["in_channels"], a["image_size"], a["image_size"]
    )
    if batch_norm == "set":
        return model(x, features)
    if batch_norm == "batch":
        return torch.cat([model(x[i : i + batch_size], features) for i in range(0, len(x), batch_size)])
    raise ValueError(f"batch_norm: {batch_norm!r} is not set or batch")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--images", required=True, help=".npy of [N, C, H, W] (or [N, C*H*W]) float32 in [0, 1]")
    p.add_argument("--features", default="backbone", choices=["backbone", "projection"])
    p.add_argument("--batch-norm", default="set", choices=["set", "batch"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", help="write the features here (.npy)")
    p.add_argument("--compare", help="an .npy of `bmssl embed` rows: print the largest difference")
    p.add_argument(
        "--fixture",
        help="write images and features (backbone_set, projection_set, backbone_batch8) to this "
        ".safetensors (the Rust test's fixture)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load(args.checkpoint)
    x = np.load(args.images).astype(np.float32)
    a = model.arch
    x = x.reshape(-1, a["in_channels"], a["image_size"], a["image_size"])
    feats = embed(model, x, args.features, args.batch_norm, args.batch_size).numpy()
    print(f"{len(x)} images -> {feats.shape[0]} x {feats.shape[1]} {args.features} features")
    if args.out:
        np.save(args.out, feats)
    if args.compare:
        theirs = np.load(args.compare)
        if theirs.shape != feats.shape:
            sys.exit(f"shape {theirs.shape} in {args.compare}, {feats.shape} here")
        diff = np.abs(theirs - feats)
        print(
            f"max |bmssl - torch| = {diff.max():.3g}, mean {diff.mean():.3g}, "
            f"max |feature| {np.abs(feats).max():.3g}"
        )
    if args.fixture:
        save_file(
            {
                "images": np.ascontiguousarray(x),
                "backbone_set": embed(model, x, "backbone", "set").numpy(),
                "projection_set": embed(model, x, "projection", "set").numpy(),
                "backbone_batch8": embed(model, x, "backbone", "batch", 8).numpy(),
            },
            args.fixture,
            metadata={"torch": torch.__version__, "checkpoint_step": model.meta.get("step", "")},
        )
        print(f"wrote {args.fixture}")


if __name__ == "__main__":
    main()
