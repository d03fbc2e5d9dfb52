"""The peer of bench/static_distill.py: model2vec's own distillation, run in its own venv.

model2vec's ``distill`` extra pins transformers < 5.4 (and skeletoken < 0.7), which embedlab's venv cannot
hold. :func:`ensure_venv` makes ``runs/static_distill/venv-model2vec`` (gitignored): a venv whose own
site-packages hold only transformers 5.3.0, huggingface-hub 1.x, tokenizers 0.22.2, skeletoken 0.6.1,
protobuf and model2vec 0.10.0, and a ``.pth`` line that appends embedlab's site-packages after them (for
torch, numpy and the rest: the same builds, so the comparison measures the distillation, not the
libraries). Run as a script inside that venv it distils a teacher folder::

    VENV/bin/python bench/_model2vec_peer.py TEACHER_DIR OUT_DIR [--pca-dims 256]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "runs" / "static_distill" / "venv-model2vec"
PEER_PACKAGES = [
    "transformers==5.3.0",
    "huggingface-hub==1.33.0",
    "tokenizers==0.22.2",
    "skeletoken==0.6.1",
    "protobuf==6.33.1",
    "model2vec==0.10.0",
]


def ensure_venv() -> Path:
    """Create the peer venv on first use; returns its python."""
    python = VENV / "bin" / "python"
    marker = VENV / ".ready"
    if marker.is_file() and marker.read_text() == json.dumps(PEER_PACKAGES):
        return python
    import site

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(VENV)], check=True)
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    peer_site = Path(out)
    base = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    (peer_site / "_embedlab_base.pth").write_text("\n".join(base) + "\n")  # appended after the peer's own
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(peer_site), *PEER_PACKAGES],
        check=True,
    )
    marker.write_text(json.dumps(PEER_PACKAGES))
    return python


def distill_in_venv(teacher_dir: str, out_dir: str, pca_dims: int = 256, threads: int | None = None) -> dict:
    """Run this file in the peer venv; returns what it printed (versions, seconds)."""
    python = ensure_venv()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    res = subprocess.run(
        [str(python), __file__, teacher_dir, out_dir, "--pca-dims", str(pca_dims)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher")
    parser.add_argument("out")
    parser.add_argument("--pca-dims", type=int, default=256)
    args = parser.parse_args()
    import model2vec
    import torch
    import transformers
    from model2vec.distill import distill

    start = time.perf_counter()
    model = distill(model_name=args.teacher, pca_dims=args.pca_dims, device="cpu")
    seconds = time.perf_counter() - start
    model.save_pretrained(args.out)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "model2vec": model2vec.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
