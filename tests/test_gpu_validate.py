"""The CPU-side parts of benchmarks/gpu_validate.py (the GPU check): its
refusal without a GPU, the parity check, the test counts it reads from
pytest, the summaries it makes of timings and memory, and the comparison of
the cost model with Nsight Compute's counters on a sample written in ncu's
CSV layout (not recorded from a GPU: none was available)."""
import subprocess
import sys
import textwrap

import pytest
import torch

from benchmarks import gpu_validate, ncu_counters
from benchmarks.cases import ConvCase

ROOT = gpu_validate.ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_fails(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_validate", "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2
    assert len(output.splitlines()) == 1 and "no CUDA GPU" in output
    assert not (tmp_path / "out").exists()


def test_parity_rows_pass_the_cpu_and_fail_a_wrong_result():
    case = ConvCase("small", 2, 4, 4, 12, 10, 3, padding=1, groups=4)
    rows = gpu_validate.parity_rows([(case, torch.float32), (case, torch.bfloat16)], device="cpu")
    assert [r["ok"] for r in rows] == [True, True]
    assert all(0 <= e < 1e-6 for e in rows[0]["errors"].values())  # float32 against float64
    assert 1e-4 < max(rows[1]["errors"].values()) < 2e-2  # bfloat16 rounds its output
    expected = torch.randn(3, 5, dtype=torch.float64)
    wrong = expected.clone()
    wrong[1, 2] += 0.1 * expected.abs().max()
    assert gpu_validate.relative_error(wrong.float(), expected) == pytest.approx(0.1, rel=1e-5)


def test_junit_counts_match_what_pytest_ran(tmp_path):
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import pytest
        def test_a(): pass
        def test_b(): pass
        def test_c(): assert False
        @pytest.mark.skip(reason="sample")
        def test_d(): pass
    """))
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_sample.py"), "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}"], cwd=tmp_path, capture_output=True)
    counts = gpu_validate.junit_counts(report.read_text())
    assert (counts["tests"], counts["passed"], counts["failures"], counts["skipped"]) == (4, 2, 1, 1)


def test_speedups_divide_each_reference_by_mula_ops_and_sum_the_model_passes():
    timings = [{"case": "c", "dtype": "float32", "pass": p, "implementation": impl, "median_us": us}
               for p, base in (("forward", 10.0), ("forward+backward", 40.0))
               for impl, us in (("mula_ops", base), ("grouped", 3 * base), ("unfold", 7 * base))]
    timings.append({"case": "c", "dtype": "float32", "pass": "backward", "implementation": "unfold",
                    "error": "out of memory"})
    model = [{"case": "c", "dtype": "float32", "pass": "forward", "predicted_us": {"H100": 12.0},
              "floor_us": {"H100": 8.0}},
             {"case": "c", "dtype": "float32", "pass": "backward", "predicted_us": {"H100": 20.0},
              "floor_us": {"H100": 15.0}}]
    rows = {r["pass"]: r for r in gpu_validate.speedups(timings, model, "H100")}
    assert set(rows) == {"forward", "forward+backward"}
    assert rows["forward"]["speedup"] == {"grouped": 3.0, "unfold": 7.0}
    assert (rows["forward"]["predicted_us"], rows["forward"]["floor_us"]) == (12.0, 8.0)
    assert (rows["forward+backward"]["predicted_us"], rows["forward+backward"]["floor_us"]) == (32.0, 23.0)
    unknown = gpu_validate.speedups(timings, model, None)
    assert all(r["predicted_us"] is None for r in unknown)


def test_memory_per_sample_is_the_growth_between_the_batches():
    low, high = gpu_validate.TRAINING_BATCHES
    training = [{"implementation": impl, "batch": b, "peak_bytes": fixed + b * per_sample, "step_ms": 1.0}
                for impl, fixed, per_sample in (("mula_ops", 5e8, 2e8), ("grouped", 5e8, 3e8))
                for b in (low, high)]
    training.append({"implementation": "unfold", "batch": high, "error": "out of memory"})
    assert gpu_validate.memory_per_sample(training) == {"mula_ops": pytest.approx(2e8),
                                                        "grouped": pytest.approx(3e8)}


# Nsight Compute's --csv layout (one row per launch and metric, base units,
# thousands separators; columns as public ncu outputs show them), for a
# forward and a backward launch; ==PROF== lines are ncu's own.
NCU_COLUMNS = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
               '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')
SAMPLE_VALUES = {
    "void mula::cuda::forward_kernel<float, 7>(mula::cuda::ConvShape, mula::cuda::Tiling, const T1 *, "
    "const T1 *, const T1 *, T1 *)": {
        "gpu__time_duration.sum": "131,232", "dram__bytes_read.sum": "69,402,112",
        "dram__bytes_write.sum": "67,108,864", "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": "524,288",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": "2,359,296",
        "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum": "524,288",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum": "2,097,152",
        "smsp__inst_executed_op_shared_ld.sum": "5,000,000", "smsp__inst_executed_op_shared_st.sum": "1,000,000",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum": "600,000",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum": "0",
        "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum": "822,083,584",
        "launch__registers_per_thread": "56"},
    "void mula::cuda::backward_kernel<float, 7>(mula::cuda::ConvShape, mula::cuda::Tiling, const T1 *, "
    "const T1 *, const T1 *, T1 *, T1 *, T1 *, float *)": {
        "gpu__time_duration.sum": "175,000", "dram__bytes_read.sum": "136,000,000",
        "dram__bytes_write.sum": "67,000,000", "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": "1,000",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": "4,500",
        "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum": "0",
        "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum": "0",
        "smsp__inst_executed_op_shared_ld.sum": "0", "smsp__inst_executed_op_shared_st.sum": "0",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum": "0",
        "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum": "0",
        "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum": "1,644,167,168",
        "launch__registers_per_thread": "96"},
}


def sample_ncu_output() -> str:
    lines = ["==PROF== Connected to process 4242 (/usr/bin/python3.12)", NCU_COLUMNS]
    for launch, (kernel, values) in enumerate(SAMPLE_VALUES.items()):
        lines.append(f'==PROF== Profiling "{kernel.split("(")[0]}": 0%....50%....100% - 9 passes')
        for metric, value in values.items():
            unit = {"gpu": "nsecond", "dra": "byte", "lau": "register/thread"}.get(metric[:3], "")
            lines.append(f'"{launch}","4242","python3.12","127.0.0.1","{kernel}","1","7","(256, 1, 1)",'
                         f'"(4, 256, 16)","0","9.0","Command line profiler metrics","{metric}","{unit}","{value}"')
    lines.append("==PROF== Disconnected from process 4242")
    return "\n".join(lines)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_parse_ncu_csv_reads_every_launch_in_order():
    launches = ncu_counters.parse_ncu_csv(sample_ncu_output())
    assert [ncu_counters.kernel_base_name(launch["kernel"]) for launch in launches] == ["forward_kernel",
                                                                                        "backward_kernel"]
    for launch, values in zip(launches, SAMPLE_VALUES.values()):
        for metric, name in ncu_counters.METRICS.items():
            assert launch[name] == number(values[metric])
    incomplete = "\n".join(line for line in sample_ncu_output().splitlines() if "dram__bytes_write" not in line)
    with pytest.raises(ValueError, match="dram_write_bytes"):
        ncu_counters.parse_ncu_csv(incomplete)


def model_row(case, direction, kernel, **fields):
    return {"case": case, "dtype": "float32", "pass": direction, "kernel": kernel,
            "sectors_per_load_request": 4.5, "sectors_per_store_request": 4.0, "bank_conflicts_per_request": 0.0,
            "dram_bytes": 1.36e8, "counts": {"fp32_fma": 8.2e8}, "predicted_us": {"H200": 90.0}, **fields}


def test_compare_sets_the_model_beside_the_counters():
    model = [model_row("hourglass-N16", "forward", "forward_kernel<float, 7>"),
             model_row("hourglass-N16", "backward", "backward_kernel<float, 7>")]
    measured = ncu_counters.parse_ncu_csv(sample_ncu_output())
    rows = ncu_counters.compare(model, measured, "H200")
    forward = SAMPLE_VALUES[next(iter(SAMPLE_VALUES))]
    first = rows[0]
    assert first["sectors_per_load_request"] == {
        "model": 4.5, "measured": number(forward["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"])
        / number(forward["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"])}
    assert first["bank_conflicts_per_request"]["measured"] == pytest.approx(600_000 / 6_000_000)
    assert first["dram_bytes"]["measured"] == number(forward["dram__bytes_read.sum"]) + number(
        forward["dram__bytes_write.sum"])
    assert first["duration_us"] == {"model": 90.0, "measured": pytest.approx(131.232)}
    assert rows[1]["sectors_per_store_request"]["measured"] is None  # no stores: no ratio, not a zero
    table = ncu_counters.render_comparison(rows, "H200")
    assert "| hourglass-N16 | float32 | forward | `forward_kernel<float, 7>` | 4.50 / 4.50 |" in table


def test_compare_refuses_a_launch_sequence_that_differs_from_the_model():
    measured = ncu_counters.parse_ncu_csv(sample_ncu_output())
    swapped = [model_row("c", "backward", "backward_kernel<float, 7>"),
               model_row("c", "forward", "forward_kernel<float, 7>")]
    with pytest.raises(ValueError, match="where the model has 'backward_kernel"):
        ncu_counters.compare(swapped, measured, "H200")
    with pytest.raises(ValueError, match="profiled 2 launches, the model has 1"):
        ncu_counters.compare(swapped[:1], measured, "H200")


def test_the_report_renders_every_section():
    report = {"machine": {"gpu": "NVIDIA H200", "model_gpu": "H200", "torch": "2.11.0", "cuda": "13.0",
                          "commit": "abc1234"}, "rounds": 20,
              "build": {"arch": "sm_90", "ok": True, "seconds": 150.0},
              "tests": {"ok": True, "seconds": 60.0, "passed": 10, "failures": 0, "errors": 0, "skipped": 1},
              "parity": [{"case": "c-N2", "dtype": "float32", "tolerance": 1e-5, "ok": True,
                          "errors": {"output": 1e-7, "grad_input": 2e-7, "grad_weight": 3e-7}}],
              "speedups": [{"case": "c", "dtype": "float32", "pass": "forward", "mula_ops_us": 50.0,
                            "speedup": {"grouped": 2.5}, "predicted_us": 45.0, "floor_us": 28.1}],
              "training": [{"implementation": "mula_ops", "batch": 8, "step_ms": 100.0, "peak_bytes": 2**31},
                           {"implementation": "unfold", "batch": 16, "error": "out of memory"}],
              "memory_per_sample": {"mula_ops": 2**27, "grouped": 2**28}}
    text = gpu_validate.render_markdown(report)
    assert "10 passed, 0 failed" in text and "| c-N2 | float32 | 1.0e-07 |" in text
    assert "| c | float32 | forward | 50.0 | 45.0 | 28.1 | 2.50x | - |" in text
    assert "| mula_ops | 8 | 100.0 | 2.00 |" in text and "| unfold | 16 | out of memory | - |" in text
    assert "grouped 256 MiB (2.00x mula_ops)" in text
    assert "ncu is not on the PATH" in text


@pytest.mark.parametrize("name, key", [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
                                       ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA GeForce RTX 4090", None)])
def test_gpu_key(name, key):
    assert gpu_validate.gpu_key(name) == key
