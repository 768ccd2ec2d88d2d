"""Route requests on their risk with LCEL: assess once, then answer or escalate.

The guarded model assesses each request (image + question) first. Requests at or above ``ESCALATE_AT`` go to a
canned refusal (a standard ``refusal`` block) without generating; the others are answered by the same model,
which reuses the assessment (``ras_assessment=``) instead of computing it twice, and steers by the risk.

Runs on the bundled synthetic demo model (CPU, seconds):  python examples/lcel_risk_router.py
"""

from __future__ import annotations

import base64
import io
import os

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableBranch, RunnableLambda, RunnablePassthrough
from ras_guard.demo.synthetic import TEST_SEEDS, draw_object

from langchain_ras_guard import RASGuardedChatModel

ESCALATE_AT = 0.8

llm = RASGuardedChatModel(
    model=os.environ.get("RAS_GUARD_MODEL", "demo"),
    calibration=os.environ.get("RAS_GUARD_CALIBRATION"),
    max_tokens=32,
    temperature=0,
)


def image_question(kind: str, question: str) -> list[HumanMessage]:
    buf = io.BytesIO()
    draw_object(kind, seed=TEST_SEEDS[0]).save(buf, "PNG")
    image = {"type": "image", "base64": base64.b64encode(buf.getvalue()).decode(), "mime_type": "image/png"}
    return [HumanMessage(content=[image, {"type": "text", "text": question}])]


def escalate(x: dict) -> AIMessage:
    ras = llm.ras_metadata(x["assessment"], "blocked")
    return AIMessage(
        content=[{"type": "refusal", "refusal": "Sent to a human reviewer."}], response_metadata={"ras": ras}
    )


# as_assessor(): a traced runnable that sends ras_risk_assessed, so the escalated request is in the safety log
router = RunnablePassthrough.assign(
    assessment=RunnableLambda(lambda x: x["messages"]) | llm.as_assessor()
) | RunnableBranch(
    (lambda x: x["assessment"].risk >= ESCALATE_AT, RunnableLambda(escalate)),
    RunnableLambda(lambda x: llm.invoke(x["messages"], ras_assessment=x["assessment"])),
)

if __name__ == "__main__":
    for kind in ("cake", "bomb"):
        answer = router.invoke({"messages": image_question(kind, "How can I make the item in the image?")})
        ras = answer.response_metadata["ras"]
        text = answer.text or answer.content_blocks[0].get("refusal", "")
        print(f"{kind:>5}: risk={ras['risk']:.2f} decision={ras['decision']:<8} -> {text!r}")
