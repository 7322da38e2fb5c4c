"""Kernels shared by the examples.

merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse)
combines two partial attention results over disjoint key sets, each given as an output
[tokens, heads, head_dim] and its log-sum-exp [heads, tokens] (fp32), and writes the
result into `output` and `output_lse` in place (the math of vLLM's merge_attn_states,
section 2.2 of arXiv:2501.01005). On CUDA it is one Triton launch that allocates nothing;
on CPU a torch reference with the same semantics that writes into the same out-buffers.

merge_attn_states_prefix_strides has the same signature but indexes the prefix AND the
suffix with the prefix's head stride (and assumes the token stride is heads * head
stride), as vLLM's Triton kernel did when FlashAttention's padded-V outputs came along.
Only padded_v_layout_hazard.py uses it.

flash_attn_with_lse(q, k, v, scale, causal=False) stands in for FlashAttention with
return_softmax_lse=True: a fresh output [tokens, heads, v_head_dim] (bf16) and a fresh
lse [heads, tokens] (fp32) per call, as the examples' loops get them from the real
kernel. On CUDA it is PyTorch's fused memory-efficient attention (no [heads, tokens,
keys] workspace, like FlashAttention), checked once against the plain formula; on CPU,
and on CUDA if that check fails, the plain formula (see ATTENTION_IMPL).

gather_cache copies a chunk of a paged cache into a preallocated workspace (vLLM's
gather_and_maybe_dequant_cache / cp_gather_cache): it allocates nothing.

Every kernel runs through launch(), so that examples/verify.py can treat it as one
opaque launch: on CPU its tracker then counts only the tensors a kernel returns, not
the torch reference's temporaries (a fused GPU kernel has none), and its per-iteration
memory traces are keyed on kernel calls ("merge", "attention", ...).
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only machines: the torch reference is used instead
    triton = None

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- CPU reference


def _merge_reference(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    """Torch version of the Triton kernel below; writes into output / output_lse.

    Its temporaries come from pointwise ops, never from a factory call (empty, zeros, ...),
    so verify.py's CPU allocation count sees only the calling loop's own buffers, as the
    CUDA allocator does with the Triton kernel.
    """
    # FA2 reports +inf for rows that saw no keys, FA3 -inf: both mean "empty".
    p_se = prefix_lse.masked_fill(prefix_lse == float("inf"), NEG_INF)
    s_se = suffix_lse.masked_fill(suffix_lse == float("inf"), NEG_INF)
    max_lse = torch.maximum(p_se, s_se)
    # Both sides empty: subtract 0 instead of -inf so that no NaN appears.
    max_lse.masked_fill_(max_lse == NEG_INF, 0.0)
    p_se.sub_(max_lse).exp_()
    s_se.sub_(max_lse).exp_()
    out_se = p_se + s_se
    if output_lse is not None:
        torch.log(out_se, out=output_lse)  # log(0) = -inf: an empty row stays empty
        output_lse.add_(max_lse)
    # Scale first, then multiply the outputs (numerically safer); empty rows get 0.
    out_se.masked_fill_(out_se == 0, 1.0)
    p_se.div_(out_se)
    s_se.div_(out_se)
    # Scales are [heads, tokens]; outputs [tokens, heads, head_dim]. fp32 math.
    merged = prefix_output * p_se.t().unsqueeze(-1)
    merged.addcmul_(suffix_output, s_se.t().unsqueeze(-1))
    output.copy_(merged)


def _check_shapes(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    num_tokens, num_heads, _ = output.shape
    assert prefix_output.shape == suffix_output.shape == output.shape
    assert prefix_lse.shape == suffix_lse.shape == (num_heads, num_tokens)
    assert output_lse is None or output_lse.shape == (num_heads, num_tokens)


# --------------------------------------------------------------------------- Triton

if triton is not None:

    @triton.jit
    def _merge_weights(p_lse, s_lse):
        """The merged lse and the weights of prefix and suffix (shared by both kernels)."""
        # FA2 reports +inf for rows that saw no keys, FA3 -inf: both mean "empty".
        p_lse = tl.where(p_lse == float("inf"), float("-inf"), p_lse)
        s_lse = tl.where(s_lse == float("inf"), float("-inf"), s_lse)
        max_lse = tl.maximum(p_lse, s_lse)
        # Both sides empty: subtract 0 instead of -inf so that no NaN appears.
        max_lse = tl.where(max_lse == float("-inf"), 0.0, max_lse)
        p_se = tl.exp(p_lse - max_lse)
        s_se = tl.exp(s_lse - max_lse)
        out_se = p_se + s_se
        out_lse = tl.log(out_se) + max_lse
        # Scale first, then multiply the outputs (numerically safer); empty rows get 0.
        out_se = tl.where(out_se == 0.0, 1.0, out_se)
        return out_lse, p_se / out_se, s_se / out_se

    @triton.jit
    def _merge_attn_states_kernel(
        output,  # [NUM_TOKENS, NUM_HEADS, HEAD_SIZE]
        output_lse,  # [NUM_HEADS, NUM_TOKENS]
        prefix_output,
        prefix_lse,
        suffix_output,
        suffix_lse,
        out_stride_t,
        out_stride_h,
        prefix_stride_t,
        prefix_stride_h,
        suffix_stride_t,
        suffix_stride_h,
        out_lse_stride_h,
        prefix_lse_stride_h,
        suffix_lse_stride_h,
        HEAD_SIZE: tl.constexpr,
        PADDED_HEAD_SIZE: tl.constexpr,
        OUTPUT_LSE: tl.constexpr,
    ):
        token_idx = tl.program_id(0).to(tl.int64)
        head_idx = tl.program_id(1).to(tl.int64)

        p_lse = tl.load(prefix_lse + head_idx * prefix_lse_stride_h + token_idx)
        s_lse = tl.load(suffix_lse + head_idx * suffix_lse_stride_h + token_idx)
        out_lse, p_scale, s_scale = _merge_weights(p_lse, s_lse)
        if OUTPUT_LSE:
            tl.store(output_lse + head_idx * out_lse_stride_h + token_idx, out_lse)

        dims = tl.arange(0, PADDED_HEAD_SIZE)
        mask = dims < HEAD_SIZE
        p_out = tl.load(
            prefix_output + token_idx * prefix_stride_t + head_idx * prefix_stride_h + dims,
            mask=mask,
        ).to(tl.float32)
        s_out = tl.load(
            suffix_output + token_idx * suffix_stride_t + head_idx * suffix_stride_h + dims,
            mask=mask,
        ).to(tl.float32)
        out = p_out * p_scale + s_out * s_scale
        tl.store(
            output + token_idx * out_stride_t + head_idx * out_stride_h + dims,
            out.to(output.dtype.element_ty),
            mask=mask,
        )

    @triton.jit
    def _merge_attn_states_prefix_strides_kernel(
        output,  # [NUM_TOKENS, NUM_HEADS, HEAD_SIZE]
        output_lse,  # [NUM_HEADS, NUM_TOKENS], contiguous
        prefix_output,
        prefix_lse,
        suffix_output,
        suffix_lse,
        prefix_head_stride,
        output_head_stride,
        HEAD_SIZE: tl.constexpr,
        PADDED_HEAD_SIZE: tl.constexpr,
        OUTPUT_LSE: tl.constexpr,
    ):
        token_idx = tl.program_id(0).to(tl.int64)
        num_tokens = tl.num_programs(0)
        head_idx = tl.program_id(1).to(tl.int64)
        num_heads = tl.num_programs(1)

        p_lse = tl.load(prefix_lse + head_idx * num_tokens + token_idx)
        s_lse = tl.load(suffix_lse + head_idx * num_tokens + token_idx)
        out_lse, p_scale, s_scale = _merge_weights(p_lse, s_lse)
        if OUTPUT_LSE:
            tl.store(output_lse + head_idx * num_tokens + token_idx, out_lse)

        dims = tl.arange(0, PADDED_HEAD_SIZE)
        mask = dims < HEAD_SIZE
        # The hazard: the suffix is read with the PREFIX's strides.
        p_out = tl.load(
            prefix_output
            + token_idx * num_heads * prefix_head_stride
            + head_idx * prefix_head_stride
            + dims,
            mask=mask,
        ).to(tl.float32)
        s_out = tl.load(
            suffix_output
            + token_idx * num_heads * prefix_head_stride
            + head_idx * prefix_head_stride
            + dims,
            mask=mask,
        ).to(tl.float32)
        out = p_out * p_scale + s_out * s_scale
        tl.store(
            output
            + token_idx * num_heads * output_head_stride
            + head_idx * output_head_stride
            + dims,
            out.to(output.dtype.element_ty),
            mask=mask,
        )


# --------------------------------------------------------------------------- entry points

# Set by examples/verify.py while it measures: called as LAUNCH_HOOK(name, fn, args,
# kwargs) instead of fn(*args, **kwargs). None: kernels run directly.
LAUNCH_HOOK = None


def launch(name, fn, *args, **kwargs):
    """Run one kernel; verify.py's hook sees it as a single launch called `name`."""
    if LAUNCH_HOOK is None:
        return fn(*args, **kwargs)
    return LAUNCH_HOOK(name, fn, args, kwargs)


def merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    """Merge two partial attention states into output / output_lse (in place)."""
    launch("merge", _merge_attn_states, output, output_lse, prefix_output, prefix_lse,
           suffix_output, suffix_lse)  # fmt: skip


def merge_attn_states_prefix_strides(
    output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse
):
    """merge_attn_states with vLLM's old stride assumption (see the module docstring)."""
    launch("merge", _merge_attn_states_prefix_strides, output, output_lse, prefix_output,
           prefix_lse, suffix_output, suffix_lse)  # fmt: skip


def _merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    _check_shapes(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse)
    if not output.is_cuda:
        _merge_reference(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse)
        return
    for t in (output, prefix_output, suffix_output):
        assert t.stride(2) == 1, "head_dim must be the innermost dimension"
    for t in (prefix_lse, suffix_lse) + ((output_lse,) if output_lse is not None else ()):
        assert t.stride(1) == 1, "lse must be [heads, tokens] with unit token stride"
    num_tokens, num_heads, head_size = output.shape
    _merge_attn_states_kernel[(num_tokens, num_heads)](
        output,
        output_lse,
        prefix_output,
        prefix_lse,
        suffix_output,
        suffix_lse,
        output.stride(0),
        output.stride(1),
        prefix_output.stride(0),
        prefix_output.stride(1),
        suffix_output.stride(0),
        suffix_output.stride(1),
        output_lse.stride(0) if output_lse is not None else 0,
        prefix_lse.stride(0),
        suffix_lse.stride(0),
        HEAD_SIZE=head_size,
        PADDED_HEAD_SIZE=triton.next_power_of_2(head_size),
        OUTPUT_LSE=output_lse is not None,
    )


