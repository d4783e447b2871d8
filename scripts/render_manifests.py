"""Render each kustomize overlay of deploy/kubernetes, and the user namespace's objects, into
plain YAML (kubectl kustomize), for operators who apply files rather than kustomizations.
`--check` fails if a file is stale."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

KUBE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
HEADER = ("# Rendered by `make manifests` (kubectl kustomize deploy/kubernetes/{path}).\n"
          "# Do not edit: change {what} and render again.\n")


def overlays() -> list[str]:
    return sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())


def sources() -> dict[str, str]:
    """rendered file name -> the kustomization it renders, under deploy/kubernetes."""
    return {**{name: f"overlays/{name}" for name in overlays()},
            "user-namespace": "user-namespace"}


def render(name: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is needed to render the manifests (it embeds kustomize)")
    path = sources()[name]
    out = subprocess.run([kubectl, "kustomize", str(KUBE / path)], check=True,
                         capture_output=True, text=True)
    what = "the base or the overlay" if path.startswith("overlays/") else f"{path}/"
    return HEADER.format(path=path, what=what) + out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    stale = []
    for name in sources():
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
