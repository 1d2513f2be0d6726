"""A small ComfyUI client for the lvcd node-pack check: queue API-format prompts over HTTP and follow them on the
websocket (progress, cached nodes, errors, interruption). Needs aiohttp (ComfyUI's own requirement)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Run:
    """What the websocket said about one prompt."""

    prompt_id: str
    outcome: str = ""  # execution_success, execution_error, execution_interrupted
    error: dict = field(default_factory=dict)  # the execution_error event's data
    cached: list = field(default_factory=list)  # node ids ComfyUI took from its cache
    executed: list = field(default_factory=list)  # node ids that ran (the 'executing' events)
    progress: list = field(default_factory=list)  # (node, value, max, seconds since queued) of 'progress' events
    events: list = field(default_factory=list)  # (type, seconds since queued) of every event
    seconds: float = 0.0
    history: dict = field(default_factory=dict)


class Comfy:
    def __init__(self, url: str = "http://127.0.0.1:8188"):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.session: aiohttp.ClientSession | None = None
        self.ws = None

    async def __aenter__(self):
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self.ws = await self.session.ws_connect(ws_url, max_msg_size=0)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.session.close()

    async def get(self, path: str):
        async with self.session.get(self.url + path) as response:
            if response.content_type == "application/json":
                return await response.json()
            return await response.read()

    async def post(self, path: str, body: dict | None = None) -> tuple[int, dict | str]:
        async with self.session.post(self.url + path, json=body or {}) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def queue(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt: (status, body); a 400 body holds ComfyUI's validation errors."""
        return await self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    async def run(self, prompt: dict, timeout: float = 900, on_progress=None) -> Run:
        """Queue a prompt and follow it to its end. ``on_progress(run, event)`` is awaited on each progress event."""
        status, body = await self.queue(prompt)
        if status != 200:
            raise RuntimeError(f"POST /prompt refused ({status}): {json.dumps(body)[:2000]}")
        run = Run(body["prompt_id"])
        started = time.monotonic()
        deadline = started + timeout
        while not run.outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"prompt {run.prompt_id} still running after {timeout} s")
            try:
                message = await self.ws.receive(timeout=remaining)
            except TimeoutError:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary: preview images
            event = json.loads(message.data)
            kind, data = event["type"], event.get("data", {})
            if data.get("prompt_id") not in (None, run.prompt_id):
                continue
            now = time.monotonic() - started
            run.events.append((kind, round(now, 2)))
            if kind == "execution_cached":
                run.cached = list(data.get("nodes", []))
            elif kind == "executing" and data.get("node") is not None:
                run.executed.append(data["node"])
            elif kind == "progress":
                run.progress.append((data.get("node"), data["value"], data["max"], round(now, 2)))
                if on_progress is not None:
                    await on_progress(run, data)
            elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                run.outcome = kind
                run.error = data if kind == "execution_error" else {}
        run.seconds = time.monotonic() - started
        for _ in range(50):  # the history entry is written as the prompt ends
            history = await self.get(f"/history/{run.prompt_id}")
            if run.prompt_id in history:
                run.history = history[run.prompt_id]
                break
            await asyncio.sleep(0.1)
        return run

    async def wait_idle(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = await self.get("/queue")
            if not queue["queue_running"] and not queue["queue_pending"]:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError("ComfyUI's queue did not empty")
