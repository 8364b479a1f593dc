"""``score="auto"``: choose how to score without any real anomaly.

A trained detector's held-out validation normals are compared with synthetic anomalies made from
them (``gonomaly.data.synthetic``). Every candidate scoring (error map x smoothing sigma x image
score x k) scores both, and the candidate whose scores separate them best wins. No test image and
no anomaly label is ever seen: the function takes normal images only.

The criterion is the MEAN over generator kinds of each kind's AUROC (normals against that kind's
anomalies), not the pooled AUROC: the kinds differ widely in difficulty (on MNIST a blurred digit
even scores below its original), and one easy kind must not decide alone. The pooled AUROC is
recorded beside it. Ties go to the simpler candidate (mse < max < topk < fused, then the smaller
sigma, l2 before ssim, the smaller k).

Cost: each image is reconstructed once; per batch, each error map is built once and smoothed
once per sigma, and every map score reads those. The ``fused`` density is fitted on one half of
the normals and scored on the other half, both ways (its AUROC is the mean of the two folds), so
it is never judged on the images it was fitted on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gonomaly.data.arrays import as_image_array
from gonomaly.data.synthetic import make_synthetic
from gonomaly.errors import GonomalyError
from gonomaly.scores.base import SCORERS, ScoreInputs, Scorer
from gonomaly.scores.features import LatentGaussian
from gonomaly.scores.graph import ScoringGraph
from gonomaly.scores.maps import ERROR_MAPS, error_map, gaussian_smooth

log = logging.getLogger("gonomaly")

MAX_NORMALS = 500  # validation normals used (and as many synthetic anomalies): the cost cap
MIN_NORMALS = 4  # fewer validation normals cannot rank the candidates (the fit falls back to mse)
REFERENCE_SIDE = 64  # the sigmas below are for 64-px images and scale with the image side
SIGMAS_AT_REFERENCE = (0.0, 2.0, 4.0, 8.0)
TOP_K_FRACTIONS = (1 / 400, 1 / 100, 1 / 25)  # k as a share of the image's pixels
SIMPLICITY = {"mse": 0, "max": 1, "topk": 2, "fused": 3}
BATCH_SIZE = 256
ROUNDING = 6  # decimals of a recorded AUROC; candidates equal to them are tied
SEED_RANGE = 1 << 32  # numpy and scikit-learn seeds must be non-negative and below 2**32


@dataclass
class ScoringChoice:
    """The chosen scoring ``params`` (error_map, sigma, score, top_k: what the detector sets),
    every candidate with its validation AUROCs against the synthetic anomalies (best first), and
    what they were measured on."""

    params: dict[str, Any]
    candidates: list[dict[str, Any]]
    n_normals: int
    n_synthetic: int
    kinds: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"params": dict(self.params),
                "criterion": "mean over synthetic kinds of the AUROC of validation normals "
                             "against that kind's synthetic anomalies",
                "n_normals": self.n_normals, "n_synthetic": self.n_synthetic,
                "kinds": list(self.kinds), "candidates": [dict(c) for c in self.candidates]}


def candidate_grid(image_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Every candidate for images of ``image_shape`` (C, H, W); ``sigma`` and ``top_k`` are None
    where the image score does not read them (mse reads the raw map; fused reads features)."""
    height, width = image_shape[-2:]
    scale = min(height, width) / REFERENCE_SIDE
    sigmas = sorted({round(s * scale, 3) for s in SIGMAS_AT_REFERENCE})
    ks = sorted({max(1, round(f * height * width)) for f in TOP_K_FRACTIONS})
    grid: list[dict[str, Any]] = []
    for name in ERROR_MAPS:
        grid.append({"error_map": name, "sigma": None, "score": "mse", "top_k": None})
        for sigma in sigmas:
            grid.append({"error_map": name, "sigma": sigma, "score": "max", "top_k": None})
            grid += [{"error_map": name, "sigma": sigma, "score": "topk", "top_k": k} for k in ks]
    grid.append({"error_map": None, "sigma": None, "score": "fused", "top_k": None})
    return grid


