"""The official MCP Python SDK (`mcp` from PyPI) as a stdio client of `pas mcp`.

Usage: mcp_client.py PAS_BINARY WORKSPACE CALLS_JSON

CALLS_JSON is a list of [tool, arguments]. Prints JSON: the listed tools (name and input
schema) and, for each call, either its result (`is_error`, `text`) or the protocol error
it raised (`code`, `message`).
"""

import asyncio
import json
import sys

from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(pas: str, root: str, calls: list) -> dict:
    params = StdioServerParameters(command=pas, args=["mcp", "--workspace", root])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            out = {
                "server": init.server_info.name,
                "tools": [{"name": t.name, "schema": t.input_schema} for t in listed.tools],
                "calls": [],
            }
            for name, args in calls:
                try:
                    r = await session.call_tool(name, args)
                    text = "\n".join(c.text for c in r.content if getattr(c, "text", None))
                    out["calls"].append({"tool": name, "is_error": r.is_error, "text": text})
                except MCPError as e:
                    out["calls"].append({"tool": name, "code": e.code, "message": str(e.error.message)})
            return out


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
    print(json.dumps(result))