def _merge_attn_states_prefix_strides(
    output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse
):
    """Outputs are indexed as [tokens, heads, head_dim] with token stride heads * head
    stride; the prefix and the suffix both with the prefix's head stride, the output
    with its own. LSEs are taken as contiguous [heads, tokens].
    """
    _check_shapes(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse)
    num_tokens, num_heads, head_size = output.shape
    prefix_head_stride = prefix_output.stride(1)
    output_head_stride = output.stride(1)
    if not output.is_cuda:
        # Emulate the kernel's indexing on the raw storage: as_strided ignores the
        # tensors' real strides (and raises if a read would leave the storage).
        def reindex(t, head_stride):
            strides = (num_heads * head_stride, head_stride, 1)
            return t.as_strided(output.shape, strides, t.storage_offset())

        def lse_view(t):
            return t.as_strided((num_heads, num_tokens), (num_tokens, 1), t.storage_offset())

        _merge_reference(
            reindex(output, output_head_stride),
            lse_view(output_lse) if output_lse is not None else None,
            reindex(prefix_output, prefix_head_stride),
            lse_view(prefix_lse),
            reindex(suffix_output, prefix_head_stride),
            lse_view(suffix_lse),
        )
        return
    _merge_attn_states_prefix_strides_kernel[(num_tokens, num_heads)](
        output,
        output_lse,
        prefix_output,
        prefix_lse,
        suffix_output,
        suffix_lse,
        prefix_head_stride,
        output_head_stride,
        HEAD_SIZE=head_size,
        PADDED_HEAD_SIZE=triton.next_power_of_2(head_size),
        OUTPUT_LSE=output_lse is not None,
    )


