import aiohttp

from dispatch.service import Service


async def test_healthz_ok(service: Service) -> None:
    async with aiohttp.ClientSession() as http, http.get(service.url + "/healthz") as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
