r"""Triton kernels of the fused LIF scan (the CUDA kernels of ``spiketime::lif_scan_fwd``/``lif_scan_bwd``).

Same contract as :func:`spiketime.kernels.lif_loop._fwd_any` / ``_bwd_any`` (equations and the
adjoint recursion in :mod:`spiketime.kernels.lif_scan`'s docstring); the loop structure and the
order of every floating-point operation mirror ``lif_scan.c``, and the kernels are compiled with
``enable_fp_fusion=False`` (no FMA contraction, IEEE division), so that the forward of the step spike
rounds exactly like the compiled CPU scan (bitwise equal ``s, v, i``; the PyTorch loop differs from
both by an ulp where its CPU ``addcmul`` fuses a multiply-add). The surrogate's special functions are
Triton's (``exp``, ``erf``) or a Cephes-style ``atan`` written here: a few ulp from the CPU's libm.

Layout: one launch per pass. Each program owns ``BLOCK`` consecutive elements of the contiguous
``B*N`` axis (coalesced loads; ``beta, alpha`` gathered once with ``n = j % N``) and runs the whole
time loop in registers (forward ``t = 0..T-1``, backward ``t = T-1..0``). The loop runs over chunks of
``CHUNK`` steps, software-pipelined: the loads of the next chunk are issued before the arithmetic of
the current one, so that up to ``2*CHUNK`` rows of every input stream are in flight while the
dependent steps compute (the scan is latency-bound when ``B*N`` is small); a per-step loop takes the
remaining steps. Arithmetic is float32 (float64 for float64 inputs); ``x`` and the incoming
gradients may be bf16/fp16 and are converted on load; ``s`` is stored in ``x``'s dtype. When the
compute dtype ``promote(x.dtype, beta.dtype)`` is bf16/fp16 itself, ``v``, ``i`` and ``s`` are rounded
to it at every step (the carried state is what is stored, so the backward recomputes the same
spikes) but the arithmetic stays float32: close to, not bitwise equal to, the PyTorch loop, which
rounds after every operation.

The backward keeps ``v[t]``, its spike and ``i[t]`` from the previous (later) step, so every saved
tensor is read once; ``dL/dbeta`` and ``dL/dalpha`` are accumulated per element over ``t`` in
registers, written to a ``[B*N]`` buffer and summed over ``B`` in PyTorch (deterministic).
"""

from __future__ import annotations

import contextlib
import functools
import linecache

import torch
import triton
import triton.language as tl
from torch import Tensor

from spiketime.kernels.lif_loop import _bwd_any, _fwd_any
from spiketime.surrogate import TABLE

_LOW = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_MAX_BN = 2**27  # element offsets within 2*CHUNK rows are int32; beyond this the PyTorch loop runs


# ---------------------------------------------------------------------------------------------
# Elementwise helpers (the surrogates' Triton code is generated from spiketime.surrogate.TABLE)
# ---------------------------------------------------------------------------------------------


@triton.jit
def _div(a, b):
    """IEEE round-to-nearest division (Triton's float32 ``/`` is the approximate ``div.full.f32`` on
    NVIDIA; float64's is already ``div.rn.f64``). ``b`` is a tensor."""
    if b.dtype == tl.float64:
        r = a / b
    else:
        r = tl.fdiv(a, b, ieee_rounding=True)
    return r


