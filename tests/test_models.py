"""Each pure model on small arrays: shapes, non-negative, ordered bounds, sensible values."""

import json

import numpy as np
import pytest

from nova_ray.models import MODELS, ModelError
from nova_ray.models.base import STATE, finalize
from nova_ray.models.intermittent import croston_sba, tsb

RNG = np.random.default_rng(0)
N = 120
WEEKLY = np.maximum(0, 10 + 4 * np.sin(2 * np.pi * np.arange(N) / 7) + RNG.normal(0, 1, N))
DATES = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + N)
FUTURE = np.arange(DATES[-1] + 1, DATES[-1] + 15)


@pytest.mark.parametrize("name", ["naive", "arima", "ets", "theta", "croston", "tsb", "prophet"])
def test_model_contract(name: str) -> None:
    fc = MODELS[name].forecast_fn()(WEEKLY, 14, 7, None, dates=DATES, future=FUTURE, freq="D", seed=1)
    fc = finalize(fc, 14)
    assert set(fc) == {"mean", "lo-80", "hi-80", "lo-95", "hi-95"}
    assert all(v.shape == (14,) and (v >= 0).all() for v in fc.values())
    assert (fc["lo-95"] <= fc["lo-80"] + 1e-9).all() and (fc["hi-80"] <= fc["hi-95"] + 1e-9).all()
    assert 5 < fc["mean"].mean() < 15


