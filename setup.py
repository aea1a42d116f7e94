"""Builds mula_ops._C: the CPU kernels always, the CUDA kernels whenever a CUDA
toolkit and a CUDA build of torch are present (no GPU is needed to compile).

Install with ``pip install -e . --no-build-isolation`` so the extension is
compiled against the torch already installed in the environment.
"""
import glob
import os
import sys

from setuptools import find_packages, setup
from torch.utils import cpp_extension

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


def want_cuda():
    if os.environ.get("MULA_FORCE_CPU", "0") == "1":
        return False
    return cpp_extension.CUDA_HOME is not None and __import__("torch").version.cuda is not None


def make_extension():
    cxx_flags = ["-O3", "-std=c++17", "-fdiagnostics-color=always"]
    csrc = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not want_cuda():
        return cpp_extension.CppExtension(
            "mula_ops._C", csrc, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx_flags}, py_limited_api=False)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    cuda_sources = sources("csrc/cuda/*.cu") + sources("csrc/cuda/*.cpp")
    nvcc_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
    return cpp_extension.CUDAExtension(
        "mula_ops._C", csrc + cuda_sources,
        include_dirs=[os.path.join(ROOT, "csrc")] + nvidia_wheel_include_dirs(),
        define_macros=[("MULA_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags})


setup(
    name="mula",
    version="0.1.0",
    description="Per-sample dynamic convolution for PyTorch, and the MuLA model",
    packages=find_packages(include=["mula_ops", "mula_ops.*", "mula_model", "mula_model.*"]),
    ext_modules=[make_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy"],
    entry_points={"console_scripts": ["mula=mula_model.cli:main"]},
)
