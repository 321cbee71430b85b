"""Render the sipp scenario templates in ``tests/sipp/`` (sipp cannot use variables in pcap paths)."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

SIPP_DIR = Path(__file__).parent / "sipp"


def render_scenario(name: str, out_dir: Path, *, keep: str, drop: str, **values: object) -> str:
    """Fill ``${...}`` in ``tests/sipp/<name>``, keep the ``keep`` block, remove the ``drop`` block."""
    text = Template((SIPP_DIR / name).read_text()).substitute({k: str(v) for k, v in values.items()})
    text = re.sub(rf"\s*<!-- {re.escape(drop)} -->.*?<!-- /{re.escape(drop)} -->", "", text, flags=re.S)
    assert f"<!-- {keep} -->" in text, f"{name} has no block {keep}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{Path(name).stem}-{keep}.xml"
    out.write_text(text)
    return str(out)