def test_seasonal_naive_repeats_last_season() -> None:
    y = np.tile([1.0, 2, 3, 4, 5, 6, 7], 4)
    fc = MODELS["naive"].forecast_fn()(y, 10, 7)
    assert fc["mean"].tolist() == [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    assert np.allclose(fc["hi-80"], fc["mean"])  # perfectly seasonal: zero spread


@pytest.mark.parametrize("name", ["arima", "ets"])
def test_search_is_reused_and_its_model_refilters(name: str) -> None:
    mdef = MODELS[name]
    params = mdef.search_fn()(WEEKLY, 7)
    fitted = params.pop("fitted")  # the engine takes the estimated model out; the rest is JSON
    json.dumps(params)
    a = mdef.forecast_fn()(WEEKLY, 7, 7, params)  # estimates the chosen orders / form again
    b = mdef.forecast_fn()(WEEKLY, 7, 7, params)
    assert np.allclose(a["mean"], b["mean"])
    c = mdef.forecast_fn()(WEEKLY, 7, 7, params, fitted=fitted)  # re-filters with the search's
    assert np.allclose(a["mean"], c["mean"], rtol=0.05)
    later = mdef.backtest_fn()(WEEKLY, [100, 110], 7, 7, params, fitted=fitted)
    assert len(later) == 2 and all(np.isfinite(f["mean"]).all() for f in later)


@pytest.mark.parametrize("name", ["arima", "ets", "theta"])
def test_stored_state_refilters_one_more_day_without_estimating(name: str) -> None:
    """A forecast carries its estimated parameters; a rerun on one more day re-filters with them."""
    mdef = MODELS[name]
    params = mdef.search_fn()(WEEKLY[:110], 7) if mdef.search else {}
    params.pop("fitted", None)
    x = RNG.normal(size=(N + 14, 2)) if name == "arima" else None  # regressors of pure noise

    def run(n: int, p: dict, with_x: bool = True) -> dict:
        kw = {"x": x[:n], "x_future": x[n : n + 14]} if x is not None and with_x else {}
        return mdef.forecast_fn()(WEEKLY[:n], 14, 7, p, **kw)

    first = run(110, params)
    state = json.loads(json.dumps(first.pop(STATE)))  # stored as JSON with the item's choices
    warm = run(111, {**params, STATE: state})
    assert warm.pop(STATE) == state  # the same parameters: nothing estimated again
    fresh = run(111, params)
    assert fresh.pop(STATE) != state  # a refit estimates them anew ...
    assert np.allclose(warm["mean"], fresh["mean"], rtol=0.1, atol=0.5)  # ... to about the same
    assert not np.allclose(warm["mean"], first["mean"])  # the new day was filtered in
    if name == "arima":  # estimated with regressors: a fit without them cannot reuse it
        assert run(111, {**params, STATE: state}, with_x=False).pop(STATE)["keep"] == []


@pytest.mark.parametrize("with_x", [False, True])
def test_a_stored_arima_with_drift_refilters_like_the_estimated_model(with_x: bool) -> None:
    """Drift (one difference and a trend) is re-filtered from the stored parameters, not estimated
    again (it was, at ~0.6 s an item on 3 years of days): the same forecast as the estimated
    model's own `forward`, on one more day and on a rolling window that lost its first 20 days."""
    from nova_ray.models.arima import _sf_arima

    y = WEEKLY + 0.05 * np.arange(len(WEEKLY))
    x = RNG.normal(size=(N + 14, 2)) if with_x else None
    params = {"order": [1, 0, 1], "seasonal_order": [0, 1, 1], "m": 7, "drift": True}

    def xs(a: int, b: int) -> dict:
        return {"x": x[a:b], "x_future": x[b : b + 14]} if with_x else {}

    first = MODELS["arima"].forecast_fn()(y[:110], 14, 7, params, **xs(0, 110))
    state = json.loads(json.dumps(first.pop(STATE)))
    assert "drift" in dict(state["coef"])
    model = _sf_arima((1, 0, 1), (0, 1, 1), 7, drift=True).fit(y[:110], X=None if x is None else x[:110])
    for a in (0, 20):  # one more day; a rolling window
        warm = MODELS["arima"].forecast_fn()(y[a:111], 14, 7, {**params, STATE: state}, **xs(a, 111))
        assert warm.pop(STATE) == state  # nothing estimated again
        live = model.forward(y[a:111], 14, **({"X": x[a:111], "X_future": x[111:125]} if with_x else {}),
                             level=[80, 95])
        np.testing.assert_allclose(warm["mean"], live["mean"], rtol=1e-9)
        np.testing.assert_allclose(warm["hi-95"], live["hi-95"], rtol=1e-9)


def test_ets_multiplicative_form_with_zeros_becomes_additive() -> None:
    y = np.r_[np.zeros(30), 20 + 8 * np.sin(2 * np.pi * np.arange(150) / 7) + RNG.gamma(2, 1, 150)]
    params = {"model": "MNM", "damped": False, "m": 7}  # chosen on the all-positive recent part
    fc = MODELS["ets"].forecast_fn()(y, 14, 7, params)
    assert np.isfinite(fc["mean"]).all() and 15 < fc["mean"].mean() < 30


def test_croston_sba_and_tsb_by_hand() -> None:
    y = np.array([0, 0, 4, 0, 0, 0, 4, 0, 4.0])
    rate, prob = croston_sba(y, alpha=0.5)
    # sizes 4,4,4 -> z=4; intervals 3,4,2 -> p: 3 -> 3.5 -> 2.75; SBA factor 0.75
    assert rate == pytest.approx(0.75 * 4 / 2.75) and prob == pytest.approx(1 / 2.75)
    r2, p2 = tsb(np.array([2.0, 0, 2, 0]), alpha=0.5, beta=0.5)
    # p: 1 -> .5 -> .75 -> .375; z stays 2
    assert p2 == pytest.approx(0.375) and r2 == pytest.approx(0.75)


def test_croston_rate_takes_in_an_open_gap_longer_than_every_gap() -> None:
    """Croston smoothed only the gaps between demands: one demand of 7 two years ago kept a rate
    of 6.65 a day (above its own band), and demand every 12 days that stopped 130 days ago kept
    its 1-in-12 rate. An open gap longer than every gap seen is now the interval; a shorter one
    leaves the rate alone."""
    once = np.r_[7.0, np.zeros(729)]
    assert croston_sba(once) == pytest.approx((0.95 * 7 / 730, 1 / 730))
    y = np.zeros(730)
    y[:600:12] = 3.0  # last demand on day 588: 142 periods to day 730
    rate, prob = croston_sba(y)
    assert rate == pytest.approx(0.95 * 3 / 142) and prob == pytest.approx(1 / 142)
    assert croston_sba(y[:599])[0] == pytest.approx(0.95 * 3 / 12)  # open gap 11: the smoothed rate


def test_croston_interval_starts_from_the_gaps_not_the_series_start() -> None:
    """A series that starts on its first demand (series_start="item") gave a first interval of 1,
    which alpha 0.1 wore off slowly: 5 units every 120 days, 6 times, got 2.3x the true rate. It
    starts from the mean gap; a series with periods before its first demand keeps them."""
    for gap, k in ((120, 6), (60, 12)):
        y = np.zeros(gap * k)
        y[::gap] = 5.0
        assert croston_sba(y)[0] == pytest.approx(0.95 * 5 / gap)
    late = np.zeros(400)
    late[200::10] = 5.0  # 201 periods to the first demand, then every 10: Croston's first interval
    assert croston_sba(late)[0] == pytest.approx(0.95 * 5 / (10 + 191 * 0.9**19))


def test_intermittent_intervals_are_never_negative_and_not_normal() -> None:
    y = np.zeros(100)
    y[::9] = 3
    fc = MODELS["croston"].forecast_fn()(y, 14, 7, seed=3)
    assert (fc["lo-80"] == 0).all() and (fc["hi-95"] > 2).all()


def test_short_series_raise_model_error() -> None:
    with pytest.raises(ModelError):
        MODELS["arima"].forecast_fn()(np.ones(5), 3, 7)
    with pytest.raises(ModelError):
        MODELS["prophet"].forecast_fn()(np.ones(5), 3, 7, dates=DATES[:5], future=FUTURE[:3])


@pytest.mark.parametrize("n", [1, 2, 6])
def test_ets_on_a_tiny_series_says_too_short(n: int) -> None:
    """statsforecast's AutoETS fails on a few points with KeyError 'fitted' (1) or
    NotImplementedError 'tiny datasets' (up to 6); ETS says "series too short" as the others do."""
    y = np.arange(1.0, n + 1)
    with pytest.raises(ModelError, match="series too short for ETS"):
        MODELS["ets"].search_fn()(y, 7)
    with pytest.raises(ModelError, match="series too short for ETS"):
        MODELS["ets"].forecast_fn()(y, 3, 7)


def test_ets_form_too_long_for_a_short_series_says_too_short() -> None:
    """A damped trend form needs 10 points: fewer is "series too short", not a library error;
    7 points suffice for the form search."""
    y = np.arange(1.0, 10)
    with pytest.raises(ModelError, match=r"series too short for ETS\(AAN\)"):
        MODELS["ets"].forecast_fn()(y, 3, 7, {"model": "AAN", "damped": True, "m": 1})
    assert finalize(MODELS["ets"].forecast_fn()(np.append(y, 10.0), 3, 7, {"model": "AAN", "damped": True,
                                                                          "m": 1}), 3)["mean"].shape == (3,)
    assert MODELS["ets"].search_fn()(10 + np.sin(np.arange(7.0)), 7)["m"] == 1


def test_lstm_global_model_learns_a_level() -> None:
    from nova_ray.models import lstm

    series = [np.full(150, 5.0) + RNG.normal(0, 0.1, 150), np.full(120, 50.0) + RNG.normal(0, 1, 120)]
    state = lstm.train(series, 7, 7, lookback=14, units=8, epochs=30, batch_size=64, seed=1)
    fcs = lstm.predict(state, series)
    assert fcs[0]["mean"].shape == (7,)
    assert abs(fcs[0]["mean"].mean() - 5) < 1.5 and abs(fcs[1]["mean"].mean() - 50) < 15


def test_lstm_numpy_forward_equals_keras() -> None:
    """Stored networks predict in numpy (no TensorFlow): the same numbers as Keras."""
    from nova_ray.models import lstm

    series = [RNG.poisson(lam, 90).astype(float) for lam in (2, 9, 30)]
    exog = [RNG.normal(size=(97, 2)) for _ in series]
    state = lstm.train(series, 7, 7, lookback=14, units=8, epochs=2, batch_size=64, seed=1, exog=exog)
    model = lstm._build(14, 7, 8, 2)
    model.set_weights(state.weights)
    x, phase, scales = lstm._inputs(series, 14, 7)
    future = lstm._future_exog(exog, series, 7)
    keras = model.predict([x[..., None], phase, future], verbose=0)
    assert np.allclose(lstm.forward(state.weights, x, np.c_[phase, future]), keras, atol=1e-5)
    means = [fc["mean"] for fc in lstm.predict(state, series, exog=exog)]
    assert np.allclose(np.vstack(means), keras * scales[:, None], atol=1e-4)


def test_lstm_trains_on_window_numbers_exactly_as_on_the_dense_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Training gathers each batch's windows from the flat scaled series (no window matrix in
    memory): the same weights, bit for bit, as Keras fitted on the dense windows, and the same
    spreads (predicted and summed over blocks of 50 windows here)."""
    from nova_ray.models import lstm

    monkeypatch.setattr(lstm, "SPREAD_BLOCK", 50)
    monkeypatch.setattr(lstm, "MIN_STEPS", 0)  # the configured epochs and batch size, as Keras is given
    series = [RNG.poisson(lam, n).astype(float) for lam, n in ((2, 90), (9, 120), (30, 75))]
    exog = [RNG.normal(size=(len(y) + 7, 2)) for y in series]
    flat = lstm._Flat(series, 14, 7, 7, 40, exog)
    assert len(flat) == 40 + 40 + 40 and flat.values.nbytes < 300 * 4  # per period, not per window
    for ex in (exog, None):
        lstm.configure_tensorflow(1)
        import tensorflow as tf

        tf.keras.utils.set_random_seed(2)
        tf.config.experimental.enable_op_determinism()
        x, p, y, e = lstm._Flat(series, 14, 7, 7, 40, ex).dense()
        model = lstm._build(14, 7, 8, 2 if ex else 0)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
        inputs = [x[..., None], p, e] if ex else [x[..., None], p]
        model.fit(inputs, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
        pred = model.predict(inputs, batch_size=4096, verbose=0).astype(np.float64)
        sigma = np.sqrt(np.mean((pred - y) ** 2, axis=0))
        dense = model.get_weights()
        tf.keras.backend.clear_session()
        state = lstm.train(series, 7, 7, lookback=14, units=8, epochs=2, batch_size=16, seed=2,
                           max_windows_per_item=40, exog=ex)
        assert all(np.array_equal(a, b) for a, b in zip(dense, state.weights, strict=True))
        # the spread is predicted and summed a block of windows at a time: float32 predictions of
        # other batch shapes, equal to float32 precision
        assert np.allclose(sigma, state.step_sigma, rtol=1e-6, atol=0) and state.n_windows == 120


def test_a_small_cold_lstm_training_takes_enough_gradient_steps() -> None:
    """Few windows (20 monthly series: ~120) in batches of 256 for 8 epochs were 8 gradient steps,
    an untrained network ([0, 166, 0, 0, 0, 0] for an item of ~500 a month; M1 monthly, 12 series:
    holdout MASE 7.97, 2.26 with at least 200 steps). Small sets get smaller batches and more
    epochs; sets of ~7,000 windows and more train as configured."""
    from nova_ray.models.lstm import MIN_STEPS, _schedule

    for windows in (50, 120, 1200, 4000):
        batch, epochs = _schedule(windows, 256, 8)
        assert epochs * -(-windows // batch) >= MIN_STEPS and batch <= 256, windows
    assert _schedule(120, 256, 8) == (16, 25)
    assert _schedule(8600, 256, 8) == (256, 8) and _schedule(289_200, 256, 8) == (256, 8)


def test_lstm_training_arrays_are_read_in_place_by_tensorflow() -> None:
    """The training windows' arrays are aligned for TensorFlow, which reads them without a copy
    (a write to the array shows in the tensor); an array it cannot share is copied."""
    from nova_ray.models import lstm

    series = [RNG.poisson(4, 60).astype(float), RNG.poisson(9, 45).astype(float)]
    flat = lstm._Flat(series, 14, 7, 7, 40, [RNG.normal(size=(len(y) + 7, 2)) for y in series])
    for a in (flat.values, flat.at, flat.row_at, flat.phase, flat.exog):
        assert a.ctypes.data % lstm.ALIGN == 0 and a.size
        t = lstm._tensor(a)
        before = a.ravel()[0].copy()
        a.ravel()[0] = 7
        assert t.numpy().ravel()[0] == 7  # one buffer
        a.ravel()[0] = before
    odd = np.arange(9, dtype=np.float32)[1:]  # 4 bytes past an aligned start
    t = lstm._tensor(odd)
    odd[0] = 100
    assert float(t.numpy()[0]) == 1.0 and lstm._tensor(np.zeros((0, 0), np.float32)).shape == (0, 0)


def test_lstm_on_a_shared_row_grid_equals_rows_per_series() -> None:
    """Series on one calendar share one regressor grid (RowGrid: no copy of the rows per series):
    training and forecasts are the same, bit for bit, as with a matrix per series, and the
    training windows hold the grid once whatever the number of series."""
    from nova_ray.models import lstm

    grid = RNG.normal(size=(130, 2))
    starts = np.array([0, 25, 40])  # each series' first row in the grid; all end at row 123
    series = [RNG.poisson(lam, 123 - s0).astype(float) for lam, s0 in zip((3, 8, 20), starts, strict=True)]
    shared = lstm.RowGrid(grid, starts)
    per_series = [grid[s0:] for s0 in starts]
    kw = dict(lookback=14, units=8, epochs=2, batch_size=16, seed=3, max_windows_per_item=30)
    a = lstm.train(series, 7, 7, **kw, exog=per_series)
    b = lstm.train(series, 7, 7, **kw, exog=shared)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights, strict=True))
    assert np.array_equal(a.step_sigma, b.step_sigma)
    for fa, fb in zip(lstm.predict(a, series, per_series), lstm.predict(b, series, shared), strict=True):
        assert np.array_equal(fa["mean"], fb["mean"])
    many = lstm._Flat(series * 20, 14, 7, 7, 30, lstm.RowGrid(grid, np.tile(starts, 20)))
    assert many.exog.shape == grid.shape and len(many) == 60 * 30
    with pytest.raises(ValueError, match="regressors cover"):
        lstm._Flat(series, 14, 7, 7, 30, lstm.RowGrid(grid[:100], starts))


def test_lstm_training_windows_stop_growing_past_the_budget() -> None:
    """Past `max_windows` in all, each series gives fewer of its most recent windows (at least
    one): the training set, its memory and its time stop growing with the number of series."""
    from nova_ray.models import lstm

    assert lstm.windows_per_item(100, 200, 50_000) == 200
    assert lstm.windows_per_item(1000, 200, 50_000) == 50
    assert lstm.windows_per_item(200_000, 200, 50_000) == 1
    assert lstm.windows_per_item(10**6, 200, None) == 200
    series = [RNG.poisson(5.0, 120).astype(float) for _ in range(12)]
    full = lstm._Flat(series, 14, 7, 7, 40)
    capped = lstm._Flat(series, 14, 7, 7, 40, max_windows=120)
    assert len(full) == 12 * 40 and len(capped) == 12 * 10
    # the capped set is each series' last 10 windows of the full set (its newest targets)
    last = np.concatenate([np.arange(40 * i + 30, 40 * (i + 1)) for i in range(12)])
    assert np.array_equal(capped.at, full.at[last]) and np.array_equal(capped.targets(), full.targets(last))
    state = lstm.train(series, 7, 7, lookback=14, units=4, epochs=1, batch_size=16, max_windows_per_item=40,
                       max_windows=120)
    assert state.n_windows == 120 and state.weights


def test_prophet_memoised_internals_give_the_same_forecast() -> None:
    """The cached holiday tables and names and the component table (speed-ups) change no number."""
    import pandas as pd
    import prophet.forecaster as pf
    from prophet import Prophet

    from nova_ray.models.prophet import _cached_country_holidays, _prophet_class, _quiet

    _quiet()
    _cached_country_holidays()
    first = pf.make_holidays_df([2024, 2025], "BR")
    first["holiday"] = "changed"  # callers get a copy: the cached table is untouched
    pd.testing.assert_frame_equal(
        pf.make_holidays_df([2024, 2025], "BR"), pf.make_holidays_df.original([2024, 2025], "BR")
    )
    names = pf.get_holiday_names("BR")
    names.clear()  # a copy too
    assert pf.get_holiday_names("BR") == pf.get_holiday_names.original("BR")
    assert len(pf.get_holiday_names("BR")) > 10
    x = RNG.normal(size=N + 14)
    hist = pd.DataFrame({"ds": pd.to_datetime(DATES), "y": WEEKLY, "exog_x": x[:N]})
    fut = pd.DataFrame({"ds": pd.to_datetime(FUTURE), "exog_x": x[N:]})
    yhat = []
    for cls in (Prophet, _prophet_class(), _prophet_class()):  # the third call hits the memo
        model = cls(weekly_seasonality=True, daily_seasonality=False, yearly_seasonality=False)
        model.add_regressor("exog_x")
        model.add_country_holidays(country_name="BR")
        model.fit(hist)
        yhat.append(model.predict(fut)["yhat"].to_numpy())
    assert np.array_equal(yhat[0], yhat[1]) and np.array_equal(yhat[0], yhat[2])


def test_prophet_stan_data_as_arrays_writes_the_same_json() -> None:
    """The numpy hand-over to cmdstanpy (a speed-up) writes byte-identical Stan JSON."""
    import pandas as pd
    from prophet.models import CmdStanPyBackend
    from stanio.json import dump_stan_json

    from nova_ray.models.prophet import _numpy_stan_data

    init = {"k": 0.1, "m": 0.2, "delta": np.zeros(25), "beta": np.zeros(3), "sigma_obs": 1.0}
    data = {
        "T": 3, "S": 25, "K": 3, "tau": 0.05, "trend_indicator": 0,
        "y": np.array([1.0, 2, 3]), "t": np.array([0, 0.5, 1.0]), "cap": np.zeros(3),
        "t_change": np.linspace(0, 1, 25), "s_a": np.array([1, 1, 0]), "s_m": np.array([0, 0, 1]),
        "X": pd.DataFrame(np.arange(9.0).reshape(3, 3) / 7), "sigmas": [10.0, 10.0, 1.0],
    }  # fmt: skip
    _numpy_stan_data()
    patched = CmdStanPyBackend.prepare_data
    assert getattr(patched, "nova_ray", False)
    lists = patched.original(init, data)  # Prophet's own prepare_data
    arrays = patched(init, data)
    assert any(isinstance(v, list) for v in lists[1].values())
    assert not any(isinstance(v, list) for v in arrays[1].values())
    for a, b in zip(lists, arrays, strict=True):
        assert dump_stan_json(a) == dump_stan_json(b)


def test_lstm_state_owned_copies_its_arrays_out_of_a_shared_buffer() -> None:
    """A state deserialised from a Ray result holds views into that result's buffer (pickle 5
    out-of-band, as Ray does): `owned` makes arrays of their own, equal in value."""
    import pickle

    from nova_ray.models.lstm import LstmState

    weights = [np.arange(12.0).reshape(3, 4), np.ones(4)]
    state = LstmState(28, 7, 7, 4, weights=weights, step_sigma=np.arange(7.0))
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(state, protocol=5, buffer_callback=buffers.append)
    shared = [bytearray(b.raw()) for b in buffers]  # the result object's memory
    viewed = pickle.loads(data, buffers=shared)
    assert not viewed.weights[0].flags.owndata  # a view into `shared`
    own = viewed.owned()
    for a, b in zip([*own.weights, own.step_sigma], [*viewed.weights, viewed.step_sigma], strict=True):
        assert a.flags.owndata and not np.shares_memory(a, b) and np.array_equal(a, b)
    assert (own.lookback, own.horizon, own.units) == (28, 7, 4)


def test_lstm_season_phases_are_on_the_calendar() -> None:
    """Two series starting two days apart: their windows ending on one calendar day have one phase
    (with `starts`), as do their first forecast days; without `starts` each counts from its own
    start (networks stored before version 2), and such a stored network is trained afresh."""
    from nova_ray.models import lstm

    a, b = np.arange(120.0) % 7 + 1, np.arange(2, 120.0) % 7 + 1  # b starts 2 days after a
    starts = np.array([0, 2])
    flat = lstm._Flat([a, b], 14, 7, 7, 1000, starts=starts)
    n_a = len(a) - 14 - 7 + 1
    # window k of b ends on the calendar day of window k + 2 of a
    np.testing.assert_allclose(flat.phase[n_a : n_a + 10], flat.phase[2:12])
    own = lstm._Flat([a, b], 14, 7, 7, 1000)
    assert not np.allclose(own.phase[n_a : n_a + 10], own.phase[2:12])
    _, phase, _ = lstm._inputs([a, b], 14, 7, starts)  # both end on the same day
    np.testing.assert_allclose(phase[0], phase[1])


def test_a_network_stored_before_calendar_phases_loads_with_calendar_0(tmp_path) -> None:
    """Its file has one meta value fewer; it loads with calendar 0, which the global LSTM takes for
    another shape (trained afresh, global_lstm._lstm_run)."""
    from datetime import date

    from nova_ray.io.model_store import LSTM_FIELDS, read_lstm, write_lstm
    from nova_ray.models.lstm import LstmState

    old = LstmState(28, 7, 7, 8, weights=[np.ones((2, 3))], step_sigma=np.ones(7), n_windows=5, calendar=1)
    path = tmp_path / "lstm.npz"
    write_lstm(path, old, date(2026, 1, 1))
    with np.load(path) as z:  # as written before the calendar field existed: six meta values
        arrays = {k: z[k] for k in z.files} | {"meta": z["meta"][: LSTM_FIELDS.index("calendar")]}
    np.savez(path, **arrays)
    state, fitted_on, _ = read_lstm(path)
    assert (state.lookback, state.n_windows, state.calendar, fitted_on) == (28, 5, 0, date(2026, 1, 1))


def test_a_backfill_does_not_forecast_with_a_network_of_later_nights(tmp_path) -> None:
    """`load_lstm` refused only a network too old, not one stored by a later night: a backfill whose
    LSTM items were all warm forecast with a network trained (or fine-tuned) on the days after its
    history. The file records the run date of the data it last saw; a file from before that field
    counts its cold training's date."""
    from datetime import date

    from nova_ray.io.model_store import LSTM_FILE, ModelStore, lstm_through, write_lstm
    from nova_ray.models.lstm import LstmState

    store = ModelStore(tmp_path, "0+test")
    state = LstmState(28, 7, 7, 8, weights=[np.ones((2, 3))], step_sigma=np.ones(7), n_windows=5, calendar=1)
    cold, tuned = date(2026, 1, 10), date(2026, 1, 14)  # trained cold on the 10th, fine-tuned on the 14th
    store.save_lstm(state, cold, tuned)
    assert store.lstm_through() == tuned
    assert store.load_lstm(date(2026, 1, 14), 7) is not None
    assert store.load_lstm(date(2026, 1, 15), 7) is not None
    assert store.load_lstm(date(2026, 1, 12), 7) is None  # a backfill of the 12th: trains its own
    assert store.load_lstm(date(2026, 1, 18), 7) is None  # too old (from its cold training)
    old = tmp_path / "old.npz"
    write_lstm(old, state, cold)
    with np.load(old) as z:  # as written before the field existed
        np.savez(old, **{k: z[k] for k in z.files if k != "through"})
    assert lstm_through(old) == cold
    (store.dir / LSTM_FILE).write_bytes(old.read_bytes())
    assert store.load_lstm(date(2026, 1, 9), 7) is None and store.load_lstm(date(2026, 1, 10), 7) is not None


