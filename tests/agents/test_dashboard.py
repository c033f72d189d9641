"""The dashboard in a real browser (Debian's chromium through Playwright) on a `flame up` stack:
a two-tier digits job advances on the job page without a reload; screenshots are kept."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from flame_common.embedded import EmbeddedMongo
from flame_sdk import localstack
from flame_sdk.client import FlameClient
from schemas.errors import Invalid
from tests.agents.stack import WARM_ML, local_stack, wait_state
from tests.support.wait import eventually

CHROMIUM = Path("/usr/bin/chromium")  # apt-get install chromium (scripts/install.sh)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    # decided before any fixture starts MongoDB or asks for RabbitMQ
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"chromium is not installed ({CHROMIUM}; apt-get install chromium)",
    ),
]
TWO_TIER = Path(__file__).parents[2] / "examples" / "two_tier_fedavg"
ROUNDS = 5
# small batches: rounds of a second or so, so the curves visibly grow while the job runs
TRAINING = {"rounds": ROUNDS, "epochs": 20, "batchSize": 4, "learningRate": 0.002}
ENDED = {"completed", "failed", "terminated"}
SHOTS = Path("/tmp")  # copies for people to look at: /tmp/flame-dashboard-*.png


async def job_page_facts(page: Page) -> dict[str, Any]:
    """What the job page shows right now, read from the DOM."""
    return dict(
        await page.evaluate(
            """() => {
              const canvas = (name) => document.querySelector(`canvas[data-metric="${name}"]`);
              const points = (name) => Number(canvas(name)?.dataset.points || 0);
              const history = (name) => (canvas(name)?.dataset.history || '')
                .split(',').filter(Boolean).map(Number);
              const state = document.querySelector('#job-state .state');
              return {
                marker: window.__notReloaded || 0,
                state: state ? state.dataset.state : '',
                events: document.querySelectorAll('#events li').length,
                types: [...document.querySelectorAll('#events li')].map((li) => li.dataset.type),
                accuracy: points('test_accuracy'),
                drawn: history('test_accuracy'),
                loss: points('test_loss'),
                roles: JSON.parse(document.getElementById('tag')?.dataset.roles || '[]'),
                tasks: document.querySelectorAll('#tasks-body tr[data-task]').length,
                stream: document.getElementById('stream-state')?.textContent || '',
                error: document.getElementById('page-error')?.hidden === false
                  ? document.getElementById('page-error').textContent : '',
              };
            }"""
        )
    )


async def create_two_tier_job(client: FlameClient) -> str:
    """examples/two_tier_fedavg over RabbitMQ, once the deployer registered compute `default`
    (its datasets' realm; `flame up` may answer a moment before that)."""

    async def attempt() -> str | None:
        try:
            return await localstack.create_example_job(
                client,
                TWO_TIER,
                hyperparameters=TRAINING,
                backend="rabbitmq",
                max_run_time=240,
            )
        except Invalid as exc:
            if "realm" not in str(exc):
                raise
            return None

    return await eventually(attempt, timeout=60, interval=0.5, what="compute 'default'")


def keep(shot: Path) -> Path:
    copy = SHOTS / f"flame-dashboard-{shot.stem}.png"
    shutil.copyfile(shot, copy)
    return copy


async def test_the_dashboard_follows_a_running_job(
    mongo_server: EmbeddedMongo, rabbit_url: str, tmp_path: Path
) -> None:
    with local_stack(
        mongo_server.url, tmp_path / "stack", FLAME_METRICS_INTERVAL="0.2", **WARM_ML
    ) as stack:
        async with stack.client("alice") as client:
            job_id = await create_two_tier_job(client)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
                try:
                    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = await context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.on(  # CSP violations, failed loads
                        "console",
                        lambda m: errors.append(m.text) if m.type == "error" else None,
                    )
                    # the link `flame up` prints: the token rides in the fragment only
                    await page.goto(f"{stack.endpoint}/ui#token={stack.token}&user=alice")
                    row = page.locator(f'#jobs-body tr[data-job="{job_id}"]')
                    await row.wait_for(timeout=15_000)
                    assert "token=" not in page.url  # dropped from the address bar
                    # the job list stays open in a second tab (same login), refreshing itself
                    jobs = await context.new_page()
                    await jobs.goto(f"{stack.endpoint}/ui#/jobs")
                    await jobs.locator(f'#jobs-body tr[data-job="{job_id}"]').wait_for()

                    await client.jobs.start(job_id)
                    await row.locator("a").click()  # the job page, opened as the job starts
                    await page.wait_for_selector("#tag canvas", timeout=15_000)
                    await page.evaluate("() => { window.__notReloaded = 1; }")
                    first = await job_page_facts(page)
                    assert first["state"] not in ENDED, first  # opened while the job runs

                    # Follow the page until it shows the job ended: the state moves, events
                    # arrive, the curves grow (rounds of about a second, metrics relayed every
                    # 0.2 s); screenshots of the running job, a partial curve, the job list.
                    seen: list[dict[str, Any]] = []

                    async def shot(name: str, on: Page, full: bool = False) -> None:
                        if not (tmp_path / f"{name}.png").exists():
                            await on.screenshot(path=str(tmp_path / f"{name}.png"), full_page=full)

                    async def page_ended() -> bool:
                        facts = await job_page_facts(page)
                        seen.append(facts)
                        if facts["state"] == "running" and facts["events"] > first["events"]:
                            await shot("job-running", page, full=True)
                            listed = jobs.locator(f'#jobs-body tr[data-job="{job_id}"] .state')
                            if await listed.get_attribute("data-state") == "running":
                                await shot("jobs", jobs)
                            if 0 < facts["accuracy"] < ROUNDS:
                                await shot("job-partial", page)
                        return facts["state"] in ENDED

                    await eventually(page_ended, timeout=240, interval=0.2)
                    await shot("jobs", jobs)  # (had the job ended before the page saw it run)
                    await jobs.close()
                    done = await wait_state(client, job_id, ENDED, 60)
                    assert done.state.value == "completed", done.reason

                    async def finished() -> dict[str, Any] | None:
                        facts = await job_page_facts(page)
                        complete = facts["state"] == "completed" and facts["accuracy"] == ROUNDS
                        return facts if complete and "ended" in facts["stream"] else None

                    last = await eventually(finished, timeout=60, interval=0.5)
                    await page.wait_for_timeout(300)  # let the last chart update paint
                    await page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

                    # a wrong token: back to the login form, saying why
                    stranger = await (await browser.new_context()).new_page()
                    await stranger.goto(f"{stack.endpoint}/ui#token=wrong&user=alice")
                    refused = stranger.locator("#login-error")
                    await refused.wait_for(timeout=15_000)
                    assert "Not authorised" in await refused.inner_text()
                finally:
                    await browser.close()

    assert last["marker"] == 1, "the page was reloaded"
    states = [first["state"], *(f["state"] for f in seen)]
    assert "running" in states and states[-1] == "completed", states
    assert first["events"] < last["events"]
    points = [f["accuracy"] for f in seen]
    assert first["accuracy"] < last["accuracy"] == ROUNDS  # one point per round
    assert points == sorted(points), points  # points only ever added
    # the chart was redrawn as rounds arrived, not once at the end
    assert last["drawn"][-1] == ROUNDS and len(last["drawn"]) > 1, last["drawn"]
    assert last["loss"] == ROUNDS
    assert {"job.state_changed", "task.status_changed", "task.metrics"} <= set(last["types"])
    roles = {r["role"]: r for r in last["roles"]}
    assert roles["aggregator"]["tasks"] == 1 and roles["trainer"]["tasks"] == 4, roles
    assert {r["state"] for r in roles.values()} == {"completed"}
    assert last["tasks"] == 5
    assert not last["error"] and not errors, (last["error"], errors)
    for shot in sorted(tmp_path.glob("*.png")):
        assert shot.stat().st_size > 10_000, shot.name
        keep(shot)
    shots = {p.name for p in tmp_path.glob("*.png")}
    assert {"jobs.png", "job-running.png", "job.png"} <= shots, shots  # job-partial.png: likely
