"""The official OpenAI Python client against the pas gateway, unchanged but for base_url.

Usage: python3 openai_client.py <gateway base url, e.g. http://127.0.0.1:6120/v1>
Prints one JSON line with what it saw; the Rust test asserts on it.
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="not-needed-on-loopback", max_retries=0)
seen = {}

plain = client.chat.completions.with_raw_response.create(
    model="cap:chat",
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=20,
    extra_headers={"x-pas-agent": "sdk-agent", "x-pas-job": "J-sdk"},
)
completion = plain.parse()
seen["plain_text"] = completion.choices[0].message.content
seen["plain_usage"] = completion.usage.prompt_tokens
seen["overhead_header"] = plain.headers.get("x-pas-overhead-ms")

text = ""
usage = None
for chunk in client.chat.completions.create(
    model="gpt-x",
    messages=[{"role": "user", "content": "hello"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.completion_tokens
seen["stream_text"] = text
seen["stream_usage"] = usage

seen["models"] = sorted(m.id for m in client.models.list())

try:
    client.chat.completions.create(model="cap:nothing", messages=[{"role": "user", "content": "x"}])
    seen["missing"] = "no error"
except openai.NotFoundError as e:
    seen["missing"] = e.body.get("code") if isinstance(e.body, dict) else str(e.body)

print(json.dumps(seen))
