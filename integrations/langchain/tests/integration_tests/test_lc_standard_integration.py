"""LangChain's standard integration suite (``ChatModelIntegrationTests``) on a real local checkpoint.

The demo model when installed, else a tiny random LLaVA. Two standard tests download an image from the
internet; they are marked xfail, and the same assertions run on a local image (base64, and a URL served on
127.0.0.1 and allow-listed) in the ``*_offline`` tests. Every skip is listed with its reason in the package
README.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from lc_ras_testing import LocalServer, Route, StandardCapabilities, png_bytes, real_model_params

from langchain_ras_guard import RASGuardedChatModel

IMAGE = png_bytes((30, 120, 200), (64, 48))
NO_INTERNET = (
    "downloads an image from raw.githubusercontent.com and the test machines have no internet access; the "
    "same "
    "assertions run offline in the *_offline test next to it"
)


class TestRASGuardedChatModelIntegration(StandardCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**real_model_params(), "allowed_hosts": ["127.0.0.1"]}

    @pytest.mark.xfail(reason=NO_INTERNET)
    def test_image_inputs(self, model: RASGuardedChatModel) -> None:
        super().test_image_inputs(model)

    @pytest.mark.xfail(reason=NO_INTERNET)
    def test_image_tool_message(self, model: RASGuardedChatModel) -> None:
        super().test_image_tool_message(model)

    def test_image_inputs_offline(self, model: RASGuardedChatModel) -> None:
        """``test_image_inputs`` with a local image instead of a download (same three message forms)."""
        image_data = base64.b64encode(IMAGE).decode("utf-8")
        prompt = {"type": "text", "text": "Give a concise description of this image."}
        with LocalServer() as server:
            server.routes["/image.png"] = Route(200, IMAGE, {"Content-Type": "image/png"})
            for block in (
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image_data}"}},
                {"type": "image", "base64": image_data, "mime_type": "image/png"},
                {"type": "image", "url": server.url("/image.png")},
            ):
                result = model.invoke([HumanMessage(content=[prompt, block])])
                assert isinstance(result, AIMessage)
            assert server.hits == ["/image.png"]

    def test_image_tool_message_offline(self, model: RASGuardedChatModel) -> None:
        """``test_image_tool_message`` with a local image instead of a download."""
        if not self.supports_image_tool_message:
            pytest.skip("the chat template does not render tools (bind_tools raises)")
        image_data = base64.b64encode(IMAGE).decode("utf-8")
        for content in (
            [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image_data}"}}],
            [{"type": "image", "base64": image_data, "mime_type": "image/png"}],
        ):
            messages = [
                HumanMessage("get a random diagram using the tool and give it a concise description"),
                AIMessage(
                    [], tool_calls=[{"type": "tool_call", "id": "1", "name": "random_image", "args": {}}]
                ),
                ToolMessage(content=content, tool_call_id="1", name="random_image"),
            ]

            def random_image() -> str:
                """Return a random image."""
                return ""

            _ = model.bind_tools([random_image]).invoke(messages)
