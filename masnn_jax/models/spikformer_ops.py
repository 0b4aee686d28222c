"""Synaptic operations of a :class:`~masnn_jax.models.spikformer.Spikformer` (its ``operation_counts`` hook),
kept apart from the model file: which conv, linear map and SSA product reads what, the honest way and the paper's.
"""

from __future__ import annotations

from masnn_jax.models import registry

__all__ = ["operation_counts"]


def operation_counts(model) -> list[registry.OpCount]:
    """The synaptic operations of one inference of ``model`` (a built or abstract ``Spikformer``; the
    :class:`~masnn_jax.models.registry.SpikingModel` hook), in forward order, per sample, each with what really feeds it (``input``) and what the paper's count says feeds
    it (``paper_input``, where that differs). Works on an abstract model (``nnx.eval_shape``).

    Paper (Zhou et al., ICLR 2023, arXiv 2209.15425v2 App. C.2; ``shared/specs/spikformer.md`` §5):
    ``E = 4.6 pJ · FLOPs(first conv) + 0.9 pJ · Σ SOPs``, ``SOP = fr · T · FLOPs``, every layer after the first
    conv and the SSA products counted as SOPs. With ``residual='spike'`` the SEW residual stream
    ``x + SSA(x) + MLP(...)`` holds integers (0, 1, 2, ...), not spikes, so the maps that read it (q/k/v, fc1,
    the head) multiply: the honest count charges them as dense MACs (``input='real'``, ``T · FLOPs``; the
    argument of Spikingformer, Zhou et al. 2023), the paper's count as SOPs at the firing rate of the neuron
    that last wrote the stream (``paper_input``: ``rpe_lif`` for block 0's SSA, then the branch output neurons
    ``proj_lif`` / ``fc2_lif``; the paper does not say which rate it used).

    Ops (``k``: block index, N tokens, D = ``embed_dim``, d = D / heads, hidden = ``mlp_ratio · D``):

    * ``sps<i>.conv`` (3×3 s1 p1, ``9·h·w·c_in·c_out`` at the stage's input size, before its max-pool): stage 0
      on the model input (MACs; still images once per inference, ``time_steps=1``, as the paper's
      ``FLOPs(first conv)``: the repeated image gives the same conv output at every step; event frames T times
      weighted by the non-zero fraction), stage i > 0 on ``sps.stages.<i-1>.lif``'s spikes (AC); drives
      ``sps.stages.<i>.lif`` (its MA-SNN attention counted on the pre-activation shape);
    * ``rpe.conv`` (3×3, D -> D) on the last stage's spikes, drives ``sps.rpe_lif``;
    * ``block<k>.attn.q|k|v`` (``N·D·D``): the stream (honest MAC; paper SOP) or, with
      ``residual='membrane'``, ``attn.in_lif``'s spikes (its attention counted on the ``q`` row);
    * the SSA products on spikes (``attn_order``): 'qk_first' ``block<k>.attn.qk`` ``Q Kᵀ`` (``N·N·D``, an
      accumulate of K per Q spike: AC at ``q_lif``'s rate) and ``block<k>.attn.av`` ``(Q Kᵀ·s) V`` (``N·N·D``:
      the integer attention map accumulated per V spike: AC at ``v_lif``'s rate); 'kv_first'
      ``block<k>.attn.kv`` ``Kᵀ V`` (``N·D·d``, AC at ``k_lif``'s rate) and ``block<k>.attn.qkv``
      ``Q (Kᵀ V)·s`` (``N·D·d``, AC at ``q_lif``'s rate); the second drives ``attn_lif``;
    * ``block<k>.attn.proj`` (``N·D·D``) on ``attn_lif``'s spikes, drives ``proj_lif`` ('spike');
    * ``block<k>.mlp.fc1`` (``N·D·hidden``) on the stream (or ``mlp.in_lif``), ``block<k>.mlp.fc2``
      (``N·hidden·D``) on ``fc1_lif``'s spikes, drives ``fc2_lif`` ('spike');
    * ``head`` (``D·num_classes``) on the T- and token-mean of the stream: real-valued, one MAC evaluation per
      inference (honest); the paper's way: SOPs ``T · FLOPs · fr`` at the last writer's rate ('spike' only).

    Approximations (both counts): a conv after a max-pool is charged at the rate of the neuron before the pool
    (pooled spikes fire at least as often), Q and K after ``qk_maxpool1d`` at their neurons' rates; BN, pools,
    the residual adds and the means are not counted.
    """
    h, w, cin = (int(v) for v in model.input_shape)
    ops: list[registry.OpCount] = []
    image = model.input_kind == "image"

    def att_path(path: str, lif) -> str | None:
        return None if lif.attention is None else f"{path}.attention"

    prev = None
    for i, stage in enumerate(model.sps.stages):
        kh, kw, ci, co = (int(d) for d in stage.convbn.conv.kernel.shape)
        path = f"sps.stages.{i}.lif"
        pre = (h, w, co)
        if stage.pool and stage.pool_order == "conv-bn-pool-lif":
            pre = (-(-h // 2), -(-w // 2), co)
        ops.append(registry.OpCount(
            name=f"sps{i}.conv", macs_per_step=kh * kw * h * w * ci * co, input="input" if prev is None else prev,
            layer=path, kind="conv", input_shape=(h, w, ci), output_shape=pre, conv_output=(h, w, co),
            kernel=(kh, kw, ci, co), attention=att_path(path, stage.lif), attention_shape=pre,
            time_steps=1 if (prev is None and image) else None))
        if stage.pool:
            h, w = -(-h // 2), -(-w // 2)
        prev, cin = path, co
    kh, kw, ci, co = (int(d) for d in model.sps.rpe_convbn.conv.kernel.shape)
    ops.append(registry.OpCount(
        name="rpe.conv", macs_per_step=kh * kw * h * w * ci * co, input=prev, layer="sps.rpe_lif", kind="conv",
        input_shape=(h, w, ci), output_shape=(h, w, co), conv_output=(h, w, co), kernel=(kh, kw, ci, co),
        attention=att_path("sps.rpe_lif", model.sps.rpe_lif), attention_shape=(h, w, co)))
    n, dim, grid = h * w, model.embed_dim, (h, w, model.embed_dim)
    spike = model.residual == "spike"
    writer = "sps.rpe_lif"  # the neuron that last wrote the residual stream (the paper's rate for it)

    def linear(name, lin, src, layer, *, attention=None, paper=None):
        ni, no = (int(d) for d in lin.kernel.shape)
        return registry.OpCount(name=name, macs_per_step=n * ni * no, input=src, layer=layer, kind="fc",
                                input_shape=(n, ni), output_shape=(n, no), kernel=(ni, no), attention=attention,
                                attention_shape=grid if attention else None, paper_input=paper)

    for j, blk in enumerate(model.blocks):
        p, a, m = f"blocks.{j}", blk.attn, blk.mlp
        src = "real" if spike else f"{p}.attn.in_lif"
        in_att = None if spike else att_path(f"{p}.attn.in_lif", a.in_lif)
        for k, name in enumerate(("q", "k", "v")):
            ops.append(linear(f"block{j}.attn.{name}", getattr(a, name), src, f"{p}.attn.{name}_lif",
                              attention=in_att if k == 0 else None, paper=writer if spike else None))
        hd = dim // a.heads
        if a.attn_order == "qk_first":
            prods = (("qk", n * n * dim, "q_lif", "", (n, dim), (a.heads, n, n)),
                     ("av", n * n * dim, "v_lif", f"{p}.attn.attn_lif", (a.heads, n, n), (n, dim)))
        else:
            prods = (("kv", n * dim * hd, "k_lif", "", (n, dim), (a.heads, hd, hd)),
                     ("qkv", n * dim * hd, "q_lif", f"{p}.attn.attn_lif", (n, dim), (n, dim)))
        for name, macs, src_lif, layer, ishape, oshape in prods:
            ops.append(registry.OpCount(name=f"block{j}.attn.{name}", macs_per_step=macs,
                                        input=f"{p}.attn.{src_lif}", layer=layer, kind="matmul",
                                        input_shape=ishape, output_shape=oshape))
        out = f"{p}.attn.proj_lif" if spike else ""
        ops.append(linear(f"block{j}.attn.proj", a.proj, f"{p}.attn.attn_lif", out,
                          attention=att_path(out, a.proj_lif) if spike else None))
        if spike:
            writer = out
        src = "real" if spike else f"{p}.mlp.in_lif"
        ops.append(linear(f"block{j}.mlp.fc1", m.fc1, src, f"{p}.mlp.fc1_lif",
                          attention=None if spike else att_path(f"{p}.mlp.in_lif", m.in_lif),
                          paper=writer if spike else None))
        out = f"{p}.mlp.fc2_lif" if spike else ""
        ops.append(linear(f"block{j}.mlp.fc2", m.fc2, f"{p}.mlp.fc1_lif", out,
                          attention=att_path(out, m.fc2_lif) if spike else None))
        if spike:
            writer = out
    ni, no = (int(d) for d in model.head.kernel.shape)
    ops.append(registry.OpCount(name="head", macs_per_step=ni * no, input="real", layer="", kind="fc",
                                input_shape=(ni,), output_shape=(no,), kernel=(ni, no), time_steps=1,
                                paper_input=writer if spike else None,
                                paper_time_steps=model.T if spike else None))
    return ops