def test_intermittent_intervals_see_the_open_gap_and_are_flat() -> None:
    """One demand, then two years of zeros: Croston's band held only its rate (occurrence
    probability 1 from a single gap) and excluded zero; now it reaches zero. A steady
    intermittent item's bounds are the same at every step (the same distribution each step;
    quantiles of 500 draws per step jumped between 1.1 and 2.2)."""
    from nova_ray.models.base import finalize
    from nova_ray.models.intermittent import croston_forecast, tsb_forecast

    dead = finalize(croston_forecast(np.r_[5.0, np.zeros(729)], 30, 7), 30)
    assert dead["lo-80"].max() == 0 and dead["hi-95"].min() >= dead["mean"].min() > 0
    rng = np.random.default_rng(0)
    y = (rng.random(700) < 0.11) * rng.integers(1, 4, 700).astype(float)
    for fn in (croston_forecast, tsb_forecast):
        fc = finalize(fn(y, 30, 7), 30)
        assert all(np.ptp(v) == 0 for v in fc.values())
        assert fc["hi-95"][0] > fc["mean"][0] > 0


def test_intermittent_bands_keep_the_demand_sizes() -> None:
    """Croston's band came from sizes scaled to the SBA-corrected rate: a part used one at a time
    got [0, 0.95], excluding the only demand it has (95% band coverage 0.86 on such parts), and an
    open gap (no demand for longer than any gap seen) lowered the occurrence probability and
    inflated the sizes to 4x the largest demand seen. The bands now draw the sizes at their level."""
    from nova_ray.models.base import finalize
    from nova_ray.models.intermittent import croston_forecast, tsb_forecast

    rng = np.random.default_rng(0)
    unit = (rng.random(200) < 0.15).astype(float)
    for fn in (croston_forecast, tsb_forecast):
        assert finalize(fn(unit, 14, 7), 14)["hi-95"][0] == pytest.approx(1.0), fn.__name__
    y = np.zeros(120)
    y[:100:5] = 10.0  # 10 every 5 days, then 20 days without
    gap = finalize(croston_forecast(y, 14, 7), 14)
    assert gap["hi-95"][0] <= 10.0 + 1e-9


