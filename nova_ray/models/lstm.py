"""A global LSTM over all items: windows of scaled history in, the whole horizon out (MIMO).

Each series is scaled by its recent mean so that one network serves items of any volume.
Inputs are the last `lookback` scaled values plus the season phase of the first forecast
step (on the calendar: `starts` gives each series' first period counted from one common period,
so one weekday or month has one phase across items); the output is the `horizon` next scaled
values. Intervals are normal around the mean with per-step spreads measured on the training
windows, scaled per series by its own errors over its last windows (`_spread_factors`), clipped
at zero.

With regressors (rows per period: history rows, then the horizon; one matrix per series, or a
`RowGrid` that many series share) the regressor values of the window's `horizon` forecast
periods, flattened, join the phase input. Training windows read only rows inside the training
series.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from .base import Forecast, normal_forecast

NAME = "lstm"
VERSION = "3"  # 2: season phases on the calendar; 3: inputs capped, >= 200 steps of a cold training
SUPPORTS_EXOG = True


@dataclass
class LstmState:
    """Everything needed to predict: weights, shapes and the per-step residual spread."""

    lookback: int
    horizon: int
    season_length: int
    units: int
    weights: list[np.ndarray] = field(default_factory=list)
    step_sigma: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_windows: int = 0
    final_loss: float = float("nan")
    n_exog: int = 0  # regressor columns (0: none)
    calendar: int = 0  # 1: phases on the calendar (`starts` given); 0: from each series' start

    def owned(self) -> LstmState:
        """A copy whose arrays own their memory. A state that came back from a Ray task holds
        views into the task's result object: kept, they would keep the whole result (every
        LSTM item's forecasts and backtests) mapped in the process."""
        weights = [np.array(w) for w in self.weights]
        return replace(self, weights=weights, step_sigma=np.array(self.step_sigma))


def configure_tensorflow(threads: int = 1) -> None:
    """Quiet logs, pin thread pools, and let GPU memory grow; call before TensorFlow runs anything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # already initialised in this process: settings stay as they were


def _scale(y: np.ndarray, season_length: int) -> float:
    recent = y[-max(4 * season_length, 28) :]
    return float(max(recent.mean(), y.mean(), 1e-3))


def _phase(t: np.ndarray, season_length: int) -> np.ndarray:
    ang = 2 * np.pi * (t % max(season_length, 1)) / max(season_length, 1)
    return np.stack([np.sin(ang), np.cos(ang)], axis=-1)


@dataclass(frozen=True)
class RowGrid:
    """Regressor rows that many series share: row t of series i is ``rows[offsets[i] + t]``.

    Series on one calendar read the same rows from different starts; one grid serves them all
    instead of a copy of the rows per series (~45 KB per 3-year daily series with 5 regressors)."""

    rows: np.ndarray  # (periods, k)
    offsets: np.ndarray  # (series,) int: the row of each series' first period
    ends: np.ndarray | None = None  # (series,) int: the row after each series' last; None: the grid's end

    @classmethod
    def stack(cls, per_series: list[np.ndarray]) -> RowGrid:
        """One grid from a matrix per series (row t of each belonging to its period t)."""
        mats = [np.asarray(x, dtype=float) for x in per_series]
        ends = np.cumsum([len(x) for x in mats], dtype=np.int64)
        return cls(np.concatenate(mats), ends - [len(x) for x in mats], ends)

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])

    def available(self, i: int) -> int:
        """How many rows series `i` has (its periods from the first on)."""
        end = len(self.rows) if self.ends is None else int(self.ends[i])
        return end - int(self.offsets[i])

    def future(self, i: int, n: int, horizon: int) -> np.ndarray:
        """The rows of series `i` after its `n` observed periods, at most `horizon` of them."""
        a = int(self.offsets[i]) + n
        return self.rows[a : a + max(0, min(horizon, self.available(i) - n))]


Exog = list[np.ndarray] | RowGrid | None


def _grid(exog: Exog) -> RowGrid | None:
    """`exog` as a RowGrid (a list of per-series matrices is stacked), None without regressors."""
    if exog is None or isinstance(exog, RowGrid):
        return exog
    return RowGrid.stack(exog) if len(exog) else None


def _exog_width(exog: Exog) -> int:
    if isinstance(exog, RowGrid):
        return exog.k
    return int(np.asarray(exog[0]).shape[1]) if exog else 0


ALIGN = 64  # bytes: TensorFlow reads a buffer in place only at this alignment


def _aligned(shape: int | tuple[int, ...], dtype: type) -> np.ndarray:
    """An empty array whose buffer starts on an ALIGN-byte boundary (numpy's small arrays
    start on 16), so that `_tensor` can hand it to TensorFlow without a copy."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dt.itemsize + ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + n * dt.itemsize].view(dt).reshape(shape)


