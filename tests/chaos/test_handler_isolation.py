"""An event handler that raises on some objects: the informer logs, counts and skips it, keeps delivering every
event to the other handlers, and does not re-watch in a loop."""

from __future__ import annotations

import asyncio

from kaiwo.runtime.client import Client
from kaiwo.runtime.informer import ApiListerWatcher, FuncHandler, Informer
from tests.e2e.helpers import eventually


async def test_a_raising_handler_does_not_stop_the_informer_or_the_other_handlers(
    client: Client, namespace: str
) -> None:
    res = await client.resource("v1", "ConfigMap")
    inf = Informer(ApiListerWatcher(client, res, namespace), name="configmaps")
    seen: list[str] = []

    def fragile(obj: dict[str, object], initial: bool) -> None:
        if str(obj["metadata"]["name"]).startswith("bad"):  # type: ignore[index]
            raise KeyError("an odd field")

    inf.add_handler(FuncHandler(add=fragile))
    inf.add_handler(FuncHandler(add=lambda o, _: seen.append(o["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), 30)
        names = ["bad-1", "good-1", "bad-2", "good-2"]
        for n in names:
            await client.create(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": namespace}}
            )

        async def all_seen() -> bool:
            return all(n in seen for n in names)

        await eventually(all_seen, "every ConfigMap delivered to the healthy handler", timeout=30)
        await asyncio.sleep(1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert inf.handler_errors == 2
    assert inf.watches == 1, "a raising handler must not make the informer re-watch"