def test_ets_multiplicative_season_intervals_cover_their_level() -> None:
    """statsforecast 2.1 advances the expected state of MNM/MAM/MAdM once, after its loop over
    the horizon: every step got the first step's variance, and the 80% band of a weekly MAM item
    covered ~60% of new values (95%: ~80%). With the recursion advanced per step
    (models.ets_class3), 40 such items cover ~80%."""
    from nova_ray.models import ets
    from nova_ray.models.base import finalize
    from nova_ray.models.ets_class3 import class3_variance

    rng = np.random.default_rng(3)
    covered = n = 0
    t = np.arange(300)
    for _ in range(40):
        noise = rng.lognormal(0, 0.15, 300)
        y = np.maximum(np.round((10 + 0.02 * t) * (1 + 0.5 * np.sin(2 * np.pi * t / 7)) * noise), 1)
        fc = finalize(ets.forecast(y[:286], 14, 7, params={"model": "MAM", "damped": False, "m": 7}), 14)
        covered += int(np.sum((y[286:] >= fc["lo-80"]) & (y[286:] <= fc["hi-80"])))
        n += 14
    assert 0.74 < covered / n < 0.88
    from statsforecast import ets as sf_ets

    assert sf_ets._class3models is class3_variance  # the installed statsforecast needed the fix


