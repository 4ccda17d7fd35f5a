"""An independent, deliberately plain reference for λ-GRPO's weights (spec §1, §3): Python floats, one group at a
time, written from the definition without looking at the library code."""

from __future__ import annotations

import math
from collections import defaultdict


def reference_weights(lengths, group_ids, lam, r=1.0 / 9.0, floor=1e-3):
    """f_i = G * exp(h_i**lam) / sum_j exp(h_j**lam) within each group; returns a list of floats."""
    members = defaultdict(list)
    for index, gid in enumerate(group_ids):
        members[int(gid)].append(index)
    out = [0.0] * len(lengths)
    for indices in members.values():
        ls = [float(lengths[i]) for i in indices]
        g = len(ls)
        mu = sum(ls) / g
        sigma = math.sqrt(sum((x - mu) ** 2 for x in ls) / g)
        zs = [0.0 if sigma == 0 else (x - mu) / sigma for x in ls]
        hs = [max(1.0 + r * z, floor) for z in zs]
        gs = [h**lam for h in hs]
        top = max(gs)
        es = [math.exp(x - top) for x in gs]
        total = sum(es)
        for i, e in zip(indices, es, strict=True):
            out[i] = g * e / total
    return out


def reference_dweights_dlam(lengths, lam, r=1.0 / 9.0):
    """Spec §3's analytic gradient for one group: d f_i / d lam = G p_i (a_i - sum_j p_j a_j), a_j = h_j**lam ln h_j."""
    g = len(lengths)
    mu = sum(lengths) / g
    sigma = math.sqrt(sum((x - mu) ** 2 for x in lengths) / g)
    hs = [1.0 + r * ((x - mu) / sigma if sigma else 0.0) for x in lengths]
    gs = [h**lam for h in hs]
    es = [math.exp(x - max(gs)) for x in gs]
    ps = [e / sum(es) for e in es]
    a = [h**lam * math.log(h) for h in hs]
    mean_a = sum(p * x for p, x in zip(ps, a, strict=True))
    return [g * p * (x - mean_a) for p, x in zip(ps, a, strict=True)]


def precise_weights_and_slopes(lengths, lam, r=1.0 / 9.0, floor=1e-3, digits=400):
    """One group's f and df/dλ in ``digits``-digit decimal arithmetic (no overflow, no cancellation at any λ a test
    uses): the ground truth for the float64 implementation's saturated and near-saturated regimes."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = digits
        ls = [Decimal(int(x)) for x in lengths]
        g_count = len(ls)
        mu = sum(ls) / g_count
        sigma = (sum((x - mu) ** 2 for x in ls) / g_count).sqrt()
        hs = [max(Decimal(1) + Decimal(r) * ((x - mu) / sigma if sigma else 0), Decimal(floor)) for x in ls]
        logs = [h.ln() for h in hs]
        gs = [(Decimal(lam) * ell).exp() for ell in logs]
        top = max(gs)
        es = [(g - top).exp() for g in gs]
        ps = [e / sum(es) for e in es]
        a = [g * ell for g, ell in zip(gs, logs, strict=True)]
        mean_a = sum(p * x for p, x in zip(ps, a, strict=True))
        weights = [float(g_count * p) for p in ps]
        slopes = [float(g_count * p * (x - mean_a)) for p, x in zip(ps, a, strict=True)]
    return weights, slopes


def precise_softmax_slopes(log_h_groups, lam, digits=400):
    """f and df/dλ of groups given by their members' ln h (floats, taken as exact), in ``digits``-digit decimals:
    the ground truth where h ** λ is far beyond float64's precision, e.g. near-ties at h ** λ ~ e**25."""
    from decimal import Decimal, localcontext

    weights, slopes = [], []
    with localcontext() as ctx:
        ctx.prec = digits
        for logs in log_h_groups:
            ells = [Decimal(x) for x in logs]
            gs = [(Decimal(lam) * ell).exp() for ell in ells]
            es = [(g - max(gs)).exp() for g in gs]
            ps = [e / sum(es) for e in es]
            a = [g * ell for g, ell in zip(gs, ells, strict=True)]
            mean_a = sum(p * x for p, x in zip(ps, a, strict=True))
            weights += [float(len(ells) * p) for p in ps]
            slopes += [float(len(ells) * p * (x - mean_a)) for p, x in zip(ps, a, strict=True)]
    return weights, slopes
