"""The pack's example workflows in ComfyUI's real frontend (headless Chromium through Playwright): each is opened from
the template browser (Templates -> Custom Nodes -> the pack), as a user opens it, and read back from ``app.graph``:
every node type known to the frontend (none missing), no node marked in error, every saved widget value in the widget
of that name, every saved link present, and the frontend's own conversion to an API prompt (``app.graphToPrompt``)
returned for the caller to queue."""

from __future__ import annotations

import json
from pathlib import Path

READ_GRAPH = """() => {
  const nodes = app.graph._nodes.map((node) => ({
    id: node.id,
    type: node.type,
    title: node.title,
    registered: !!LiteGraph.registered_node_types[node.type],
    has_errors: !!node.has_errors,
    color: node.color || null,
    bgcolor: node.bgcolor || null,
    bounds: Array.from(node.getBounding()),  // [x, y, width, height], title bar included
    widgets: (node.widgets || []).map((w) => [w.name, w.value, w.type]),
    inputs: (node.inputs || []).map((i) => [i.name, i.type, i.link ?? null]),
    outputs: (node.outputs || []).map((o) => [o.name, o.type, o.links || []]),
  }));
  const links = [];
  for (const link of app.graph.links instanceof Map ? app.graph.links.values() : Object.values(app.graph.links)) {
    if (link) links.push([link.id, link.origin_id, link.origin_slot, link.target_id, link.target_slot, link.type]);
  }
  return {nodes, links};
}"""

DIALOG_TEXT = (
    """() => [...document.querySelectorAll('.p-dialog, [role=dialog]')].map((d) => d.innerText).join('\\n---\\n')"""
)


def _expected_widgets(saved_node: dict, widget_order: list[str], control_after: set[str]) -> dict:
    """A saved node's widgets_values by widget name (the frontend stores 'control after generate' after its seed)."""
    values, named = list(saved_node.get("widgets_values") or []), {}
    for name in widget_order:
        if not values:
            break
        named[name] = values.pop(0)
        if name in control_after:
            named["control_after_generate"] = values.pop(0)
    return named


def check_workflows(url: str, pack_dir: Path, pack_name: str, chromium: str, object_info: dict, shots: Path) -> dict:
    """Open each example workflow from the template browser; return {name: {"problems": [...], "prompt": {...}}}."""
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            for path in sorted((pack_dir / "example_workflows").glob("*.json")):
                results[path.stem] = _check_one(browser, url, path, pack_name, object_info, shots)
        finally:
            browser.close()
    return results


def _check_one(browser, url, path, pack_name, object_info, shots) -> dict:
    saved = json.loads(path.read_text())
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(f"page error: {err}"))
    problems = []
    try:
        page.goto(url, wait_until="networkidle", timeout=180_000)
        page.wait_for_function("() => window.app && window.app.graph", timeout=180_000)
        page.wait_for_timeout(1000)
        startup_errors, errors[:] = list(errors), []  # the frontend's own, before any workflow is opened
        if not page.get_by_text(pack_name, exact=True).first.is_visible():  # the template dialog shows on a 1st visit
            page.get_by_text("Templates", exact=True).first.click()
        page.get_by_text(pack_name, exact=True).first.click()
        page.get_by_text(path.stem, exact=True).first.click()  # the template's card
        page.wait_for_function("(count) => app.graph._nodes.length === count", arg=len(saved["nodes"]), timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / f"{path.stem}.png"))
        dialog = page.evaluate(DIALOG_TEXT)
        if "missing" in dialog.lower():
            problems.append(f"a dialog about missing nodes or models: {dialog[:500]!r}")
        graph = page.evaluate(READ_GRAPH)
        problems += _compare(saved, graph, object_info)
        prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    finally:
        page.close()
    return {"problems": problems + errors, "prompt": prompt, "dialog": dialog, "startup_errors": startup_errors}


def _compare(saved: dict, graph: dict, object_info: dict) -> list[str]:
    problems = []
    loaded = {node["id"]: node for node in graph["nodes"]}
    for node in saved["nodes"]:
        here = loaded.get(node["id"])
        if here is None:
            problems.append(f"node {node['id']} ({node['type']}) is not in the loaded graph")
            continue
        if here["type"] != node["type"] or not here["registered"]:
            problems.append(f"node {node['id']}: type {node['type']} is not a node type the frontend knows")
        if node.get("title") and here["title"] != node["title"]:
            problems.append(f"node {node['id']} ({node['type']}) is titled {here['title']!r}, saved {node['title']!r}")
        if here["has_errors"]:
            problems.append(f"node {node['id']} ({node['type']}) is marked in error")
        if node["type"] not in object_info:
            continue  # a frontend-only node (MarkdownNote)
        info = object_info[node["type"]]
        order = [*info["input_order"].get("required", []), *info["input_order"].get("optional", [])]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        control = {n for n, spec in specs.items() if len(spec) > 1 and spec[1].get("control_after_generate")}
        widget_names = [w[0] for w in here["widgets"]]
        expected = _expected_widgets(node, [n for n in order if n in widget_names], control)
        actual = {w[0]: w[1] for w in here["widgets"]}
        for name, value in expected.items():
            if actual.get(name) != value:
                problems.append(
                    f"node {node['id']} ({node['type']}): widget {name} is {actual.get(name)!r}, saved {value!r}"
                )
    boxes = [(node["id"], node["type"], node["bounds"]) for node in graph["nodes"]]
    for index, (a, a_type, (ax, ay, aw, ah)) in enumerate(boxes):  # as drawn: a node over another hides its widgets
        for b, b_type, (bx, by, bw, bh) in boxes[index + 1 :]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                problems.append(f"node {a} ({a_type}) and node {b} ({b_type}) overlap on the canvas")
    loaded_links = {tuple(link) for link in graph["links"]}
    problems += [
        f"link {link} is not in the loaded graph" for link in saved["links"] if tuple(link) not in loaded_links
    ]
    return problems
