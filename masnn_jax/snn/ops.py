"""Performance-oriented primitives: a 2-D convolution as im2col + one matrix product.

XLA's CPU convolution runs a 3×3 conv at about half the speed of the same arithmetic written as
``pad -> k·k strided slices -> concat -> one matmul`` (measured with `benchmarks/peak.py`: 28 vs 52 GFLOP/s fwd+bwd on this project's
2-core CPU), so on CPU the conv layers use :func:`conv_general_dilated_im2col`, a drop-in replacement for
``jax.lax.conv_general_dilated`` (NHWC / HWIO, no dilation, no feature groups) that ``nnx.Conv`` accepts through its
``conv_general_dilated=`` argument. The module, its parameters (``kernel`` ``(kh, kw, cin, cout)``, ``bias``
``(cout,)``) and checkpoints are therefore identical whichever implementation runs; :func:`conv` builds it.

Memory: the patch matrix is ``kh·kw`` times the input. It is built and consumed in chunks of the batch inside a
``jax.lax.map`` whose body is ``jax.checkpoint``-ed, so neither the forward nor the backward pass ever holds more
than one chunk's patches, and nothing but the layer input is saved for the backward pass.

In training, :class:`masnn_jax.nn.layers.ConvAttLIF` calls :func:`conv_moments` instead: the same im2col convolution
with the bias added and BatchNorm's batch mean and variance computed chunk by chunk inside the same loop, with a
hand-written backward pass that keeps only the input, the output and the mean (see ``benchmarks/BENCHMARKS.md``).

Implementations (``config.model.conv_impl``): 'xla' (``lax.conv_general_dilated``), 'im2col', or 'auto' (im2col on
CPU, XLA's — i.e. cuDNN's — convolution on GPU/TPU), resolved by :func:`resolve_conv_impl` when the model is built.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["CONV_IMPLS", "resolve_conv_impl", "conv_general_dilated_im2col", "im2col_conv", "conv_moments", "conv"]

#: Accepted values of ``config.model.conv_impl``.
CONV_IMPLS = ("auto", "xla", "im2col")

#: Default size of one chunk's patch matrix, in elements (4 Mi elements = 16 MB in float32: measured
#: fastest on a 2-core CPU, where a cache-sized chunk runs a 3×3 conv's fwd+bwd 1.3–1.6× faster than one big matmul).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def resolve_conv_impl(impl: str | None, platform: str | None = None) -> str:
    """'xla' or 'im2col' for ``impl`` in :data:`CONV_IMPLS` ('auto'/None: im2col on CPU, else xla).

    Raises:
      ValueError: unknown ``impl``.
    """
    impl = "auto" if impl is None else impl
    if impl not in CONV_IMPLS:
        raise ValueError(f"config.model.conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    platform = platform or jax.default_backend()
    return "im2col" if platform == "cpu" else "xla"


def _patches(x: jax.Array, kh: int, kw: int, strides: Sequence[int], pads, out_hw) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, H', W', kh·kw·C)``, row-major over (i, j, c) like an HWIO kernel reshaped."""
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0))) if any(map(any, pads)) else x
    ho, wo = out_hw
    sh, sw = strides
    cols = [
        jax.lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, xp.shape[3]),
                      (1, sh, sw, 1))
        for i in range(kh) for j in range(kw)
    ]
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _chunk_count(n: int, rows_per_sample: int, k: int, chunk_elements: int | None) -> int:
    """The smallest divisor ``d`` of ``n`` with ``(n/d)·rows·k <= chunk_elements`` (1 if no chunking asked)."""
    if not chunk_elements or n * rows_per_sample * k <= chunk_elements:
        return 1
    want = math.ceil(n * rows_per_sample * k / chunk_elements)
    for d in range(want, n + 1):
        if n % d == 0:
            return d
    return n


