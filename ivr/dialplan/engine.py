"""Walks one call through its plan: prompts, digits, menus, queue. SIP-agnostic (see ``ports``)."""

from __future__ import annotations

from ivr.core.logging import get_logger
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import HangupNode, MenuNode, PlayNode, QueueNode
from ivr.dialplan.ports import CallPort, QueuePort

log = get_logger(__name__)
MAX_STEPS = 200  # a plan that loops forever still ends the call


class PlanRunner:
    def __init__(self, loaded: LoadedPlan, call: CallPort, queue: QueuePort) -> None:
        self.loaded = loaded
        self.plan = loaded.plan
        self.call = call
        self.queue = queue
        self.journey = Journey(plan=self.plan.name, plan_version=loaded.version, language=self.plan.language)

    async def run(self) -> str:
        """Run to the end; returns the outcome (``hangup``, ``queued:<outcome>``, ``max_steps``)."""
        current: str | None = self.plan.start
        for _ in range(MAX_STEPS):
            if current is None:
                await self.call.hangup()
                return "hangup"
            node = self.plan.nodes[current]
            log.info("dialplan.node", node=current, type=node.type)
            if isinstance(node, MenuNode):
                current = await self._menu(current, node)
            elif isinstance(node, PlayNode):
                self.journey.step(current, "play")
                await self.call.play(node.prompt, barge_in=False)
                current = node.next
            elif isinstance(node, QueueNode):
                self.journey.step(current, "queue", outcome=node.queue)
                if node.prompt is not None:
                    await self.call.play(node.prompt, barge_in=False)
                outcome = await self.queue.wait_for_agent(
                    queue=node.queue, skill=node.skill or node.queue, priority=node.priority,
                    journey=self.journey)
                return f"queued:{outcome}"
            elif isinstance(node, HangupNode):
                self.journey.step(current, "hangup")
                if node.prompt is not None:
                    await self.call.play(node.prompt, barge_in=False)
                await self.call.hangup()
                return "hangup"
        await self.call.hangup()
        return "max_steps"

    async def _menu(self, name: str, node: MenuNode) -> str | None:
        by_digit = {o.digit: o.goto for o in node.options if o.digit is not None}
        pending: str | None = None  # a key pressed during a no-input/no-match prompt answers the menu
        for attempt in range(node.retries + 1):
            digit = pending or await self.call.play(node.prompt, barge_in=node.barge_in)
            pending = None
            if digit is None:
                digit = await self.call.get_digit(node.timeout_s)
            if digit is None:
                self.journey.step(name, "menu", outcome="no_input")
                if node.no_input is not None and attempt < node.retries:
                    pending = await self.call.play(node.no_input, barge_in=node.barge_in)
                continue
            target = by_digit.get(digit)
            if target is not None:
                self.journey.step(name, "menu", digit=digit, outcome=target)
                return target
            self.journey.step(name, "menu", digit=digit, outcome="no_match")
            if node.no_match is not None and attempt < node.retries:
                pending = await self.call.play(node.no_match, barge_in=node.barge_in)
        return node.on_failure