def test_lstm_spread_is_scaled_by_each_items_own_errors() -> None:
    """One network, one pooled per-step spread: intermittent items' large scaled errors gave a
    smooth item a band several times too wide. Each item's spread is now scaled by its own
    errors over its last windows: smooth items narrower than the pooled spread, intermittent
    wider; a series too short for a window keeps the pooled one."""
    from nova_ray.models import lstm

    rng = np.random.default_rng(0)
    smooth = [rng.poisson(20, 200).astype(float) for _ in range(10)]
    lumpy = [((rng.random(200) < 0.1) * rng.integers(5, 15, 200)).astype(float) for _ in range(10)]
    state = lstm.train(smooth + lumpy, 7, 7, lookback=14, units=8, epochs=2, seed=1)
    f = lstm._spread_factors(state, smooth + lumpy + [np.ones(10)], None, None)
    assert f[:10].max() < 1 < f[10:20].mean() and f[20] == 1.0
    fc = lstm.predict(state, smooth[:1])[0]
    pooled = state.step_sigma * lstm._scale(smooth[0], 7)
    assert np.all(fc["hi-80"] - fc["mean"] < 1.2816 * pooled)


M_TREND = [105.0, 114.0, 130.0, 118.0, 132.0, 159.0, 163.0, 184.0, 171.0, 192.0, 193.0, 213.0, 215.0, 235.0,
           251.0, 257.0, 242.0, 279.0, 284.0, 280.0, 291.0, 310.0, 326.0, 325.0, 324.0, 353.0, 362.0, 394.0,
           367.0, 415.0, 417.0, 413.0, 437.0, 431.0, 450.0, 443.0, 461.0, 460.0, 464.0, 487.0, 493.0, 516.0,
           533.0, 528.0, 541.0, 552.0, 543.0, 573.0, 580.0, 590.0, 589.0, 590.0, 617.0, 633.0, 653.0, 661.0,
           675.0, 674.0, 692.0, 688.0]


