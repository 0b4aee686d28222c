"""A small, vectorised DVS (event camera) emulator for still images moved along saccades.

The recipe follows the way N-MNIST was recorded (Orchard et al., "Converting static image
datasets to spiking neuromorphic datasets using saccades", Front. Neurosci. 2015): a static
image moves in front of the sensor along three saccades that form a triangle, and the sensor's
pixels report changes of log intensity. The pixel model is the usual DVS model (Lichtsteiner,
Posch & Delbruck, IEEE JSSC 2008; also used by ESIM and v2e): each pixel remembers a reference
log intensity, emits an ON (OFF) event each time the current log intensity rises (falls) one
contrast threshold beyond that reference, moves the reference by one threshold per event, and
stays silent for a refractory period after it fires.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from masnn_jax.data.events.core import EVENT_DTYPE

__all__ = ["DEFAULT_SACCADES", "emulate_dvs", "emulate_dvs_batch", "saccade_path", "render_frames"]

#: Default saccade vertices (dy, dx) in sensor pixels, relative to the centred image: a triangle
#: (down-left, up-middle, down-right) like N-MNIST's three saccades; the path is closed, so the
#: image visits the three corners and comes back, one third of the duration per saccade.
DEFAULT_SACCADES: tuple[tuple[float, float], ...] = ((1.0, -1.0), (-1.0, 0.0), (1.0, 1.0))


def saccade_path(
    times_us: np.ndarray,
    *,
    duration_us: float,
    saccades: Sequence[Sequence[float]] = DEFAULT_SACCADES,
    closed: bool = True,
) -> np.ndarray:
    """Image offset (dy, dx) in sensor pixels at given times along a piecewise-linear saccade path.

    The path starts at ``saccades[0]`` and visits the vertices in order (and returns to the first
    one if ``closed``); every leg takes the same time, ``duration_us / n_legs``, at constant speed.

    Args:
      times_us: ``(K,)`` times in µs, in ``[0, duration_us]`` (clipped).
      duration_us: total duration of the path in µs (> 0).
      saccades: ``(V, 2)`` vertices (dy, dx) in pixels; V >= 1 (V = 1 means no motion).
      closed: whether the path returns to the first vertex (adds one leg).

    Returns:
      ``(K, 2)`` float64 array of offsets (dy, dx).

    Raises:
      ValueError: bad ``saccades`` shape or non-positive duration.
    """
    v = np.asarray(saccades, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 1:
        raise ValueError(f"saccades: expected a (V, 2) sequence of (dy, dx) vertices, got shape {v.shape}")
    if not duration_us > 0:
        raise ValueError(f"duration_us must be > 0, got {duration_us}")
    if closed and v.shape[0] > 1:
        v = np.concatenate([v, v[:1]], axis=0)
    t = np.clip(np.asarray(times_us, dtype=np.float64), 0.0, float(duration_us))
    if v.shape[0] == 1:
        return np.repeat(v, t.shape[0], axis=0)
    n_legs = v.shape[0] - 1
    pos = t / float(duration_us) * n_legs  # leg coordinate in [0, n_legs]
    leg = np.minimum(np.floor(pos).astype(np.int64), n_legs - 1)
    frac = (pos - leg)[:, None]
    return v[leg] * (1.0 - frac) + v[leg + 1] * frac


def _scale_matrix(n_out: int, n_in: int, scale: float) -> np.ndarray:
    """``(n_out, n_in)`` bilinear (tent) weights placing an ``n_in`` image, scaled, centred.

    Output pixel r (centre r + .5) sees image coordinate ``u = (r + .5 - n_out/2) / scale +
    n_in/2``; image pixel i (centre i + .5) gets weight ``max(0, 1 - |u - (i + .5)|)``.
    """
    r = np.arange(n_out, dtype=np.float64) + 0.5
    u = (r - n_out / 2.0) / scale + n_in / 2.0
    i = np.arange(n_in, dtype=np.float64) + 0.5
    return np.maximum(0.0, 1.0 - np.abs(u[:, None] - i[None, :]))


def _render_into(out: np.ndarray, images: np.ndarray, offsets: np.ndarray, scale: float) -> None:
    """Fills ``out`` ``(K, n, H, W)`` with the scaled, centred images shifted by ``offsets``.

    Step 1: each image is scaled onto a sensor-aligned grid with a margin of
    ``ceil(max |offset|) + 1`` pixels (bilinear, :func:`_scale_matrix`). Step 2: for each time
    step, the grid is shifted by the sub-pixel offset (dy, dx) with bilinear interpolation:
    ``I(r, c) = base(r - dy, c - dx)``; four weighted slices per step.
    """
    k, n, H, W = out.shape
    h, w = images.shape[1:]
    m = int(np.ceil(np.max(np.abs(offsets)))) + 1 if offsets.size else 1
    sy = _scale_matrix(H + 2 * m, h, scale).astype(np.float32)
    sx = _scale_matrix(W + 2 * m, w, scale).astype(np.float32)
    base = np.einsum("yi,nij,xj->nyx", sy, images, sx, optimize=True).astype(np.float32)
    iy = np.floor(offsets[:, 0]).astype(np.int64)
    ix = np.floor(offsets[:, 1]).astype(np.int64)
    fy = (offsets[:, 0] - iy).astype(np.float32)
    fx = (offsets[:, 1] - ix).astype(np.float32)
    tmp = np.empty((n, H, W), np.float32)
    for t in range(k):
        o = out[t]
        o.fill(0.0)
        for ay, wy in ((0, 1.0 - fy[t]), (1, fy[t])):
            if wy == 0.0:
                continue
            r0 = m - iy[t] - ay
            for ax, wx in ((0, 1.0 - fx[t]), (1, fx[t])):
                if wx == 0.0:
                    continue
                c0 = m - ix[t] - ax
                np.multiply(base[:, r0 : r0 + H, c0 : c0 + W], np.float32(wy * wx), out=tmp)
                o += tmp


def render_frames(
    images: np.ndarray,
    offsets: np.ndarray,
    *,
    sensor_size: tuple[int, int],
    scale: float = 1.0,
) -> np.ndarray:
    """Renders images, scaled and centred on the sensor, then shifted by sub-pixel offsets.

    Sensor pixel (r, c) at offset (dy, dx) sees ``base(r - dy, c - dx)``, where ``base`` is the
    image scaled by ``scale`` and centred (sensor pixel centre r + .5 looks at image coordinate
    ``(r + .5 - H/2) / scale + h/2``), both steps by bilinear interpolation; outside the image
    the intensity is 0.

    Args:
      images: ``(n, h, w)`` float intensities.
      offsets: ``(K, 2)`` offsets (dy, dx) in sensor pixels, one per time step.
      sensor_size: ``(H, W)``.
      scale: sensor pixels per image pixel (e.g. 3 makes an 8x8 image 24x24).

    Returns:
      ``(n, K, H, W)`` float32 intensities.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images: expected shape (n, h, w), got {images.shape}")
    offsets = np.asarray(offsets, np.float64).reshape(-1, 2)
    out = np.empty((offsets.shape[0], images.shape[0], *sensor_size), np.float32)
    _render_into(out, images, offsets, scale)
    return out.transpose(1, 0, 2, 3).copy()


