"""A synthetic tree of many Python files, for timing discovery, the results
cache and `fix` at scale (issue 9: "cold runs on a 100,000-file tree were
slower with the cache than with --no-cache").

    python bench/synthetic.py                 # 100,000 files, prints the folder
    python bench/synthetic.py --files 2000    # a smaller one
    python bench/run.py --tools floor,ruff,alc-cold,alc-cold-cache,alc-warm,alc-fix-diff,alc-fix-diff-warm \\
        --append "$(python bench/synthetic.py)"

The tree goes to CACHE/synthetic-N (CACHE as in bench/fetch.py, outside the
repository) and is made once: the same seed gives the same files. 1,000
packages of N/1,000 modules each, 1-4 KB apiece, mostly ordinary PyTorch-style
code (imports, classes, loops, torch calls) so the text prefilter has work to
do; one module in 500 holds the merge loop that ALC001 reports (two findings,
with a fix) and one in 500 a near miss.
"""
from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

import fetch  # bench/fetch.py

FINDING = '''
def merge_chunks_{i}(chunks, lses):
    output = None
    for attn_output, attn_lse in zip(chunks, lses):
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    return output, output_lse
'''

NEAR_MISS = '''
def accumulate_{i}(chunks):
    acc = torch.empty_like(chunks[0])
    for c in chunks:
        tmp = torch.empty_like(c)
        torch.add(acc, c, out=tmp)
        results.append(tmp)
    return acc
'''

FUNCTION = '''
def {name}(x, y, scale={scale}):
    """{doc}"""
    total = 0
    for i in range({n}):
        total += x[i] * y[i] * scale
        if total > {limit}:
            break
    out = torch.zeros({n})
    return out + total
'''

CLASS = '''
class {name}(torch.nn.Module):
    def __init__(self, dim={dim}):
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)
        self.buffer = None

    def forward(self, x):
        for layer in range({layers}):
            x = self.proj(x).relu()
        return x
'''


def module(rng: random.Random, index: int) -> str:
    parts = ["import math\nimport torch\nfrom typing import Optional\n"]
    for j in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            parts.append(FUNCTION.format(name=f"f{index}_{j}", scale=rng.randint(1, 9), n=rng.randint(2, 64),
                                         limit=rng.randint(10, 1000), doc="Sum of products. " * rng.randint(1, 5)))
        else:
            parts.append(CLASS.format(name=f"Block{index}_{j}", dim=rng.choice([64, 128, 256]),
                                      layers=rng.randint(1, 8)))
    if index % 500 == 7:
        parts.append(FINDING.format(i=index))
    elif index % 500 == 11:
        parts.append(NEAR_MISS.format(i=index))
    return "".join(parts)


def make(files: int) -> Path:
    dest = fetch.cache_dir() / f"synthetic-{files}"
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = random.Random(files)
    per_package = max(1, files // 1000)
    for index in range(files):
        package = tmp / f"pkg{index // per_package:04d}"
        if index % per_package == 0:
            package.mkdir(parents=True)
            (package / "__init__.py").write_text("")
        (package / f"mod{index:06d}.py").write_text(module(rng, index))
    tmp.rename(dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    print(make(ap.parse_args().files))


if __name__ == "__main__":
    main()