def test_an_arima_order_whose_css_ml_fit_fails_is_fitted_by_ml() -> None:
    """statsforecast's CSS-ML fails on this monthly trend for (1,1,1) and (3,1,1) ("zero-size
    array"): the orders pmdarima picked fell back to naive. ML (then CSS) is tried next."""
    import warnings

    from nova_ray.models import arima

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        order = {"order": [1, 1, 1], "seasonal_order": [0, 0, 0], "m": 12}
        fc = arima.forecast(np.array(M_TREND), 12, 12, order)
    assert np.isfinite(fc["mean"]).all() and 600 < fc["mean"][0] < 800


def test_the_registry_records_each_models_own_version() -> None:
    """model_versions.json listed the LSTM as version 1 while its module said 2."""
    from importlib import import_module

    from nova_ray.models import MODELS

    for name, mdef in MODELS.items():
        module = import_module(mdef.module, "nova_ray.models")
        own = getattr(module, "VERSIONS", {}).get(name, getattr(module, "VERSION", "1"))  # a module of two
        assert own == mdef.version, name


@pytest.mark.parametrize("dropped", [3, 7, 10])
def test_stored_ets_keeps_its_weekday_when_a_rolling_window_drops_days(dropped: int) -> None:
    """A rolling export loses its oldest days each night: the stored ETS state's initial
    seasonal states belong to a period of the old series, and re-filtered from the new first day
    they put the Saturday peak on another weekday (up to 40 units off here). Moved by the dropped
    periods (by whole weeks past the new start), the warm forecast is the cold one's."""
    from nova_ray.models import ets

    rng = np.random.default_rng(0)
    week = np.array([20, 20, 20, 20, 20, 60, 5.0])
    y = np.tile(week, 60) + rng.normal(0, 2, 420)
    params = ets.search(y, 7)
    params.pop("fitted", None)
    stored = {**params, STATE: ets.forecast(y, 14, 7, params)[STATE]}
    grown = np.append(y, week[0] + rng.normal(0, 2))
    cold = ets.forecast(grown, 14, 7, stored)["mean"]  # the same start: the grown history
    rolling = grown[dropped:]
    unmoved = ets.forecast(rolling, 14, 7, stored)["mean"]
    warm = ets.forecast(rolling, 14, 7, MODELS["ets"].rolled(stored, dropped))["mean"]
    assert np.abs(warm - cold).max() < 0.5
    if dropped % 7:
        assert np.abs(unmoved - cold).max() > 20  # the bug this guards against
    assert MODELS["ets"].rolled(stored, dropped)[STATE]["start"] == -dropped % 7
    assert MODELS["arima"].rolled(stored, dropped) is stored  # no state tied to a period


