"""Render each kustomize overlay of deploy/kubernetes into plain YAML (kubectl kustomize), for
operators who apply files rather than kustomizations. `--check` fails if a file is stale."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

KUBE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
HEADER = ("# Rendered by `make manifests` (kubectl kustomize deploy/kubernetes/overlays/{name}).\n"
          "# Do not edit: change the base or the overlay and render again.\n")


def overlays() -> list[str]:
    return sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())


def render(name: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is needed to render the manifests (it embeds kustomize)")
    out = subprocess.run([kubectl, "kustomize", str(KUBE / "overlays" / name)], check=True,
                         capture_output=True, text=True)
    return HEADER.format(name=name) + out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    stale = []
    for name in overlays():
        target = KUBE / "rendered" / f"{name}.yaml"
        text = render(name)
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target}")
    if stale:
        print("stale (run `make manifests`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
