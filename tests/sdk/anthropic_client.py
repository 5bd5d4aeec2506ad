"""The official Anthropic Python SDK against the pas gateway, unchanged but for base_url.

Usage: python3 anthropic_client.py <gateway url, e.g. http://127.0.0.1:6120> <model>...
For each model: a plain call, a streamed one, a tool-use round trip, count_tokens, and an
unknown model. Prints one JSON object (model -> what it saw); the Rust test asserts on it.
"""
import json
import sys

import anthropic

client = anthropic.Anthropic(
    base_url=sys.argv[1],
    api_key="not-needed-on-loopback",
    max_retries=0,
    default_headers={"x-pas-agent": "sdk-agent", "x-pas-job": "J-sdk"},
)
ASK = [{"role": "user", "content": "say hello"}]
TOOLS = [{
    "name": "get_weather",
    "description": "The weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
out = {}
for model in sys.argv[2:]:
    seen = {}
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=50, system="be brief", messages=ASK)
    msg = raw.parse()
    seen["plain_text"] = msg.content[0].text
    seen["plain_usage"] = [msg.usage.input_tokens, msg.usage.output_tokens]
    seen["stop_reason"] = msg.stop_reason
    seen["headers"] = {k: raw.headers.get(k) for k in
                       ["x-pas-provider", "x-pas-model", "x-pas-receipt", "x-pas-cost-usd",
                        "x-pas-trace-id", "x-pas-overhead-ms"]}

    with client.messages.stream(model=model, max_tokens=50, system="be brief", messages=ASK) as s:
        seen["stream_text"] = "".join(s.text_stream)
        final = s.get_final_message()
    seen["stream_usage"] = [final.usage.input_tokens, final.usage.output_tokens]

    # A tool-use round trip, streamed, then the result sent back.
    with client.messages.stream(model=model, max_tokens=100, tools=TOOLS,
                                messages=[{"role": "user", "content": "weather in Paris?"}]) as s:
        first = s.get_final_message()
    use = [b for b in first.content if b.type == "tool_use"][0]
    seen["tool"] = {"name": use.name, "input": use.input, "stop_reason": first.stop_reason}
    second = client.messages.create(model=model, max_tokens=100, tools=TOOLS, messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ])
    seen["after_tool"] = second.content[0].text

    seen["count"] = client.messages.count_tokens(model=model, messages=ASK, system="be brief").input_tokens
    out[model] = seen

try:
    client.messages.create(model="no-such-model", max_tokens=5, messages=ASK)
    out["missing"] = "answered"
except anthropic.NotFoundError as e:
    out["missing"] = e.body["error"]["type"]
print(json.dumps(out))
