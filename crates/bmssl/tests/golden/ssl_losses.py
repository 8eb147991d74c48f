"""PyTorch values of the self-supervised losses, written the way the official PsCo code
(github.com/alinlab/PsCo, models.py) and Barlow Twins' code write them, on the deterministic test
inputs of `engine::gradcheck::test_values`. Produces ssl-losses.json, read by
crates/bmssl/src/losses/ssl.rs (test `losses_match_pytorch`).

    /work/torchenv/bin/python crates/bmssl/tests/golden/ssl_losses.py > crates/bmssl/tests/golden/ssl-losses.json
"""
import json
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
M = (1 << 64) - 1


def test_values(n, salt):
    out = []
    for i in range(n):
        z = ((i * 0x9E3779B97F4A7C15) & M) ^ ((salt * 0xD1B54A32D192ED03) & M)
        z = ((z ^ (z >> 31)) * 0xBF58476D1CE4E5B9) & M
        z ^= z >> 29
        out.append((z >> 11) / float(1 << 53) * 2.0 - 1.0)
    return torch.tensor(out)


def sinkhorn_rows(out, epsilon, num_iterations):
    # PsCo's distributed_sinkhorn(normalization='row') on one process.
    Q = torch.exp(out / epsilon)
    B, K = Q.shape
    Q /= torch.sum(Q)
    for _ in range(num_iterations):
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= B
    return Q * B


d = 4
res = {}

# SimCLR (PsCo's SimCLR.compute_loss), tau 0.5, z = [z1; z2] with B = 3.
z = test_values(6 * d, 1).reshape(6, d).requires_grad_()
n = 3
zz = F.normalize(z)
logits = torch.mm(zz, zz.T).div(0.5)
logits.fill_diagonal_(float("-inf"))
labels = torch.tensor(list(range(n, 2 * n)) + list(range(n)))
loss = F.cross_entropy(logits, labels)
loss.backward()
res["nt_xent"] = {"loss": loss.item(), "grad": z.grad.flatten().tolist()}

# MoCo (MoCo.compute_loss), tau 0.2.
keys = F.normalize(test_values(3 * d, 2).reshape(3, d))
queue = F.normalize(test_values(5 * d, 3).reshape(5, d))
q = test_values(3 * d, 4).reshape(3, d).requires_grad_()
z1 = F.normalize(q)
l_pos = torch.mul(z1, keys).sum(dim=1, keepdim=True)
l_neg = torch.mm(z1, queue.T)
logits = torch.cat([l_pos, l_neg], dim=1).div(0.2)
loss = F.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
loss.backward()
res["info_nce"] = {"loss": loss.item(), "grad": q.grad.flatten().tolist()}

# Barlow Twins (facebookresearch/barlowtwins main.py, BatchNorm1d(affine=False)), lambda 0.3.
a = test_values(5 * d, 5).reshape(5, d).requires_grad_()
b = test_values(5 * d, 6).reshape(5, d).requires_grad_()
bn = torch.nn.BatchNorm1d(d, affine=False)
c = bn(a).T @ bn(b) / 5
on = torch.diagonal(c).add(-1).pow(2).sum()
off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
loss = on + 0.3 * off
loss.backward()
res["barlow_twins"] = {"loss": loss.item(), "grad_z1": a.grad.flatten().tolist(), "grad_z2": b.grad.flatten().tolist()}

# SwAV (PsCo's SwAV.compute_loss), tau 0.1, eps 0.05, 3 rounds; prototypes normalised in the graph.
z = test_values(6 * d, 1).reshape(6, d).requires_grad_()
c = test_values(7 * d, 7).reshape(7, d).requires_grad_()
w = F.normalize(c)
z1 = F.normalize(z[:3])
z2 = F.normalize(z[3:])
s1 = z1 @ w.T
s2 = z2 @ w.T
q1 = sinkhorn_rows(s1.detach(), 0.05, 3)
q2 = sinkhorn_rows(s2.detach(), 0.05, 3)
loss = -(torch.sum(q1 * F.log_softmax(s2 / 0.1, dim=1), dim=1) + torch.sum(q2 * F.log_softmax(s1 / 0.1, dim=1), dim=1)).mean()
loss.backward()
res["swav"] = {"loss": loss.item(), "grad_z": z.grad.flatten().tolist(), "grad_c": c.grad.flatten().tolist()}

# PsCo (PsCoMoCo.compute_loss without the predictor), shots 2, tau 0.2, tau2 1, eps 0.05, 3 rounds.
q = test_values(3 * d, 4).reshape(3, d).requires_grad_()
p1 = F.normalize(q)
with torch.no_grad():
    sim = keys @ queue.T
    assignments = sinkhorn_rows(sim, 0.05, 3)
    samples = torch.topk(assignments, k=2, dim=1).indices.reshape(-1)
    shots = queue[samples]
    prototypes = shots.reshape(3, 2, -1).mean(dim=1)
loss = (torch.mm(p1, shots.T).div(1.0).logsumexp(dim=1) - p1.mul(prototypes).div(1.0).sum(dim=1)).mean()
logits = torch.cat([torch.mul(p1, keys).sum(dim=1, keepdim=True), torch.mm(p1, queue.T)], dim=1).div(0.2)
loss = loss + F.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
loss.backward()
res["psco"] = {"loss": loss.item(), "grad": q.grad.flatten().tolist(), "support": samples.tolist()}

res["torch_version"] = torch.__version__
print(json.dumps(res, indent=1))
