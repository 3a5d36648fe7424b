"""A global LSTM over all items: windows of scaled history in, the whole horizon out (MIMO).

Each series is scaled by its recent mean so that one network serves items of any volume.
Inputs are the last `lookback` scaled values plus the season phase of the first forecast
step; the output is the `horizon` next scaled values. Intervals are normal around the mean
with per-step spreads measured on the training windows, clipped at zero.

With regressors (one matrix per series, one row per period: history rows, then the horizon)
the regressor values of the window's `horizon` forecast periods, flattened, join the phase
input. Training windows read only rows inside the training series.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from .base import Forecast, normal_forecast

NAME = "lstm"
VERSION = "1"
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


def _exog_width(exog: list[np.ndarray] | None) -> int:
    return int(np.asarray(exog[0]).shape[1]) if exog else 0


class _Flat:
    """The training windows of many series as positions in flat arrays: each series scaled once,
    its regressor rows once, and per window the position of its first target (and its phase). A
    window's inputs and targets are gathered from these when a batch needs them, so memory grows
    with the history's length instead of the windows' number times their width (~1.7 KB per
    window with regressors: 0.7 GB for 400,000 windows, twice over once Keras holds a copy)."""

    def __init__(
        self,
        series: list[np.ndarray],
        lookback: int,
        horizon: int,
        season_length: int,
        max_per_item: int,
        exog: list[np.ndarray] | None = None,
        dtype: type = np.float32,
    ):
        self.lookback, self.horizon, self.k = lookback, horizon, _exog_width(exog)
        values, rows, at, phase, offset = [], [], [], [], 0
        for i, y in enumerate(series):
            n = len(y)
            if n < lookback + horizon:
                continue
            ends = np.arange(lookback, n - horizon + 1)[-max_per_item:]
            values.append(np.asarray(y, dtype=float) / _scale(y, season_length))
            if self.k:  # the history's rows: targets and their regressors never look further
                rows.append(np.asarray(exog[i], dtype=float)[:n])
            at.append(offset + ends)
            phase.append(_phase(ends, season_length))
            offset += n
        self.values = np.concatenate(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)
        self.exog = np.concatenate(rows, dtype=dtype) if rows else np.zeros((offset, self.k), dtype=dtype)
        self.at = np.concatenate(at) if at else np.zeros(0, dtype=np.int64)
        self.phase = np.concatenate(phase, dtype=dtype) if phase else np.zeros((0, 2), dtype=dtype)

    def __len__(self) -> int:
        return len(self.at)

    def targets(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(windows, horizon) scaled targets, of the windows numbered `rows` (default all)."""
        at = self.at if rows is None else self.at[rows]
        return self.values[at[:, None] + np.arange(self.horizon)]

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every window at once: (inputs, phases, targets, flattened regressors); training gathers
        them batch by batch instead (`_trainer`)."""
        ahead = self.at[:, None] + np.arange(self.horizon)
        x = self.values[self.at[:, None] + np.arange(-self.lookback, 0)]
        e = self.exog[ahead].reshape(len(self), self.horizon * self.k)
        return x, self.phase, self.targets(), e


def _trainer(core, flat: _Flat):
    """A Keras model over window numbers: it gathers each batch's windows and their targets from
    `flat` (held once, as TensorFlow constants) and runs `core` on them. Keras shuffles and
    batches the window numbers exactly as it would the windows themselves, so training is the
    same as on the dense windows (the same batches in the same order, the same loss), without
    them or a target matrix."""
    import tensorflow as tf

    values, phase = tf.constant(flat.values), tf.constant(flat.phase)
    at, exog = tf.constant(flat.at), tf.constant(flat.exog)
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
                inputs.append(tf.reshape(tf.gather(exog, pos + ahead), [-1, width]))
            return self.core(inputs)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            """The compiled loss against the targets of the batch's windows `x`."""
            y = tf.gather(values, tf.gather(at, tf.reshape(x, [-1]))[:, None] + ahead)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

    model = Trainer()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _inputs(
    series: list[np.ndarray], lookback: int, season_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.zeros((len(series), lookback))
    scales = np.zeros(len(series))
    for i, y in enumerate(series):
        s = _scale(y, season_length) if len(y) else 1.0
        tail = y[-lookback:] / s
        x[i, lookback - len(tail) :] = tail
        scales[i] = s
    phase = _phase(np.array([len(y) for y in series]), season_length)
    return x, phase, scales


def _future_exog(exog: list[np.ndarray] | None, series: list[np.ndarray], horizon: int) -> np.ndarray:
    """Flattened regressor rows of each series' `horizon` periods after its last observation."""
    k = _exog_width(exog)
    out = np.zeros((len(series), horizon * k))
    for i, y in enumerate(series):
        if k:
            rows = np.asarray(exog[i], dtype=float)[len(y) : len(y) + horizon]
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
    seed: int = 0,
    init: LstmState | None = None,
    threads: int = 1,
    exog: list[np.ndarray] | None = None,
) -> LstmState:
    """Train one network on windows from every series (warm-started from `init` if given).

    `exog`: per series a (>= len(series[i]), k) regressor matrix aligned with it; windows read
    only its first len(series[i]) rows.
    """
    configure_tensorflow(threads)
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    k = _exog_width(exog)
    flat = _Flat(series, lookback, horizon, season_length, max_windows_per_item, exog)
    state = LstmState(lookback, horizon, season_length, units, n_windows=len(flat), n_exog=k)
    if len(flat) == 0:
        return state
    model = _build(lookback, horizon, units, k)
    if (
        init is not None
        and init.weights
        and init.lookback == lookback
        and init.units == units
        and init.n_exog == k
    ):
        model.set_weights(init.weights)
    trainer, rows = _trainer(model, flat), np.arange(len(flat))
    hist = trainer.fit(rows, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    state.weights = model.get_weights()
    state.step_sigma = _step_sigma(trainer, flat)
    state.final_loss = float(hist.history["loss"][-1])
    tf.keras.backend.clear_session()
    return state


SPREAD_BLOCK = 65_536  # training windows predicted at a time for the residual spread


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
    state: LstmState, series: list[np.ndarray], exog: list[np.ndarray] | None = None
) -> list[Forecast]:
    """Forecast every series from its last `lookback` values (and, for a model trained with
    regressors, `exog[i]` rows len(series[i]) .. len(series[i]) + horizon - 1)."""
    if not state.weights:
        raise RuntimeError("LSTM has no trained weights (no series long enough)")
    if _exog_width(exog) != state.n_exog:
        raise ValueError(f"the LSTM was trained with {state.n_exog} regressors, got {_exog_width(exog)}")
    x, p, scales = _inputs(series, state.lookback, state.season_length)
    extra = [p, _future_exog(exog, series, state.horizon)] if state.n_exog else [p]
    pred = forward(state.weights, x, np.concatenate(extra, axis=1))
    return [normal_forecast(pred[i] * scales[i], state.step_sigma * scales[i]) for i in range(len(series))]


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
