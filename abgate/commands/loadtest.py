"""``abgate loadtest``: drive a running gateway with open-loop (or closed-loop) load."""

from __future__ import annotations

from typing import Annotated

import typer

from loadtests.scenario import UnitChoice


def loadtest(
    url: Annotated[
        str,
        typer.Option(
            help="Endpoint to load (default: /v1/recommendations at http://127.0.0.1:8000).",
            show_default=False,
        ),
    ] = "http://127.0.0.1:8000/v1/recommendations",
    rate: Annotated[
        float, typer.Option(help="Requests per second due (open loop).", min=0.001)
    ] = 500.0,
    duration: Annotated[float, typer.Option(help="Measured seconds.", min=0.001)] = 15.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds before.", min=0.0)] = 2.0,
    surface: Annotated[str, typer.Option(help="Surface of every request.")] = "home_top",
    scenario: Annotated[
        UnitChoice,
        typer.Option(
            help="uniform: random unit among --units; hot: among --hot-units; "
            "cold: a new unit per request from --start."
        ),
    ] = UnitChoice.uniform,
    units: Annotated[int, typer.Option(help="Units u0..u{N-1} that have lists.", min=1)] = 100_000,
    hot_units: Annotated[int, typer.Option(help="Size of the hot set.", min=1)] = 1_000,
    start: Annotated[int, typer.Option(help="First unit of the cold walk.", min=0)] = 0,
    unit_prefix: Annotated[str, typer.Option(help="Unit id prefix.")] = "u",
    unknown_share: Annotated[
        float, typer.Option(help="Share of units with no list (fallback).", min=0.0, max=1.0)
    ] = 0.0,
    exclusions: Annotated[int, typer.Option(help="Excluded items per request.", min=0)] = 20,
    catalog: Annotated[int, typer.Option(help="Exclusions drawn from sku-0..N-1.", min=1)] = 50_000,
    limit: Annotated[int, typer.Option(help="Items asked for.", min=1)] = 10,
    concurrency: Annotated[
        int,
        typer.Option(help="Connections: in-flight bound (open loop) or workers (closed).", min=1),
    ] = 64,
    closed_loop: Annotated[
        bool, typer.Option("--closed-loop", help="Closed loop: find max throughput.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=0.001)] = 10.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (reproducible bodies).")] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token.", envvar="ABGATE_LOADTEST_TOKEN")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Load a gateway at a constant arrival rate and report latency percentiles.

    Open loop by default: latency counts from each request's due time, so
    queueing in a stalled server is not hidden (no coordinated omission).
    Exits 1 if any request failed.
    """
    from rich.console import Console

    from loadtests import Scenario, run, run_closed_loop, run_open_loop, to_json, to_table
    from loadtests.client import Target

    try:
        Target.from_url(url, token)
        sc = Scenario(
            surface=surface,
            kind=scenario,
            units=units,
            hot_units=hot_units,
            start=start,
            unit_prefix=unit_prefix,
            unknown_share=unknown_share,
            exclusions=exclusions,
            catalog=catalog,
            limit=limit,
            seed=seed,
        )
        if closed_loop:
            coro = run_closed_loop(
                url, sc, duration=duration, concurrency=concurrency, warmup=warmup,
                timeout=timeout, token=token,
            )  # fmt: skip
        else:
            coro = run_open_loop(
                url, sc, rate=rate, duration=duration, concurrency=concurrency, warmup=warmup,
                timeout=timeout, token=token,
            )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    result = run(coro)
    if json_output:
        typer.echo(to_json(result))
    else:
        Console().print(to_table(result))
    if result.failed:
        raise typer.Exit(1)
