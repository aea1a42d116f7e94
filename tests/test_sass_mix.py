"""The SASS instruction-mix reader (tools/sass_mix.py): its counting rules on
recorded cuobjdump lines, and, where the extension holds CUDA code, the
forward kernel's FMAs against what its source unrolls."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import cuda_binary  # noqa: E402
import sass_mix  # noqa: E402

RECORDED = """
\t\tFunction : _ZN4mula4cuda6kernelEv
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDS R4, [R2] ;                     /* 0x0000000002047984 */
                                                                      /* 0x000e220000000800 */
        /*0010*/                   LDS.64 R6, [R2+0x8] ;              /* 0x0000080002067984 */
        /*0020*/               @P0 LDS.128 R8, [R2+0x10] ;            /* 0x0000100002080984 */
        /*0030*/                   LDS.U16 R3, [R2+0x20] ;            /* 0x0000200002037984 */
        /*0040*/                   FFMA R1, R4, R6, R1 ;              /* 0x0000000604017223 */
        /*0050*/              @!P1 FFMA R1, R7, R8, R1 ;              /* 0x0000000807017223 */
        /*0060*/                   STS.64 [R2], R4 ;                  /* 0x0000000402007388 */
        /*0070*/                   LDG.E.128.CONSTANT R12, desc[UR4][R10.64] ;
        /*0080*/                   STG.E [R10.64], R1 ;
        /*0090*/                   SHFL.BFLY PT, R5, R1, 0x1, 0x1f ;
        /*00a0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*00b0*/                   EXIT ;
\t\tFunction : _ZN4mula4cuda5otherEv
        /*0000*/                   DFMA R2, R4, R6, R2 ;
        /*0010*/                   LDS.64 R4, [R0] ;
"""


def test_counts_follow_the_access_widths():
    mixes = sass_mix.parse_sass(RECORDED)
    mix = mixes["_ZN4mula4cuda6kernelEv"]
    # 4-byte words per lane: plain 1, .64 2, .128 4, a 16-bit load 1.
    assert (mix["LDS"], mix["LDS words"], mix["STS words"]) == (4, 1 + 2 + 4 + 1, 2)
    assert (mix["FFMA"], mix["LDG"], mix["STG"], mix["SHFL"], mix["BAR"]) == (2, 1, 1, 1, 1)
    assert mix["LDS words / FMA"] == pytest.approx(8 / 2)
    assert mix["(LDS words + SHFL) / FMA"] == pytest.approx(9 / 2)
    other = mixes["_ZN4mula4cuda5otherEv"]
    assert (other["DFMA"], other["LDS words"], other["LDS words / FMA"]) == (1, 2, 2.0)


def _extension_with_sass():
    try:
        extension = cuda_binary.find_extension(None)
        cuobjdump = cuda_binary.find_cuobjdump()
    except SystemExit:
        return None
    listing = cuda_binary.run(cuobjdump, "--list-elf", extension)
    return (cuobjdump, extension) if "sm_90" in listing else None


def _sm90_mixes():
    found = _extension_with_sass()
    if found is None:
        pytest.skip("the built extension has no sm_90 code (a CPU-only build)")
    cuobjdump, extension = found
    mixes = sass_mix.parse_sass(cuda_binary.run(cuobjdump, "-sass", "-arch", "sm_90", extension))
    names = cuda_binary.demangle(list(mixes))
    return {names[k]: v for k, v in mixes.items()}


def test_kernel_fmas_match_their_unrolled_source():
    """The FFMAs in the binary are the multiply-adds the source unrolls:
    forward_kernel<float, K> 4 rows x K taps of one filter row inside its (not
    unrolled) kh loop; blocked_forward_kernel<float, K, 1, 1> its kRows x 2
    outputs x K x K taps (kRows 8 for K = 3, else 4); blocked_backward_kernel<float, K,
    1, 1> 16 pixels x K x K taps x 2 (grad_input and grad_weight), all unrolled."""
    by_name = _sm90_mixes()
    for k in (3, 5, 7):
        assert by_name[f"forward_kernel<float, {k}>"]["FFMA"] == 4 * k
        rows = 8 if k == 3 else 4
        assert by_name[f"blocked_forward_kernel<float, {k}, 1, 1>"]["FFMA"] == rows * 2 * k * k
        assert by_name[f"blocked_backward_kernel<float, {k}, 1, 1>"]["FFMA"] == 16 * k * k * 2


def test_register_blocked_kernels_read_few_shared_words_per_fma():
    """The point of the register blocking, read from the binary: at most 0.3
    shared-memory words per FFMA in the forward and 0.4 (shuffles counted as
    words) in the fused backward, for MuLA's filter sizes at stride 1."""
    by_name = _sm90_mixes()
    for k in (3, 5, 7):
        assert by_name[f"blocked_forward_kernel<float, {k}, 1, 1>"]["LDS words / FMA"] <= 0.3
        assert by_name[f"blocked_backward_kernel<float, {k}, 1, 1>"]["(LDS words + SHFL) / FMA"] <= 0.4
