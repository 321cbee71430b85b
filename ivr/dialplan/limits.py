"""Bounds on dial-plan files: what ``ivr dialplan check`` and the workers' reload refuse.

Plan files are written by people and may be hostile; every bound here keeps the parser, the
validator and the graph checks within a known time and memory whatever a file holds (see
"Limits and safety" in docs/dialplans.md). A file over a bound is refused with a ``file:line:col``
error, never parsed further.
"""

from __future__ import annotations

#: Larger files are refused before they are parsed.
MAX_FILE_BYTES = 1024 * 1024
#: Aliases (``*name``) per file: enough for shared blocks, too few for an alias bomb.
MAX_ALIASES = 200
#: Mappings and lists nested in one another (a plan needs about 8).
MAX_DEPTH = 40
#: YAML nodes (keys, values, items) once every alias is expanded: what the validator walks.
MAX_EXPANDED_NODES = 200_000
#: Nodes of one plan.
MAX_PLAN_NODES = 1000
#: Node visits of one call (the engine hangs up after this many; ``check`` refuses a node that
#: cannot be reached in fewer).
MAX_STEPS = 200
#: Characters of a file's value quoted in a message (a hostile value is cut, not echoed whole).
MAX_QUOTED = 80
