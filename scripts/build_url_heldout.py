"""Builds tests/pipeline/url_heldout.tsv: URLs of real phishing and malware sites, and of clean top sites, from lists
this project did not write, to measure the URL filter on sites its lists were not made from.

    python scripts/build_url_heldout.py          (needs npm and apt-get; the result is committed)

Sources, each fetched by its ordinary client into a temporary folder:
- phishing: the `blacklist` of eth-phishing-detect 1.2.0 (npm; MetaMask's list of crypto phishing domains, 13,752);
- malware: urlhaus-filter-online.txt from Debian's webext-ublock-origin-firefox (abuse.ch URLhaus via
  malware-filter, CC0): its bare hosts and its "||host/path^" URLs;
- clean: eth-phishing-detect's test/alexa.json (the 50 top sites it tests against).
No source for gambling sites could be had from PyPI, npm or Debian, so the set has none.
"""

from __future__ import annotations

import glob
import json
import random
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "pipeline" / "url_heldout.tsv"
PER_SOURCE = 300


def phishing_and_clean(folder: str) -> tuple[list[str], list[str]]:
    subprocess.run(["npm", "pack", "eth-phishing-detect@1.2.0", "--silent"], cwd=folder, check=True, capture_output=True)
    with tarfile.open(glob.glob(f"{folder}/eth-phishing-detect-*.tgz")[0]) as tar:
        config = json.load(tar.extractfile("package/src/config.json"))
        top = json.load(tar.extractfile("package/test/alexa.json"))
    return config["blacklist"], top


def malware(folder: str) -> tuple[list[str], list[str]]:
    subprocess.run(["apt-get", "download", "webext-ublock-origin-firefox"], cwd=folder, check=True, capture_output=True)
    subprocess.run(f"dpkg -x {glob.glob(f'{folder}/*.deb')[0]} {folder}/x", shell=True, check=True)
    text = Path(glob.glob(f"{folder}/x/**/urlhaus-filter-online.txt", recursive=True)[0]).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("!")]
    hosts = [h for h in lines if not h.startswith("||") and not re.fullmatch(r"[0-9.]+", h)]
    urls = [m.group(1) for line in lines if (m := re.fullmatch(r"\|\|([^$^]+/[^$^]*)\^.*", line))]
    return hosts, urls


def main() -> None:
    rng = random.Random(10)
    with tempfile.TemporaryDirectory() as folder:
        phishing, top = phishing_and_clean(folder)
        hosts, urls = malware(folder)
    rows = [("phishing", f"https://{d}/", "eth-phishing-detect@1.2.0 blacklist") for d in rng.sample(sorted(phishing), PER_SOURCE)]
    rows += [("malware", f"http://{h}/", "urlhaus-filter-online (Debian webext-ublock-origin)") for h in rng.sample(sorted(hosts), PER_SOURCE)]
    rows += [("malware", f"http://{u}", "urlhaus-filter-online (Debian webext-ublock-origin)") for u in rng.sample(sorted(urls), PER_SOURCE)]
    rows += [("clean", f"https://www.{d}/", "eth-phishing-detect@1.2.0 test/alexa.json") for d in top]
    header = "# Held-out URLs for tests/pipeline/test_url_filter.py, written by scripts/build_url_heldout.py (see its sources).\n"
    OUT.write_text(header + "category\turl\tsource\n" + "".join(f"{c}\t{u}\t{s}\n" for c, u, s in rows))
    print(f"wrote {len(rows)} URLs to {OUT}")


if __name__ == "__main__":
    main()