def _tensor(a: np.ndarray):
    """`a` as a TensorFlow tensor that shares its buffer (DLPack; the tensor keeps `a` alive)
    where TensorFlow allows it (C-contiguous, writable, ALIGN-aligned, not empty), else a copy.
    `tf.constant` copies: at 2000 3-year items ~13 MiB of training arrays held twice."""
    import tensorflow as tf

    if a.size and a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % ALIGN == 0:
        return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
    return tf.constant(a)


class _Flat:
    """The training windows of many series as positions in flat arrays: each series scaled once,
    the regressor rows once (one grid that the series share), and per window the position of its
    first target, of its first target's regressor row, and its phase. A window's inputs and
    targets are gathered from these when a batch needs them, so memory grows with the history's
    length instead of the windows' number times their width (~1.7 KB per window with regressors:
    0.7 GB for 400,000 windows, twice over once Keras holds a copy)."""

    def __init__(
        self,
        series: list[np.ndarray],
        lookback: int,
        horizon: int,
        season_length: int,
        max_per_item: int,
        exog: Exog = None,
        dtype: type = np.float32,
        starts: np.ndarray | None = None,
        max_windows: int | None = None,
    ):
        grid = _grid(exog)
        self.lookback, self.horizon, self.k = lookback, horizon, grid.k if grid else 0
        # filled in place, an item at a time: no per-item float64 copies of the whole input
        # waiting to be concatenated (at 2000 3-year items ~25 MiB more at the peak)
        long = [i for i, y in enumerate(series) if len(y) >= lookback + horizon]
        per_item = windows_per_item(len(long), max_per_item, max_windows)
        counts = [min(per_item, len(series[i]) - lookback - horizon + 1) for i in long]
        self.owner = np.repeat(np.asarray(long, dtype=np.int32), counts)  # each window's series
        self.values = _aligned(sum(len(series[i]) for i in long), dtype)
        self.at = _aligned(sum(counts), np.int64)
        self.row_at = _aligned(sum(counts) if grid is not None else 0, np.int64)
        self.phase = _aligned((sum(counts), 2), dtype)
        offset = w = 0
        for i, c in zip(long, counts, strict=True):
            y = series[i]
            n = len(y)
            ends = np.arange(n - horizon + 1 - c, n - horizon + 1)  # the last c window ends
            self.values[offset : offset + n] = np.asarray(y, dtype=float) / _scale(y, season_length)
            if grid is not None:  # targets and their regressor rows stay inside the history
                if grid.available(i) < n:
                    raise ValueError(f"series {i}: regressors cover fewer than its {n} periods")
                self.row_at[w : w + c] = grid.offsets[i] + ends
            self.at[w : w + c] = offset + ends
            self.phase[w : w + c] = _phase(ends + (0 if starts is None else int(starts[i])), season_length)
            offset += n
            w += c
        self.exog = _aligned(grid.rows.shape if grid is not None else (0, 0), dtype)
        if grid is not None:
            self.exog[:] = grid.rows

    def __len__(self) -> int:
        return len(self.at)

    def targets(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(windows, horizon) scaled targets, of the windows numbered `rows` (default all)."""
        at = self.at if rows is None else self.at[rows]
        return self.values[at[:, None] + np.arange(self.horizon)]

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every window at once: (inputs, phases, targets, flattened regressors); training gathers
        them batch by batch instead (`_trainer`)."""
        x = self.values[self.at[:, None] + np.arange(-self.lookback, 0)]
        e = np.zeros((len(self), 0), dtype=self.values.dtype)
        if self.k:
            e = self.exog[self.row_at[:, None] + np.arange(self.horizon)].reshape(len(self), -1)
        return x, self.phase, self.targets(), e


def windows_per_item(items: int, max_per_item: int, max_windows: int | None) -> int:
    """Each item's most recent training windows, at most: `max_per_item`, fewer when the items
    would make more than `max_windows` in all (at least one each). A global network learns as
    well from fewer windows of more items (2000 demo items, one training, 30-day holdout: mean
    MASE 0.895 from 50 windows each, 0.914 from 200, in 54 s against 216 s), and its memory and
    time stop growing with the item count."""
    if max_windows is None or items * max_per_item <= max_windows:
        return max_per_item
    return max(1, max_windows // max(items, 1))


def _trainer(core, flat: _Flat):
    """A Keras model over window numbers: it gathers each batch's windows and their targets from
    `flat` (held once: TensorFlow reads its arrays in place, `_tensor`) and runs `core` on them.
    Keras shuffles and batches the window numbers exactly as it would the windows themselves, so
    training is the same as on the dense windows (the same batches in the same order, the same
    loss), without them or a target matrix."""
    import tensorflow as tf

    values, phase, at = _tensor(flat.values), _tensor(flat.phase), _tensor(flat.at)
    row_at, exog = _tensor(flat.row_at), _tensor(flat.exog)
    back = tf.range(-flat.lookback, 0, dtype=tf.int64)
    ahead = tf.range(flat.horizon, dtype=tf.int64)
    width = flat.horizon * flat.k

    class Trainer(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.core = core

        def call(self, rows):  # type: ignore[override]
            rows = tf.reshape(rows, [-1])
            pos = tf.gather(at, rows)[:, None]
            inputs = [tf.gather(values, pos + back)[..., None], tf.gather(phase, rows)]
            if width:
                rows_ahead = tf.gather(row_at, rows)[:, None] + ahead
                inputs.append(tf.reshape(tf.gather(exog, rows_ahead), [-1, width]))
            return self.core(inputs)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            """The compiled loss against the targets of the batch's windows `x`."""
            y = tf.gather(values, tf.gather(at, tf.reshape(x, [-1]))[:, None] + ahead)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

    model = Trainer()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _inputs(
    series: list[np.ndarray], lookback: int, season_length: int, starts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.zeros((len(series), lookback))
    scales = np.zeros(len(series))
    for i, y in enumerate(series):
        s = _scale(y, season_length) if len(y) else 1.0
        tail = y[-lookback:] / s
        x[i, lookback - len(tail) :] = tail
        scales[i] = s
    at = np.array([len(y) for y in series], dtype=np.int64)
    phase = _phase(at if starts is None else at + np.asarray(starts, dtype=np.int64), season_length)
    return x, phase, scales


def _future_exog(exog: Exog, series: list[np.ndarray], horizon: int) -> np.ndarray:
    """Flattened regressor rows of each series' `horizon` periods after its last observation."""
    grid = _grid(exog)
    k = grid.k if grid is not None else 0
    out = np.zeros((len(series), horizon * k))
    for i, y in enumerate(series):
        if grid is not None and k:
            rows = grid.future(i, len(y), horizon)
            if rows.shape != (horizon, k):
                raise ValueError(f"series {i}: regressors cover {len(rows)} of {horizon} future periods")
            out[i] = rows.reshape(-1)
    return out


def _build(lookback: int, horizon: int, units: int, n_exog: int = 0):
    import tensorflow as tf

    seq = tf.keras.Input(shape=(lookback, 1))
    phase = tf.keras.Input(shape=(2,))
    inputs = [seq, phase]
    h = tf.keras.layers.LSTM(units)(seq)
    if n_exog:
        future = tf.keras.Input(shape=(horizon * n_exog,))
        inputs.append(future)
        h = tf.keras.layers.Concatenate()([h, phase, future])
    else:
        h = tf.keras.layers.Concatenate()([h, phase])
    h = tf.keras.layers.Dense(units, activation="relu")(h)
    out = tf.keras.layers.Dense(horizon)(h)
    return tf.keras.Model(inputs, out)


def train(
    series: list[np.ndarray],
    horizon: int,
    season_length: int,
    *,
    lookback: int = 28,
    units: int = 32,
    epochs: int = 8,
    batch_size: int = 256,
    max_windows_per_item: int = 200,
    max_windows: int | None = None,
    seed: int = 0,
    init: LstmState | None = None,
    threads: int = 1,
    exog: Exog = None,
    starts: np.ndarray | None = None,
) -> LstmState:
    """Train one network on windows from every series (warm-started from `init` if given).

    `exog`: per series a (>= len(series[i]), k) regressor matrix aligned with it, or a RowGrid;
    windows read only the rows of series i's first len(series[i]) periods. `starts`: each
    series' first period on a calendar common to all (phases on the calendar); None: phases
    from each series' own start. Each series gives its last `max_windows_per_item` windows, fewer
    past `max_windows` in all (`windows_per_item`).
    """
    configure_tensorflow(threads)
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    per_item, total = max_windows_per_item, max_windows
    flat = _Flat(series, lookback, horizon, season_length, per_item, exog, starts=starts, max_windows=total)
    k = flat.k
    calendar = int(starts is not None)
    windows = len(flat)
    state = LstmState(lookback, horizon, season_length, units, n_windows=windows, n_exog=k, calendar=calendar)
    if len(flat) == 0:
        return state
    model = _build(lookback, horizon, units, k)
    if (
        init is not None
        and init.weights
        and init.lookback == lookback
        and init.units == units
        and init.n_exog == k
        and init.calendar == state.calendar
    ):
        model.set_weights(init.weights)
    else:  # a cold start: enough steps to train at all (a warm start goes on as configured)
        batch_size, epochs = _schedule(len(flat), batch_size, epochs)
    trainer, rows = _trainer(model, flat), np.arange(len(flat))
    hist = trainer.fit(rows, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    state.weights = model.get_weights()
    state.step_sigma = _step_sigma(trainer, flat)
    state.final_loss = float(hist.history["loss"][-1])
    tf.keras.backend.clear_session()
    return state


MIN_STEPS = 200  # gradient steps a training takes at least (small sets: smaller batches, more epochs)
MIN_BATCH = 16
MAX_EPOCHS = 200


def _schedule(windows: int, batch_size: int, epochs: int) -> tuple[int, int]:
    """(batch size, epochs) that give at least MIN_STEPS gradient steps: 120 windows (20 monthly
    series) in batches of 256 for 8 epochs were 8 steps, a network barely moved from its start
    that forecast [0, 166, 0, 0, 0, 0] for an item of ~500 a month. Sets of ~7,000 windows and
    more train as configured."""
    if epochs * -(-windows // max(batch_size, 1)) >= MIN_STEPS:
        return batch_size, epochs
    batch = min(batch_size, max(MIN_BATCH, windows // 8))
    per_epoch = max(1, -(-windows // batch))
    return batch, min(max(epochs, -(-MIN_STEPS // per_epoch)), max(epochs, MAX_EPOCHS))


SPREAD_BLOCK = 16_384  # training windows predicted at a time for the residual spread
SPREAD_WINDOWS = 30  # an item's last windows whose errors scale its own spread
SPREAD_CHUNK = 256  # series whose windows are predicted at a time for it (bounded memory)
SPREAD_SHRINK = 1.0  # windows' worth of the pooled spread that each item's is shrunk towards


def _step_sigma(trainer, flat: _Flat) -> np.ndarray:
    """Root mean squared in-sample error per forecast step, from predictions of a block of
    windows at a time (never every window's predictions, targets and float64 errors at once)."""
    sq = np.zeros(flat.horizon)
    for k in range(0, len(flat), SPREAD_BLOCK):
        rows = np.arange(k, min(k + SPREAD_BLOCK, len(flat)))
        err = trainer.predict(rows, batch_size=4096, verbose=0).astype(np.float64)
        err -= flat.targets(rows)
        sq += np.einsum("ij,ij->j", err, err)
    return np.sqrt(sq / max(len(flat), 1))


def predict(
    state: LstmState, series: list[np.ndarray], exog: Exog = None, starts: np.ndarray | None = None
) -> list[Forecast]:
    """Forecast every series from its last `lookback` values (and, for a model trained with
    regressors, series i's regressor rows len(series[i]) .. len(series[i]) + horizon - 1);
    `starts` as in `train` (a network trained with them needs them)."""
    if not state.weights:
        raise RuntimeError("LSTM has no trained weights (no series long enough)")
    if _exog_width(exog) != state.n_exog:
        raise ValueError(f"the LSTM was trained with {state.n_exog} regressors, got {_exog_width(exog)}")
    if state.calendar and starts is None:
        raise ValueError("the LSTM was trained with calendar phases: pass each series' start period")
    x, p, scales = _inputs(series, state.lookback, state.season_length, starts if state.calendar else None)
    extra = [p, _future_exog(exog, series, state.horizon)] if state.n_exog else [p]
    pred = forward(state.weights, x, np.concatenate(extra, axis=1))
    spread = state.step_sigma[None, :] * (scales * _spread_factors(state, series, exog, starts))[:, None]
    return [normal_forecast(pred[i] * scales[i], spread[i]) for i in range(len(series))]


def _spread_factors(
    state: LstmState, series: list[np.ndarray], exog: Exog, starts: np.ndarray | None
) -> np.ndarray:
    """Per series, how its own errors compare with the pooled per-step spread: the root of its
    mean squared scaled error over its last SPREAD_WINDOWS windows (the network's, in its
    history only) over the pooled one, shrunk towards 1 by SPREAD_SHRINK windows; 1 for a series
    too short for a window. The pooled spread alone gave every item the same relative band:
    intermittent items' large scaled errors made smooth items' bands ~6x too wide."""
    out = np.ones(len(series))
    pooled = float(np.mean(np.square(state.step_sigma))) if len(state.step_sigma) else 0.0
    if pooled <= 0:
        return out
    grid = _grid(exog)
    for a in range(0, len(series), SPREAD_CHUNK):  # 1446 items: +66 MiB at the peak, not +373
        b = min(a + SPREAD_CHUNK, len(series))
        sub = None
        if grid is not None and grid.ends is None:  # one grid the series share: all of it
            sub = RowGrid(grid.rows, grid.offsets[a:b])
        elif grid is not None:  # rows per series, stacked: only this chunk's (each _Flat copies its grid)
            lo, hi = int(grid.offsets[a]), int(grid.ends[b - 1])
            sub = RowGrid(grid.rows[lo:hi], grid.offsets[a:b] - lo, grid.ends[a:b] - lo)
        first = None if starts is None or not state.calendar else starts[a:b]
        flat = _Flat(series[a:b], state.lookback, state.horizon, state.season_length, SPREAD_WINDOWS, sub,
                     dtype=np.float64, starts=first)
        if not len(flat):
            continue
        x, phase, target, e = flat.dense()
        pred = forward(state.weights, x, np.concatenate([phase, e], axis=1) if state.n_exog else phase)
        sq = np.mean(np.square(pred - target), axis=1)
        n = np.bincount(flat.owner, minlength=b - a).astype(float)
        ratio = np.bincount(flat.owner, weights=sq, minlength=b - a) / np.maximum(n, 1) / pooled
        out[a:b] = np.sqrt((n * ratio + SPREAD_SHRINK) / (n + SPREAD_SHRINK))
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def forward(weights: list[np.ndarray], x: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The network of `_build` evaluated in numpy (no TensorFlow needed to predict): `x` the
    (n, lookback) scaled windows, `extra` the (n, 2 [+ horizon * n_exog]) phase and regressor
    inputs; Keras' weight order (LSTM kernel, recurrent kernel, bias; two dense layers) and
    gate order (input, forget, cell, output)."""
    kernel, recurrent, bias, w1, b1, w2, b2 = (np.asarray(w, dtype=np.float64) for w in weights)
    units = recurrent.shape[0]
    h = np.zeros((len(x), units))
    c = np.zeros((len(x), units))
    for t in range(x.shape[1]):
        z = x[:, t : t + 1] @ kernel + h @ recurrent + bias
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units : 2 * units])
        g, o = np.tanh(z[:, 2 * units : 3 * units]), _sigmoid(z[:, 3 * units :])
        c = f * c + i * g
        h = o * np.tanh(c)
    hidden = np.maximum(np.concatenate([h, extra], axis=1) @ w1 + b1, 0.0)
    return hidden @ w2 + b2