def _split(a: jax.Array, chunks: int) -> jax.Array:
    """``(N, ...)`` -> ``(chunks, N/chunks, ...)`` (a free reshape)."""
    return a.reshape((chunks, a.shape[0] // chunks) + a.shape[1:])


def _conv_geometry(x_shape, kernel_shape, strides, padding):
    n, h, w, cin = x_shape
    kh, kw, kcin, cout = kernel_shape
    if kcin != cin:
        raise ValueError(f"im2col conv: input has {cin} channels but the kernel expects {kcin}")
    strides = tuple(int(s) for s in strides)
    if isinstance(padding, str):
        pads = jax.lax.padtype_to_pads((h, w), (kh, kw), strides, padding)
    else:
        pads = tuple(tuple(int(v) for v in p) for p in padding)
    ho = (h + pads[0][0] + pads[0][1] - kh) // strides[0] + 1
    wo = (w + pads[1][0] + pads[1][1] - kw) // strides[1] + 1
    return strides, pads, (ho, wo)


def im2col_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int] = (1, 1),
    padding: Sequence[tuple[int, int]] | str = ((0, 0), (0, 0)),
    *,
    precision: Any = None,
    preferred_element_type: Any = None,
    chunk_elements: int | None = DEFAULT_CHUNK_ELEMENTS,
) -> jax.Array:
    """2-D convolution ``(N, H, W, Cin) ⊛ (kh, kw, Cin, Cout) -> (N, H', W', Cout)`` as im2col + one matmul.

    Args:
      x: NHWC input; kernel: HWIO kernel (same layout as ``nnx.Conv.kernel``).
      strides: ``(sh, sw)``.
      padding: ``((top, bottom), (left, right))``, or 'SAME' / 'VALID'.
      precision, preferred_element_type: passed to the matrix product.
      chunk_elements: bound on one chunk's patch matrix (elements); the batch is split into equal chunks under it
        and each chunk is recomputed in the backward pass. ``None``/0: one chunk, no recomputation.
    Returns:
      NHWC output, equal to ``lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=('NHWC',
      'HWIO', 'NHWC'))`` up to summation order.
    """
    n = x.shape[0]
    kh, kw, cin, cout = kernel.shape
    strides, pads, (ho, wo) = _conv_geometry(x.shape, kernel.shape, strides, padding)
    k = kh * kw * cin
    w2 = kernel.reshape(k, cout)

    def body(xc):
        p = _patches(xc, kh, kw, strides, pads, (ho, wo))
        y = jnp.dot(p.reshape(-1, k), w2, precision=precision, preferred_element_type=preferred_element_type)
        return y.reshape(xc.shape[0], ho, wo, cout)

    chunks = _chunk_count(n, ho * wo, k, chunk_elements)
    if chunks == 1 and kh * kw == 1:
        return body(x)
    if chunks == 1:
        return jax.checkpoint(body)(x) if chunk_elements else body(x)
    ys = jax.lax.map(jax.checkpoint(body), _split(x, chunks))
    return ys.reshape((n,) + ys.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def conv_moments(x, kernel, bias, strides=(1, 1), padding=((1, 1), (1, 1)), chunk_elements=DEFAULT_CHUNK_ELEMENTS,
                 stat_dtype=jnp.float32, binary_input=False):
    """Convolution plus bias (im2col, NHWC/HWIO) fused with the per-channel batch moments of its output.

    Args:
      x: ``(N, H, W, Cin)``; kernel: ``(kh, kw, Cin, Cout)``; bias: ``(Cout,)`` (cast to the output dtype).
      strides, padding: as :func:`im2col_conv`; chunk_elements: bound on one chunk's patch matrix;
      stat_dtype: dtype of the moments (at least float32).
      binary_input: the caller guarantees that ``x`` holds only 0 and 1 (spikes): the backward pass then keeps
        ``x`` as int8 (a quarter of float32), which is exact. Wrong for other inputs — leave False there.
    Returns:
      ``(z, mean, var)``: ``z = conv(x, kernel) + bias`` ``(N, H', W', Cout)`` in the promoted dtype of x and
      kernel; ``mean`` and biased ``var`` ``(Cout,)`` of ``z`` over N, H', W' (what a training-mode BatchNorm
      normalises with). Moments are computed per chunk (two-pass within the chunk) and merged with Chan et al.'s
      pairwise formula, so no activation-sized temporary is made for them.
    Gradients: exactly those of the unfused ``conv + bias`` followed by ``mean``/``var``. The backward pass keeps
    only ``x``, the kernel, ``z`` and the mean, applies the moments' gradient to ``dz`` in one elementwise pass and
    runs the convolution's backward chunk by chunk (patches recomputed), so the peak memory of a conv → BN layer's
    backward is ``z``, ``dz`` and ``dx`` — the memory design of ``benchmarks/BENCHMARKS.md``.
    Raises:
      ValueError: channel mismatch between ``x`` and ``kernel``.
    """
    return _conv_moments_fwd(x, kernel, bias, strides, padding, chunk_elements, stat_dtype, binary_input)[0]


def _conv_moments_fwd(x, kernel, bias, strides, padding, chunk_elements, stat_dtype, binary_input):
    n = x.shape[0]
    kh, kw, cin, cout = kernel.shape
    strides, pads, (ho, wo) = _conv_geometry(x.shape, kernel.shape, strides, padding)
    k = kh * kw * cin
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    w2 = kernel.reshape(k, cout).astype(dtype)
    b = bias.astype(dtype)

    def body(xc):
        p = _patches(xc, kh, kw, strides, pads, (ho, wo)).reshape(-1, k).astype(dtype)
        zc = jnp.dot(p, w2) + b
        zs = zc.astype(stat_dtype)
        mu = jnp.mean(zs, axis=0)
        m2 = jnp.sum(jnp.square(zs - mu), axis=0)
        return zc.reshape(xc.shape[0], ho, wo, cout), mu, m2

    chunks = _chunk_count(n, ho * wo, k, chunk_elements)
    z, mu, m2 = jax.lax.map(body, _split(x, chunks))
    z = z.reshape((n,) + z.shape[2:])
    rows = (n // chunks) * ho * wo
    mean = jnp.mean(mu, axis=0)
    var = (jnp.sum(m2, axis=0) + rows * jnp.sum(jnp.square(mu - mean), axis=0)) / (n * ho * wo)
    # an empty array carries x's dtype (the cotangent's) when x itself is kept as int8
    saved = (x.astype(jnp.int8) if binary_input else x), jnp.zeros((0,), x.dtype)
    return (z, mean, var), (saved, kernel, bias, z, mean)


def _conv_moments_bwd(strides, padding, chunk_elements, stat_dtype, binary_input, res, cts):
    (x, x_dtype), kernel, bias, z, mean = res
    x_dtype = x_dtype.dtype
    dz, dmean, dvar = cts
    n = x.shape[0]
    kh, kw, cin, cout = kernel.shape
    strides, pads, (ho, wo) = _conv_geometry(x.shape, kernel.shape, strides, padding)
    k = kh * kw * cin
    count = n * ho * wo
    dz = (dz.astype(stat_dtype) + (dmean + 2.0 * dvar * (z.astype(stat_dtype) - mean)) / count).astype(z.dtype)
    db = jnp.sum(dz.reshape(-1, cout).astype(stat_dtype), axis=0)
    w2 = kernel.reshape(k, cout).astype(z.dtype)
    patches = functools.partial(_patches, kh=kh, kw=kw, strides=strides, pads=pads, out_hw=(ho, wo))

    def body(dw, xs):
        xc, dzc = xs
        p, transpose = jax.vjp(patches, xc.astype(z.dtype))
        dzm = dzc.reshape(-1, cout)
        dw = dw + jnp.dot(p.reshape(-1, k).T, dzm, preferred_element_type=dw.dtype)
        (dxc,) = transpose(jnp.dot(dzm, w2.T).reshape(p.shape))
        return dw, dxc.astype(x_dtype)

    chunks = _chunk_count(n, ho * wo, k, chunk_elements)
    dw0 = jnp.zeros((k, cout), jnp.promote_types(z.dtype, jnp.float32))
    dw, dx = jax.lax.scan(body, dw0, (_split(x, chunks), _split(dz, chunks)))
    return dx.reshape(x.shape), dw.reshape(kernel.shape).astype(kernel.dtype), db.astype(bias.dtype)


conv_moments.defvjp(_conv_moments_fwd, _conv_moments_bwd)


def conv_general_dilated_im2col(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
    *,
    chunk_elements: int | None = DEFAULT_CHUNK_ELEMENTS,
):
    """Drop-in for ``jax.lax.conv_general_dilated`` that computes 2-D NHWC/HWIO convolutions without dilation or
    feature groups with :func:`im2col_conv`, and hands every other case to ``lax.conv_general_dilated``."""
    nhwc = lhs.ndim == 4 and rhs.ndim == 4 and (
        dimension_numbers is not None  # None means NCHW / OIHW in lax
        and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    )
    undilated = all(d == 1 for d in (lhs_dilation or (1, 1))) and all(d == 1 for d in (rhs_dilation or (1, 1)))
    if nhwc and undilated and feature_group_count == 1 and batch_group_count == 1 and out_sharding is None:
        return im2col_conv(
            lhs, rhs, window_strides, padding, precision=precision,
            preferred_element_type=preferred_element_type, chunk_elements=chunk_elements,
        )
    kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
        batch_group_count, precision=precision, preferred_element_type=preferred_element_type, **kwargs,
    )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    impl: str | None = "auto",
    chunk_elements: int | None = DEFAULT_CHUNK_ELEMENTS,
    **kwargs,
) -> nnx.Conv:
    """An ``nnx.Conv`` (same class, parameters and state tree) whose convolution is ``impl``.

    Args:
      in_features, out_features, kernel_size, **kwargs: as ``nnx.Conv``.
      impl: 'xla', 'im2col' or 'auto' (see :func:`resolve_conv_impl`).
      chunk_elements: im2col chunk bound (see :func:`im2col_conv`).
    """
    if resolve_conv_impl(impl) == "im2col":
        kwargs["conv_general_dilated"] = functools.partial(conv_general_dilated_im2col, chunk_elements=chunk_elements)
    return nnx.Conv(in_features, out_features, kernel_size, **kwargs)
