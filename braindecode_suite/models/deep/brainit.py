"""Brain-IT-style decoder: voxels grouped into functional clusters shared across subjects,
a transformer whose tokens are the clusters, and learned queries that predict patch-level
image features (after Beliy et al., 2025).

Each voxel ``v`` of each subject has a learned embedding ``e_v``. Voxels of all subjects are
clustered together by k-means on their embeddings (scikit-learn ``KMeans``), so cluster ``c``
means the same functional unit in every subject. The token of cluster ``c`` for a sample is
``W · mean_{v in c}(x_v e_v) + p_c`` (``W`` shared, ``p_c`` a learned cluster embedding); a
transformer encoder mixes the tokens and ``n_patches`` learned queries read them out by
cross-attention into ``(n_patches, feat_dim)`` features.

Embeddings start (``init_embeddings='encoding'``) from each voxel's encoding weights: a
ridge from the targets, projected on their first principal axes (computed once over all
training subjects and stored), to the voxel. A new subject's voxels get embeddings the same
way from its own data and join the nearest existing cluster (:meth:`BrainITDecoder.add_subject`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...utils.validation import BadInputError, check_array, check_option, check_positive_int
from ._base import DeepDecoder, DeepDecoderConfig, subject_key
from .losses import info_nce

__all__ = ["BrainITConfig", "BrainITDecoder"]


@dataclasses.dataclass
class BrainITConfig(DeepDecoderConfig):
    """Brain-IT-style decoder settings.

    Defaults (fit a 24 GB GPU with 8 NSD subjects): 128 clusters, d_model 512, 6 encoder
    and 2 query layers, 256 × 768 patch features (CLIP ViT-L/14 patches) — 27.6 M
    parameters for 8 subjects of 15,724 voxels (64 per voxel). :meth:`paper_scale` widens
    it (d_model 768, 12 + 4 layers, 512 clusters; 102 M); check the paper for its exact
    sizes.

    Parameters
    ----------
    n_voxels : dict
        Subject → number of voxels.
    emb_dim : int
        Voxel embedding size.
    n_clusters : int
        Functional clusters (tokens).
    d_model, n_heads, n_layers, n_query_layers, dropout
        Transformer sizes.
    n_patches, feat_dim : int
        Predicted patch features per sample.
    init_embeddings : 'encoding' | 'random'
        How voxel embeddings start (see the module docstring).
    ridge_alpha : float
        Regularisation of the encoding ridge of ``'encoding'``.
    recluster_every : int
        Re-run k-means on the learned embeddings every this many steps (0: never).
    kmeans_n_init : int
        k-means restarts.
    seed : int
        Seed of k-means.
    mse_weight, clip_weight, temperature : float
        Loss = mse_weight · MSE + clip_weight · InfoNCE(mean patch feature).
    """

    emb_dim: int = 64
    n_clusters: int = 128
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 6
    n_query_layers: int = 2
    dropout: float = 0.1
    n_patches: int = 256
    feat_dim: int = 768
    init_embeddings: str = "encoding"
    ridge_alpha: float = 10.0
    recluster_every: int = 0
    kmeans_n_init: int = 4
    seed: int = 0
    mse_weight: float = 1.0
    clip_weight: float = 0.0
    temperature: float = 0.05

    @classmethod
    def paper_scale(cls, n_voxels: dict) -> BrainITConfig:
        """A larger setting in the spirit of the paper (verify sizes against it)."""
        return cls(
            n_voxels=n_voxels,
            emb_dim=128,
            n_clusters=512,
            d_model=768,
            n_heads=12,
            n_layers=12,
            n_query_layers=4,
        )

    def validate(self) -> None:
        super().validate()
        for name in (
            "emb_dim",
            "n_clusters",
            "d_model",
            "n_heads",
            "n_layers",
            "n_query_layers",
            "n_patches",
            "feat_dim",
            "kmeans_n_init",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive_int("recluster_every", self.recluster_every, minimum=0)
        check_option("init_embeddings", self.init_embeddings, ("encoding", "random"))
        if self.d_model % self.n_heads:
            raise BadInputError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )


class BrainITDecoder(DeepDecoder):
    """Cluster-token transformer decoder; output ``"patches"`` (B, n_patches, feat_dim)."""

    config_class = BrainITConfig
    primary_output = "patches"

    def __init__(self, config: BrainITConfig):
        super().__init__(config)
        c = config
        self.voxel_embeddings = nn.ParameterDict()
        for s, n in c.n_voxels.items():
            self._register_subject(s, n)
        self.register_buffer("centroids", torch.zeros(c.n_clusters, c.emb_dim))
        self.register_buffer("feat_mean", torch.zeros(c.feat_dim))
        self.register_buffer("feat_basis", torch.zeros(c.feat_dim, c.emb_dim))
        self.token_proj = nn.Linear(c.emb_dim, c.d_model)
        self.cluster_embed = nn.Parameter(torch.randn(c.n_clusters, c.d_model) * 0.02)
        self.norm_in = nn.LayerNorm(c.d_model)
        enc = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, 2 * c.d_model, c.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(enc, c.n_layers, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(c.n_patches, c.d_model) * 0.02)
        dec = nn.TransformerDecoderLayer(
            c.d_model, c.n_heads, 2 * c.d_model, c.dropout, batch_first=True, norm_first=True
        )
        self.query_decoder = nn.TransformerDecoder(dec, c.n_query_layers)
        self.head = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.feat_dim))

    def _register_subject(self, subject, n_voxels: int, embeddings=None, assignment=None):
        c = self.config
        emb = (
            torch.randn(n_voxels, c.emb_dim) / c.emb_dim**0.5 if embeddings is None else embeddings
        )
        self.voxel_embeddings[subject_key(subject)] = nn.Parameter(emb.float().clone())
        a = torch.arange(n_voxels) % c.n_clusters if assignment is None else assignment
        self.register_buffer(f"assign_{subject_key(subject)}", a.long().clone())

    def assignment(self, subject) -> torch.Tensor:
        """Cluster of each voxel of ``subject``, shape (n_voxels,)."""
        self.check_subject(subject)
        return getattr(self, f"assign_{subject_key(subject)}")

    def target_shapes(self):
        return {"patches": (self.config.n_patches, self.config.feat_dim)}

    # ------------------------------------------------------------------ clusters
    def _encoding_embeddings(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Voxel embeddings = ridge weights from the projected targets to the voxels."""
        pooled = Y.reshape(len(Y), self.config.n_patches, self.config.feat_dim).mean(1)
        F_ = (pooled - self.feat_mean.cpu().numpy()) @ self.feat_basis.cpu().numpy()
        F_ = F_ / (F_.std(0, keepdims=True) + 1e-8)
        Xc = X - X.mean(0)
        A = F_.T @ F_ + self.config.ridge_alpha * np.eye(F_.shape[1])
        W = np.linalg.solve(A, F_.T @ Xc)  # (emb_dim, n_voxels)
        W = W / (np.linalg.norm(W, axis=0, keepdims=True) + 1e-8)
        return W.T.astype(np.float32)

    def fit_target_basis(self, Ys: list[np.ndarray]) -> None:
        """Principal axes of the (patch-averaged) targets, used by the encoding embeddings."""
        c = self.config
        pooled = np.concatenate([y.reshape(len(y), c.n_patches, c.feat_dim).mean(1) for y in Ys])
        mean = pooled.mean(0)
        _, _, Vt = np.linalg.svd(pooled - mean, full_matrices=False)
        k = min(c.emb_dim, Vt.shape[0])
        basis = np.zeros((c.feat_dim, c.emb_dim), dtype=np.float32)
        basis[:, :k] = Vt[:k].T
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_basis.copy_(torch.as_tensor(basis))

    @torch.no_grad()
    def fit_clusters(self, seed: int | None = None) -> None:
        """k-means of all subjects' voxel embeddings into ``n_clusters`` shared clusters."""
        from sklearn.cluster import KMeans

        c = self.config
        subjects = self.subjects
        embs = [
            F.normalize(self.voxel_embeddings[subject_key(s)].detach().float(), dim=1)
            for s in subjects
        ]
        allE = torch.cat(embs).cpu().numpy().astype(np.float64)
        if len(allE) < c.n_clusters:
            raise BadInputError(
                f"n_clusters={c.n_clusters} exceeds the {len(allE)} voxels of all subjects."
            )
        km = KMeans(
            c.n_clusters, n_init=c.kmeans_n_init, random_state=c.seed if seed is None else seed
        ).fit(allE)
        self.centroids.copy_(torch.as_tensor(km.cluster_centers_, dtype=torch.float32))
        start = 0
        for s, e in zip(subjects, embs, strict=True):
            lab = torch.as_tensor(km.labels_[start : start + len(e)], dtype=torch.long)
            self.assignment(s).copy_(lab)
            start += len(e)

    @torch.no_grad()
    def nearest_clusters(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid of each (normalised) embedding row."""
        e = F.normalize(embeddings.float(), dim=1).to(self.centroids.device)
        return torch.cdist(e, self.centroids).argmin(1)

    def setup_training(self, datasets, *, seed: int = 0) -> None:
        """Initialise voxel embeddings ('encoding') and cluster them (fresh runs only)."""
        if self.config.init_embeddings == "encoding":
            prepared = {
                s: (
                    np.asarray(X, dtype=np.float64),
                    self.prepare_targets(Y)["patches"].astype(np.float64),
                )
                for s, (X, Y) in datasets.items()
            }
            self.fit_target_basis([Y for _, Y in prepared.values()])
            with torch.no_grad():
                for s, (X, Y) in prepared.items():
                    p = self.voxel_embeddings[subject_key(s)]
                    p.copy_(torch.as_tensor(self._encoding_embeddings(X, Y)).to(p.device))
        self.fit_clusters()

    def on_step_end(self, step: int) -> None:
        every = self.config.recluster_every
        if every and step % every == 0:
            self.fit_clusters()

    # ------------------------------------------------------------------ subjects
    def add_subject(self, subject, n_voxels: int, *, X=None, Y=None) -> None:
        """Add a subject; with its data (X, Y), its voxels get encoding embeddings and join
        the nearest existing cluster (Brain-IT's voxel-to-cluster assignment)."""
        check_positive_int("n_voxels", n_voxels)
        if subject in self.n_voxels:
            raise BadInputError(f"subject {subject!r} already has voxel embeddings.")
        emb = None
        if X is not None:
            X = check_array("X", X, ndim=2)
            if X.shape[1] != n_voxels:
                raise BadInputError(f"X has {X.shape[1]} voxels, expected n_voxels={n_voxels}.")
            Yp = self.prepare_targets(Y)["patches"]
            emb = torch.as_tensor(
                self._encoding_embeddings(X.astype(np.float64), Yp.astype(np.float64))
            )
        dev = self.centroids.device
        assign = self.nearest_clusters(emb) if emb is not None else None
        self._register_subject(subject, n_voxels, emb, assign)
        self.voxel_embeddings[subject_key(subject)].data = self.voxel_embeddings[
            subject_key(subject)
        ].data.to(dev)
        key = f"assign_{subject_key(subject)}"
        setattr(self, key, getattr(self, key).to(dev))
        self.n_voxels[subject] = int(n_voxels)
        self.config.n_voxels[subject] = int(n_voxels)

    def subject_parameters(self, subject):
        self.check_subject(subject)
        return [self.voxel_embeddings[subject_key(subject)]]

    # ------------------------------------------------------------------ forward
    def decode(self, batch):
        subject, x = self.check_batch(batch)
        c = self.config
        e = self.voxel_embeddings[subject_key(subject)]
        a = self.assignment(subject)
        contrib = x[:, :, None] * e[None]  # (B, V, emb)
        pooled = torch.zeros(
            len(x), c.n_clusters, c.emb_dim, device=x.device, dtype=contrib.dtype
        ).index_add_(1, a, contrib)
        counts = torch.bincount(a, minlength=c.n_clusters).clamp_min(1).to(pooled.dtype)
        tokens = self.norm_in(self.token_proj(pooled / counts[None, :, None]) + self.cluster_embed)
        memory = self.encoder(tokens)
        q = self.queries[None].expand(len(x), -1, -1)
        patches = self.head(self.query_decoder(q, memory))
        return {"patches": patches, "tokens": memory}

    def compute_loss(self, outputs, targets, ctx, *, progress):
        c = self.config
        pred, y = outputs["patches"].float(), targets["patches"].float()
        mse = F.mse_loss(pred, y)
        loss, logs = c.mse_weight * mse, {"mse": mse.detach()}
        if c.clip_weight:
            nce = info_nce(pred.mean(1), y.mean(1), temperature=c.temperature)
            loss = loss + c.clip_weight * nce
            logs["contrastive"] = nce.detach()
        return loss, logs
