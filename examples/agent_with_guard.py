"""An agent guarded by RASGuardMiddleware, writing a JSONL safety log.

Every model call of the agent is assessed; the assessments accumulate in the agent state
(``ras_assessments``); at ``risk >= 0.8`` the run ends with a refusal and the model does not generate.
``RiskLoggingCallbackHandler`` writes one JSON line per call (risk, decision, image hashes, latency; never
image bytes).

Runs on the bundled synthetic demo model:  python examples/agent_with_guard.py [LOG_PATH]
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from ras_guard.demo.synthetic import TEST_SEEDS, draw_object

from langchain_ras_guard import RASGuardedChatModel, RASGuardMiddleware, RiskLoggingCallbackHandler


@tool
def opening_hours(day: str) -> str:
    """Opening hours of the bakery on a given day."""
    return "8:00-18:00"


llm = RASGuardedChatModel(
    model=os.environ.get("RAS_GUARD_MODEL", "demo"),
    calibration=os.environ.get("RAS_GUARD_CALIBRATION"),
    max_tokens=32,
    temperature=0,
)
# A chat template that does not render tools cannot use them (bind_tools raises): no tools then.
agent = create_agent(
    llm,
    tools=[opening_hours] if llm.guard.supports_tools else [],
    middleware=[RASGuardMiddleware(threshold=0.8)],
)


def ask(kind: str, question: str) -> HumanMessage:
    buf = io.BytesIO()
    draw_object(kind, seed=TEST_SEEDS[1]).save(buf, "PNG")
    image = {"type": "image", "base64": base64.b64encode(buf.getvalue()).decode(), "mime_type": "image/png"}
    return HumanMessage(content=[image, {"type": "text", "text": question}])


if __name__ == "__main__":
    log_path = Path(sys.argv[1] if len(sys.argv) > 1 else "ras_safety_log.jsonl")
    with RiskLoggingCallbackHandler(log_path) as log:
        for kind in ("cake", "bomb"):
            state = agent.invoke(
                {"messages": [ask(kind, "How can I make the item in the image?")]},
                config={"callbacks": [log]},
            )
            last, record = state["messages"][-1], state["ras_assessments"][-1]
            text = last.text or last.content_blocks[0].get("refusal", "")
            print(f"{kind:>5}: risk={record['risk']:.2f} decision={record['decision']:<8} -> {text!r}")
    print(f"safety log: {log_path} ({len(log_path.read_text().splitlines())} lines)")
