"""Cancelling one event, not every event of a client.

Gradio's /cancel cancels every running task of the client's session and function, then unqueues the event it names:
a client that cancels one of its queued jobs also kills its running one, which then never completes. This middleware
cancels the task of the named event only, and hands Gradio's route the rest of its work (unqueue the event, tell the
client) with a function index that matches no task.
"""

from __future__ import annotations

import asyncio
import json

from gradio.route_utils import API_PREFIX

PATH = f"{API_PREFIX}/cancel"
NO_FUNCTION = -1


class OneEventCancels:
    """ASGI middleware around the app (`launch(app_kwargs={"middleware": [Middleware(OneEventCancels)]})`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(PATH):
            return await self.app(scope, receive, send)
        body = await _body(receive)
        try:
            fields = json.loads(body)
            await _cancel(f"{fields['session_hash']}_{fields['fn_index']}<gradio-sep>{fields['event_id']}")
            body = json.dumps({**fields, "fn_index": NO_FUNCTION}).encode()
        except (ValueError, TypeError, KeyError):
            pass  # not a cancel Gradio would accept: its route answers

        async def replay():
            nonlocal body
            if body is None:
                return await receive()  # after the body: wait for the client to go, as Starlette does
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        await self.app(scope, replay, send)


async def _body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _cancel(name: str) -> None:
    """Cancel the asyncio task of one event, named as gradio.utils.set_task_name names it."""
    tasks = [task for task in asyncio.all_tasks() if task.get_name() == name]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
