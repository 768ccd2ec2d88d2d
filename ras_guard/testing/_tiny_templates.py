"""Chat templates of the tiny test models (private to :mod:`ras_guard.testing`).

Each follows the style of its real model family (LLaVA-1.5, Qwen2-VL, Idefics3/SmolVLM, Gemma 3, Llama 3) and also
renders ``tools``, assistant ``tool_calls`` and ``tool`` messages.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------------------
# Chat templates (HF renders them with trim_blocks + lstrip_blocks; "tools" is undefined or None when not given)
# ---------------------------------------------------------------------------------------------------------------

_TOOLS_TEXT = (
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' -}}{{- tool | tojson -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\\n</tool_call>' -}}"
)


def _macros(image: str) -> str:
    """``render(content)`` (string or typed parts; ``image`` per image part) and ``calls(message)`` macros."""
    return (
        "{%- macro render(content) -%}"
        "{%- if content is string -%}{{- content -}}"
        "{%- elif content is iterable and content is not mapping -%}{%- for part in content -%}"
        "{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}{{- '" + image + "' -}}"
        "{%- elif 'text' in part -%}{{- part.text -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        "{%- macro calls(message) -%}"
        "{%- if message.tool_calls is defined and message.tool_calls -%}{%- for call in message.tool_calls -%}"
        "{%- if call.function is defined -%}{%- set call = call.function -%}{%- endif -%}"
        '{{- \'\\n<tool_call>\\n{"name": "\' + call.name + \'", "arguments": \' -}}'
        "{%- if call.arguments is string -%}{{- call.arguments -}}{%- else -%}{{- call.arguments | tojson -}}"
        "{%- endif -%}{{- '}\\n</tool_call>' -}}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        "{%- set has_system = messages[0].role == 'system' -%}"
    )


def _system_block(open_: str, default: str, close: str) -> str:
    """The opening system block: the system message and/or the tools (rendered when ``tools`` is given)."""
    return (
        "{%- if tools -%}{{- '" + open_ + "' -}}"
        "{%- if has_system -%}{{- render(messages[0].content) -}}{%- else -%}{{- '"
        + default
        + "' -}}{%- endif -%}"
        "{{- '\\n\\n' -}}" + _TOOLS_TEXT + "{{- '" + close + "' -}}"
        "{%- elif has_system -%}{{- '" + open_ + "' + render(messages[0].content) + '" + close + "' -}}"
        "{%- endif -%}"
    )


LLAVA_TEMPLATE = (
    _macros("<image>\\n")
    + _system_block("SYSTEM: ", "You are a helpful assistant.", "\\n")
    + "{%- for message in messages -%}{%- if not (loop.first and has_system) -%}"
    "{%- if message.role == 'user' -%}{{- 'USER: ' + render(message.content) + ' ' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- 'ASSISTANT: ' + render(message.content) + calls(message) + eos_token -}}"
    "{%- elif message.role == 'tool' -%}{{- 'TOOL: <tool_response>' + render(message.content) + '</tool_response> ' -}}"
    "{%- else -%}{{- message.role | upper + ': ' + render(message.content) + '\\n' -}}"
    "{%- endif -%}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

QWEN2_VL_TEMPLATE = (
    _macros("<|vision_start|><|image_pad|><|vision_end|>") + "{%- if not tools and not has_system -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}{%- endif -%}"
    + _system_block("<|im_start|>system\\n", "You are a helpful assistant.", "<|im_end|>\\n")
    + "{%- for message in messages -%}{%- if not (loop.first and has_system) -%}"
    "{%- if message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + render(message.content) + '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + render(message.content) + calls(message) + '<|im_end|>\\n' -}}"
    "{%- endif -%}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

IDEFICS3_TEMPLATE = (
    _macros("<image>")
    + "{{- bos_token -}}"
    + _system_block("System: ", "You are a helpful assistant.", "<end_of_utterance>\\n")
    + "{%- for message in messages -%}{%- if not (loop.first and has_system) -%}"
    "{{- message.role | capitalize + ': ' -}}"
    "{%- if message.role == 'tool' -%}{{- '<tool_response>' + render(message.content) + '</tool_response>' -}}"
    "{%- else -%}{{- render(message.content) + calls(message) -}}{%- endif -%}"
    "{{- '<end_of_utterance>\\n' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
)

GEMMA3_TEMPLATE = (
    _macros("<start_of_image>") + "{{- bos_token -}}"
    "{%- set prefix = namespace(text='') -%}"
    "{%- if has_system -%}{%- set prefix.text = render(messages[0].content) + '\\n\\n' -%}{%- endif -%}"
    "{%- if tools -%}{%- set tools_text -%}" + _TOOLS_TEXT + "{%- endset -%}"
    "{%- set prefix.text = prefix.text + tools_text + '\\n\\n' -%}{%- endif -%}"
    "{%- set first = namespace(done=false) -%}"
    "{%- for message in messages -%}{%- if not (loop.first and has_system) -%}"
    "{%- set role = 'model' if message.role == 'assistant' else message.role -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}"
    "{%- if not first.done -%}{{- prefix.text -}}{%- set first.done = true -%}{%- endif -%}"
    "{%- if message.role == 'tool' -%}{{- '<tool_response>' + render(message.content) + '</tool_response>' -}}"
    "{%- elif message.content is string -%}{{- message.content | trim -}}"
    "{%- else -%}{{- render(message.content) -}}{%- endif -%}"
    "{{- calls(message) + '<end_of_turn>\\n' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

LLAMA_TEMPLATE = (
    _macros("")
    + "{{- bos_token -}}"
    + _system_block(
        "<|start_header_id|>system<|end_header_id|>\\n\\n", "You are a helpful assistant.", "<|eot_id|>"
    )
    + "{%- for message in messages -%}{%- if not (loop.first and has_system) -%}"
    "{%- set role = 'ipython' if message.role == 'tool' else message.role -%}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + render(message.content) | trim -}}"
    "{{- calls(message) + '<|eot_id|>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
