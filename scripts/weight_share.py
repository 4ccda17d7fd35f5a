"""How λ-GRPO's weights degenerate as |λ| grows: the largest weight share max_i f_i / G and |df/dλ| per group size.

    python scripts/weight_share.py [--groups 2000] [--json docs/data/weight_share.json]

For each group size G and λ, it draws groups of response lengths (seeded; uniform on [1, 4096], the spread of a
reasoning model's responses, and a lognormal with a long tail) and reports the median and 90th percentile over groups
of the largest share of a group's weight held by one response, and the median of max_i |df_i/dλ| (how much signal λ
still gets). The threshold of the ``actor/lambda_grpo/max_weight_share`` warning (0.5) and the recommended bounds on λ
in the configuration reference come from this table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from verl_lambda.ops.length_weights import group_table, length_preference, softmax_inputs, weights_and_slope

GROUP_SIZES = (4, 8, 16, 64)
LAMBDAS = (-20.0, -12.0, -8.0, -5.0, -3.0, 0.0, 3.0, 5.0, 8.0, 12.0, 20.0, 25.0)


def draw_lengths(kind: str, groups: int, size: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "uniform":
        return torch.randint(1, 4097, (groups, size), generator=gen).double()
    return torch.exp(torch.randn(groups, size, generator=gen, dtype=torch.float64) * 0.6 + 6.5).round().clamp(1)


def measure(kind: str, size: int, lam: float, groups: int, seed: int = 0) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    lengths = draw_lengths(kind, groups, size, gen).reshape(-1)
    ids = torch.arange(groups).repeat_interleave(size)
    table, mask, group_index, self_index = group_table(ids, lengths)
    h, _ = length_preference(table, mask, 1.0 / 9.0)
    weights, slope = weights_and_slope(*softmax_inputs(h, mask), group_index, self_index, lam)
    share = (weights.double() / size).reshape(groups, size).amax(-1)
    signal = slope.double().abs().reshape(groups, size).amax(-1)
    ordered = sorted(share.tolist())
    return {
        "share_median": statistics.median(ordered),
        "share_p90": ordered[int(0.9 * (len(ordered) - 1))],
        "slope_median": statistics.median(signal.tolist()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'lengths':8} {'G':>3} {'λ':>6} {'share med':>10} {'share p90':>10} {'|df/dλ| med':>12}")
    for kind in ("uniform", "lognormal"):
        for size in GROUP_SIZES:
            for lam in LAMBDAS:
                row = {"lengths": kind, "G": size, "lambda": lam, **measure(kind, size, lam, args.groups)}
                rows.append(row)
                print(
                    f"{kind:8} {size:>3} {lam:>6g} {row['share_median']:>10.3f} {row['share_p90']:>10.3f} "
                    f"{row['slope_median']:>12.3g}"
                )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": "python scripts/weight_share.py", "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