@triton.jit
def _atan(x):
    """``atan`` from +, *, / and selects (Cephes ``atanf`` in float32, ``atan`` in float64)."""
    ax = tl.abs(x)
    if x.dtype == tl.float64:
        big = ax > 2.41421356237309504880
        mid = ax > 0.66
        xr = tl.where(big, _div(-1.0, ax), tl.where(mid, _div(ax - 1.0, ax + 1.0), ax))
        z = xr * xr
        p = (
            ((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
            - 1.228866684490136173410e2
        ) * z - 6.485021904942025371773e1
        q = (
            (((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
            + 4.853903996359136964868e2
        ) * z + 1.945506571482613964425e2
        r = xr * _div(z * p, q) + xr
        # (constants added to tensors take the tensor's dtype; a where() of two bare constants would be float32)
        y = tl.where(
            big,
            (r + 6.123233995736765886130e-17) + 1.57079632679489661923,
            tl.where(mid, (r + 3.061616997868382943065e-17) + 0.78539816339744830962, r),
        )
    else:
        big = ax > 2.414213562373095
        mid = ax > 0.4142135623730950
        xr = tl.where(big, _div(-1.0, ax), tl.where(mid, _div(ax - 1.0, ax + 1.0), ax))
        z = xr * xr
        r = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * xr + xr
        y = tl.where(big, r + 1.5707963267948966, tl.where(mid, r + 0.7853981633974483, r))
    return tl.where(x < 0, -y, y)


def _surrogate_jit(kind: str) -> triton.JITFunction:
    """``_sg_grad(x, k, SUR)`` (``kind="grad"``: the surrogate derivative at ``x = v - theta``) or ``_sg_prim``
    (``"prim"``: the primitive, the smooth spike) as a Triton function: one ``SUR == code`` branch per entry of
    :data:`spiketime.surrogate.TABLE`, whose body is that entry's Triton snippet (``SUR`` is a constexpr: only
    the taken branch is compiled; an unknown code leaves ``r`` undefined, a compile error). The source is
    registered with :mod:`linecache` so that Triton (and its interpreter) can read it like a file's."""
    name = f"_sg_{kind}"
    lines = [f"def {name}(x, k, SUR: tl.constexpr):"]
    for j, entry in enumerate(TABLE.values()):
        lines.append(f"    {'if' if j == 0 else 'elif'} SUR == {entry.code}:  # {entry.name}")
        lines += ["        " + line for line in getattr(entry, f"triton_{kind}").splitlines()]
    lines.append("    return r")
    src = "\n".join(lines) + "\n"
    filename = f"<spiketime.surrogate.TABLE: triton_lif.{name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # mtime None: kept by checkcache
    namespace: dict = {}
    exec(compile(src, filename, "exec"), globals(), namespace)  # noqa: S102 - our own table's source
    return triton.jit(namespace[name])


_sg_grad = _surrogate_jit("grad")
_sg_prim = _surrogate_jit("prim")


@triton.jit
def _spike(v, theta, k, SUR: tl.constexpr, SMOOTH: tl.constexpr):
    if SMOOTH:
        s = _sg_prim(v - theta, k, SUR)
    else:
        s = tl.where(v > theta, 1.0, 0.0).to(v.dtype)
    return s


@triton.jit
def _fwd_step(
    xt,
    v,
    i,
    s,
    b,
    a,
    theta,
    k,
    RT: tl.constexpr,
    RESET: tl.constexpr,
    SUR: tl.constexpr,
    SMOOTH: tl.constexpr,
    SYN: tl.constexpr,
    LOWP: tl.constexpr,
):
    """One step ``(v[t-1], i[t-1], s[t-1]) -> (v[t], i[t], s[t])``, in lif_scan.c's operation order."""
    if SYN:
        ic = a * i + xt
        if LOWP:
            ic = ic.to(RT).to(v.dtype)
    else:
        ic = xt
    if RESET == 1:
        vc = (b * v) * (1.0 - s) + (1.0 - b) * ic
    else:
        vc = b * v + (1.0 - b) * ic
    if RESET == 0:
        vc = vc - theta * s
    if LOWP:
        vc = vc.to(RT).to(v.dtype)
        sc = _spike(vc, theta, k, SUR, SMOOTH).to(RT).to(v.dtype)
    else:
        sc = _spike(vc, theta, k, SUR, SMOOTH)
    return vc, ic, sc


@triton.jit
def _bwd_step(
    gs,
    gv,
    v,
    sv,
    vp,
    sp,
    it,
    ip,
    avn,
    aic,
    gb,
    ga,
    b,
    a,
    theta,
    k,
    RESET: tl.constexpr,
    SUR: tl.constexpr,
    DETACH: tl.constexpr,
    SYN: tl.constexpr,
    DEC: tl.constexpr,
):
    """One reverse step of the adjoint recursion; returns ``(a_v[t], a_i[t] = dL/dx[t], carry, gb, ga)``."""
    as_ = gs
    if not DETACH:
        if RESET == 0:
            as_ = as_ - theta * avn
        elif RESET == 1:
            as_ = as_ - b * v * avn
    av = gv + _sg_grad(v - theta, k, SUR) * as_
    if RESET == 1:
        av = av + avn * (b * (1.0 - sv))
    else:
        av = av + avn * b
    ai = av * (1.0 - b) + aic
    if DEC:  # the decays' gradients
        if RESET == 1:
            veff = vp * (1.0 - sp)
        else:
            veff = vp
        gb = gb + av * (veff - it)
        if SYN:
            ga = ga + ai * ip
    if SYN:
        aic = ai * a
    else:
        aic = tl.zeros_like(ai)
    return av, ai, aic, gb, ga


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


@triton.jit
def _block_params(
    BN, N, beta_ptr, alpha_ptr, theta_arg, scale_arg, SYN: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr
):
    """This program's element offsets into ``[B*N]``, their mask, ``theta``, the surrogate scale and the
    per-element decays ``beta``, ``alpha`` (``alpha = beta``, unused, without a synapse)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < BN
    n = offs % N
    b = tl.load(beta_ptr + n, mask=mask, other=0.0).to(CT)
    if SYN:
        a = tl.load(alpha_ptr + n, mask=mask, other=0.0).to(CT)
    else:
        a = b
    return offs, mask, tl.full((), theta_arg, CT), tl.full((), scale_arg, CT), b, a


@triton.jit(do_not_specialize=["T"])
def _lif_fwd_kernel(
    x_ptr,
    beta_ptr,
    alpha_ptr,
    v0_ptr,
    i0_ptr,
    s0_ptr,
    s_ptr,
    v_ptr,
    i_ptr,
    iT_ptr,
    T,
    BN,
    N,
    theta_arg: tl.float64,
    scale_arg: tl.float64,
    RESET: tl.constexpr,
    SUR: tl.constexpr,
    SMOOTH: tl.constexpr,
    SYN: tl.constexpr,
    CT: tl.constexpr,
    LOWP: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    RT: tl.constexpr = v_ptr.dtype.element_ty
    offs, mask, theta, k, b, a = _block_params(BN, N, beta_ptr, alpha_ptr, theta_arg, scale_arg, SYN, CT, BLOCK)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(CT)
    i = tl.load(i0_ptr + offs, mask=mask, other=0.0).to(CT)
    s = tl.load(s0_ptr + offs, mask=mask, other=0.0).to(CT)
    # row pointers are scalars (uniform registers); each access adds the thread's 32-bit offset
    xr = x_ptr
    sr = s_ptr
    vr = v_ptr
    ir = i_ptr
    # Software pipeline over chunks of CHUNK steps: the loads of chunk c+1 are issued before the
    # arithmetic of chunk c, so that 2*CHUNK loads per thread are in flight across the dependent steps.
    n_ch = T // CHUNK
    t_main = n_ch * CHUNK
    nxt = ()
    for c in tl.static_range(CHUNK):
        nxt = nxt + (tl.load(xr + (offs + c * BN), mask=offs < tl.where(n_ch > 0, BN, 0), other=0.0),)
    for ch in range(n_ch):
        cur = nxt
        nxt = ()
        pre = offs < tl.where(ch + 1 < n_ch, BN, 0)
        for c in tl.static_range(CHUNK):
            nxt = nxt + (tl.load(xr + (offs + (CHUNK + c) * BN), mask=pre, other=0.0),)
        for c in tl.static_range(CHUNK):
            v, i, s = _fwd_step(cur[c].to(CT), v, i, s, b, a, theta, k, RT, RESET, SUR, SMOOTH, SYN, LOWP)
            tl.store(vr + (offs + c * BN), v, mask=mask)
            tl.store(sr + (offs + c * BN), s, mask=mask)
            if SYN:
                tl.store(ir + (offs + c * BN), i, mask=mask)
        xr += CHUNK * BN
        sr += CHUNK * BN
        vr += CHUNK * BN
        ir += CHUNK * BN
    for _t in range(t_main, T):
        xt = tl.load(xr + offs, mask=mask, other=0.0).to(CT)
        v, i, s = _fwd_step(xt, v, i, s, b, a, theta, k, RT, RESET, SUR, SMOOTH, SYN, LOWP)
        tl.store(vr + offs, v, mask=mask)
        tl.store(sr + offs, s, mask=mask)
        if SYN:
            tl.store(ir + offs, i, mask=mask)
        xr += BN
        sr += BN
        vr += BN
        ir += BN
    tl.store(iT_ptr + offs, i, mask=mask)


@triton.jit
def _ld(ptr, off, mask, ON: tl.constexpr, CT: tl.constexpr):
    """``ptr[off]`` as ``CT``, or zeros when the stream is absent (``ON`` false: an unused gradient)."""
    if ON:
        r = tl.load(ptr + off, mask=mask, other=0.0).to(CT)
    else:
        r = tl.zeros(off.shape, CT)
    return r


@triton.jit(do_not_specialize=["T"])
def _lif_bwd_kernel(
    gs_ptr,
    gv_ptr,
    giT_ptr,
    v_ptr,
    iall_ptr,
    beta_ptr,
    alpha_ptr,
    v0_ptr,
    i0_ptr,
    s0_ptr,
    gx_ptr,
    gb_ptr,
    ga_ptr,
    gv0_ptr,
    gi0_ptr,
    gs0_ptr,
    T,
    BN,
    N,
    theta_arg: tl.float64,
    scale_arg: tl.float64,
    RESET: tl.constexpr,
    SUR: tl.constexpr,
    SMOOTH: tl.constexpr,
    DETACH: tl.constexpr,
    SYN: tl.constexpr,
    GS: tl.constexpr,
    GV: tl.constexpr,
    DEC: tl.constexpr,
    CT: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """Reverse scan over ``t = T-1..0`` (``T >= 1``). Row ``t`` of every ``[T, B*N]`` stream is at ``t*BN``.
    ``GS``/``GV`` false: ``g_s``/``g_v`` are zero (not read); ``DEC`` false: no decay gradients (``i``
    not read, ``gb``/``ga`` not written)."""
    offs, mask, theta, k, b, a = _block_params(BN, N, beta_ptr, alpha_ptr, theta_arg, scale_arg, SYN, CT, BLOCK)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(CT)
    s0 = tl.load(s0_ptr + offs, mask=mask, other=0.0).to(CT)
    avn = tl.zeros([BLOCK], CT)
    aic = tl.load(giT_ptr + offs, mask=mask, other=0.0).to(CT)
    gb = tl.zeros([BLOCK], CT)
    ga = tl.zeros([BLOCK], CT)
    # scalar row pointers (uniform registers), plus each thread's 32-bit offset: row t = T-1 for g_s, g_v,
    # g_x and x (= i without a synapse), row t-1 for v and i
    last = (T - 1).to(tl.int64) * BN
    gsp = gs_ptr + last
    gvp = gv_ptr + last
    gxp = gx_ptr + last
    vpp = v_ptr + last - BN
    ipp = iall_ptr + last - BN
    xtp = iall_ptr + last
    if SYN:
        iq = ipp
    else:
        iq = xtp
    # carried from the later step: v[t], its spike (zero reset), i[t] (synapse)
    v = tl.load(v_ptr + last + offs, mask=mask, other=0.0).to(CT)
    if RESET == 1:
        sv = _spike(v, theta, k, SUR, SMOOTH)
    else:
        sv = v
    it = _ld(iall_ptr + last, offs, mask, DEC and SYN, CT)
    # Chunks of CHUNK steps cover t = T-1 .. T-n_chunks*CHUNK (all >= 1, so v[t-1] lies in v_seq), software-
    # pipelined like the forward: the next chunk's streams are loaded before this chunk's arithmetic.
    n_chunks = (T - 1) // CHUNK
    pre = offs < tl.where(n_chunks > 0, BN, 0)
    n_gs = ()
    n_gv = ()
    n_vp = ()
    n_iq = ()
    for c in tl.static_range(CHUNK):
        n_gs = n_gs + (_ld(gsp, offs - c * BN, pre, GS, CT),)
        n_gv = n_gv + (_ld(gvp, offs - c * BN, pre, GV, CT),)
        n_vp = n_vp + (_ld(vpp, offs - c * BN, pre, True, CT),)
        n_iq = n_iq + (_ld(iq, offs - c * BN, pre, DEC, CT),)
    for ch in range(n_chunks):
        c_gs = n_gs
        c_gv = n_gv
        c_vp = n_vp
        c_iq = n_iq
        n_gs = ()
        n_gv = ()
        n_vp = ()
        n_iq = ()
        pre = offs < tl.where(ch + 1 < n_chunks, BN, 0)
        for c in tl.static_range(CHUNK):
            n_gs = n_gs + (_ld(gsp, offs - (CHUNK + c) * BN, pre, GS, CT),)
            n_gv = n_gv + (_ld(gvp, offs - (CHUNK + c) * BN, pre, GV, CT),)
            n_vp = n_vp + (_ld(vpp, offs - (CHUNK + c) * BN, pre, True, CT),)
            n_iq = n_iq + (_ld(iq, offs - (CHUNK + c) * BN, pre, DEC, CT),)
        for c in tl.static_range(CHUNK):
            vp = c_vp[c]
            if RESET == 1:
                sp = _spike(vp, theta, k, SUR, SMOOTH)
            else:
                sp = vp
            if SYN:
                ip = c_iq[c]
            else:
                ip = vp
                it = c_iq[c]
            avn, ai, aic, gb, ga = _bwd_step(
                c_gs[c], c_gv[c], v, sv, vp, sp, it, ip, avn, aic, gb, ga, b, a, theta, k, RESET, SUR, DETACH, SYN, DEC
            )
            tl.store(gxp + (offs - c * BN), ai, mask=mask)
            v = vp
            sv = sp
            it = ip
        gsp -= CHUNK * BN
        gvp -= CHUNK * BN
        gxp -= CHUNK * BN
        vpp -= CHUNK * BN
        ipp -= CHUNK * BN
        xtp -= CHUNK * BN
        iq -= CHUNK * BN
    n_rest = T - n_chunks * CHUNK
    for r in range(n_rest):  # t = n_rest-1 .. 0
        first = r == n_rest - 1  # t == 0: the previous state is the initial one
        gs = _ld(gsp, offs, mask, GS, CT)
        gv = _ld(gvp, offs, mask, GV, CT)
        vp = tl.load(tl.where(first, v0_ptr, vpp) + offs, mask=mask, other=0.0).to(CT)
        if RESET == 1:
            sp = tl.where(first, s0, _spike(vp, theta, k, SUR, SMOOTH))
        else:
            sp = vp
        if SYN:
            ip = _ld(tl.where(first, i0_ptr, ipp), offs, mask, DEC, CT)
        else:
            ip = vp
            it = _ld(xtp, offs, mask, DEC, CT)
        avn, ai, aic, gb, ga = _bwd_step(
            gs, gv, v, sv, vp, sp, it, ip, avn, aic, gb, ga, b, a, theta, k, RESET, SUR, DETACH, SYN, DEC
        )
        tl.store(gxp + offs, ai, mask=mask)
        v = vp
        sv = sp
        it = ip
        gsp -= BN
        gvp -= BN
        gxp -= BN
        vpp -= BN
        ipp -= BN
        xtp -= BN
    # propagate a_v[0] (avn) and the carried current gradient to the initial state
    if RESET == 1:
        g_v0 = avn * (b * (1.0 - s0))
        if DETACH:
            g_s0 = tl.zeros_like(avn)
        else:
            g_s0 = -(b * v0) * avn
    else:
        g_v0 = avn * b
        if RESET == 0 and not DETACH:
            g_s0 = -theta * avn
        else:
            g_s0 = tl.zeros_like(avn)
    if SYN:
        g_i0 = aic
    else:
        g_i0 = tl.zeros_like(avn)
    tl.store(gv0_ptr + offs, g_v0, mask=mask)
    tl.store(gs0_ptr + offs, g_s0, mask=mask)
    tl.store(gi0_ptr + offs, g_i0, mask=mask)
    if DEC:
        tl.store(gb_ptr + offs, gb, mask=mask)
        if SYN:
            tl.store(ga_ptr + offs, ga, mask=mask)


# ---------------------------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------------------------


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def launch_config(bn: int, device: torch.device, backward: bool) -> tuple[int, int, int]:
    """``(BLOCK, num_warps, CHUNK)`` for ``B*N = bn`` elements.

    The scan is sequential in ``t``, so the only parallelism is ``B*N``. For small ``B*N`` (a typical
    ``B=64, N=256`` is 16k elements, about one 128-element program per SM) each thread owns one
    element and the latency is hidden by the chunked, software-pipelined loads (``2*CHUNK`` rows per
    stream in flight); for larger ``B*N`` each thread owns 2 or 4 contiguous elements (8- or 16-byte
    accesses) and there are enough programs per SM to overlap each other. Chosen from the register
    counts of the sm_90 builds (no spills; fwd 96-166, bwd 112-166 registers), not yet from timings:
    :func:`set_launch_config` overrides it for tuning."""
    if _OVERRIDE:
        return _OVERRIDE[1 if backward else 0]
    sms = (
        _sm_count(device.index if device.index is not None else torch.cuda.current_device())
        if device.type == "cuda"
        else 132
    )
    if backward:
        return (128, 4, 4) if bn < 2 * sms * 256 else (256, 4, 4)
    if bn < 2 * sms * 256:
        return (128, 4, 8)
    return (256, 4, 8) if bn < 4 * sms * 512 else (512, 4, 4)


_OVERRIDE: list = []


def set_launch_config(fwd: tuple[int, int, int] | None, bwd: tuple[int, int, int] | None = None) -> None:
    """Force ``(BLOCK, num_warps, CHUNK)`` for the forward and backward kernels (None: the heuristic)."""
    _OVERRIDE.clear()
    if fwd is not None:
        _OVERRIDE.extend([fwd, bwd or fwd])


def _device_guard(t: Tensor):
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _tl_dtype(dt: torch.dtype):
    return tl.float64 if dt == torch.float64 else tl.float32


# ---------------------------------------------------------------------------------------------
# Entry points (the contract of lif_loop._fwd_any / _bwd_any)
# ---------------------------------------------------------------------------------------------


def lif_scan_fwd_triton(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset):
    """Forward scan: ``(s [T,B,N] in x's dtype, v, i (or empty), i_T)`` in the compute dtype (what the kernel
    does not cover, ``T = 0``, a huge ``B*N`` or another dtype, runs :func:`~spiketime.kernels.lif_loop._fwd_any`)."""
    ct = torch.promote_types(x.dtype, beta.dtype)
    T, B, N = x.shape
    if T == 0 or not 0 < B * N < _MAX_BN or x.dtype not in _SUPPORTED or ct not in _SUPPORTED:
        return _fwd_any(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset)
    bn = B * N
    x = x.contiguous()
    beta_c = beta.to(ct).contiguous()
    alpha_c = alpha.to(ct).contiguous() if alpha is not None else beta_c
    v0c, i0c, s0c = (t.to(ct).expand(B, N).contiguous() for t in (v0, i0, s0))
    s = torch.empty_like(x)
    v = torch.empty(x.shape, dtype=ct, device=x.device)
    i = torch.empty(x.shape, dtype=ct, device=x.device) if alpha is not None else x.new_empty(0, dtype=ct)
    i_T = torch.empty((B, N), dtype=ct, device=x.device)
    block, warps, chunk = launch_config(bn, x.device, backward=False)
    with _device_guard(x):
        _lif_fwd_kernel[(triton.cdiv(bn, block),)](
            x,
            beta_c,
            alpha_c,
            v0c,
            i0c,
            s0c,
            s,
            v,
            i if alpha is not None else v,
            i_T,
            T,
            bn,
            N,
            float(theta),
            float(scale),
            RESET=int(reset),
            SUR=TABLE[surrogate].code,
            SMOOTH=bool(smooth),
            SYN=alpha is not None,
            CT=_tl_dtype(ct),
            LOWP=ct in _LOW,
            BLOCK=block,
            CHUNK=chunk,
            num_warps=warps,
            enable_fp_fusion=False,
        )
    return s, v, i, i_T


def lif_scan_bwd_triton(
    g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset
):
    """Backward scan: gradients of ``x`` (compute dtype), ``beta, alpha`` (empty without a synapse),
    ``v0, i0, s0``. An empty ``g_s`` or ``g_v`` is a zero gradient and is not read; an empty ``i_all``
    means that the decays need no gradient (zeros are returned for them, and no current is read)."""
    ct = v_seq.dtype
    T, B, N = v_seq.shape
    if (
        T == 0
        or not 0 < B * N < _MAX_BN
        or ct not in _SUPPORTED
        or any(t.dtype not in _SUPPORTED for t in (g_s, g_v, i_all) if t.numel())
    ):
        return _bwd_any(
            g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset
        )
    bn = B * N
    has_gs, has_gv, dec = g_s.numel() > 0, g_v.numel() > 0, i_all.numel() > 0
    acc = torch.float64 if ct == torch.float64 else torch.float32
    v_seq = v_seq.contiguous()
    g_s, g_v, i_all = (t.contiguous() if t.numel() else v_seq for t in (g_s, g_v, i_all))
    g_iTc = g_iT.to(ct).expand(B, N).contiguous()
    beta_c = beta.to(ct).contiguous()
    alpha_c = alpha.to(ct).contiguous() if alpha is not None else beta_c
    v0c, i0c, s0c = (t.to(ct).expand(B, N).contiguous() for t in (v0, i0, s0))
    g_x = torch.empty(v_seq.shape, dtype=ct, device=v_seq.device)
    g_beta_bn = torch.empty((B, N), dtype=acc, device=v_seq.device) if dec else None
    g_alpha_bn = torch.empty((B, N), dtype=acc, device=v_seq.device) if dec and alpha is not None else None
    g_v0, g_i0, g_s0 = (torch.empty((B, N), dtype=ct, device=v_seq.device) for _ in range(3))
    block, warps, chunk = launch_config(bn, v_seq.device, backward=True)
    with _device_guard(v_seq):
        _lif_bwd_kernel[(triton.cdiv(bn, block),)](
            g_s,
            g_v,
            g_iTc,
            v_seq,
            i_all,
            beta_c,
            alpha_c,
            v0c,
            i0c,
            s0c,
            g_x,
            g_beta_bn if dec else g_v0,
            g_alpha_bn if g_alpha_bn is not None else g_v0,
            g_v0,
            g_i0,
            g_s0,
            T,
            bn,
            N,
            float(theta),
            float(scale),
            RESET=int(reset),
            SUR=TABLE[surrogate].code,
            SMOOTH=bool(smooth),
            DETACH=bool(detach_reset),
            SYN=alpha is not None,
            GS=has_gs,
            GV=has_gv,
            DEC=dec,
            CT=_tl_dtype(ct),
            BLOCK=block,
            CHUNK=chunk,
            num_warps=warps,
            enable_fp_fusion=False,
        )
    g_beta = g_beta_bn.sum(0).to(beta.dtype) if dec else torch.zeros_like(beta)
    if alpha is None:
        g_alpha = v_seq.new_empty(0)
    else:
        g_alpha = g_alpha_bn.sum(0).to(alpha.dtype) if dec else torch.zeros_like(alpha)
    return g_x, g_beta, g_alpha, g_v0.to(v0.dtype), g_i0.to(i0.dtype), g_s0.to(s0.dtype)


def _bench(T: int = 500, B: int = 64, N: int = 256) -> None:  # pragma: no cover - needs a GPU
    """Time the kernels over launch configurations (``python -m spiketime.kernels.triton_lif [T B N]``):
    median time and the bandwidth it implies (each stream read or written once)."""
    from triton.testing import do_bench

    dev = "cuda"
    x = torch.randn(T, B, N, device=dev)
    beta, alpha = torch.rand(N, device=dev) * 0.5 + 0.45, torch.rand(N, device=dev) * 0.5 + 0.3
    z = torch.zeros(B, N, device=dev)
    rest = (1.0, 0, "fast_sigmoid", 5.0, False, False)
    s, v, i, _ = lif_scan_fwd_triton(x, beta, alpha, z, z, z, *rest)
    g = torch.randn_like(x)
    n = T * B * N
    print(
        f"T={T} B={B} N={N}  default fwd {launch_config(B * N, x.device, False)} bwd "
        f"{launch_config(B * N, x.device, True)}"
    )
    configs = [None, (64, 2, 8), (128, 4, 4), (128, 4, 8), (128, 4, 16), (256, 4, 8), (512, 4, 4), (128, 1, 8)]
    for cfg in configs:
        set_launch_config(cfg, (cfg[0], cfg[1], max(1, cfg[2] // 2)) if cfg else None)
        tf = do_bench(lambda: lif_scan_fwd_triton(x, beta, alpha, z, z, z, *rest), return_mode="median")
        tb = do_bench(lambda: lif_scan_bwd_triton(g, g, z, v, i, beta, alpha, z, z, z, *rest), return_mode="median")
        print(
            f"{str(cfg or 'default'):>14}: fwd {tf * 1e3:8.1f} us ({16 * n / tf / 1e6:6.0f} GB/s)   "
            f"bwd {tb * 1e3:8.1f} us ({20 * n / tb / 1e6:6.0f} GB/s)"
        )
    set_launch_config(None)


if __name__ == "__main__":  # pragma: no cover
    import sys

    _bench(*map(int, sys.argv[1:4]))
