"""tr sqrt(S1 S2) at D=2048: the eigh form against the Cholesky route (the default), timed side
by side on the same matrices, each checked against a float64 high-accuracy reference.

Two cases, both with power-law spectra (eigenvalue k ~ k^-alpha, as Inception pool_3
covariances fall off):

1. ``exact``: S1 = H diag(a) H^T / D and S2 = H' diag(b) H'^T / D, with H a Sylvester
   Hadamard matrix (entries +-1, H H^T = D I), H' = diag(signs) H P (random signs and column
   permutation, so S1 and S2 do not commute), a and b integers below 2^40. Every entry is an
   integer sum below 2^53 divided by a power of two, so both matrices are EXACT in float64:
   the reference is the exact answer for the very inputs the methods get. It is
   tr sqrt(S1 S2) = || diag(sqrt a) (H^T H' / D) diag(sqrt b) ||_* (the nuclear norm of
   S1^{1/2} S2^{1/2} written in the two eigenbases; H^T H' / D is exact), summed singular
   values of a D x D matrix whose entries are exact to 1 ulp: the condition number is never
   squared, unlike any route through S1 S2.
2. ``features``: S1, S2 are sample covariances (ddof=1) of n Gaussian feature rows with such
   spectra, in two unrelated random bases; ``features-close``: both sets from the SAME
   distribution (one basis), the FID situation where S1 is close to S2 and
   tr sqrt(S1 S2) is close to tr S. Reference: || R1 R2^T ||_* / (n - 1) with R the
   triangular factors of QR of the centred features (S = R^T R / (n - 1)). The methods get
   S computed from the features in float64 (as fid.py's accumulator does), so their error
   includes the rounding of forming S, which any method that takes covariances inherits.

Run: ``python bench/fid_sqrt.py [--dim 2048] [--alpha 2.0] [--repeats 3] [--threads N] [--n 10000] [--device cuda]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalrun.metrics.functional.fid import GaussianStats, trace_sqrt_eigh, trace_sqrt_product  # noqa: E402


def hadamard(d: int) -> np.ndarray:
    if d & (d - 1):
        raise SystemExit(f"--dim must be a power of two for the exact case, got {d}")
    h = np.ones((1, 1))
    while len(h) < d:
        h = np.block([[h, h], [h, -h]])
    return h


def exact_case(d: int, alpha: float, rng: np.random.Generator):
    h = hadamard(d)
    k = np.arange(1, d + 1, dtype=np.float64)
    a = np.maximum(np.round(2.0 ** 40 * k ** -alpha), 1.0)
    b = np.maximum(np.round(2.0 ** 40 * (k * 1.3) ** -alpha), 1.0)[rng.permutation(d)]
    h2 = (rng.choice([-1.0, 1.0], size=d)[:, None] * h)[:, rng.permutation(d)]
    s1 = (h * a) @ h.T / d / 2.0 ** 40   # exact: integer sums < 2^53, power-of-two scaling
    s2 = (h2 * b) @ h2.T / d / 2.0 ** 40
    g = h.T @ h2 / d                      # exact orthogonal change of basis
    m = np.sqrt(a / 2.0 ** 40)[:, None] * g * np.sqrt(b / 2.0 ** 40)[None, :]
    reference = math.fsum(np.linalg.svd(m, compute_uv=False))
    return s1, s2, reference


def features_case(d: int, alpha: float, n: int, rng: np.random.Generator, same_basis: bool = False):
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]

    def sample():
        q = basis if same_basis else np.linalg.qr(rng.normal(size=(d, d)))[0]
        f = (rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-alpha / 2)) @ q.T
        return f - f.mean(0)
    f1, f2 = sample(), sample()
    r1, r2 = np.linalg.qr(f1, mode="r"), np.linalg.qr(f2, mode="r")
    reference = math.fsum(np.linalg.svd(r1 @ r2.T, compute_uv=False)) / (n - 1)
    s1, s2 = f1.T @ f1 / (n - 1), f2.T @ f2 / (n - 1)
    return (s1 + s1.T) / 2, (s2 + s2.T) / 2, reference


def timed(fn, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def run_case(name: str, s1: np.ndarray, s2: np.ndarray, reference: float, repeats: int, device: str) -> None:
    d = len(s1)
    a, b = GaussianStats(np.zeros(d), s1, None), GaussianStats(np.zeros(d), s2, None)
    t_eigh, v_eigh = timed(lambda: trace_sqrt_eigh(a, b, device), repeats)   # returns a float: synchronised
    t_chol, (v_chol, method) = timed(lambda: trace_sqrt_product(a, b, device), repeats)
    print(f"[{name}] D={d}  cond(S1)={np.linalg.cond(s1):.2e}  reference tr sqrt(S1 S2) = {reference:.17g}")
    print(f"  eigh form (0.1)        {t_eigh:7.3f} s   value {v_eigh:.17g}   rel. error {abs(v_eigh - reference) / reference:.2e}")
    print(f"  Cholesky (default)     {t_chol:7.3f} s   value {v_chol:.17g}   rel. error {abs(v_chol - reference) / reference:.2e}")
    print(f"  time ratio eigh / Cholesky = {t_eigh / t_chol:.2f}   ({method});  tr S1 + tr S2 = {np.trace(s1) + np.trace(s2):.6g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--alpha", type=float, default=2.0, help="power-law exponent of the spectra")
    parser.add_argument("--n", type=int, default=10000, help="feature rows per set in the features case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the decompositions run (e.g. cuda); inputs move there each call")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, float64, {where}; best of {args.repeats}")
    rng = np.random.default_rng(args.seed)
    if args.device.startswith("cuda"):   # warm up the GPU solvers outside the timings
        eye = GaussianStats(np.zeros(8), np.eye(8), None)
        trace_sqrt_product(eye, eye, args.device)
        trace_sqrt_eigh(eye, eye, args.device)
    run_case("exact", *exact_case(args.dim, args.alpha, rng), args.repeats, args.device)
    run_case("features", *features_case(args.dim, args.alpha, args.n, rng), args.repeats, args.device)
    run_case("features-close", *features_case(args.dim, args.alpha, args.n, rng, same_basis=True), args.repeats, args.device)


if __name__ == "__main__":
    main()
