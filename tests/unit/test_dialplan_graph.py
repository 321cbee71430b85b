"""Dial-plan drawings: the DOT text, and real SVG/PNG files from Graphviz's dot."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.core.errors import DialplanError
from ivr.dialplan.graph import condition_label, format_for, render, to_dot
from ivr.dialplan.loader import load_plan
from ivr.dialplan.model import Condition, Plan

ROOT = Path(__file__).resolve().parents[2]
KOREAN = ROOT / "dialplans" / "examples" / "korean-telecom.yaml"

PLAN = Plan.model_validate({
    "name": 'Demo "quoted"', "numbers": ["1000"], "start": "welcome",
    "nodes": {
        "welcome": {"type": "menu", "prompt": "Welcome. For billing press 2, or say billing, please.",
                    "options": [{"digit": "2", "say": ["billing", "invoice"], "goto": "hours"},
                                {"say": ["agent"], "goto": "desk"}],
                    "on_failure": "bye"},
        "hours": {"type": "branch",
                  "rules": [{"if": {"time": {"days": ["mon-fri"], "from": "09:00", "to": "18:00"}}, "goto": "billing"},
                            {"if": {"var": "crm.tier", "in": ["vip", "gold"], "not": True}, "goto": "bye"}],
                  "default": "lookup"},
        "lookup": {"type": "lookup", "url": "https://crm.example.com/c?p={caller}", "next": "billing",
                   "on_error": "bye"},
        "billing": {"type": "queue", "queue": "billing", "max_wait_s": 60, "on_timeout": "bye"},
        "desk": {"type": "transfer", "to": "sip:desk@pbx.example.com", "on_failure": "gone"},
        "bye": {"type": "hangup", "prompt": {"file": "goodbye"}},
    },
})


def test_dot_text_labels_nodes_and_edges() -> None:
    dot = to_dot(PLAN)
    lines = dot.splitlines()
    assert lines[0] == 'digraph "Demo \\"quoted\\"" {'
    assert lines[-1] == "}"
    assert ('  "welcome" [label="welcome\\n<menu>\\nWelcome. For billing press 2, or say bi…", shape=box, '
            'fillcolor="#dbeafe", style="filled,rounded", penwidth=2];') in lines
    assert '  "__start" -> "welcome";' in lines
    assert '  "welcome" -> "hours" [label="2 / billing, invoice"];' in lines
    assert '  "welcome" -> "desk" [label="agent"];' in lines
    assert ('  "welcome" -> "bye" [label="on_failure", style=dashed, color="#b91c1c", fontcolor="#b91c1c"];'
            in lines)
    assert '  "hours" -> "billing" [label="mon-fri 09:00-18:00"];' in lines
    assert '  "hours" -> "bye" [label="not (crm.tier in [vip, gold])"];' in lines
    assert '  "hours" -> "lookup" [label="default", style=dotted];' in lines
    assert '  "lookup" -> "billing";' in lines
    assert any(line.startswith('  "lookup" [label="lookup\\n<lookup>\\nGET crm.example.com", shape=cylinder')
               for line in lines)
    # terminal nodes (the call can end there) have a double border; a branch never does
    terminal = {line.split('"')[1] for line in lines if "peripheries=2" in line}
    assert terminal == {"billing", "desk", "bye"}
    assert '"bye" [label="bye\\n<hangup>\\n[goodbye]", shape=octagon' in dot
    # a dangling reference is drawn, dashed and red, so the picture shows what is wrong
    assert '  "gone" [label="gone\\n(missing)", shape=box, style=dashed, color="#b91c1c"];' in lines


@pytest.fixture(scope="module")
def korean() -> Plan:
    return load_plan(KOREAN).plan


def test_svg_is_rendered_by_dot(tmp_path: Path, korean: Plan) -> None:
    out = tmp_path / "plan.svg"
    render(to_dot(korean), out, "svg")
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert set(korean.nodes) <= texts
    assert "1 / 요금 문의, 요금, 청구서" in texts


def test_png_is_rendered_by_dot_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "plan.png"
    done = subprocess.run([sys.executable, "-m", "ivr.cli", "dialplan", "graph", str(KOREAN), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_writes_dot_text_and_refuses_broken_plans(tmp_path: Path) -> None:
    out = tmp_path / "plan.gv"
    cli = [sys.executable, "-m", "ivr.cli", "dialplan", "graph"]
    done = subprocess.run([*cli, str(KOREAN), "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and out.read_text() == to_dot(load_plan(KOREAN).plan)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: teleport}\n")
    done = subprocess.run([*cli, str(bad), "--format", "svg", "-o", str(tmp_path / "x.svg")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and f"{bad}:5:13: error: nodes.h: unknown node type 'teleport'" in done.stderr
    assert not (tmp_path / "x.svg").exists()


def test_missing_dot_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DialplanError) as e:
        render(to_dot(PLAN), tmp_path / "x.svg", "svg", dot=str(tmp_path / "no-such-dot"))
    assert e.value.code == "dialplan.graphviz_missing" and "graphviz" in e.value.message


def test_dot_errors_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DialplanError) as e:
        render("digraph { this is not dot", tmp_path / "x.svg", "svg")
    assert e.value.code == "dialplan.graph" and "failed (exit" in e.value.message


def test_format_from_option_or_suffix(tmp_path: Path) -> None:
    assert format_for(Path("a.SVG"), None) == "svg"
    assert format_for(Path("a.png"), "dot") == "dot"
    assert format_for(None, None) == "dot"
    assert format_for(Path("a.gv"), None) == "dot"
    with pytest.raises(DialplanError):
        format_for(Path("a.txt"), None)


def test_business_hours_conditions_are_labelled_open_or_closed() -> None:
    assert condition_label(Condition.model_validate({"open": False})) == "closed"
    assert condition_label(Condition.model_validate({"open": True, "caller": "+1*", "not": True})) == \
        "not (open and caller +1*)"
