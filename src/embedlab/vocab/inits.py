"""Initial embeddings for new vocabulary entries: six methods, each from its paper.

Every method maps the old embedding matrix (and, where it needs them, the old tokenizer, the new
tokens' surface strings and a corpus) to one row per new token; overlapping tokens keep their rows
because only new ids are written.

* ``random`` — the model's own initialisation (``model._init_weights`` on a fresh embedding: BERT and
  Llama draw N(0, initializer_range²)); the baseline of every paper below.
* ``mean`` — Hewitt (2021), "Initializing new word embeddings for pretrained language models": the
  centroid of the old rows, so no new token out-scores the old ones under a softmax.
* ``multivariate`` — Hewitt (2021) / Mundra et al. (2024): a draw from N(μ, s·Σ) of the old rows;
  ``s = 1e-5`` as in both (``scale`` changes it; ``s = 1`` is a plain fit of the rows' distribution).
* ``fvt`` — Gee et al. (2022), Fast Vocabulary Transfer: the mean of the old rows of the pieces the old
  tokenizer cuts the new token's string into.
* ``wechsel`` — Minixhofer et al. (2022), WECHSEL: each new token's auxiliary fastText vector (of its
  string, from subword n-grams) is compared by cosine with every old token's; the new row is
  Σ softmax(sim/τ)·E_old over the k = 10 nearest, τ = 0.1; a token with no n-gram in the space gets
  N(μ, σ²) per dimension. **Deviation:** WECHSEL aligns two languages' pretrained fastText spaces; those
  vectors cannot be downloaded here and source and target are one language, so the auxiliary space is
  a gensim FastText trained offline on the corpus and the alignment is the identity.
* ``cw2v`` — Mundra et al. (2024), constrained word2vec: new rows = softmax(A₁A₂)·E_old, trained with a
  skip-gram negative-sampling loss on the corpus tokenized by the *new* tokenizer (pairs within a
  document, as the authors' code pairs within a line) while the old rows stay frozen, so each new row is
  a convex combination of old rows. A₁, A₂ start as the authors' ``torch.rand`` factors (``init=paper``;
  ``init=small`` starts every row at the support's centroid). A tied model has one factorisation: center
  and context read the same table, as in the authors' RoBERTa script; an untied one gets a second for
  the output matrix, as in their Llama script. **Deviations (CPU budget):** rank 64 instead of 1024
  (the rand factors scaled by (1024/64)^¼, so the logits spread as much as at rank 1024); the hull's
  support is at most 4,096 old rows instead of all: the old pieces of every new token's string, then
  the old tokens most frequent under the *old* tokenizer (still inside the full hull); a few hundred
  Adam steps at lr 0.01 instead of 5 epochs at 3e-4.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from embedlab.errors import ConfigError
from embedlab.progress import ShowProgress, progress_bar

log = logging.getLogger(__name__)

INIT_METHODS = ("random", "mean", "multivariate", "fvt", "wechsel", "cw2v")
PAPERS = {
    "random": "the model's own initialisation (baseline)",
    "mean": "Hewitt 2021, Initializing New Word Embeddings for Pretrained Language Models",
    "multivariate": "Hewitt 2021; Mundra et al. 2024 (N(mu, 1e-5 Sigma))",
    "fvt": "Gee et al. 2022, Fast Vocabulary Transfer (EMNLP industry)",
    "wechsel": "Minixhofer, Paischer, Rekabsaz 2022, WECHSEL (NAACL)",
    "cw2v": "Mundra et al. 2024, An Empirical Comparison of Vocabulary Expansion and Initialization Approaches (CoNLL)",
}


@dataclass
class InitContext:
    """What the methods may read. ``surfaces[i]`` is new token i's text (``" cell"`` for a byte-level
    ``Ġcell``), ``continuation[i]`` whether it continues a word (WordPiece ``##``)."""

    old_tokenizer: Any
    surfaces: Sequence[str]
    continuation: Sequence[bool]
    new_ids: Sequence[int]
    model: Any = None  # the HF model (for ``random``)
    corpus: Sequence[str] = ()
    new_tokenizer: Any = None  # for ``cw2v``
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    show_progress: ShowProgress = False  # embedlab.progress: a bar over a method's training steps (cw2v)
    info: dict[str, Any] = field(default_factory=dict)  # filled by the methods (weights, counts)


def init_random(old: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    """The model's own initialisation of an embedding table, seeded."""
    n, d = len(ctx.surfaces), old.shape[1]
    emb = nn.Embedding(n, d)
    torch.manual_seed(ctx.seed)
    if ctx.model is not None and hasattr(ctx.model, "_init_weights"):
        ctx.model._init_weights(emb)
        std = getattr(getattr(ctx.model, "config", None), "initializer_range", None)
        ctx.info["initializer_range"] = std
    else:
        nn.init.normal_(emb.weight, 0.0, 0.02)
    return emb.weight.detach().to(old.dtype)


def init_mean(old: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    return old.double().mean(0).to(old.dtype).expand(len(ctx.surfaces), -1).clone()


def init_multivariate(old: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    """N(μ, s·Σ) through Σ's eigen-decomposition (Σ is only positive semi-definite in general)."""
    scale = float(ctx.options.get("scale", 1e-5))
    if scale < 0:
        raise ConfigError(f"multivariate: 'scale' must be >= 0; got {scale}")
    x = old.double().numpy()
    mu = x.mean(0)
    sigma = np.cov(x, rowvar=False)
    vals, vecs = np.linalg.eigh(sigma)
    root = vecs * np.sqrt(np.clip(vals, 0, None) * scale)
    z = np.random.default_rng(ctx.seed).standard_normal((len(ctx.surfaces), x.shape[1]))
    ctx.info["scale"] = scale
    return torch.from_numpy(mu + z @ root.T).to(old.dtype)


def old_pieces(tokenizer: Any, surface: str, continuation: bool = False) -> list[int]:
    """Old ids of a new token's string (no special tokens). A WordPiece continuation (``##ase``) is cut
    by the model part directly and its first piece mapped to the ``##`` form when the vocabulary has it."""
    if continuation:
        from embedlab.vocab.selection import backend

        model = backend(tokenizer).model
        vocab = tokenizer.get_vocab()
        pieces = [t.value for t in model.tokenize(surface)]
        if pieces and "##" + pieces[0] in vocab:
            pieces[0] = "##" + pieces[0]
        return [vocab[p] for p in pieces if p in vocab]
    return list(tokenizer(surface, add_special_tokens=False)["input_ids"])


def init_fvt(old: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    """Mean of the old rows of the old tokenizer's pieces of each new token's string."""
    rows = []
    fallback = old.double().mean(0)
    unk = getattr(ctx.old_tokenizer, "unk_token_id", None)
    n_empty = 0
    for surface, cont in zip(ctx.surfaces, ctx.continuation):
        ids = [i for i in old_pieces(ctx.old_tokenizer, surface, cont) if i < old.shape[0] and i != unk]
        if ids:
            rows.append(old[ids].double().mean(0))
        else:
            rows.append(fallback)
            n_empty += 1
    ctx.info["no_pieces_mean_fallback"] = n_empty
    return torch.stack(rows).to(old.dtype)


_WORD = re.compile(r"\w+", re.UNICODE)


def _aux_model(ctx: InitContext) -> Any:
    """gensim FastText on the corpus words (lower-cased when the tokenizer lower-cases)."""
    try:
        from gensim.models import FastText
    except ImportError:  # pragma: no cover - gensim is a dependency
        raise ConfigError("the wechsel init needs gensim: pip install gensim==4.4.0") from None
    if not ctx.corpus:
        raise ConfigError("the wechsel init needs a corpus to train its static space on")
    lower = _lowercases(ctx.old_tokenizer)
    sentences = [_WORD.findall(t.lower() if lower else t) for t in ctx.corpus]
    sentences = [s for s in sentences if s]
    o = ctx.options
    model = FastText(
        vector_size=int(o.get("dim", 100)),
        window=5,
        min_count=int(o.get("min_count", 2)),
        sg=1,
        min_n=3,
        max_n=6,
        workers=int(o.get("workers", 2)),
        seed=ctx.seed + 1,
    )
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=int(o.get("epochs", 5)))
    return model


def _lowercases(tokenizer: Any) -> bool:
    return "A" != (
        tokenizer.backend_tokenizer.normalizer.normalize_str("A") if tokenizer.backend_tokenizer.normalizer else "A"
    )


def _aux_vectors(wv: Any, strings: Sequence[str], lower: bool) -> np.ndarray:
    out = np.zeros((len(strings), wv.vector_size), dtype=np.float32)
    for i, s in enumerate(strings):
        s = s.strip().removeprefix("##")
        s = s.lower() if lower else s
        if s:
            out[i] = wv.get_vector(s) if (s in wv.key_to_index or wv.bucket) else 0.0
    return out


def init_wechsel(old: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    """Softmax(sim/τ)-weighted mix of the k nearest old tokens in a corpus-trained fastText space."""
    k, tau = int(ctx.options.get("k", 10)), float(ctx.options.get("temperature", 0.1))
    aux = _aux_model(ctx)
    lower = _lowercases(ctx.old_tokenizer)
    n_old = old.shape[0]
    special = set(getattr(ctx.old_tokenizer, "all_special_ids", []))
    old_ids = [i for i in range(n_old) if i not in special]
    old_strings = [
        ctx.old_tokenizer.convert_tokens_to_string([ctx.old_tokenizer.convert_ids_to_tokens(i)]) for i in old_ids
    ]
    a_old = _aux_vectors(aux.wv, old_strings, lower)
    a_new = _aux_vectors(aux.wv, ctx.surfaces, lower)
    keep = np.linalg.norm(a_old, axis=1) > 0
    a_old, old_ids = a_old[keep], np.asarray(old_ids)[keep]
    a_old /= np.linalg.norm(a_old, axis=1, keepdims=True)
    norms = np.linalg.norm(a_new, axis=1)
    x = old.double()
    mu, sd = x.mean(0), x.std(0)
    gen = torch.Generator().manual_seed(ctx.seed)
    rows, n_random = [], 0
    sims_all = (a_new / np.clip(norms[:, None], 1e-12, None)) @ a_old.T
    for i in range(len(ctx.surfaces)):
        if norms[i] == 0:
            rows.append(mu + sd * torch.randn(x.shape[1], generator=gen, dtype=torch.float64))
            n_random += 1
            continue
        sims = sims_all[i]
        top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k]
        w = torch.softmax(torch.from_numpy(sims[top]).double() / tau, 0)
        rows.append(w @ x[torch.from_numpy(old_ids[top])])
    ctx.info.update(k=k, temperature=tau, aux_dim=aux.wv.vector_size, no_vector_random=n_random)
    return torch.stack(rows).to(old.dtype)


# ----------------------------------------------------------------------------------------------
CW2V_PAPER_RANK = 1024  # Mundra et al.'s factorisation rank
CW2V_INITS = ("paper", "small")


def corpus_ids(tokenizer: Any, corpus: Sequence[str], max_tokens: int) -> np.ndarray:
    """The corpus under ``tokenizer`` (no special tokens), each document followed by -1, at most
    ``max_tokens`` entries."""
    out: list[int] = []
    for text in corpus:
        out.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        out.append(-1)
        if len(out) >= max_tokens:
            break
    return np.asarray(out[:max_tokens], dtype=np.int64)


def sgns_pairs(
    ids: np.ndarray, is_new: np.ndarray, window: int, rng: np.random.Generator, subsample: float = 1e-4
) -> np.ndarray:
    """(center, context) pairs at most ``window`` apart *within one document* (documents end at -1)
    that touch a new token (the only pairs with a gradient when old rows are frozen), after word2vec's
    frequent-token subsampling (keep √(t/f)); as the authors' code builds pairs line by line."""
    valid = ids >= 0
    counts = np.bincount(ids[valid], minlength=len(is_new)).astype(np.float64)
    freq = counts / max(valid.sum(), 1)
    keep = np.ones(len(ids), dtype=bool)
    if subsample:
        p = np.minimum(1.0, np.sqrt(subsample / np.maximum(freq[np.where(valid, ids, 0)], 1e-12)))
        keep = rng.random(len(ids)) < p
    seq = ids[keep | ~valid]  # dropped tokens are removed before windowing, as in word2vec
    doc = np.cumsum(seq < 0)  # a document's tokens share a number; its separator starts the next one
    new = is_new[np.where(seq >= 0, seq, 0)] & (seq >= 0)
    pairs = []
    for off in range(1, window + 1):
        c, o = seq[:-off], seq[off:]
        ok = (c >= 0) & (o >= 0) & (doc[:-off] == doc[off:]) & (new[:-off] | new[off:])
        pairs += [np.stack([c[ok], o[ok]], 1), np.stack([o[ok], c[ok]], 1)]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def cw2v_support(
    old_counts: np.ndarray, pieces: Sequence[Sequence[int]], size: int, exclude: Iterable[int] = ()
) -> np.ndarray:
    """The old rows the hull is spanned by: every old piece of a new token's string (the rows the new
    tokens replace, rare in the corpus once the new tokenizer merges them), then the old tokens most
    frequent under the *old* tokenizer, up to ``size`` rows (more only when the pieces alone need it)."""
    excluded = set(exclude)
    out = list(dict.fromkeys(i for ps in pieces for i in ps if 0 <= i < len(old_counts) and i not in excluded))
    chosen = set(out)
    for i in np.argsort(-old_counts, kind="stable"):
        if len(out) >= size or old_counts[i] <= 0:
            break
        if int(i) not in chosen and int(i) not in excluded:
            out.append(int(i))
            chosen.add(int(i))
    if len(out) < 2:  # nothing in the corpus: fall back to the first non-special rows
        out += [i for i in range(len(old_counts)) if i not in excluded and i not in chosen][
            : max(0, min(size, 2) - len(out))
        ]
    return np.asarray(out, dtype=np.int64)


class CW2VTables:
    """The constrained parametrisation: new row i of table t is ``softmax(A₁[i] A₂)·E_t[S]``, old rows
    frozen. ``tables`` holds the input matrix and, for an untied model, the output matrix; the center
    reads table 0 and the context reads the last one (the same table when tied, as the authors' RoBERTa
    code does)."""

    def __init__(
        self,
        tables: Sequence[torch.Tensor],
        support: np.ndarray,
        local: np.ndarray,
        n_new: int,
        rank: int,
        init: str = "paper",
    ) -> None:
        if init not in CW2V_INITS:
            raise ConfigError(f"cw2v: 'init' must be one of {', '.join(CW2V_INITS)}; got {init!r}")
        self.n_old = tables[0].shape[0]
        self.local = torch.from_numpy(local)
        self.supp = torch.from_numpy(support)
        self.full = [t.float() for t in tables]
        self.bases = [t[self.supp] for t in self.full]
        self.params: list[tuple[nn.Parameter, nn.Parameter]] = []
        for _ in tables:
            if init == "paper":
                # the authors' torch.rand factors; scaled so the logits spread across the support as much
                # as at their rank 1024 (the spread of a row of A₁A₂ grows as √rank)
                scale = (CW2V_PAPER_RANK / rank) ** 0.25
                a1, a2 = torch.rand(n_new, rank) * scale, torch.rand(rank, len(support)) * scale
            else:  # near-uniform weights: every row starts at the support's centroid
                a1, a2 = torch.randn(n_new, rank) * 0.01, torch.randn(rank, len(support)) * 0.01
            self.params.append((nn.Parameter(a1), nn.Parameter(a2)))

    def weights(self, which: int, rows: torch.Tensor) -> torch.Tensor:
        a1, a2 = self.params[which]
        return torch.softmax(a1[rows] @ a2, dim=-1)

    def lookup(self, which: int, tok: torch.Tensor) -> torch.Tensor:
        """Rows of table ``which`` for token ids ``tok`` (old ids read the frozen table)."""
        out = self.full[which][tok.clamp(max=self.n_old - 1)]
        loc = self.local[tok]
        m = loc >= 0
        if m.any():
            uniq, inv = torch.unique(loc[m], return_inverse=True)
            out = out.clone()
            out[m] = (self.weights(which, uniq) @ self.bases[which])[inv]
        return out

    def center(self, tok: torch.Tensor) -> torch.Tensor:
        return self.lookup(0, tok)

    def context(self, tok: torch.Tensor) -> torch.Tensor:
        return self.lookup(len(self.params) - 1, tok)

    def sgns_loss(self, c: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``−log σ(w_c·v_o) − Σ_n log σ(−w_c·v_n)``, averaged over the pairs."""
        wc, vo = self.center(c), self.context(pos)
        vn = self.context(neg.reshape(-1)).reshape(*neg.shape, -1)
        return -(
            nn.functional.logsigmoid((wc * vo).sum(-1))
            + nn.functional.logsigmoid(-(vn @ wc.unsqueeze(-1)).squeeze(-1)).sum(-1)
        ).mean()


def init_cw2v(
    old: torch.Tensor, ctx: InitContext, old_out: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Constrained word2vec: rows = softmax(A₁A₂)·E_S over a support S of old rows, trained by SGNS.

    With ``old_out`` (an untied output matrix) a second factorisation is trained for it and both are
    returned; otherwise the tied matrix serves as center and context table."""
    if ctx.new_tokenizer is None or not ctx.corpus:
        raise ConfigError("the cw2v init needs a corpus and the new tokenizer")
    o = ctx.options
    rank, support_size = int(o.get("rank", 64)), int(o.get("support", 4096))
    steps, lr, batch = int(o.get("steps", 300)), float(o.get("lr", 1e-2)), int(o.get("batch", 1024))
    window, negatives = int(o.get("window", 5)), int(o.get("negatives", 5))
    max_tokens, subsample = int(o.get("max_tokens", 300_000)), float(o.get("subsample", 1e-4))
    rng = np.random.default_rng(ctx.seed)
    torch.manual_seed(ctx.seed)
    n_old, n_new = old.shape[0], len(ctx.surfaces)
    new_ids = np.asarray(ctx.new_ids)
    ids = corpus_ids(ctx.new_tokenizer, ctx.corpus, max_tokens)
    total = int(max(new_ids.max() + 1, n_old)) if len(new_ids) else n_old
    local = np.full(total, -1, dtype=np.int64)  # token id -> row among the new tokens
    local[new_ids] = np.arange(n_new)
    is_new = local >= 0
    valid = ids[ids >= 0]
    counts = np.bincount(valid, minlength=total)
    old_ids = corpus_ids(ctx.old_tokenizer, ctx.corpus, max_tokens)
    old_counts = np.bincount(old_ids[old_ids >= 0], minlength=n_old)[:n_old]
    special = set(getattr(ctx.old_tokenizer, "all_special_ids", []))
    unk = getattr(ctx.old_tokenizer, "unk_token_id", None)
    pieces = [old_pieces(ctx.old_tokenizer, s, cont) for s, cont in zip(ctx.surfaces, ctx.continuation)]
    support = cw2v_support(old_counts, pieces, support_size, exclude=special | ({unk} if unk is not None else set()))
    pairs = sgns_pairs(ids, is_new, window, rng, subsample)
    ctx.info.update(
        rank=rank,
        support=len(support),
        pairs=int(len(pairs)),
        steps=steps,
        lr=lr,
        init=o.get("init", "paper"),
        corpus_tokens=int(len(valid)),
    )
    tables = CW2VTables(
        [old] if old_out is None else [old, old_out], support, local, n_new, rank, str(o.get("init", "paper"))
    )
    if len(pairs):
        noise = np.power(np.maximum(counts, 0).astype(np.float64), 0.75)
        noise /= noise.sum()
        opt = torch.optim.Adam([p for pair in tables.params for p in pair], lr=lr)
        with progress_bar(ctx.show_progress, total=steps, desc="cw2v", unit="step") as bar:
            for step in range(steps):
                b = pairs[rng.integers(0, len(pairs), min(batch, len(pairs)))]
                neg = rng.choice(total, size=(len(b), negatives), p=noise)
                loss = tables.sgns_loss(*(torch.from_numpy(x) for x in (b[:, 0], b[:, 1], neg)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
                if (step + 1) % 50 == 0:
                    bar.set_description(f"cw2v loss {loss.item():.3f}")
                if step == 0:
                    ctx.info["loss_first"] = float(loss.detach())
        ctx.info["loss_last"] = float(loss.detach())
    else:
        log.warning("cw2v: no new token occurs in the corpus; rows keep their initial weights")
    with torch.no_grad():
        every = torch.arange(n_new)
        weights = [tables.weights(i, every) for i in range(len(tables.params))]
        ctx.info["weights"] = weights[0]  # (n_new, |S|): rows >= 0 summing to 1 (the hull property)
        ctx.info["support_ids"] = support
        outs = [
            (w.double() @ t.double()[tables.supp]).to(t.dtype)
            for w, t in zip(weights, [old] if old_out is None else [old, old_out])
        ]
        base = old.double()[tables.supp]
        centroid = base.mean(0)
        spread = (base - centroid).norm(dim=1).mean()
        ctx.info["centroid_distance"] = float((outs[0].double() - centroid).norm(dim=1).mean() / spread)
        ctx.info["effective_support"] = float(
            torch.exp(-(weights[0] * weights[0].clamp_min(1e-30).log()).sum(1)).mean()
        )
    return outs[0] if old_out is None else (outs[0], outs[1])


METHODS: dict[str, Callable[[torch.Tensor, InitContext], torch.Tensor]] = {
    "random": init_random,
    "mean": init_mean,
    "multivariate": init_multivariate,
    "fvt": init_fvt,
    "wechsel": init_wechsel,
    "cw2v": init_cw2v,  # type: ignore[dict-item]
}


def initialize(
    method: str, old: torch.Tensor, ctx: InitContext, old_out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New input rows (and new output rows when ``old_out`` is an untied output matrix)."""
    if method not in METHODS:
        raise ConfigError(f"unknown init '{method}'; choose one of {', '.join(INIT_METHODS)}")
    if method == "cw2v":
        res = init_cw2v(old, ctx, old_out)
        return (res, None) if old_out is None else res  # type: ignore[return-value]
    rows = METHODS[method](old, ctx)
    out_rows = METHODS[method](old_out, ctx) if old_out is not None else None
    return rows, out_rows


__all__ = [
    "CW2VTables",
    "INIT_METHODS",
    "InitContext",
    "METHODS",
    "PAPERS",
    "corpus_ids",
    "cw2v_support",
    "initialize",
    "old_pieces",
    "sgns_pairs",
]