def test_prophet_warm_starts_from_its_stored_parameters() -> None:
    """Issue 6 caches Prophet's parameters: the final fit's MAP estimate is stored (JSON) and the
    next night's fit starts its optimisation there; the forecast is the cold fit's."""
    from nova_ray.models import prophet

    rng = np.random.default_rng(1)
    dates = np.arange(np.datetime64("2023-01-01"), np.datetime64("2023-01-01") + 800)
    t = np.arange(800)
    y = np.maximum(0, 20 + 5 * np.sin(2 * np.pi * t / 365) + np.tile([0, 0, 0, 0, 0, 8, -6], 115)[:800]
                   + rng.normal(0, 3, 800))
    future = dates[-1] + np.arange(1, 15)
    first = prophet.forecast(y[:-1], 14, 7, None, dates=dates[:-1], future=future - 1)
    state = json.loads(json.dumps(first[STATE]))
    assert set(state) == {"k", "m", "sigma_obs", "delta", "beta"} and len(state["delta"]) == 25
    cold = prophet.forecast(y, 14, 7, None, dates=dates, future=future)
    warm = prophet.forecast(y, 14, 7, {STATE: state}, dates=dates, future=future)
    assert np.abs(warm["mean"] - cold["mean"]).max() < 0.02 * cold["mean"].mean()
    # a state of another shape (another number of holidays or regressors): Prophet's own start
    odd = {**state, "beta": state["beta"][:-3]}
    other = prophet.forecast(y, 14, 7, {STATE: odd}, dates=dates, future=future)
    assert np.abs(other["mean"] - cold["mean"]).max() < 0.02 * cold["mean"].mean()


def test_annual_cycle_is_the_least_squares_fourier_fit_less_its_mean() -> None:
    from nova_ray.models.annual import MIN_DAYS, annual_cycle

    rng = np.random.default_rng(0)
    days = np.arange(np.datetime64("2021-01-01"), np.datetime64("2024-03-01"))
    t = days.astype(np.int64).astype(float)
    cycle = 8 * np.sin(2 * np.pi * t / 365.25) + 3 * np.cos(4 * np.pi * t / 365.25)
    n = len(days) - 60  # the last 60 days are the horizon
    y = 40 + cycle[:n] + rng.normal(0, 2, n)
    got = annual_cycle(days, y, 2)
    assert got.shape == (len(days),) and abs(got[:n].mean()) < 1e-9
    assert np.max(np.abs(got - (cycle - cycle[:n].mean()))) < 1.0  # the horizon's too
    assert not annual_cycle(days, y[: MIN_DAYS - 1], 2).any()  # under two years: none
    assert not annual_cycle(days, y, 0).any()
