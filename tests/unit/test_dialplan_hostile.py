"""Hostile plan files: the checker and the loader answer every file with errors or ok, within bounds.

Each class of input that used to crash or run away (alias bombs, deep nesting, non-UTF-8 bytes,
values a YAML constructor rejects, huge files, tz-database directories, audio with an impossible
format, missing output directories) has a test here, and generated files (hypothesis) feed the
checker whole families of them.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ivr.core.config import Settings
from ivr.core.errors import DialplanError
from ivr.dialplan import limits, safe_regex
from ivr.dialplan.checks import check_files, strongly_connected
from ivr.dialplan.loader import Problem, load_plan
from ivr.dialplan.registry import LiveRegistry
from ivr.dialplan.safe_regex import regex_problem

GOOD = 'name: ok\nnumbers: ["1"]\nstart: h\nnodes:\n  h: {type: hangup, prompt: "Bye."}\n'


def cfg(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path, prompts={"dir": tmp_path / "prompts"})


def check_bytes(tmp_path: Path, raw: bytes, *, prompts: bool = False, name: str = "plan.yaml") -> list[Problem]:
    path = tmp_path / name
    path.write_bytes(raw)
    return check_files([path], cfg(tmp_path), prompts=prompts)


def errors(problems: list[Problem]) -> list[str]:
    return [f"{p.line}:{p.col}: {p.code}: {p.message}" for p in problems if p.severity == "error"]


def alias_bomb(levels: int, fan: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n" + GOOD


# --- crashes and runaway resources ------------------------------------------------------------------
@pytest.mark.parametrize("levels", [4, 7, 10])
def test_alias_bombs_are_refused_before_they_expand(tmp_path: Path, levels: int) -> None:
    tracemalloc.start()
    try:
        out = errors(check_bytes(tmp_path, alias_bomb(levels).encode()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if 9 ** levels > limits.MAX_EXPANDED_NODES:
        assert out == [f"1:1: dialplan.yaml: YAML: more than {limits.MAX_EXPANDED_NODES} values once aliases "
                       "are expanded"]
    else:
        assert out and all("unknown field" in e for e in out)
    assert peak < 64 * 1024 * 1024  # a resource bound the loader enforces, not a timing


def test_too_many_aliases_are_refused_at_the_first_one_over(tmp_path: Path) -> None:
    body = "a: &a x\nb: [" + ", ".join(["*a"] * (limits.MAX_ALIASES + 1)) + "]\n"
    out = errors(check_bytes(tmp_path, body.encode()))
    assert len(out) == 1 and f"more than {limits.MAX_ALIASES} aliases" in out[0]


def test_an_alias_inside_itself_is_an_error(tmp_path: Path) -> None:
    out = errors(check_bytes(tmp_path, b"a: &a [1, *a]\n" + GOOD.encode()))
    assert out == ["1:1: dialplan.yaml: YAML: an alias refers to the block that contains it"]


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
@pytest.mark.parametrize("depth", [limits.MAX_DEPTH + 1, 500, 5000])
def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path: Path, opener: str, closer: str,
                                                         depth: int) -> None:
    out = errors(check_bytes(tmp_path, f"name: {opener * depth}{closer * depth}\n".encode()))
    assert len(out) == 1 and f"nested deeper than {limits.MAX_DEPTH} levels" in out[0]


def test_block_style_deep_nesting_too(tmp_path: Path) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "x\n"
    out = errors(check_bytes(tmp_path, text.encode()))
    assert len(out) == 1 and "nested deeper than" in out[0]


@pytest.mark.parametrize("raw,where", [
    (b"name: \xff\xfe x\n", "1:7"),
    (b'name: x\nnumbers: ["1"]\nstart: \xc3\x28\n', "3:8"),
    (b"\xfe\xff\x00n\x00a", "1:1"),
])
def test_bytes_that_are_not_utf8_are_a_yaml_error_with_a_place(tmp_path: Path, raw: bytes, where: str) -> None:
    out = errors(check_bytes(tmp_path, raw))
    assert len(out) == 1 and out[0].startswith(where) and "dialplan.encoding: not UTF-8 text" in out[0]


@pytest.mark.parametrize("value,where", [
    ("calendars: {a: [2026-02-30]}", "3:17"),       # an impossible unquoted date
    ("calendars: {a: [2026-13-01]}", "3:17"),
    ("variables: {a: !!int abc}", "3:16"),          # an explicit tag with a value it cannot hold
    ("variables: {a: !!float x}", "3:16"),
    ("variables: {a: !!timestamp 2026-99-99}", "3:16"),
    ("variables: {a: !!int " + "9" * 5000 + "}", "3:16"),
])
def test_values_a_yaml_constructor_rejects_are_errors_at_their_place(tmp_path: Path, value: str,
                                                                      where: str) -> None:
    text = f'name: x\nnumbers: ["1"]\n{value}\nstart: h\nnodes:\n  h: {{type: hangup}}\n'
    out = errors(check_bytes(tmp_path, text.encode()))
    assert len(out) == 1 and out[0].startswith(where + ": dialplan.yaml: YAML: cannot read this value")


def test_files_over_the_size_bound_are_refused_unread(tmp_path: Path) -> None:
    raw = GOOD.encode() + b"#" * limits.MAX_FILE_BYTES
    out = errors(check_bytes(tmp_path, raw))
    assert out == [f"1:1: dialplan.too_large: the file is larger than {limits.MAX_FILE_BYTES} bytes: refused"]
    assert errors(check_bytes(tmp_path, GOOD.encode())) == []


@pytest.mark.parametrize("zone", ["America", "Asia", "posix", "right", "../../etc/passwd", "/etc/localtime",
                                  "Asia/", "Etc", "zone.tab", "tzdata.zi", "Asia/Seoul/../Tokyo"])
def test_time_zones_must_be_zone_names_not_directories_or_paths(tmp_path: Path, zone: str) -> None:
    text = f'name: x\nnumbers: ["1"]\ntimezone: "{zone}"\nstart: h\nnodes:\n  h: {{type: hangup}}\n'
    out = errors(check_bytes(tmp_path, text.encode()))
    assert len(out) == 1 and out[0].startswith("3:11: dialplan.invalid: timezone: unknown time zone")
    window = (f'name: x\nnumbers: ["1"]\nstart: b\nnodes:\n  b: {{type: branch, default: h, rules: '
              f'[{{if: {{time: {{timezone: "{zone}"}}}}, goto: h}}]}}\n  h: {{type: hangup}}\n')
    out = errors(check_bytes(tmp_path, window.encode()))
    assert len(out) == 1 and "unknown time zone" in out[0]


def wav_with(channels: int, width: int = 2, rate: int = 8000) -> bytes:
    data = b"\x00\x01" * 800
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * max(1, channels) * width, max(1, channels) * width,
                      width * 8)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


@pytest.mark.parametrize("channels,width,rate", [(0, 2, 8000), (2, 0, 8000), (1, 2, 0)])
def test_audio_with_an_impossible_format_fails_its_prompt_and_the_others_are_still_checked(
        tmp_path: Path, channels: int, width: int, rate: int) -> None:
    (tmp_path / "prompts" / "en").mkdir(parents=True)
    (tmp_path / "prompts" / "en" / "bad.wav").write_bytes(wav_with(channels, width, rate))
    bad = ('name: x\nnumbers: ["1"]\nstart: h\nnodes:\n  h: {type: hangup, prompt: {file: bad}}\n')
    other = ('name: y\nnumbers: ["2"]\nstart: h\nnodes:\n  h: {type: hangup, prompt: {file: missing}}\n')
    (tmp_path / "a.yaml").write_text(bad)
    (tmp_path / "b.yaml").write_text(other)
    out = check_files([tmp_path / "a.yaml", tmp_path / "b.yaml"], cfg(tmp_path), prompts=True)
    assert [(Path(p.file).name, p.code) for p in out] == [("a.yaml", "prompt.corrupt"), ("b.yaml", "prompt.missing")]


def test_the_loop_check_is_linear_in_the_plan_size(tmp_path: Path) -> None:
    n = limits.MAX_PLAN_NODES - 1
    nodes = "".join(f"  n{i}: {{type: play, prompt: x, next: n{(i + 1) % n}}}\n" for i in range(n))
    text = f'name: x\nnumbers: ["1"]\nstart: n0\nnodes:\n{nodes}'
    tracemalloc.start()
    try:
        out = check_bytes(tmp_path, text.encode())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    loops = [p for p in out if p.code == "dialplan.loop"]
    assert len(loops) == 1 and loops[0].line == 5
    assert peak < 48 * 1024 * 1024  # the old check kept n sets of n names


def test_strongly_connected_components() -> None:
    graph = {"a": ["b"], "b": ["c", "a"], "c": ["c"], "d": ["a"], "e": []}
    comps = sorted(sorted(c) for c in strongly_connected(graph))
    assert comps == [["a", "b"], ["c"], ["d"], ["e"]]
    chain = {f"n{i}": [f"n{i + 1}"] for i in range(5000)} | {"n5000": ["n0"]}
    assert [len(c) for c in strongly_connected(chain)] == [5001]  # no recursion limit


def test_nodes_beyond_the_step_limit_and_too_many_nodes_are_errors(tmp_path: Path) -> None:
    n = limits.MAX_STEPS + 5
    nodes = "".join(f"  n{i}: {{type: play, prompt: x, next: n{i + 1}}}\n" for i in range(n))
    nodes += f"  n{n}: {{type: hangup}}\n"
    out = errors(check_bytes(tmp_path, f'name: x\nnumbers: ["1"]\nstart: n0\nnodes:\n{nodes}'.encode()))
    assert len(out) == n + 1 - limits.MAX_STEPS
    assert out[0].endswith(f"node 'n{limits.MAX_STEPS}' is {limits.MAX_STEPS + 1} steps from start: a call ends "
                           f"after {limits.MAX_STEPS} steps")
    many = "".join(f"  n{i}: {{type: hangup}}\n" for i in range(limits.MAX_PLAN_NODES + 1))
    out = errors(check_bytes(tmp_path, f'name: x\nnumbers: ["1"]\nstart: n0\nnodes:\n{many}'.encode()))
    assert len(out) == 1 and f"at most {limits.MAX_PLAN_NODES} items" in out[0]


def test_errors_inside_a_queue_node_are_at_their_own_field(tmp_path: Path) -> None:
    text = ('name: x\nnumbers: ["1"]\nstart: q\nnodes:\n  q:\n    type: queue\n    queue: billing\n'
            '    max_wait_s: -1\n    priority: 12\n    keys: [{digit: x, goto: q}]\n')
    out = errors(check_bytes(tmp_path, text.encode()))
    assert [e.split(": ")[0] for e in out] == ["8:17", "9:15", "10:20"]


# --- the reload loop ----------------------------------------------------------------------------------
HOSTILE_FILES: dict[str, bytes] = {
    "a-date.yaml": b'name: x\nnumbers: ["5"]\ncalendars: {a: [2026-02-30]}\nstart: h\nnodes: {h: {type: hangup}}\n',
    "b-deep.yaml": b"name: " + b"[" * 600 + b"]" * 600 + b"\n",
    "c-zone.yaml": b'name: x\nnumbers: ["6"]\ntimezone: America\nstart: h\nnodes: {h: {type: hangup}}\n',
    "d-bytes.yaml": b"name: \xff\n",
    "e-bomb.yaml": alias_bomb(9).encode(),
}


def test_the_reload_survives_any_file_and_loads_the_files_after_it(tmp_path: Path) -> None:
    d = tmp_path / "dialplans"
    d.mkdir()
    for name, raw in HOSTILE_FILES.items():
        (d / name).write_bytes(raw)
    (d / "z-good.yaml").write_text(GOOD)
    reg = LiveRegistry(d)
    assert reg.for_number("1") is not None
    assert {s.path.name for s in reg.states.values() if s.error is not None} == set(HOSTILE_FILES)
    (d / "y-good.yaml").write_text(GOOD.replace('"1"', '"2"'))
    (d / "a-date.yaml").write_bytes(b"name: [" * 100)
    assert reg.reload() is True
    assert reg.for_number("2") is not None and reg.for_number("1") is not None


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_load_plan_raises_only_dialplan_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(HOSTILE_FILES[name])
    with pytest.raises(DialplanError):
        load_plan(path)


# --- the CLI -------------------------------------------------------------------------------------------
def run_ivr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("command", [["dialplan", "schema"], ["dialplan", "graph", "PLAN"],
                                     ["dialplan", "graph", "PLAN", "--format", "svg"]])
def test_a_missing_output_directory_is_a_message_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GOOD)
    out = tmp_path / "no" / "such" / "dir" / "out.gv"
    done = run_ivr(*[str(plan) if c == "PLAN" else c for c in command], "-o", str(out))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and f"the directory {out.parent} does not exist" in done.stderr


def test_check_cli_answers_every_hostile_file(tmp_path: Path) -> None:
    paths = []
    for name, raw in HOSTILE_FILES.items():
        (tmp_path / name).write_bytes(raw)
        paths.append(str(tmp_path / name))
    done = run_ivr("dialplan", "check", "--no-prompts", *paths)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert sorted({line.split(":")[0] for line in done.stdout.splitlines()}) == sorted(paths)


# --- generated hostile input ------------------------------------------------------------------------
SCALARS = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=True),
                    st.sampled_from(["2026-02-30", "*", "{caller}", "../x", "menu", "queue", "hangup", "h", "1",
                                     "America", "\x00", "<<", "&a", "*a", "!!int x", "2026-01-01"]))
KEYS = st.sampled_from(["name", "numbers", "start", "nodes", "type", "prompt", "file", "text", "next", "goto",
                        "options", "digit", "say", "queue", "timezone", "calendars", "variables", "url", "to",
                        "rules", "if", "time", "from", "h", "m", "<<", "listen", "keys"])
TREES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(KEYS, kids, max_size=5)), max_leaves=25)


def plan_like(tree: object) -> bytes:
    base = {"name": "g", "numbers": ["1"], "start": "h", "nodes": {"h": tree}}
    return yaml.safe_dump(base, allow_unicode=True).encode()


def mutate(raw: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(raw)
    for at, chunk in edits:
        i = at % (len(out) + 1)
        out[i:i] = chunk
    return bytes(out)


HOSTILE_CHUNKS = st.sampled_from([b"&a ", b"*a", b"<<: *a\n", b"[", b"{", b"]", b"}", b"\xff", b"\x00", b"\t",
                                  b"!!int ", b"!!timestamp ", b"2026-02-30", b"\n  ", b": ", b"- ", b"'", b'"',
                                  b"%YAML 1.1\n---\n", b"--- \n", b"? ", b"|\n", b"\xef\xbb\xbf", b"\xfe\xff"])
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    TREES.map(plan_like),
    st.tuples(TREES.map(plan_like), st.lists(st.tuples(st.integers(0, 10_000), HOSTILE_CHUNKS), max_size=6))
    .map(lambda a: mutate(*a)),
    st.tuples(st.just(GOOD.encode()), st.lists(st.tuples(st.integers(0, 10_000), HOSTILE_CHUNKS), min_size=1,
                                                 max_size=8)).map(lambda a: mutate(*a)),
)


@settings(max_examples=300, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(raw=HOSTILE_BYTES)
def test_generated_hostile_files_give_errors_or_ok_and_never_raise(tmp_path: Path, raw: bytes) -> None:
    problems = check_bytes(tmp_path, raw, name="gen.yaml")
    for p in problems:
        assert isinstance(p, Problem) and p.line >= 1 and p.col >= 1 and p.severity in ("error", "warning")
        assert p.code != "dialplan.internal", p  # the net in check_files is for bugs: none may be hit
        assert len(p.message) < 4000
    try:
        load_plan(tmp_path / "gen.yaml")
    except DialplanError:
        pass


# --- regular expressions that could run away -----------------------------------------------------------
EVIL_PATTERNS = ["^(0+)+1$", "^([0-9]+)*#$", r"^(\d{2,})*$", "^(a|ab)*$", "^(a?)*$", "^(.*)*$", r"^(a)\1$",
                 "^(?=1)1$", "^.*.*.*1$", "^(x+x+)+y$", "(" * 150 + ")" * 150, "[0-9" + "]" * 300]
SAFE_PATTERNS = ["^[0-9]{8,12}$", "^4[0-9]{15}$", "^(vip|gold)$", "^(?:[0-9]{3}-)?[0-9]{4}$", "^(0|1)+$",
                 r"^\+?[0-9]+$", "^.*x$"]


@pytest.mark.parametrize("pattern", EVIL_PATTERNS)
def test_patterns_that_could_backtrack_forever_are_refused_in_collect_and_branch(tmp_path: Path,
                                                                                  pattern: str) -> None:
    quoted = pattern.replace("\\", "\\\\")
    collect = (f'name: x\nnumbers: ["1"]\nstart: c\nnodes:\n  c: {{type: collect, prompt: x, variable: a, '
               f'pattern: "{quoted}"}}\n')
    out = errors(check_bytes(tmp_path, collect.encode()))
    assert len(out) == 1 and "pattern: " in out[0] and out[0].startswith("5:")
    branch = (f'name: x\nnumbers: ["1"]\nstart: b\nnodes:\n  b: {{type: branch, default: h, rules: [{{if: '
              f'{{var: crm.tier, matches: "{quoted}"}}, goto: h}}]}}\n  h: {{type: hangup}}\n')
    out = errors(check_bytes(tmp_path, branch.encode()))
    assert len(out) == 1 and "matches: " in out[0]


@pytest.mark.parametrize("pattern", SAFE_PATTERNS)
def test_ordinary_patterns_pass(pattern: str) -> None:
    assert regex_problem(pattern) is None


def test_a_value_longer_than_the_subject_bound_does_not_match() -> None:
    assert safe_regex.fullmatch("^x*$", "x" * safe_regex.MAX_SUBJECT)
    assert not safe_regex.fullmatch("^x*$", "x" * (safe_regex.MAX_SUBJECT + 1))


ODD_PLANS = {
    "bad-ipv6.yaml": "name: x\nnumbers: ['1']\nstart: l\nnodes: {l: {type: lookup, url: 'http://[::1/x', next: h}, "
                     "h: {type: hangup}}\n",
    "bad-port.yaml": "name: x\nnumbers: ['1']\nstart: l\nnodes: {l: {type: lookup, url: 'http://a:99999999/', "
                     "next: h}, h: {type: hangup}}\n",
    "date.yaml": HOSTILE_FILES["a-date.yaml"].decode(),
    "zone.yaml": HOSTILE_FILES["c-zone.yaml"].decode(),
}


@pytest.mark.parametrize("name", sorted(ODD_PLANS))
@pytest.mark.parametrize("command", [["dialplan", "check", "--no-prompts"], ["dialplan", "graph"], ["simulate"]])
def test_graph_and_simulate_answer_odd_files_with_errors_not_tracebacks(tmp_path: Path, name: str,
                                                                        command: list[str]) -> None:
    path = tmp_path / name
    path.write_text(ODD_PLANS[name])
    done = run_ivr(*command, str(path))
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert f"{path}:" in done.stderr + done.stdout


@pytest.mark.parametrize("node,what", [
    ("{type: queue, queue: q, max_wait_s: .inf, on_timeout: h}", "max_wait_s"),
    ("{type: queue, queue: q, max_wait_s: 1e300, on_timeout: h}", "max_wait_s"),
    ("{type: queue, queue: q, skills: ['a:b*']}", "skills.0"),
    ("{type: branch, default: h, rules: [{if: {var: a, gt: .nan}, goto: h}]}", "gt"),
    ("{type: play, prompt: '" + "x" * 4001 + "', next: h}", "prompt"),
    ("{type: menu, prompt: x, options: [{say: ['" + "y" * 201 + "'], goto: h}]}", "nodes.a"),
])
def test_unbounded_values_are_refused(tmp_path: Path, node: str, what: str) -> None:
    text = f'name: x\nnumbers: ["1"]\nstart: a\nnodes:\n  a: {node}\n  h: {{type: hangup}}\n'
    out = errors(check_bytes(tmp_path, text.encode()))
    assert len(out) == 1 and what in out[0], out


@pytest.mark.parametrize("text", [
    'name: x\nnumbers: ["1"]\nstart: h\nnodes: {h: {type: "' + "t" * 5000 + '"}}\n',
    'name: x\nnumbers: ["1"]\nstart: h\nnodes: {h: {type: hangup, ' + "f" * 5000 + ': 1}}\n',
    'name: x\n' + "k" * 5000 + ': 1\n' + "k" * 5000 + ': 2\nnumbers: ["1"]\nstart: h\nnodes: {h: {type: hangup}}\n',
])
def test_messages_quote_a_long_value_cut(tmp_path: Path, text: str) -> None:
    out = check_bytes(tmp_path, text.encode())
    assert out and all(len(p.message) < 600 for p in out)