def _check_params(sensor_size, duration_us, time_step_us, contrast_threshold, refractory_us,
                  log_eps, threshold_sigma, noise_rate_hz, scale):
    if (
        not isinstance(sensor_size, (tuple, list))
        or len(sensor_size) != 2
        or not all(int(s) == s and s > 0 for s in sensor_size)
    ):
        raise ValueError(f"sensor_size must be (H, W) positive integers, got {sensor_size!r}")
    if max(sensor_size) > np.iinfo(np.int16).max:
        raise ValueError(f"sensor_size {sensor_size} too large for int16 event coordinates")
    if not duration_us > 0:
        raise ValueError(f"duration_us must be > 0, got {duration_us}")
    if not 0 < time_step_us <= duration_us:
        raise ValueError(f"time_step_us must be in (0, duration_us], got {time_step_us}")
    if not contrast_threshold > 0:
        raise ValueError(f"contrast_threshold must be > 0, got {contrast_threshold}")
    if not refractory_us >= 0:
        raise ValueError(f"refractory_us must be >= 0, got {refractory_us}")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be > 0, got {log_eps}")
    if not threshold_sigma >= 0:
        raise ValueError(f"threshold_sigma must be >= 0, got {threshold_sigma}")
    if not noise_rate_hz >= 0:
        raise ValueError(f"noise_rate_hz must be >= 0, got {noise_rate_hz}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")


