"""Canonical digest of a run tree for before/after comparisons (experiments/unchanged.sh).

Content fields are hashed; fields that legitimately differ between two runs of the same code (wall times, speeds,
absolute paths, provenance, timestamps, versions) are dropped. Usage:
    python unchanged_digest.py OUT > OUT/digest.json
    python unchanged_digest.py --compare OLD.json NEW.json
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

VOLATILE = re.compile(
    r"(time|second|wall|elapsed|tok_per|per_s$|throughput|path|dir$|^out$|provenance|date|created|host|pid|version"
    r"|commit|command|argv|lock|cache|started|finished|cpu|threads|fingerprint|revision|^crc$)",
    re.IGNORECASE,
)
SKIP_SUFFIXES = {".png", ".svg", ".html", ".lock", ".log", ".txt"}


ROOT = ""  # the tree being digested: its absolute path is written as <OUT> so two trees compare


def canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items()) if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, str) and ROOT:
        return value.replace(ROOT, "<OUT>")
    return value


def digest_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        out = {}
        with safe_open(str(path), "np") as handle:
            for key in sorted(handle.keys()):
                array = handle.get_tensor(key)
                out[key] = hashlib.sha256(array.tobytes() + str(array.dtype).encode()).hexdigest()[:16]
        return out
    if path.suffix == ".jsonl":
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = [canonical(json.loads(line)) for line in lines]
        records.sort(key=lambda r: (r.get("index", 0) if isinstance(r, dict) else 0, json.dumps(r, sort_keys=True)))
        return {
            "n": len(records),
            "records": [hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16] for r in records],
            "_raw": records,
        }
    if path.suffix == ".json":
        return {"value": canonical(json.loads(path.read_text()))}
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def digest_tree(root: Path) -> dict[str, Any]:
    global ROOT
    ROOT = str(root.resolve())
    out = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in SKIP_SUFFIXES or path.name == "digest.json":
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        out[str(path.relative_to(root))] = digest_file(path)
    return out


def compare(old_path: str, new_path: str) -> int:
    old, new = json.loads(Path(old_path).read_text()), json.loads(Path(new_path).read_text())
    same = differ = 0
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            print(f"only in {'new' if name in new else 'old'}: {name}")
            differ += 1
            continue
        a = {k: v for k, v in old[name].items() if k != "_raw"}
        b = {k: v for k, v in new[name].items() if k != "_raw"}
        if a == b:
            same += 1
            continue
        differ += 1
        print(f"DIFFERS: {name}")
        if "_raw" in old[name]:
            for i, (ra, rb) in enumerate(zip(old[name]["_raw"], new[name]["_raw"])):
                if ra != rb:
                    keys = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
                    print(f"  first differing record {i}: keys {keys}")
                    break
        elif "value" in a:
            va, vb = a["value"], b["value"]
            if isinstance(va, dict) and isinstance(vb, dict):
                keys = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
                print(f"  differing keys: {keys[:20]}")
    print(f"{same} files identical, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    json.dump(digest_tree(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