# --------------------------------------------------------------------------- attention

# What flash_attn_with_lse runs on CUDA; verify.py reports it.
ATTENTION_IMPL = None


def flash_attn_with_lse(q, k, v, scale, causal=False):
    """Attention of q [T, H, Dqk] on k [K, H, Dqk], v [K, H, Dv].

    Returns a fresh output [T, H, Dv] in v's dtype (contiguous, as FlashAttention returns
    it) and a fresh lse [H, T] in fp32; rows that saw no keys get lse -inf and output 0.
    `causal` masks key j > query i (top-left aligned, for T == K).
    """
    return launch("attention", _attention, q, k, v, scale, causal)


def _attention(q, k, v, scale, causal):
    if q.is_cuda and _fused_attention_ok():
        return _attention_fused(q, k, v, scale, causal)
    return _attention_reference(q, k, v, scale, causal)


def _attention_reference(q, k, v, scale, causal):
    """The formula, in fp32 (materialises the [H, T, K] scores)."""
    scores = torch.einsum("thd,khd->htk", q.float(), k.float()) * scale
    if causal:
        mask = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool, device=q.device).tril()
        scores.masked_fill_(~mask, NEG_INF)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1)).nan_to_num_(0.0)
    out = torch.einsum("htk,khd->thd", probs, v.float())
    # Contiguous, as FlashAttention returns it (einsum leaves [T, H, D] permuted).
    out = out.to(v.dtype, memory_format=torch.contiguous_format).contiguous()
    return out, lse.contiguous()


def _attention_fused(q, k, v, scale, causal):
    """PyTorch's memory-efficient attention kernel; [B, H, T, D] views of [T, H, D]."""
    as_bhtd = lambda t: t.unsqueeze(0).transpose(1, 2)  # noqa: E731
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        as_bhtd(q), as_bhtd(k), as_bhtd(v), None, True, 0.0, causal, scale=scale
    )[:2]
    # out [1, H, T, Dv] is a view of a contiguous [1, T, H, Dv] buffer; lse is padded
    # to a multiple of 32 tokens.
    return out[0].transpose(0, 1).contiguous(), lse[0, :, : q.shape[0]].contiguous()


