"""The benchmark tools measure what they claim: work counts against PyTorch's
own FLOP counter and real tensors, the memory probe against allocations of
known size, the largest-batch search against a brute-force scan, and the
report's arithmetic against hand-computed figures."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import against_grouped, gpu_roofline, memory, run_suites
from benchmarks.cases import ConvCase, flops, make_inputs, minimal_bytes, mula_hourglass, tensor_bytes, unfold_bytes
from benchmarks.render import render_report
from benchmarks.results import load_latency
from benchmarks.training_step import ModelCase
from mula_model import build_model
from mula_ops import reference

DEPTHWISE = ConvCase("depthwise", 2, 8, 8, 9, 11, 3, padding=1, groups=8)
CASES = [DEPTHWISE,
         ConvCase("groups", 3, 6, 4, 10, 7, 3, stride=2, padding=2, groups=2),
         ConvCase("dilated", 1, 4, 6, 12, 12, 5, padding=1, dilation=2)]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_output_size_and_bytes_match_real_tensors(case):
    tensors = make_inputs(case, torch.float32, "cpu", requires_grad=False)
    out = torch.cat([F.conv2d(tensors["input"][n:n + 1], tensors["weight"][n], None, case.stride, case.padding,
                              case.dilation, case.groups) for n in range(case.batch)])
    assert out.shape == tensors["grad_output"].shape
    sizes = tensor_bytes(case, torch.float32)
    assert sizes == {"input": tensors["input"].nbytes, "weight": tensors["weight"].nbytes, "output": out.nbytes}
    assert minimal_bytes(case, torch.float32, "forward") == sum(sizes.values())
    assert tensor_bytes(case, torch.bfloat16)["input"] * 2 == sizes["input"]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_flops_match_pytorch_flop_counter(case):
    tensors = make_inputs(case, torch.float64, "cpu", requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        out = reference.grouped(tensors["input"], tensors["weight"], None, **case.conv_args())
    assert flops(case, "forward") == counter.get_total_flops()
    if case.batch * case.groups > 1:
        return  # PyTorch's counter ignores groups in convolution_backward's grad_input
    with FlopCounterMode(display=False) as counter:
        out = reference.grouped(tensors["input"], tensors["weight"], None, **case.conv_args())
        torch.autograd.grad(out, (tensors["input"], tensors["weight"]), tensors["grad_output"])
    assert flops(case, "forward+backward") == counter.get_total_flops()


def test_unfold_bytes_is_the_reference_column_buffer():
    case = DEPTHWISE
    x = make_inputs(case, torch.float32, "cpu", requires_grad=False)["input"]
    columns = F.unfold(x, case.kernel, dilation=case.dilation, padding=case.padding, stride=case.stride)
    assert unfold_bytes(case, torch.float32) == columns.nbytes


def linear_probe(per_sample, fixed):
    """A fake probe whose footprint is fixed + per_sample * batch."""
    calls = []

    def probe(impl, case, dtype, device, direction, threads, budget, timeout):
        calls.append(case.batch)
        peak = fixed + per_sample * case.batch
        return {"batch": case.batch, "status": "ok" if peak <= budget else "over budget", "peak_bytes": peak}
    return probe, calls


@pytest.mark.parametrize("per_sample,fixed,budget", [(10, 0, 1000), (7, 5, 1000), (300, 50, 1000),
                                                     (2000, 0, 1000), (1, 0, 1)])
@pytest.mark.parametrize("start", [1, 3, 90, 500])
def test_largest_batch_search_matches_brute_force(per_sample, fixed, budget, start):
    probe, calls = linear_probe(per_sample, fixed)
    expected = max([0] + [n for n in range(1, budget + 2) if fixed + per_sample * n <= budget])
    result = memory.largest_batch("x", mula_hourglass(1), budget, start=start, probe=probe)
    assert result["largest_batch"] == expected
    # Exponential steps then a binary search: logarithmic in the distance from the start.
    assert len(calls) == len(set(calls)) <= 2 * max(start, expected).bit_length() + 2
    assert [p["batch"] for p in result["probes"]] == calls


def test_largest_batch_search_stops_at_max_batch():
    probe, _ = linear_probe(1, 0)
    result = memory.largest_batch("x", mula_hourglass(1), 10 ** 6, max_batch=100, probe=probe)
    assert result["largest_batch"] == 100 and result["reached_max_batch"]


def test_largest_batch_search_stops_on_a_failed_probe():
    def probe(impl, case, *args):
        return {"batch": case.batch, "status": "no kernel", "error": "no CPU kernel"}
    result = memory.largest_batch("x", mula_hourglass(1), 1000, start=8, probe=probe)
    assert result["largest_batch"] is None and result["status"] == "no kernel"
    assert [p["batch"] for p in result["probes"]] == [8]


def test_memory_probe_counts_what_the_pass_allocates():
    # grouped forward+backward allocates at least the output and grad_input
    # (4 MiB each here); unfold also holds its 9x larger column buffer.
    case = ConvCase("probe", 1, 64, 64, 128, 128, 3, padding=1, groups=64)
    plane_bytes = tensor_bytes(case, torch.float32)["output"]
    grouped = memory.measure("grouped", case, threads=1, budget=plane_bytes)  # it needs at least two
    unfold = memory.measure("unfold", case, threads=1)
    assert grouped["status"] == "over budget" and unfold["status"] == "ok", (grouped, unfold)
    assert 2 * plane_bytes <= grouped["peak_bytes"] <= 5 * plane_bytes
    assert unfold_bytes(case, torch.float32) + 2 * plane_bytes <= unfold["peak_bytes"]


def test_training_step_probe_counts_the_model_its_gradients_and_optimizer_state():
    case = ModelCase("quick", 1)
    parameter_bytes = sum(p.nbytes for p in build_model(case.config("mula_ops")).parameters())
    one, two = (memory.measure("mula_ops", case.with_batch(n), threads=1) for n in (1, 2))
    assert one["status"] == two["status"] == "ok", (one, two)
    # Weights, their gradients and RMSprop's running averages all live at the step's end.
    assert 3 * parameter_bytes <= one["peak_bytes"] < two["peak_bytes"]


def fake_results(tmp_path):
    case = mula_hourglass(4)

    def op(impl, direction, seconds):
        info = {"kind": "op", "impl": impl, "case": case.name, "batch": 4, "direction": direction,
                "dtype": "float32", "device": "cpu", "threads": 2, "flops": 10 ** 9, "bytes": 10 ** 8}
        return {"extra_info": info, "stats": {"min": seconds, "median": seconds, "rounds": 3}}
    benchmarks = [op("mula_ops", "forward", 0.1), op("grouped", "forward", 0.3), op("unfold", "forward", 20.0),
                  {"extra_info": {"kind": "machine", "metric": "matmul", "device": "cpu", "flops": 10 ** 10},
                   "stats": {"min": 0.1, "median": 0.1, "rounds": 3}},
                  {"extra_info": {"kind": "machine", "metric": "copy", "device": "cpu", "bytes": 10 ** 9},
                   "stats": {"min": 0.5, "median": 0.5, "rounds": 3}}]
    (tmp_path / "latency.json").write_text(json.dumps({"benchmarks": benchmarks, "skipped": ["unfold N=16: too big"]}))
    peaks = [{"impl": impl, "case": "hourglass", "batch": 16, "dtype": "float32", "device": "cpu",
              "status": "ok", "peak_bytes": mib << 20} for impl, mib in (("mula_ops", 10), ("grouped", 20),
                                                                         ("unfold", 9000))]
    largest = [{"impl": impl, "device": "cpu", "budget_bytes": 128 << 20, "largest_batch": n}
               for impl, n in (("mula_ops", 40), ("grouped", 30), ("unfold", 0))]
    model = "MuLA 2-stage Hourglass, 128px"
    model_peaks = [{"impl": impl, "case": "MuLA-quick", "batch": 2, "device": "cpu", "status": "ok",
                    "peak_bytes": mib << 20} for impl, mib in (("mula_ops", 300), ("grouped", 310), ("unfold", 400))]
    model_largest = [{"impl": impl, "device": "cpu", "budget_bytes": 1 << 30, "largest_batch": n, "model": model}
                     for impl, n in (("mula_ops", 7), ("grouped", 6), ("unfold", 5))]
    (tmp_path / "memory.json").write_text(json.dumps({"peaks": peaks, "largest_batch": largest,
                                                      "model_peaks": model_peaks,
                                                      "model_largest_batch": model_largest}))
    (tmp_path / "machine.json").write_text(json.dumps(dict(run_suites.machine_description(2),
                                                           command="python -m benchmarks.report --quick")))


def test_report_figures_match_hand_computation(tmp_path):
    fake_results(tmp_path)
    text = render_report(tmp_path).read_text()
    # matmul 1e10 FLOP in 0.1 s = 100 GFLOP/s; copy 1e9 B in 0.5 s = 2 GB/s.
    assert "100 GFLOP/s, copy 2.0 GB/s" in text
    row = next(line for line in text.splitlines() if line.startswith("| hourglass N=4 | forward |"))
    # 0.3 / 0.1 = 3x, 20 / 0.1 = 200x; 1e9 FLOP in 0.1 s = 10 GFLOP/s = 10% of matmul;
    # roofline: max(1e9 / 1e11, 1e8 / 2e9) = 0.05 s of 0.1 s = 50%.
    assert row.split("|")[5:13] == [" 100.0 ms ", " 300.0 ms ", " 20.0 s ", " 3.0x ", " 200.0x ", " 10 ",
                                    " 10% ", " 50% "]
    assert "| hourglass N=16 | float32 | cpu | 10 MiB | 20 MiB | 9,000 MiB |" in text
    assert ("- forward: mula_ops 100.0 ms, 3.0x faster than grouped, 200.0x faster than unfold, "
            "10% of the measured matmul FLOP/s") in text
    assert "| cpu | MuLA 2-stage Hourglass, 128px | memory at N=2 | 300 MiB | 310 MiB | 400 MiB |" in text
    assert "| cpu | MuLA 2-stage Hourglass, 128px | largest batch in 1,024 MiB | 7 | 6 | 5 |" in text
    assert ("- largest trainable batch of the MuLA 2-stage Hourglass, 128px in 1,024 MiB: "
            "mula_ops 7, grouped 6, unfold 5") in text
    assert "- peak extra memory of forward+backward at N=16: mula_ops 10 MiB, grouped 20 MiB, unfold 9,000 MiB" in text
    assert "| cpu | 128 MiB | 40 | 30 | 0 |" in text
    assert "- unfold N=16: too big" in text
    assert text.startswith("Measured by `python -m benchmarks.report --quick` on ")


def test_against_grouped_table_matches_hand_computation(tmp_path):
    fake_results(tmp_path)
    data = json.loads((tmp_path / "latency.json").read_text())
    # forward+backward: mula_ops 0.5 s against grouped 0.4 s, slower.
    for impl, seconds in (("mula_ops", 0.5), ("grouped", 0.4)):
        entry = json.loads(json.dumps(data["benchmarks"][0]))
        entry["extra_info"].update(impl=impl, direction="forward+backward")
        entry["stats"].update(median=seconds, min=seconds / 2)
        data["benchmarks"].append(entry)
    (tmp_path / "latency.json").write_text(json.dumps(data))
    text = against_grouped.markdown(load_latency(tmp_path / "latency.json"))
    # medians: 0.3 / 0.1 = 3x and 0.4 / 0.5 = 0.8x; 1e9 FLOP in 0.1 s of 100 GFLOP/s = 10%.
    assert ("| hourglass N=4 | float32 **(slower)** | 100.00 / 300.00 ms, 3.00x | "
            "500.00 / 400.00 ms, 0.80x | 10% |") in text
    assert "float32 matrix product 100 GFLOP/s, copy 2.0 GB/s" in text


def test_report_writes_png_plots(tmp_path):
    pytest.importorskip("matplotlib")
    fake_results(tmp_path)
    render_report(tmp_path)
    for name in ("latency_vs_batch.png", "speedup.png", "fraction_of_peak.png", "memory_cpu.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_takes_cuda_event_times_where_recorded(tmp_path):
    fake_results(tmp_path)
    results = json.loads((tmp_path / "latency.json").read_text())
    results["benchmarks"][0]["extra_info"].update(cuda_event_min=0.05, cuda_event_median=0.06)
    (tmp_path / "latency.json").write_text(json.dumps(results))
    ops = load_latency(tmp_path / "latency.json")["ops"]
    ours = ops[("hourglass", 4, "forward", "float32", "cpu", "mula_ops")]
    grouped = ops[("hourglass", 4, "forward", "float32", "cpu", "grouped")]
    assert (ours["min"], ours["median"]) == (0.05, 0.06)
    assert (grouped["min"], grouped["median"]) == (0.3, 0.3)  # wall clock where no events were recorded


def test_gpu_floors_at_mula_shape():
    """Hourglass N=16 float32: the forward reads the input (16 x 256 x 64 x 64 x
    4 B = 67.1 MB) and filters (0.8 MB) and writes the output (67.1 MB), 135 MB
    and 2 x 49 FLOPs an output (1.64 GFLOP); the backward moves 203 MB for
    twice the FLOPs. At H100's 3.35 TB/s both are memory-bound (40 and 61 us);
    at H200's 4.8 TB/s the backward is bound by its 67 TFLOP/s FP32 (49 us)."""
    case = mula_hourglass(16)
    plane, filters = 16 * 256 * 64 * 64 * 4, 16 * 256 * 49 * 4
    forward = gpu_roofline.floor_seconds(case, torch.float32, "forward", gpu_roofline.GPUS["H100"])
    backward = gpu_roofline.floor_seconds(case, torch.float32, "backward", gpu_roofline.GPUS["H100"])
    assert forward["bytes"] == 2 * plane + filters and round(forward["bytes"] / 1e6) == 135
    assert backward["bytes"] == 3 * plane + 2 * filters and round(backward["bytes"] / 1e6) == 203
    assert forward["flops"] == 2 * 16 * 256 * 64 * 64 * 49 and backward["flops"] == 2 * forward["flops"]
    assert forward["floor_s"] * 1e6 == pytest.approx(40.3, abs=0.1) and forward["bound"] == "memory"
    assert backward["floor_s"] * 1e6 == pytest.approx(60.6, abs=0.1) and backward["bound"] == "memory"
    h200 = gpu_roofline.floor_seconds(case, torch.float32, "backward", gpu_roofline.GPUS["H200"])
    assert h200["bound"] == "arithmetic" and h200["floor_s"] * 1e6 == pytest.approx(49.1, abs=0.1)


def test_gpu_table_is_consistent_with_its_sms_and_clocks():
    # FP32 lanes per SM: 64 on Ampere (A100), 128 on Hopper; an FMA is 2 FLOPs.
    for name, lanes in (("A100", 64), ("H100", 128), ("H200", 128)):
        gpu = gpu_roofline.GPUS[name]
        assert gpu.fp32_flops_per_s == pytest.approx(gpu.sms * lanes * 2 * gpu.boost_clock_hz, rel=0.01)
        assert gpu.source
