"""Attribution: data-driven training on 100,000 journeys, and crediting speed.

Journeys are simulated from a known first-order chain over 10 channels (seeded, so
every run trains on the same data). Each training is timed in a fresh subprocess,
which also reports its peak resident memory above the journeys it was given
(`resource.getrusage` max RSS after training minus before), so no measurement
inherits another's memory:

- markov (exact absorbing-chain solve, orders 1, 2 and 3) and shapley (exact over
  the 1,024 coalitions of 10 channels), as the attribution service trains them;
- channelattribution's `markov_model` (order 1, simulated; GPL-3.0, used here only
  as the baseline) on the same journeys, with the agreement of its removal-effect
  shares with ours.

Crediting: deals per second for one 20-touch journey credited under all ten models
(the eight heuristic ones and markov and shapley with trained weights), and the rate
of each model alone.

    python tests/bench/bench_attribution.py [--journeys 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

JOURNEYS = 100_000
CHANNELS = 10
SEED = 20260331
CREDIT_TOUCHES = 20
CREDIT_SECONDS = 1.0
MAX_PATH = 30
#: Aggregates saved per transaction when the service's store is filled.
SAVE_BATCH = 1000

Row = tuple[tuple[str, ...], int, float, int]
SERVICE_JOURNEYS = 20_000
MEASUREMENTS = (
    "markov",
    "markov_order_2",
    "markov_order_3",
    "shapley",
    "channelattribution_markov",
    "service_training",
)


# -- the journeys ---------------------------------------------------------------------


def known_chain(
    seed: int = SEED,
) -> tuple[list[str], dict[str, float], dict[str, dict[str, float]]]:
    """A random first-order chain over the channels: start, steps, conversion, null."""
    rng = random.Random(seed)
    names = [f"ch{i:02d}" for i in range(CHANNELS)]
    start = {name: rng.random() for name in names}
    steps: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        onward = {other: rng.random() * 0.4 for other in rng.sample(names, 3)}
        onward["conversion"] = 0.02 + 0.012 * i  # later channels convert more
        onward["null"] = 0.6 + rng.random() * 0.6
        total = sum(onward.values())
        steps[name] = {k: v / total for k, v in onward.items()}
    total = sum(start.values())
    return names, {k: v / total for k, v in start.items()}, steps


def simulated_journeys(count: int, seed: int = SEED) -> list[Row]:
    """One (path, conversions, value, nulls) row per journey, as training reads."""
    names, start, steps = known_chain(seed)
    rng = random.Random(seed + 1)
    first = list(start)
    first_weights = list(start.values())
    tables = {name: (list(steps[name]), list(steps[name].values())) for name in names}
    rows = []
    for _ in range(count):
        path = [rng.choices(first, first_weights)[0]]
        while True:
            targets, weights = tables[path[-1]]
            step = rng.choices(targets, weights)[0]
            if step in {"conversion", "null"} or len(path) >= MAX_PATH:
                break
            path.append(step)
        converted = step == "conversion"
        value = float(rng.randint(1_000, 50_000) * 100) if converted else 0.0
        rows.append((tuple(path), int(converted), value, int(not converted)))
    return rows


# -- one measurement, in its own process ----------------------------------------------


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _ours(name: str, rows: list[Any]) -> tuple[float, dict[str, float]]:
    from services.attribution import datadriven  # noqa: PLC0415
    from services.attribution.models import ModelSpec  # noqa: PLC0415

    if name.startswith("markov"):
        order = int(name.rsplit("_", 1)[1]) if "order" in name else 1
        began = time.perf_counter()
        model = datadriven.markov(rows, ModelSpec("markov", order=order))
        seconds = time.perf_counter() - began
        total = sum(model.removal_effect.values())
        return seconds, {c: e / total for c, e in model.removal_effect.items()}
    began = time.perf_counter()
    game = datadriven.shapley(rows, ModelSpec("shapley"))
    seconds = time.perf_counter() - began
    total = sum(game.conversions.values())
    return seconds, {c: v / total for c, v in game.conversions.items()}


def _theirs(rows: list[Any]) -> tuple[float, dict[str, float], dict[str, Any]]:
    import contextlib  # noqa: PLC0415
    import importlib  # noqa: PLC0415
    import io  # noqa: PLC0415
    from importlib import metadata  # noqa: PLC0415

    with contextlib.redirect_stdout(io.StringIO()):  # its import prints a banner
        ca = importlib.import_module("ChannelAttribution")
        pd = importlib.import_module("pandas")

    frame = pd.DataFrame(
        {
            "path": [" > ".join(r[0]) for r in rows],
            "total_conversions": [r[1] for r in rows],
            "total_conversion_value": [r[2] for r in rows],
            "total_null": [r[3] for r in rows],
        }
    )
    del rows
    before = _max_rss_bytes()
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = ca.markov_model(
            frame,
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            var_null="total_null",
            order=1,
            out_more=True,
            flg_pro=False,
            verbose=False,
        )
    seconds = time.perf_counter() - began
    effects = result["removal_effects"]
    column = effects.columns[1]
    total = float(effects[column].sum())
    shares = {
        str(name): float(effect) / total
        for name, effect in zip(effects["channel_name"], effects[column], strict=True)
    }
    extra = {
        "rss_before": before,
        "version": metadata.version("ChannelAttribution"),
        "method": "simulation (nsim_start=1e5), one core",
    }
    return seconds, shares, extra


def _prefill(path: Path, rows: list[Row]) -> Any:
    """An attribution store holding the rows as leads, deals and their outcomes."""
    import uuid  # noqa: PLC0415

    from closedloop.eventstore.store import StoreLocation  # noqa: PLC0415
    from closedloop.money import Money  # noqa: PLC0415
    from services.attribution.domain import (  # noqa: PLC0415
        DealRecord,
        PersonJourney,
        WinSnapshot,
    )
    from services.attribution.store import AttributionStore  # noqa: PLC0415

    store = AttributionStore(
        env=StoreLocation.parse(f"sqlite:///{path}").eventsourcing_env()
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pending: list[Any] = []
    for path_channels, converted, value, _ in rows:
        lead_id = uuid.uuid4()
        person = PersonJourney.for_lead(lead_id)
        for i, channel in enumerate(path_channels):
            person.record_touch(str(uuid.uuid4()), channel, start + timedelta(hours=i))
        end = start + timedelta(hours=len(path_channels))
        person.capture(end)
        pending.append(person)
        if converted:
            deal = DealRecord(deal_id=uuid.uuid4(), lead_id=lead_id)
            deal.open(end, Money(int(value), "USD"))
            deal.win(WinSnapshot(Money(int(value), "USD"), end, end, end, ()))
            pending.append(deal)
        else:
            person.disqualify(end, str(uuid.uuid4()))
        if len(pending) >= SAVE_BATCH:
            store.save(*pending)
            pending.clear()
    if pending:
        store.save(*pending)
    return store


def _service_training(rows: list[Row]) -> dict[str, Any]:
    """Training as the service does it: fold the store's events, assemble, train."""
    import tempfile  # noqa: PLC0415

    from services.attribution.settings import (  # noqa: PLC0415
        AttributionSettings,
    )
    from services.attribution.training import (  # noqa: PLC0415
        EventFold,
        train_model,
    )

    settings = AttributionSettings()
    with tempfile.TemporaryDirectory() as folder:
        store = _prefill(Path(folder) / "events.db", rows)
        events = store.recorder.max_notification_id() or 0
        before = _max_rss_bytes()
        fold = EventFold(store)
        began = time.perf_counter()
        fold.update()
        folded = time.perf_counter()
        data = fold.training_data(settings.lookback)
        assembled = time.perf_counter()
        for model in ("markov", "shapley"):
            train_model(settings.spec(model), data, datetime.now(UTC))
        trained = time.perf_counter()
        fold.update()
        again = time.perf_counter() - trained
        peak = _max_rss_bytes() - before
        store.close()
    return {
        "events": events,
        "journeys": data.journey_count,
        "fold_seconds": round(folded - began, 3),
        "assemble_seconds": round(assembled - folded, 3),
        "train_markov_and_shapley_seconds": round(trained - assembled, 3),
        "seconds": round(trained - began, 3),
        "incremental_fold_seconds": round(again, 4),
        "peak_memory_mb": round(peak / 2**20, 1),
    }