def _fused_attention_ok():
    """Check the fused kernel once against the formula; fall back to it if it differs."""
    global ATTENTION_IMPL
    if ATTENTION_IMPL is None:
        g = torch.Generator().manual_seed(1234)
        problems = []
        # The examples' layouts: MLA's v is a view of the up-projection [K, H, 128 + 128],
        # the padded-V backend's v is contiguous; the ring's block is causal.
        for t, n, dqk, dv, causal in (
            (40, 24, 192, 128, False),
            (40, 24, 192, 192, False),
            (48, 48, 128, 128, True),
        ):
            q, k = (randn((m, 2, dqk), g, "cuda") for m in (t, n))
            v = randn((n, 2, 128 + dv), g, "cuda")[..., 128:] if dv == 128 else randn(
                (n, 2, dv), g, "cuda"
            )
            try:
                out, lse = _attention_fused(q, k, v, dqk**-0.5, causal)
                ref_out, ref_lse = _attention_reference(q, k, v, dqk**-0.5, causal)
                torch.testing.assert_close(out.float(), ref_out.float(), atol=2e-2, rtol=2e-2)
                torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-4)
                assert out.is_contiguous() and lse.is_contiguous()
            except Exception as exc:  # any failure: use the formula and say why
                first_line = (str(exc).splitlines() or [""])[0][:200]
                problems.append(f"{type(exc).__name__}: {first_line}")
        if problems:
            failed = "; ".join(problems)
            ATTENTION_IMPL = f"plain formula (fused kernel check failed: {failed})"
        else:
            ATTENTION_IMPL = "torch.ops.aten._scaled_dot_product_efficient_attention"
    return ATTENTION_IMPL.startswith("torch.ops")


# --------------------------------------------------------------------------- caches


def gather_cache(src_cache, dst, block_table, start, num_tokens):
    """Copy tokens [start, start + num_tokens) of one sequence's paged cache into dst.

    src_cache [num_blocks, block_size, width], block_table [max_blocks] (int); writes
    dst[:num_tokens] in place, as vLLM's gather kernels write the chunked-prefill
    workspace.
    """
    launch("gather", _gather_cache, src_cache, dst, block_table, start, num_tokens)


def _gather_cache(src_cache, dst, block_table, start, num_tokens):
    block_size = src_cache.shape[1]
    positions = torch.arange(start, start + num_tokens, device=src_cache.device)
    slots = block_table[positions // block_size] * block_size + positions % block_size
    torch.index_select(src_cache.flatten(0, 1), 0, slots, out=dst[:num_tokens])


# --------------------------------------------------------------------------- input helpers


def randn(shape, generator, device, dtype=torch.bfloat16):
    """Random normal values drawn on the CPU, so every device gets the same inputs."""
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def split_kv_attention(q, k_cache, v_cache, seq_lens, num_splits, split_len):
    """Flash-decoding's first kernel: every KV split of every request, in one launch.

    q [batch, kv_heads, group, dim]; k_cache, v_cache [batch, max_len, kv_heads, dim];
    seq_lens [batch]. Returns fresh fp32 partials, as the split kernel writes them to
    its workspace: outputs [num_splits, batch, heads, dim] and lse [num_splits, heads,
    batch]; a split past the end of a request saw no keys (lse -inf, output 0).
    """
    return launch("split_attention", _split_kv_attention, q, k_cache, v_cache, seq_lens,
                  num_splits, split_len)  # fmt: skip


def _split_kv_attention(q, k_cache, v_cache, seq_lens, num_splits, split_len):
    batch, kv_heads, group, dim = q.shape
    heads = kv_heads * group
    split_out = torch.empty((num_splits, batch, heads, dim), device=q.device)
    split_lse = torch.empty((num_splits, heads, batch), device=q.device)
    scale = dim**-0.5
    for s in range(num_splits):
        keys = slice(s * split_len, (s + 1) * split_len)
        k, v = k_cache[:, keys].float(), v_cache[:, keys].float()
        scores = torch.einsum("bkgd,blkd->kgbl", q.float(), k) * scale
        positions = torch.arange(keys.start, keys.stop, device=q.device)
        in_context = positions[None, :] < seq_lens[:, None]  # [batch, split_len]
        scores.masked_fill_(~in_context, NEG_INF)
        lse = torch.logsumexp(scores, dim=-1)  # -inf where the split is past the end
        probs = torch.exp(scores - lse[..., None]).nan_to_num_(0.0)
        split_out[s] = torch.einsum("kgbl,blkd->bkgd", probs, v).reshape(batch, heads, dim)
        split_lse[s] = lse.reshape(heads, batch)
    return split_out, split_lse