def emulate_dvs_batch(
    images: np.ndarray,
    *,
    sensor_size: tuple[int, int] = (32, 32),
    scale: float = 1.0,
    saccades: Sequence[Sequence[float]] = DEFAULT_SACCADES,
    closed_path: bool = True,
    duration_us: int = 300_000,
    time_step_us: int = 1_000,
    contrast_threshold: float = 0.2,
    threshold_sigma: float = 0.0,
    refractory_us: int = 0,
    log_eps: float = 0.1,
    interpolate_timestamps: bool = True,
    noise_rate_hz: float = 0.0,
    seed: int = 0,
    chunk_size: int = 256,
) -> list[np.ndarray]:
    """Emulates a DVS recording for each of many images; see :func:`emulate_dvs` for the model.

    Image ``i`` uses the random stream ``np.random.default_rng([seed, i])`` (threshold mismatch
    and noise only; with ``threshold_sigma = noise_rate_hz = 0`` the result does not depend on
    the seed), so ``emulate_dvs_batch(imgs, seed=s)[i]`` equals
    ``emulate_dvs(imgs[i], seed=s, index=i)``-style single calls made with the same stream.

    Args:
      images: ``(n, h, w)`` intensities in [0, 1] (values outside are clipped).
      chunk_size: images processed together (memory ~ ``chunk_size * K * H * W * 4`` bytes,
        K = ``duration_us // time_step_us + 1``). Another chunk size can change a few events where a log-intensity
        change sits on the contrast threshold: NumPy's vectorised float32 loops round differently for arrays of
        other lengths on some CPUs (seen: 2163 vs 2167 events). A fixed chunk size is deterministic.
      (other arguments as in :func:`emulate_dvs`)

    Returns:
      list of n event arrays (dtype :data:`~masnn_jax.data.events.EVENT_DTYPE`, sorted by t).

    Raises:
      ValueError: bad shapes or parameters (naming the parameter).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images: expected shape (n, h, w), got {images.shape}")
    if not np.issubdtype(images.dtype, np.number) or not np.all(np.isfinite(images)):
        raise ValueError("images: expected finite real intensities in [0, 1]")
    _check_params(sensor_size, duration_us, time_step_us, contrast_threshold, refractory_us,
                  log_eps, threshold_sigma, noise_rate_hz, scale)
    H, W = int(sensor_size[0]), int(sensor_size[1])
    images = np.clip(images.astype(np.float32), 0.0, 1.0)
    n_steps = int(duration_us // time_step_us)
    times = np.arange(n_steps + 1, dtype=np.float64) * time_step_us  # t_0 = 0 .. t_K
    offsets = saccade_path(times, duration_us=duration_us, saccades=saccades, closed=closed_path)
    out: list[np.ndarray] = []
    frames = None
    for c0 in range(0, images.shape[0], chunk_size):
        chunk = images[c0 : c0 + chunk_size]
        rngs = [np.random.default_rng([int(seed), c0 + j]) for j in range(chunk.shape[0])]
        if frames is None or frames.shape[1] != chunk.shape[0]:
            frames = np.empty((times.shape[0], chunk.shape[0], H, W), np.float32)
        _render_into(frames, chunk, offsets, scale)
        out.extend(
            _events_from_frames(
                frames, rngs, times=times, contrast_threshold=contrast_threshold,
                threshold_sigma=threshold_sigma, refractory_us=refractory_us, log_eps=log_eps,
                interpolate=interpolate_timestamps, noise_rate_hz=noise_rate_hz,
                duration_us=duration_us,
            )
        )
    return out


def _events_from_frames(frames, rngs, *, times, contrast_threshold, threshold_sigma,
                        refractory_us, log_eps, interpolate, noise_rate_hz, duration_us):
    """DVS pixel model over ``frames`` ``(K+1, n, H, W)``; returns n sorted event arrays."""
    k1, n, H, W = frames.shape
    npix = H * W
    flat = frames.reshape(k1, n * npix)  # column index = (image * H + y) * W + x
    # Per-pixel thresholds (mismatch), drawn per image from its own stream.
    if threshold_sigma > 0:
        theta = np.concatenate([
            np.maximum(r.normal(contrast_threshold, threshold_sigma, npix),
                       0.01 * contrast_threshold)
            for r in rngs
        ]).astype(np.float32)
    else:
        theta = np.full(n * npix, contrast_threshold, np.float32)
    # Only pixels whose log intensity ever leaves the band ref0 +- theta can fire
    # (log is monotonic, so compare the log of the extreme intensities).
    eps = np.float32(log_eps)
    ref0 = np.log(flat[0] + eps)
    active = np.flatnonzero(
        (np.log(flat.max(axis=0) + eps) - ref0 >= theta)
        | (ref0 - np.log(flat.min(axis=0) + eps) >= theta)
    )
    L = np.take(flat, active, axis=1)  # (K+1, P): one contiguous row per step
    L += eps
    np.log(L, out=L)
    th = theta[active]
    ref = L[0].copy()
    last_fire = np.full(active.shape[0], -np.inf)
    ev_pix, ev_sign, ev_t = [], [], []
    for k in range(1, k1):
        diff = L[k] - ref
        cand = np.flatnonzero(np.abs(diff) >= th)
        if cand.size == 0:
            continue
        if refractory_us > 0:
            cand = cand[(times[k] - last_fire[cand]) >= refractory_us]
            if cand.size == 0:
                continue
        d = diff[cand].astype(np.float64)
        t_c = th[cand].astype(np.float64)
        cnt = np.floor(np.abs(d) / t_c + 1e-6).astype(np.int64)
        keep = cnt > 0
        fire, cnt, d, t_c = cand[keep], cnt[keep], d[keep], t_c[keep]
        if fire.size == 0:
            continue
        sign = np.sign(d)
        # j-th event (1..cnt) of a pixel crosses level ref + sign * j * theta.
        rep = np.repeat(np.arange(fire.size), cnt)
        j = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
        pix = fire[rep]
        if interpolate:
            prev = L[k - 1, pix].astype(np.float64)
            level = ref[pix].astype(np.float64) + sign[rep] * j * t_c[rep]
            denom = L[k, pix].astype(np.float64) - prev
            safe = np.where(denom == 0, 1.0, denom)
            frac = np.where(denom != 0, (level - prev) / safe, 1.0)
            tev = times[k - 1] + np.clip(frac, 0.0, 1.0) * (times[k] - times[k - 1])
            # never earlier than the end of the pixel's previous refractory period
            tev = np.maximum(tev, last_fire[pix] + refractory_us)
        else:
            tev = np.full(rep.size, times[k])
        ev_pix.append(pix)
        ev_sign.append(sign[rep] > 0)
        ev_t.append(tev)
        ref[fire] += (sign * cnt * t_c).astype(np.float32)
        # the refractory period starts at the pixel's last event of this step
        last_fire[fire] = tev[np.cumsum(cnt) - 1]
    if ev_pix:
        pix = active[np.concatenate(ev_pix)]
        sgn = np.concatenate(ev_sign)
        tt = np.floor(np.concatenate(ev_t)).astype(np.int64)
    else:
        pix = np.zeros(0, np.int64)
        sgn = np.zeros(0, bool)
        tt = np.zeros(0, np.int64)
    img, local = pix // npix, pix % npix
    ycol, xcol = local // W, local % W
    order = np.lexsort((tt, img))  # by image, then time (stable within equal keys)
    img, ycol, xcol, sgn, tt = img[order], ycol[order], xcol[order], sgn[order], tt[order]
    bounds = np.searchsorted(img, np.arange(n + 1))
    results = []
    for i in range(n):
        s, e = bounds[i], bounds[i + 1]
        ev = np.empty(e - s, dtype=EVENT_DTYPE)
        ev["y"] = ycol[s:e]
        ev["x"] = xcol[s:e]
        ev["p"] = sgn[s:e]
        ev["t"] = tt[s:e]
        if noise_rate_hz > 0:
            r = rngs[i]
            m = r.poisson(noise_rate_hz * npix * duration_us * 1e-6)
            noise = np.empty(m, dtype=EVENT_DTYPE)
            noise["x"] = r.integers(0, W, m)
            noise["y"] = r.integers(0, H, m)
            noise["p"] = r.integers(0, 2, m).astype(bool)
            noise["t"] = r.integers(0, int(duration_us), m)
            ev = np.concatenate([ev, noise])
            ev = ev[np.argsort(ev["t"], kind="stable")]
        results.append(ev)
    return results


def emulate_dvs(
    image: np.ndarray,
    *,
    sensor_size: tuple[int, int] = (32, 32),
    scale: float = 1.0,
    saccades: Sequence[Sequence[float]] = DEFAULT_SACCADES,
    closed_path: bool = True,
    duration_us: int = 300_000,
    time_step_us: int = 1_000,
    contrast_threshold: float = 0.2,
    threshold_sigma: float = 0.0,
    refractory_us: int = 0,
    log_eps: float = 0.1,
    interpolate_timestamps: bool = True,
    noise_rate_hz: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Emulates the events a DVS sensor reports while a still image moves along saccades.

    Scene: the image (intensities in [0, 1], 0 outside it), scaled by ``scale`` and centred on
    the ``(H, W)`` sensor, is shifted by the offset of :func:`saccade_path` (default: N-MNIST-like
    closed triangle, :data:`DEFAULT_SACCADES`, one third of ``duration_us`` per saccade) and
    sampled by bilinear interpolation every ``time_step_us`` at ``t_k = k * time_step_us``,
    k = 0..K, ``K = duration_us // time_step_us``.

    Pixel model (per pixel, log intensity ``L = log(I + log_eps)``):

    * the reference ``ref`` starts at ``L(t_0)`` (the sensor has adapted: no events at t = 0);
    * at each step k, if the pixel is not refractory (``t_k - t_last >= refractory_us``), it
      emits ``n = floor(|L(t_k) - ref| / theta)`` events of sign ``sign(L(t_k) - ref)``
      (ON = ``p`` True for a rise) and moves ``ref`` by ``sign * n * theta``; a refractory
      pixel emits nothing and keeps its reference (the change is reported once it recovers);
    * ``theta`` = ``contrast_threshold`` (per-pixel ``N(theta, threshold_sigma)`` mismatch if
      ``threshold_sigma > 0``, floored at 1 % of theta);
    * with ``interpolate_timestamps`` the j-th event of a step is timed where the straight line
      from ``L(t_{k-1})`` to ``L(t_k)`` crosses ``ref + sign * j * theta`` (otherwise at
      ``t_k``); timestamps are floored to whole µs; ``t_last`` is the time of the pixel's last
      event. Events of one burst are not separated by the refractory period.
    * optional background noise: Poisson, ``noise_rate_hz`` per pixel, uniform in time,
      position and polarity.

    Deterministic: same inputs and ``seed`` give the same events (the seed only matters for
    ``threshold_sigma`` and ``noise_rate_hz``). Vectorised over pixels; only pixels whose log
    intensity ever moves by ``theta`` are simulated.

    Args:
      image: ``(h, w)`` float intensities in [0, 1] (clipped).
      sensor_size: ``(H, W)`` sensor rows and columns.
      scale: sensor pixels per image pixel.
      saccades: ``(V, 2)`` path vertices (dy, dx) in sensor pixels, relative to the centred image.
      closed_path: whether the path returns to its first vertex.
      duration_us: recording length in µs.
      time_step_us: sampling step in µs.
      contrast_threshold: theta, in log-intensity units (natural log).
      threshold_sigma: std of per-pixel threshold mismatch (log units).
      refractory_us: refractory period in µs.
      log_eps: offset inside the log (intensity units).
      interpolate_timestamps: time events within a step (True) or at the step's end (False).
      noise_rate_hz: background events per pixel per second.
      seed: integer seed (the stream used is ``np.random.default_rng([seed, 0])``).

    Returns:
      ``(N,)`` event array of dtype :data:`~masnn_jax.data.events.EVENT_DTYPE` (x, y int16
      pixels; p bool, True = ON; t int64 µs in ``[0, duration_us]``), sorted by t.

    Raises:
      ValueError: ``image`` not 2-D / not finite, or a parameter out of range (named).

    Source: pixel model of Lichtsteiner et al. (2008) as used by ESIM/v2e; saccades after
    N-MNIST (Orchard et al. 2015). Written for this project, not taken from either code base.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D (h, w) array, got shape {image.shape}")
    return emulate_dvs_batch(
        image[None], sensor_size=sensor_size, scale=scale, saccades=saccades,
        closed_path=closed_path, duration_us=duration_us, time_step_us=time_step_us,
        contrast_threshold=contrast_threshold, threshold_sigma=threshold_sigma,
        refractory_us=refractory_us, log_eps=log_eps,
        interpolate_timestamps=interpolate_timestamps, noise_rate_hz=noise_rate_hz, seed=seed,
    )[0]
