"""Options shared by the benchmark suites: which suite (quick or full), which
devices, how many CPU threads."""
import pytest
import torch

from benchmarks.cases import CASES, DIRECTIONS, DTYPES, IMPLEMENTATIONS, REFERENCES


def pytest_addoption(parser):
    group = parser.getgroup("mula benchmarks")
    group.addoption("--suite", choices=("quick", "full"), default="full",
                    help="quick: MuLA's Hourglass shape at N=1 and 4, float32, forward and forward+backward; "
                         "full: every case, dtype and direction (default)")
    group.addoption("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: the CPU, and CUDA when a GPU is visible (default)")
    group.addoption("--threads", type=int, default=None,
                    help="torch.set_num_threads for the CPU benchmarks (default: torch's choice)")
    group.addoption("--unfold-max-gb", type=float, default=2.0,
                    help="skip the unfold reference when its column buffer exceeds this many GB "
                         "(it would take too long); it is also skipped when it cannot fit in memory")


def devices(config):
    choice = config.getoption("--device")
    if choice == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [choice]


def pytest_configure(config):
    threads = config.getoption("--threads")
    if threads:
        torch.set_num_threads(threads)


_SKIPPED = []
_BEST_TIMES = {}  # benchmark group -> {implementation: min seconds}

SUITES = {
    "quick": {"directions": ("forward", "forward+backward"), "dtypes": ("float32",)},
    "full": {"directions": DIRECTIONS, "dtypes": tuple(DTYPES)},
}


def pytest_generate_tests(metafunc):
    suite = metafunc.config.getoption("--suite")
    choices = {"case": (CASES[suite], lambda case: case.label),
               "direction": (SUITES[suite]["directions"], None),
               "dtype": (SUITES[suite]["dtypes"], None),
               "device": (devices(metafunc.config), None),
               "impl": (IMPLEMENTATIONS, None)}
    for name, (values, ids) in choices.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


def pytest_runtest_logreport(report):
    """Collects why benchmarks were skipped, for the JSON and the report."""
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid.split('::')[-1]}: {reason.removeprefix('Skipped: ')}")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["skipped"] = list(_SKIPPED)


@pytest.fixture
def record_best_time(request):
    """Remembers a finished benchmark's minimum, for the speed-up summary."""
    def record(benchmark, impl):
        if benchmark.stats is not None:  # None under --benchmark-disable
            best = benchmark.extra_info.get("cuda_event_min", benchmark.stats.stats.min)
            _BEST_TIMES.setdefault(benchmark.group, {})[impl] = best
    return record


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter):
    """Each group with its references as the baseline: pytest-benchmark's own
    table is relative to the fastest entry instead."""
    rows = [(group, times) for group, times in _BEST_TIMES.items() if "mula_ops" in times]
    if not rows:
        return
    terminalreporter.section("speed-up of mula_ops over each reference (min times)")
    for group, times in rows:
        speedups = [f"{times[ref] / times['mula_ops']:.1f}x over {ref}" for ref in REFERENCES if ref in times]
        terminalreporter.write_line(f"{group}: " + (", ".join(speedups) or "no reference ran"))
