"""Data-driven attribution over all journeys: Markov removal effects and Shapley values.

Both learn one weight per channel from converting and non-converting journeys alike,
then credit a single deal through models.credit_by_channel, so the money rules of
DOMAIN.md 4.4 hold here too. The Markov chain is solved exactly as an absorbing
chain (numpy.linalg.solve, scipy.sparse for large state spaces), never simulated,
so the numbers are the same on every run and can be replayed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix, diags, identity
from scipy.sparse.linalg import spsolve

from services.attribution.crediting import credit_by_channel
from services.attribution.models import ModelSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from services.attribution.models import Attribution, Conversion, Touch

__all__ = [
    "MAX_EXACT_SHAPLEY_CHANNELS",
    "Journey",
    "MarkovModel",
    "ShapleyModel",
    "credit_with_weights",
    "markov",
    "shapley",
    "shapley_subset",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: Coalitions are enumerated exactly up to this many channels (2^16 chain solves,
#: batched); beyond it Shapley values are estimated from sampled permutations.
MAX_EXACT_SHAPLEY_CHANNELS = 16
#: Above this many chain states the solves use sparse LU instead of dense batches.
_DENSE_STATES = 500
#: Floats per batch of stacked dense systems (32 MB), to bound memory.
_BATCH_FLOATS = 1 << 22
#: Digits kept of a trained channel weight when crediting money: last-bit
#: differences between linear-algebra libraries must not move a cent.
_WEIGHT_DIGITS = 12


class Journey(NamedTuple):
    """Paths with their outcomes, in channelattribution's data shape.

    `path` is the ordered channels of the touches; `conversions` how many such
    journeys converted, `value` their total conversion value, `nulls` how many did
    not convert (visitors who never became leads, leads lost or disqualified).
    """

    path: tuple[str, ...]
    conversions: float
    value: float = 0.0
    nulls: float = 0.0


@dataclass(frozen=True)
class _Paths:
    """Journeys with channels as integers, flattened path after path.

    Identical paths need no merging first: transition counts simply add up.
    """

    channels: tuple[str, ...]
    tokens: Ints  # the channel index of every touch, path after path
    lengths: Ints  # touches per path
    conversions: Floats
    value: Floats
    nulls: Floats


def _tokenise(journeys: Iterable[tuple[Sequence[str], float, float, float]]) -> _Paths:
    rows = list(journeys)
    if not rows:
        raise ValueError("no journeys to train on")
    paths: list[Sequence[str]] = list(map(itemgetter(0), rows))
    lengths = np.fromiter(map(len, paths), dtype=np.int64, count=len(paths))
    if (lengths == 0).any():
        raise ValueError(
            "a journey with no touch is credited as unattributed, not trained on"
        )
    outcomes = [
        np.fromiter(map(itemgetter(column), rows), dtype=np.float64, count=len(rows))
        for column in (1, 2, 3)
    ]
    if (outcomes[0] < 0).any() or (outcomes[2] < 0).any():
        raise ValueError("conversions and nulls must not be negative")
    # One pass numbers the channels in order of first sight (a missing key gets the
    # dictionary's length); a permutation then renumbers them in sorted order.
    seen: defaultdict[str, int] = defaultdict(int)
    seen.default_factory = seen.__len__
    first_sight = np.fromiter(
        map(seen.__getitem__, chain.from_iterable(paths)),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    channels = tuple(sorted(seen))
    rank = {c: i for i, c in enumerate(channels)}
    renumber = np.fromiter(map(rank.__getitem__, seen), dtype=np.int64, count=len(seen))
    return _Paths(channels, renumber[first_sight], lengths, *outcomes)


@dataclass(frozen=True)
class _Chain:
    """The absorbing chain: transient states, their channels, and (I - Q)."""

    channels: tuple[str, ...]
    state_channels: Bools  # (states, channels): which channels a state holds
    start: Floats  # start -> state probabilities
    conversion: Floats  # state -> conversion probabilities (r)
    system: Floats | None  # I - Q, dense; None for large state spaces
    sparse_system: Any  # I - Q as a scipy CSR matrix when `system` is None


def _states(paths: _Paths, order: int) -> tuple[Ints, Bools]:
    """The state of every touch (its last `order` channels) and each state's channels.

    The first touches of a path have shorter states ((a), then (a, b), ...); this
    gives the same absorption probabilities as starting at the first k-gram.
    """
    size = len(paths.channels)
    if order == 1:
        return paths.tokens, np.eye(size, dtype=np.bool_)
    base = size + 1
    if base**order >= 1 << 62:
        raise ValueError(f"too many channels for a Markov chain of order {order}")
    starts = np.cumsum(paths.lengths) - paths.lengths
    position = np.arange(len(paths.tokens)) - np.repeat(starts, paths.lengths)
    code = paths.tokens + 1
    for back in range(1, order):
        has = np.flatnonzero(position >= back)
        code[has] += (paths.tokens[has - back] + 1) * base**back
    codes, state = np.unique(code, return_inverse=True)
    state_channels = np.zeros((len(codes), size), dtype=np.bool_)
    for back in range(order):
        digit = (codes // base**back) % base
        rows = np.flatnonzero(digit)
        state_channels[rows, digit[rows] - 1] = True
    return state.astype(np.int64), state_channels


def _sum_by(index: Ints, weights: Floats, size: int) -> Floats:
    sums = np.bincount(index, weights=weights, minlength=size)
    return sums.astype(np.float64, copy=False)


def _chain(paths: _Paths, order: int) -> _Chain:
    """Count transitions over all paths, each weighted by its number of journeys."""
    state, state_channels = _states(paths, order)
    states = len(state_channels)
    ends = np.cumsum(paths.lengths) - 1
    firsts = ends - paths.lengths + 1
    journeys = paths.conversions + paths.nulls
    per_touch = np.repeat(journeys, paths.lengths)
    source = np.empty_like(state)
    source[1:] = state[:-1]
    source[firsts] = states  # the start state
    start = _sum_by(state[firsts], journeys, states)
    inner = np.ones(len(state), dtype=np.bool_)
    inner[firsts] = False
    source, target, weight = source[inner], state[inner], per_touch[inner]
    converted = _sum_by(state[ends], paths.conversions, states)
    lost = _sum_by(state[ends], paths.nulls, states)
    leaving = _sum_by(source, weight, states) + converted + lost
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(leaving > 0, 1.0 / leaving, 0.0)
    start_total = start.sum()
    start_p = start / start_total if start_total > 0 else start
    if states <= _DENSE_STATES:
        counts = _sum_by(source * states + target, weight, states * states)
        counts = counts.reshape(states, states)
        system = np.eye(states) - counts * scale[:, None]
        return _Chain(
            paths.channels, state_channels, start_p, converted * scale, system, None
        )
    counts_sparse = csr_matrix((weight, (source, target)), shape=(states, states))
    sparse_system = (
        identity(states, format="csr") - diags(scale) @ counts_sparse
    ).tocsr()
    return _Chain(
        paths.channels, state_channels, start_p, converted * scale, None, sparse_system
    )


def _probabilities(chain_: _Chain, kept: Bools) -> Floats:
    """P, the probability of reaching conversion from start, for each row of `kept`.

    A row keeps some states; every transition into another state goes to null
    (4.5). Rows keeping the same number of states are solved as one stacked batch.
    """
    result = np.zeros(len(kept))
    sizes = kept.sum(axis=1)
    for size in np.unique(sizes).tolist():
        if size == 0:
            continue
        rows = np.flatnonzero(sizes == size)
        if chain_.system is None:
            for row in rows.tolist():
                result[row] = _sparse_probability(chain_, np.flatnonzero(kept[row]))
            continue
        picked = np.nonzero(kept[rows])[1].reshape(len(rows), size)
        batch = max(1, _BATCH_FLOATS // (size * size))
        for low in range(0, len(rows), batch):
            part = picked[low : low + batch]
            matrices = chain_.system[part[:, :, None], part[:, None, :]]
            x = np.linalg.solve(matrices, chain_.conversion[part][:, :, None])[..., 0]
            result[rows[low : low + batch]] = np.einsum(
                "ij,ij->i", chain_.start[part], x
            )
    return result


def _sparse_probability(chain_: _Chain, kept: Ints) -> float:
    system = chain_.sparse_system
    if system is None:  # pragma: no cover - only called for sparse chains
        raise ValueError("the chain has no sparse system")
    sub = system[kept][:, kept].tocsc()
    x = np.asarray(spsolve(sub, chain_.conversion[kept]), dtype=np.float64)
    return float(chain_.start[kept] @ x)


def credit_with_weights(
    spec: ModelSpec,
    channel_weights: Mapping[str, float],
    touches: Iterable[Touch],
    conversion: Conversion,
    amount_minor: int | None = None,
) -> Attribution:
    """Credit one deal with trained channel weights, e.g. as stored after training.

    Each weight is cut to 12 significant digits first, so last-bit differences
    between linear-algebra libraries never move a minor unit; then the amount splits
    as models.credit_by_channel does (linear, with `fallback`, when no channel of
    the journey has a weight).
    """
    stable = {
        c: Fraction(f"{max(w, 0.0):.{_WEIGHT_DIGITS}g}")
        for c, w in channel_weights.items()
    }
    return credit_by_channel(
        spec, stable, touches, conversion, amount_minor=amount_minor
    )


@dataclass(frozen=True)
class MarkovModel:
    """Removal effects of the Markov chain of all journeys (DOMAIN.md 4.5).

    States are start, the last `order` channels, conversion and null. P is the
    probability of reaching conversion from start, P_-c the same with every
    transition into a state holding c sent to null, RE_c = 1 - P_-c / P, and a
    channel's share of the conversions (and of their value) is RE_c / sum RE.
    """

    spec: ModelSpec
    channels: tuple[str, ...]
    probability: float
    removal_probability: Mapping[str, float]
    removal_effect: Mapping[str, float]
    conversions: Mapping[str, float]
    value: Mapping[str, float]

    def credit(
        self,
        touches: Iterable[Touch],
        conversion: Conversion,
        *,
        amount_minor: int | None = None,
    ) -> Attribution:
        """Credit one deal: over its channels by removal effect, then per touch.

        Falls back to linear, and says so in `fallback`, when no channel of the
        journey has a removal effect. `amount_minor` works as in models.credit.
        """
        return credit_with_weights(
            self.spec, self.removal_effect, touches, conversion, amount_minor
        )


def markov(
    journeys: Iterable[tuple[Sequence[str], float, float, float]],
    spec: ModelSpec | None = None,
) -> MarkovModel:
    """Train the Markov removal-effect model (order from `spec`, default 1).

    Journeys are read in one pass and transitions counted with numpy, so 100,000
    journeys train in a fraction of a second. A journey with no touch is refused:
    it is unattributed, not evidence about any channel.
    """
    spec = spec or ModelSpec("markov")
    if spec.name != "markov" or spec.order is None:
        raise ValueError("markov needs a markov ModelSpec")
    paths = _tokenise(journeys)
    chain_ = _chain(paths, spec.order)
    every = np.ones((1, len(chain_.state_channels)), dtype=np.bool_)
    probability = float(_probabilities(chain_, every)[0])
    # One row per channel c: the states that do not hold c.
    removed = _probabilities(chain_, ~chain_.state_channels.T)
    if probability > 0:
        effects = np.maximum(1.0 - removed / probability, 0.0)
    else:
        effects = np.zeros(len(removed))
    total = effects.sum()
    shares = effects / total if total > 0 else effects
    return MarkovModel(
        spec=spec,
        channels=paths.channels,
        probability=probability,
        removal_probability=dict(zip(paths.channels, removed.tolist(), strict=True)),
        removal_effect=dict(zip(paths.channels, effects.tolist(), strict=True)),
        conversions=_scaled(paths.channels, shares, paths.conversions.sum()),
        value=_scaled(paths.channels, shares, paths.value.sum()),
    )


def _scaled(
    channels: tuple[str, ...], shares: Floats, total: float
) -> dict[str, float]:
    return dict(zip(channels, (shares * total).tolist(), strict=True))


@dataclass(frozen=True)
class ShapleyModel:
    """Shapley values of the channels (DOMAIN.md 4.6).

    `phi` is in units of the characteristic function v; `conversions` and `value`
    are phi scaled to sum to all conversions and their value. `standard_error`
    (in conversions) is None when coalitions were enumerated exactly and the
    sampling error of each channel's estimate when permutations were sampled.
    """

    spec: ModelSpec
    channels: tuple[str, ...]
    phi: Mapping[str, float]
    conversions: Mapping[str, float]
    value: Mapping[str, float]
    standard_error: Mapping[str, float] | None = None

    def credit(
        self,
        touches: Iterable[Touch],
        conversion: Conversion,
        *,
        amount_minor: int | None = None,
    ) -> Attribution:
        """Credit one deal as MarkovModel.credit does, with phi as the weights."""
        return credit_with_weights(
            self.spec, self.phi, touches, conversion, amount_minor
        )


def _coalitions(count: int) -> Bools:
    """Every subset of `count` channels; row i holds the channels of bitmask i."""
    masks = np.arange(1 << count, dtype=np.int64)
    members: Bools = ((masks[:, None] >> np.arange(count)) & 1).astype(np.bool_)
    return members


def _worth(chain_: _Chain, members: Bools) -> Floats:
    """v(S) for each row of members: P with only the channels of S kept."""
    held = chain_.state_channels.astype(np.float64)
    states = held.shape[0]
    result = np.empty(len(members))
    step = max(1, _BATCH_FLOATS // max(states, 1))
    for low in range(0, len(members), step):
        outside = (~members[low : low + step]).astype(np.float64) @ held.T
        result[low : low + step] = _probabilities(chain_, outside == 0)
    return result


def _exact_phi(chain_: _Chain) -> Floats:
    count = len(chain_.channels)
    members = _coalitions(count)
    worth = _worth(chain_, members)
    sizes = members.sum(axis=1)
    factorial = [math.factorial(n) for n in range(count + 1)]
    weight = np.array(
        [
            factorial[s] * factorial[count - s - 1] / factorial[count]
            for s in range(count)
        ]
    )
    masks = np.arange(1 << count, dtype=np.int64)
    phi = np.empty(count)
    for c in range(count):
        without = masks[(masks >> c) & 1 == 0]
        gain = worth[without | (1 << c)] - worth[without]
        phi[c] = weight[sizes[without]] @ gain
    return phi


def _sampled_phi(chain_: _Chain, samples: int, seed: int) -> tuple[Floats, Floats]:
    """Mean marginal contributions over seeded random orders, with standard errors."""
    count = len(chain_.channels)
    rng = np.random.default_rng(seed)
    orders = rng.permuted(np.tile(np.arange(count), (samples, 1)), axis=1)
    rank = np.argsort(orders, axis=1)
    prefixes = rank[:, None, :] < np.arange(count + 1)[None, :, None]
    flat = prefixes.reshape(-1, count)
    distinct, where = np.unique(np.packbits(flat, axis=1), axis=0, return_inverse=True)
    members = np.unpackbits(distinct, axis=1, count=count).astype(np.bool_)
    worth = _worth(chain_, members)[where.reshape(-1)].reshape(samples, count + 1)
    contributions = np.empty((samples, count))
    np.put_along_axis(contributions, orders, np.diff(worth, axis=1), axis=1)
    phi = contributions.mean(axis=0)
    error = contributions.std(axis=0, ddof=1) / math.sqrt(samples)
    return phi, error


def shapley(
    journeys: Iterable[tuple[Sequence[str], float, float, float]],
    spec: ModelSpec | None = None,
) -> ShapleyModel:
    """Shapley values with v(S) = the Markov conversion probability keeping only S.

    Uses converting and non-converting journeys alike. Up to 16 channels every
    coalition is solved (batched); beyond, `spec.samples` random orders drawn with
    `spec.seed` estimate phi, and the sampling error is reported. v is monotone
    (keeping a channel never lowers P), so phi >= 0, and sum phi = v(all) - v(none)
    = P, by which phi is scaled to the conversions and their value.
    """
    spec = spec or ModelSpec("shapley")
    if (
        spec.name != "shapley"
        or spec.order is None
        or spec.samples is None
        or spec.seed is None
    ):
        raise ValueError("shapley needs a shapley ModelSpec")
    paths = _tokenise(journeys)
    chain_ = _chain(paths, spec.order)
    error: Floats | None = None
    if len(paths.channels) <= MAX_EXACT_SHAPLEY_CHANNELS:
        phi = _exact_phi(chain_)
    else:
        if spec.samples < 2:  # noqa: PLR2004 - a standard error needs two samples
            raise ValueError("sampled shapley needs at least 2 samples")
        phi, error = _sampled_phi(chain_, spec.samples, spec.seed)
    total = phi.sum()
    shares = phi / total if total > 0 else np.zeros_like(phi)
    conversions = paths.conversions.sum()
    return ShapleyModel(
        spec=spec,
        channels=paths.channels,
        phi=dict(zip(paths.channels, phi.tolist(), strict=True)),
        conversions=_scaled(paths.channels, shares, conversions),
        value=_scaled(paths.channels, shares, paths.value.sum()),
        standard_error=None
        if error is None
        else _scaled(
            paths.channels, error / total if total > 0 else error, conversions
        ),
    )


def shapley_subset(
    journeys: Iterable[tuple[Sequence[str], float, float, float]],
    spec: ModelSpec | None = None,
) -> ShapleyModel:
    """Shapley values with v(S) = conversions of the journeys whose channels lie in S.

    That game is a sum of unanimity games, one per converting journey, so each
    journey's conversions and value split evenly over its distinct channels, in
    one pass. It ignores non-converting journeys: a channel whose journeys mostly
    fail is credited as if they had not happened. `phi` is in conversions.
    """
    spec = spec or ModelSpec("shapley_subset")
    if spec.name != "shapley_subset":
        raise ValueError("shapley_subset needs a shapley_subset ModelSpec")
    paths = _tokenise(journeys)
    count = len(paths.channels)
    path_of_touch = np.repeat(np.arange(len(paths.lengths)), paths.lengths)
    pairs = np.unique(path_of_touch * count + paths.tokens)
    path, channel = pairs // count, pairs % count
    distinct = np.bincount(path, minlength=len(paths.lengths))
    conversions = np.bincount(
        channel, weights=paths.conversions[path] / distinct[path], minlength=count
    )
    value = np.bincount(
        channel, weights=paths.value[path] / distinct[path], minlength=count
    )
    phi = dict(zip(paths.channels, conversions.tolist(), strict=True))
    return ShapleyModel(
        spec=spec,
        channels=paths.channels,
        phi=phi,
        conversions=dict(phi),
        value=dict(zip(paths.channels, value.tolist(), strict=True)),
    )