def _simplicity(candidate: dict[str, Any]) -> tuple:
    return (SIMPLICITY[candidate["score"]], candidate["sigma"] or 0.0,
            ERROR_MAPS.index(candidate["error_map"]) if candidate["error_map"] else 0,
            candidate["top_k"] or 0)


def _scoring_model(detector) -> torch.nn.Module:
    """The detector's network ready to score, as ``detector.scoring_graph`` prepares it (the
    latent Gaussian is not needed, and may not be fitted yet when ``fit`` chooses)."""
    model = detector.model_.eval()
    if getattr(model, "closed_form", False) is None:
        model.prepare_closed_form()  # what the detector's first scoring does too
    return model


@torch.no_grad()
def score_candidates(detector, images: np.ndarray, grid: list[dict[str, Any]]
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(scores (candidates, N) of every map-score candidate (NaN for fused), the per-image
    features without the latent ones, latents (N, D)): one reconstruction per image."""
    graph = ScoringGraph(_scoring_model(detector), None, ERROR_MAPS[0], 0.0)
    device = next(graph.model.parameters()).device
    scorers: dict[tuple[str, float], list[tuple[int, Scorer]]] = {}
    for i, c in enumerate(grid):
        if c["score"] != "fused":
            key = (c["error_map"], c["sigma"] or 0.0)
            scorers.setdefault(key, []).append((i, SCORERS[c["score"]](top_k=c["top_k"] or 1)))
    scores = np.full((len(grid), len(images)), np.nan)
    features: list[dict[str, np.ndarray]] = []
    latents = []
    for start in range(0, len(images), BATCH_SIZE):
        x = torch.from_numpy(images[start:start + BATCH_SIZE]).to(device)
        x_hat, z = graph.reconstruct(x)
        features.append({k: v.double().cpu().numpy() for k, v in graph.features(x, x_hat, z).items()})
        latents.append(z.double().cpu().numpy())
        for name in ERROR_MAPS:
            raw = error_map(x, x_hat, name)
            for sigma in sorted({s for m, s in scorers if m == name}):
                inputs = ScoreInputs(raw, gaussian_smooth(raw, sigma), None)
                for i, scorer in scorers[(name, sigma)]:
                    scores[i, start:start + len(x)] = scorer(inputs).double().cpu().numpy()
    merged = {k: np.concatenate([f[k] for f in features]) for k in features[0]}
    return scores, merged, np.concatenate(latents)


def separation(normal: np.ndarray, synthetic: np.ndarray, kinds: np.ndarray) -> dict[str, Any]:
    """The AUROC of normals (negative) against each kind's synthetic anomalies (positive), their
    mean over kinds, and the pooled AUROC against all of them."""
    def auroc(positive: np.ndarray) -> float:
        truth = np.r_[np.zeros(len(normal)), np.ones(len(positive))]
        return round(float(roc_auc_score(truth, np.r_[normal, positive])), ROUNDING)

    by_kind = {str(kind): auroc(synthetic[kinds == kind]) for kind in np.unique(kinds)}
    return {"auroc": round(float(np.mean(list(by_kind.values()))), ROUNDING), "auroc_pooled": auroc(synthetic),
            "auroc_by_kind": by_kind}


def fused_separation(detector, features: dict[str, np.ndarray], latents: np.ndarray,
                     n_normals: int, kinds: np.ndarray, seed: int) -> dict[str, Any]:
    """The fused score's separation, two-fold: the density (and the latent Gaussian) fitted on
    one half of the normals, scored on the other half's normals and their anomalies; the mean of
    both folds. Row i < n_normals is a normal, row n_normals + i its synthetic anomaly."""
    halves = np.array_split(np.random.default_rng(seed).permutation(n_normals), 2)
    folds = []
    for fit, held in (halves, halves[::-1]):
        values = dict(features)
        if detector.has_latent:
            z = torch.from_numpy(latents)
            values["latent_norm"] = z.norm(dim=1).numpy()
            values["latent_distance"] = LatentGaussian.fit(latents[fit])(z).numpy()
        scorer = SCORERS["fused"]().fit(lambda values=values, fit=fit: {k: v[fit] for k, v in values.items()},
                                        seed)
        rows = np.r_[held, n_normals + held]
        scores = scorer(ScoreInputs(None, None, {k: torch.from_numpy(v[rows]) for k, v in values.items()}))
        scores = scores.numpy()
        folds.append(separation(scores[:len(held)], scores[len(held):], kinds[held]))
    def mean(values) -> float:
        return round(float(np.mean(list(values))), ROUNDING)

    return {"auroc": mean(f["auroc"] for f in folds), "auroc_pooled": mean(f["auroc_pooled"] for f in folds),
            "auroc_by_kind": {k: mean(f["auroc_by_kind"][k] for f in folds) for k in folds[0]["auroc_by_kind"]}}


def chosen_params(ranked: list[dict[str, Any]], default_top_k: int) -> dict[str, Any]:
    """The best candidate as the detector's parameters. What its image score does not read is
    still used by the pixel anomaly maps: mse takes the sigma, and fused the error map and sigma,
    of the best candidate that reads the smoothed map (with the same error map for mse)."""
    best = ranked[0]
    maps = [c for c in ranked if c["sigma"] is not None
            and (best["score"] != "mse" or c["error_map"] == best["error_map"])]
    pixel = best if best["sigma"] is not None else maps[0]
    return {"error_map": pixel["error_map"], "sigma": float(pixel["sigma"]), "score": best["score"],
            "top_k": int(best["top_k"] or default_top_k)}


def _normals(validation, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` of the validation images (a random subset in their order), checked."""
    array = validation if isinstance(validation, torch.Tensor) else np.asarray(validation)
    if len(array) < MIN_NORMALS:
        raise GonomalyError(f"score auto: needs at least {MIN_NORMALS} validation images, got {len(array)}")
    if len(array) > cap:
        array = array[np.sort(rng.choice(len(array), cap, replace=False))]
    return as_image_array(array, "validation images")


def choose_scoring(detector, validation: np.ndarray, sources: np.ndarray | None, seed: int, *,
                   max_normals: int = MAX_NORMALS) -> ScoringChoice:
    """The scoring (error map, sigma, score, k) under which the fitted ``detector`` best separates
    ``validation`` normals from synthetic anomalies made from them (texture from ``sources``,
    e.g. the training images; None: the other validation images). At most ``max_normals``
    validation images are used. Deterministic per ``seed``; the detector is left as it was."""
    started = time.perf_counter()
    seed = seed % SEED_RANGE
    normal = _normals(validation, max_normals, np.random.default_rng(seed))
    anomalous, _, kinds = make_synthetic(normal, sources, rng=seed)
    grid = candidate_grid(normal.shape[1:])
    scores, features, latents = score_candidates(detector, np.concatenate([normal, anomalous]), grid)
    n = len(normal)
    for i, candidate in enumerate(grid):
        if candidate["score"] == "fused":
            try:
                candidate.update(fused_separation(detector, features, latents, n, kinds, seed))
            except GonomalyError as exc:  # too few normals to fit the density on half of them
                candidate.update(auroc=None, auroc_pooled=None, auroc_by_kind={}, skipped=str(exc))
        else:
            candidate.update(separation(scores[i, :n], scores[i, n:], kinds))
    ranked = sorted((c for c in grid if c["auroc"] is not None),
                    key=lambda c: (-c["auroc"], _simplicity(c)))
    ranked += [c for c in grid if c["auroc"] is None]
    choice = ScoringChoice(chosen_params(ranked, int(detector.top_k)), ranked, n, len(anomalous),
                           sorted(set(kinds.tolist())))
    log.info("score auto: %s (mean AUROC over kinds %.4f, pooled %.4f; %d normals, %d synthetic, "
             "%d candidates, %.1f s)", choice.params, ranked[0]["auroc"], ranked[0]["auroc_pooled"],
             n, len(anomalous), len(grid), time.perf_counter() - started)
    return choice
