"""Finding and reading the CUDA code in the built extension: cuobjdump, the
extension's path, running cuobjdump, demangling kernel names. Shared by
check_cuda_resources.py and sass_mix.py."""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_cuobjdump():
    candidates = [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    for package in ("nvidia", "triton"):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidates += glob.glob(os.path.join(location, "**", "bin", "cuobjdump"), recursive=True)
    candidates.append("/usr/local/cuda/bin/cuobjdump")
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    sys.exit("check_cuda_resources: cuobjdump not found; set CUOBJDUMP or "
             "`pip install nvidia-cuda-cuobjdump`")


def find_extension(path):
    if path:
        return path
    built = glob.glob(os.path.join(ROOT, "mula_ops", "_C*.so"))
    if not built:
        sys.exit(f"check_cuda_resources: no mula_ops/_C*.so under {ROOT}; build it first")
    return built[0]


def run(cuobjdump, *args):
    result = subprocess.run([cuobjdump, *args], capture_output=True, text=True)
    if result.returncode != 0:
        if "does not contain device code" in result.stderr + result.stdout:
            return ""
        sys.exit(f"check_cuda_resources: {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def demangle(names):
    filt = shutil.which("c++filt")
    if not filt:
        return {name: name for name in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return {name: re.sub(r"^void |\(.*$", "", pretty).replace("mula::cuda::", "")
            for name, pretty in zip(names, out)}
