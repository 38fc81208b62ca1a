"""Synthetic top of book for several perpetual venues quoting one symbol, with known structure.

A latent log price follows a Gaussian random walk on a 1 ms grid. Each venue updates at Poisson
times; at an update at exchange time τ its mid is the latent price at τ − lag (so venues with a
smaller lag lead), plus a constant basis, rounded to a one-tick spread around it. Sizes are
lognormal in base units. Rows are written only when one of bid/ask price/size changes (the
``tob`` table's rule). Receipt time is ts_local = τ + the venue's latency (a base plus an
exponential jitter, kept increasing).

Dislocations are what make the venues cross now and then: at Poisson times one venue's mid is
shifted by a few to a few tens of bps for a few hundred ms (the venue, size, sign and length are
drawn and returned as ground truth). Optional jumps of the latent price (``jump_rate_hz``) move
every venue at once, each after its own lag: a venue that has not caught up yet shows a crossing
that is only a stale-quote artefact (returned as ground truth too). A venue can also lose its
feed for a while (a ``disconnected`` health row, no quotes, then ``connected`` and a
``resynced`` row). The health rows are those the recorder writes: ``connected`` per connection,
``subscribed`` and ``snapshot`` per symbol, and ``stopped`` at the end.

Clocks and funding, when asked for (no draw from the caller's generator, so the quotes of a seed
do not change): a venue whose clock is ``clock_offset_ms`` behind ours stamps ``ts_exchange`` = τ −
offset, and the recorder's ``clock_offset`` health rows measure it (at the start and every 300 s,
within ±0.3 ms); a venue with ``funding_bps_8h`` rates gets a ``funding`` row every second: the
rate of the current period (the list's rates in turn, per funding period of
``PerpConfig.funding_interval_s`` on the grid from 00:00 UTC, each scaled from bps per 8 h to
the interval), the next funding time, mark and index prices from the latent price.

numpy and polars only; no I/O (``analysis.load.write_table`` writes the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from core.codec import MS_NS as MS
from core.codec import S_NS as NS


@dataclass(frozen=True)
class VenueSpec:
    name: str
    rate_hz: float  # quote updates per second
    lag_ms: float  # how far behind the latent price this venue's quotes are
    latency_ms: float  # base of ts_local − ts_exchange
    jitter_ms: float = 2.0  # mean of the exponential extra latency
    basis_bps: float = 0.0
    clock_offset_ms: float = 0.0  # local minus venue clock: ts_exchange = τ − offset
    funding_bps_8h: tuple[float, ...] = ()  # the rate of each funding period, bps per 8 h


DEFAULT_VENUES = (
    VenueSpec("bybit", 25.0, 0.0, 8.0, 1.5, 0.0),
    VenueSpec("gateio", 15.0, 10.0, 12.0, 2.0, 0.5),
    VenueSpec("bitget", 12.0, 20.0, 15.0, 2.5, -0.5),
    VenueSpec("htx", 8.0, 40.0, 25.0, 4.0, 1.0),
)


@dataclass
class PerpConfig:
    duration_s: float = 1800.0
    symbol: str = "BTC-USDT"
    p0: float = 65_000.0
    tick: float = 0.1
    vol_bps_per_sqrt_s: float = 1.2
    venues: tuple[VenueSpec, ...] = DEFAULT_VENUES
    dislocation_rate_hz: float = 1 / 45  # one every 45 s on average
    dislocation_bps: tuple[float, float] = (6.0, 30.0)  # uniform magnitude range
    dislocation_ms: tuple[float, float] = (150.0, 900.0)  # uniform duration range
    outages: tuple[tuple[str, float, float], ...] = (("htx", 900.0, 8.0),)  # venue, start, len
    jump_rate_hz: float = 0.0  # jumps of the latent price, per second
    jump_bps: tuple[float, float] = (15.0, 30.0)  # uniform magnitude range (random sign)
    t0_ns: int = 1_714_564_800 * NS  # 2024-05-01 12:00:00 UTC
    size_median: float = 1.5
    size_sigma: float = 0.8
    funding_interval_s: int = 8 * 3600
    clock_sync_s: float = 300.0


@dataclass
class PerpSim:
    tob: pl.DataFrame
    health: pl.DataFrame
    dislocations: pl.DataFrame  # venue, start_ns, end_ns, shift_bps
    config: PerpConfig = field(default_factory=PerpConfig)
    jumps: pl.DataFrame | None = None  # t_ns, jump_bps (exchange time of the latent jump)
    funding: pl.DataFrame | None = None  # the funding table's rows (venues with rates)


def simulate_perps(cfg: PerpConfig, rng: np.random.Generator) -> PerpSim:
    n_ms = int(cfg.duration_s * 1000) + 1
    sd = cfg.vol_bps_per_sqrt_s * 1e-4 / np.sqrt(1000.0)
    steps = rng.normal(0, sd, n_ms - 1)
    n_jumps = rng.poisson(cfg.jump_rate_hz * cfg.duration_s) if cfg.jump_rate_hz > 0 else 0
    jump_ms = np.sort(rng.integers(5000, max(5001, n_ms - 5000), n_jumps))
    jump_size = rng.uniform(*cfg.jump_bps, n_jumps) * rng.choice([-1.0, 1.0], n_jumps)
    np.add.at(steps, jump_ms - 1, jump_size * 1e-4)
    latent = np.log(cfg.p0) + np.concatenate([[0.0], np.cumsum(steps)])
    # dislocations
    n_dis = rng.poisson(cfg.dislocation_rate_hz * cfg.duration_s)
    names = [v.name for v in cfg.venues]
    dis_start = np.sort(rng.uniform(5.0, cfg.duration_s - 5.0, n_dis))
    dis_len = rng.uniform(*cfg.dislocation_ms, n_dis) / 1000
    dis_size = rng.uniform(*cfg.dislocation_bps, n_dis) * rng.choice([-1.0, 1.0], n_dis)
    dis_venue = rng.choice(len(names), n_dis)
    tob_frames = []
    health_rows: list[tuple[int, str, str | None, str, str]] = []
    for k, v in enumerate(cfg.venues):
        health_rows += [(cfg.t0_ns, v.name, None, "connected", "simulated"),
                        (cfg.t0_ns, v.name, cfg.symbol, "subscribed", "simulated"),
                        (cfg.t0_ns, v.name, cfg.symbol, "snapshot", "simulated")]
        n_up = rng.poisson(v.rate_hz * cfg.duration_s)
        t = np.sort(rng.uniform(0.0, cfg.duration_s, n_up))
        idx = np.clip(((t - v.lag_ms / 1000) * 1000).astype(np.int64), 0, n_ms - 1)
        logmid = latent[idx] + v.basis_bps * 1e-4
        mine = dis_venue == k
        for s0, ln, sz in zip(dis_start[mine], dis_len[mine], dis_size[mine], strict=True):
            on = (t >= s0) & (t < s0 + ln)
            logmid[on] += sz * 1e-4
        keep = np.ones(t.size, dtype=bool)
        for venue, start, length in cfg.outages:
            if venue == v.name:
                keep &= ~((t >= start) & (t < start + length))
                back = cfg.t0_ns + int((start + length) * NS)
                health_rows += [
                    (cfg.t0_ns + int(start * NS), v.name, None, "disconnected",
                     "simulated outage"),
                    (back, v.name, None, "connected", "simulated reconnect"),
                    (back, v.name, cfg.symbol, "resynced", "after simulated outage")]
        t, logmid = t[keep], logmid[keep]
        mid = np.exp(logmid)
        bid = np.floor(mid / cfg.tick) * cfg.tick
        ask = bid + cfg.tick
        sizes = np.round(cfg.size_median * np.exp(rng.normal(0, cfg.size_sigma, (2, t.size))), 3)
        sizes = np.maximum(sizes, 0.001)
        # size-only updates keep the price: a quarter of the updates change only sizes
        same = rng.random(t.size) < 0.25
        same[0] = False
        for arr in (bid, ask):
            for j in np.flatnonzero(same):
                arr[j] = arr[j - 1]
        ts_ex = cfg.t0_ns + (t * NS).astype(np.int64)
        lat = (v.latency_ms + rng.exponential(v.jitter_ms, t.size)) * MS
        ts_loc = np.maximum.accumulate(ts_ex + lat.astype(np.int64))
        ts_ex = ts_ex - int(v.clock_offset_ms * MS)  # the venue's clock stamps it
        df = pl.DataFrame({"ts_local": ts_loc, "ts_exchange": ts_ex,
                           "bid_px": np.round(bid, 10), "bid_sz": sizes[0],
                           "ask_px": np.round(ask, 10), "ask_sz": sizes[1]})
        changed = pl.any_horizontal(
            [pl.col(c) != pl.col(c).shift(1) for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
        ).fill_null(True)
        df = df.filter(changed).with_columns(
            pl.lit(v.name).alias("exchange"), pl.lit(cfg.symbol).alias("symbol"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"))
        tob_frames.append(df)
    ts_type = pl.Datetime("ns", "UTC")
    tob = pl.concat(tob_frames).select(
        pl.col("ts_local").cast(ts_type), pl.col("ts_exchange").cast(ts_type), "exchange",
        "symbol", "bid_px", "bid_sz", "ask_px", "ask_sz", "seq").sort("ts_local")
    end_ns = cfg.t0_ns + int(cfg.duration_s * NS)
    health_rows += [(end_ns, v.name, None, "stopped", "end of simulation") for v in cfg.venues]
    health_rows += _clock_rows(cfg)
    funding = _funding_rows(cfg, latent)
    health = pl.DataFrame(health_rows, schema={"ts_local": pl.Int64, "exchange": pl.String,
                                               "symbol": pl.String, "event": pl.String,
                                               "detail": pl.String}, orient="row") \
        .with_columns(pl.col("ts_local").cast(ts_type)).sort("ts_local", maintain_order=True)
    dis = pl.DataFrame({"venue": [names[i] for i in dis_venue],
                        "start_ns": cfg.t0_ns + (dis_start * NS).astype(np.int64),
                        "end_ns": cfg.t0_ns + ((dis_start + dis_len) * NS).astype(np.int64),
                        "shift_bps": dis_size})
    jumps = pl.DataFrame({"t_ns": cfg.t0_ns + jump_ms.astype(np.int64) * MS,
                          "jump_bps": jump_size})
    return PerpSim(tob, health, dis, cfg, jumps, funding)


def _clock_rows(cfg: PerpConfig) -> list[tuple[int, str, str | None, str, str]]:
    """``clock_offset`` rows of venues with a clock offset, as the recorder measures them (their
    own generator: the caller's random stream is left as it was)."""
    from core.clock_sync import Estimate, estimate_detail

    rng = np.random.default_rng(20_240_501)
    rows: list[tuple[int, str, str | None, str, str]] = []
    for v in cfg.venues:
        if not v.clock_offset_ms:
            continue
        for t_s in np.arange(0.0, cfg.duration_s, cfg.clock_sync_s):
            rtt = 2 * v.latency_ms * MS
            est = Estimate(offset_ns=(v.clock_offset_ms + rng.uniform(-0.3, 0.3)) * MS,
                           rtt_ns=rtt, min_rtt_ns=int(rtt), good=5, samples=5)
            rows.append((cfg.t0_ns + int(t_s * NS) + int(rtt), v.name, None, "clock_offset",
                         estimate_detail(est, "/time")))
    return rows


def funding_schedule(cfg: PerpConfig, spec: VenueSpec, t_ns: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(next funding time ns, rate as a fraction per interval) at each time of ``t_ns``: the
    grid of ``funding_interval_s`` from 00:00 UTC, the venue's rates in turn per period."""
    step = cfg.funding_interval_s * NS
    k = t_ns // step + 1  # index of the next funding time on the grid from the epoch
    rates = np.asarray(spec.funding_bps_8h, dtype=np.float64) * 1e-4 * (
        cfg.funding_interval_s / (8 * 3600))
    return k * step, rates[k % rates.size]


def _funding_rows(cfg: PerpConfig, latent: np.ndarray) -> pl.DataFrame | None:
    specs = [v for v in cfg.venues if v.funding_bps_8h]
    if not specs:
        return None
    frames = []
    for v in specs:
        t = cfg.t0_ns + np.arange(0, int(cfg.duration_s), dtype=np.int64) * NS
        nxt, rate = funding_schedule(cfg, v, t)
        idx = np.clip(((t - cfg.t0_ns) // MS).astype(np.int64), 0, latent.size - 1)
        index = np.round(np.exp(latent[idx]), 2)
        mark = np.round(index * (1 + v.basis_bps * 1e-4), 2)
        frames.append(pl.DataFrame({
            "ts_local": t + int(v.latency_ms * MS), "ts_exchange": t, "exchange": v.name,
            "symbol": cfg.symbol, "funding_rate": rate,
            "funding_interval_s": cfg.funding_interval_s, "next_funding_time": nxt,
            "mark_px": mark, "index_px": index, "open_interest": 1000.0}))
    ts_type = pl.Datetime("ns", "UTC")
    return pl.concat(frames).with_columns(
        pl.col("ts_local", "ts_exchange", "next_funding_time").cast(ts_type),
        pl.col("funding_interval_s").cast(pl.Int64))
