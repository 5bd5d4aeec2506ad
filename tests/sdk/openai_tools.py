"""The official OpenAI Python client making tool calls through the pas gateway.

Usage: python3 openai_tools.py <gateway base url, e.g. http://127.0.0.1:6120/v1>
Prints one JSON line with the tool calls it parsed, plain and streamed; the Rust test
asserts on it.
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="not-needed-on-loopback", max_retries=0)
tools = [{
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}]
messages = [{"role": "user", "content": "weather in Oslo?"}]
seen = {}

plain = client.chat.completions.create(
    model="cap:x", messages=messages, tools=tools, tool_choice="required")
choice = plain.choices[0]
seen["plain_finish"] = choice.finish_reason
seen["plain_calls"] = [
    {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
    for c in choice.message.tool_calls
]

calls = {}
finish = None
for chunk in client.chat.completions.create(
    model="cap:x", messages=messages, tools=tools, stream=True
):
    if not chunk.choices:
        continue
    c = chunk.choices[0]
    for d in c.delta.tool_calls or []:
        call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
        if d.id:
            call["id"] = d.id
        if d.function and d.function.name:
            call["name"] = d.function.name
        if d.function and d.function.arguments:
            call["arguments"] += d.function.arguments
    if c.finish_reason:
        finish = c.finish_reason
seen["stream_finish"] = finish
seen["stream_calls"] = [calls[i] for i in sorted(calls)]

print(json.dumps(seen))
