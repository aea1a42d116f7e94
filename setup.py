"""Builds mula_ops._C: the CPU kernels always, the CUDA kernels whenever a CUDA
toolkit and a CUDA build of torch are present (no GPU is needed to compile).

Install with ``pip install -e . --no-build-isolation`` so the extension is
compiled against the torch already installed in the environment.
"""
import glob
import os
import shutil
import sys


def find_cuda_home():
    """The toolkit root. torch guesses it from the location of nvcc, which is
    wrong when nvcc on PATH is a wrapper script (as /usr/local/bin/nvcc is on
    some machines), so prefer a directory that really has the runtime headers."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if home and os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


if find_cuda_home() and "CUDA_HOME" not in os.environ:
    os.environ["CUDA_HOME"] = find_cuda_home()  # read by torch.utils.cpp_extension at import

from setuptools import find_packages, setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
# nvcc 13 no longer targets Volta (sm_70); Turing is the oldest it supports.
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def nvidia_wheel_include_dirs():
    """torch's CUDA headers include cuBLAS/cuSPARSE headers that ship in the
    nvidia-* wheels torch depends on, not in a compiler-only toolkit."""
    dirs = []
    for site in sys.path:
        dirs += glob.glob(os.path.join(site, "nvidia", "cu*", "include"))
        dirs += glob.glob(os.path.join(site, "nvidia", "*", "include"))
    return sorted({d for d in dirs if os.path.isdir(d)})


def cuda_library_dirs():
    """libcudart for linking: a compiler-only toolkit may keep it in lib/, not lib64/."""
    home = cpp_extension.CUDA_HOME
    candidates = [os.path.join(home, d) for d in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"))]
    return [d for d in candidates if os.path.exists(os.path.join(d, "libcudart.so"))]


def want_cuda():
    if os.environ.get("MULA_FORCE_CPU", "0") == "1":
        return False
    return cpp_extension.CUDA_HOME is not None and __import__("torch").version.cuda is not None


def make_extension():
    # torch's at::parallel_for is an OpenMP loop compiled into the caller:
    # without -fopenmp it silently runs on one thread. -g0 undoes the -g of
    # Python's build flags: debug information for the kernels' templates
    # takes a third of the build time and most of the library's size.
    cxx_flags = ["-O3", "-g0", "-fdiagnostics-color=always", "-fopenmp"]
    link_flags = ["-fopenmp"]
    csrc = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not want_cuda():
        return cpp_extension.CppExtension(
            "mula_ops._C", csrc, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
            py_limited_api=False)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    cuda_sources = sources("csrc/cuda/*.cu") + sources("csrc/cuda/*.cpp")
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    return cpp_extension.CUDAExtension(
        "mula_ops._C", csrc + cuda_sources,
        include_dirs=[os.path.join(ROOT, "csrc")] + nvidia_wheel_include_dirs(),
        library_dirs=cuda_library_dirs(),
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, extra_link_args=link_flags)


setup(
    name="mula",
    version="0.1.0",
    description="Per-sample dynamic convolution for PyTorch, and the MuLA model",
    packages=find_packages(include=["mula_ops", "mula_ops.*", "mula_model", "mula_model.*"]),
    ext_modules=[make_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy", "tqdm"],
    entry_points={"console_scripts": ["mula=mula_model.cli:main"]},
)
