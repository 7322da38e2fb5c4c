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

attention_with_lse is the plain attention the examples use to make their per-chunk
partial results up front (in make_inputs), so that the loops measured by verify.py
allocate nothing but their own buffers.
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


def merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    """Merge two partial attention states into output / output_lse (in place)."""
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


def merge_attn_states_prefix_strides(
    output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse
):
    """merge_attn_states with vLLM's old stride assumption (see the module docstring).

    Outputs are indexed as [tokens, heads, head_dim] with token stride heads * head
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


# --------------------------------------------------------------------------- input helpers


def attention_with_lse(q, k, v, scale, key_mask=None, out_dtype=torch.bfloat16):
    """Plain attention returning (out [T, H, Dv] in out_dtype, lse [H, T] fp32).

    q [T, H, Dqk], k [K, H, Dqk], v [K, H, Dv]; key_mask, if given, is a bool tensor
    broadcastable to [H, T, K] (True = attend). Rows with no keys get lse -inf and a zero
    output, as FlashAttention 3 returns them. Computed in fp32; used only to make inputs.
    """
    scores = torch.einsum("thd,khd->htk", q.float(), k.float()) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, NEG_INF)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1)).nan_to_num_(0.0)
    out = torch.einsum("htk,khd->thd", probs, v.float())
    # Contiguous, as attention kernels return them (einsum leaves [T, H, D] permuted).
    return out.to(out_dtype, memory_format=torch.contiguous_format), lse.contiguous()


def randn(shape, generator, device, dtype=torch.bfloat16):
    """Random normal values drawn on the CPU, so every device gets the same inputs."""
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