def measure(name: str, journeys: int) -> dict[str, Any]:
    """Runs in a fresh process: the training named, with time and memory."""
    rows = simulated_journeys(journeys)
    if name == "service_training":
        return _service_training(rows)
    if name == "channelattribution_markov":
        seconds, shares, extra = _theirs(rows)
        before = extra.pop("rss_before")
    else:
        # Imported before the baseline: numpy and scipy are not the training's.
        from services.attribution import datadriven  # noqa: F401, PLC0415

        before = _max_rss_bytes()
        seconds, shares = _ours(name, rows)
        extra = {}
    peak = _max_rss_bytes() - before
    return {
        "seconds": round(seconds, 4),
        "peak_memory_mb": round(peak / 2**20, 1),
        "shares": shares,
        **extra,
    }


def _in_subprocess(name: str, journeys: int) -> dict[str, Any]:
    if name == "service_training":
        journeys = min(journeys, SERVICE_JOURNEYS)
    done = subprocess.run(
        [sys.executable, __file__, "--measure", name, "--journeys", str(journeys)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- crediting -----------------------------------------------------------------------


def crediting(seconds: float = CREDIT_SECONDS) -> dict[str, Any]:
    """Deals per second on one 20-touch journey, per model and under all models."""
    from services.attribution import datadriven  # noqa: PLC0415
    from services.attribution.crediting import credit  # noqa: PLC0415
    from services.attribution.models import (  # noqa: PLC0415
        Conversion,
        ModelSpec,
        Touch,
    )
    from services.attribution.rules import DATA_DRIVEN_MODELS, MODELS  # noqa: PLC0415

    won = datetime(2026, 3, 31, 12, tzinfo=UTC)
    names = [f"ch{i:02d}" for i in range(CHANNELS)]
    touches = tuple(
        Touch(
            f"t{i}", names[i % CHANNELS], None, won - timedelta(hours=7 * (20 - i)), i
        )
        for i in range(CREDIT_TOUCHES)
    )
    conversion = Conversion(
        amount_minor=1_234_567,
        currency="USD",
        converted_at=won,
        lead_created_at=won - timedelta(days=3),
        opportunity_created_at=won - timedelta(days=1),
        won_at=won,
    )
    trained = datadriven.markov(simulated_journeys(5_000)).removal_effect
    specs = {m: ModelSpec(m) for m in MODELS}

    def one(model: str) -> None:
        if model in DATA_DRIVEN_MODELS:
            datadriven.credit_with_weights(specs[model], trained, touches, conversion)
        else:
            credit(specs[model], touches, conversion)

    def rate(work: Any) -> float:
        count, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            work()
            count += 1
        return count / elapsed

    per_model = {m: round(rate(lambda m=m: one(m))) for m in MODELS}

    def every_model() -> None:
        for model in MODELS:
            one(model)

    all_models = rate(every_model)
    return {
        "touches": CREDIT_TOUCHES,
        "deals_per_second_all_models": round(all_models, 1),
        "credits_per_second_by_model": per_model,
    }


# -- the report -----------------------------------------------------------------------


def _max_difference(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def main(journeys: int = JOURNEYS) -> dict[str, Any]:
    """Runs every measurement, prints the report as JSON, and returns it."""
    results = {name: _in_subprocess(name, journeys) for name in MEASUREMENTS}
    ours, theirs = results["markov"], results["channelattribution_markov"]
    agreement = _max_difference(ours["shares"], theirs["shares"])
    for result in results.values():
        result.pop("shares", None)
    report: dict[str, Any] = {
        "benchmark": "attribution",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "journeys": journeys,
        "channels": CHANNELS,
        "training": results,
        "baseline": {
            "name": "channelattribution.markov_model (order 1)",
            "seconds": theirs["seconds"],
            "peak_memory_mb": theirs["peak_memory_mb"],
        },
        "ratio": {
            "markov_speedup_over_baseline": round(
                theirs["seconds"] / max(ours["seconds"], 1e-9), 1
            ),
            "markov_memory_over_baseline": round(
                ours["peak_memory_mb"] / max(theirs["peak_memory_mb"], 0.1), 2
            ),
            "max_removal_effect_share_difference": round(agreement, 4),
        },
        "crediting": crediting(),
    }
    print(json.dumps(report, indent=2))  # noqa: T201 - the script's output
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=JOURNEYS)
    parser.add_argument("--measure", choices=MEASUREMENTS)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.journeys)))  # noqa: T201
        return
    report = main(args.journeys)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    _cli()
