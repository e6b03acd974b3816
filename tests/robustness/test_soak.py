"""
The randomized soak: thousands of random changes interleaved with random faults.

Seeded and bounded: ``DEPLOYWATCH_SOAK_SEED`` replays a run (the seed is in the
failure message and in the summary), ``DEPLOYWATCH_SOAK_SECONDS`` sets its
length (45 s by default). At the end the whole stream, to the operator's last
line, must agree with the server (tests/harness/truth.py): zero mismatches.
"""
import os
import random
import time
from collections.abc import Callable

import pytest

from deploywatch.testing.faults import Cut
from tests.harness.driver import Driver
from tests.harness.reporting import SOAK_FIGURES
from tests.harness.truth import to_the_end, wait_until_consistent
from tests.robustness.conftest import Start

SECONDS = float(os.environ.get('DEPLOYWATCH_SOAK_SECONDS', '45'))
MAX_OPERATIONS = 20_000
MAX_LIVE = 40
FAULT_SHARE = 0.03  # of the steps: about one fault every 30 changes


class Soak:
    def __init__(self, driver: Driver, rng: random.Random) -> None:
        self.driver = driver
        self.rng = rng
        self.namespaces = [driver.namespace(f'soak-{index}') for index in range(3)]
        self.live: list[tuple[str, str]] = []
        self.created = 0
        self.operations = 0
        self.outage_until = 0.0

    def create(self) -> None:
        namespace = self.rng.choice(self.namespaces)
        name = f'd{self.created:05d}'
        self.created += 1
        self.driver.create(namespace, name, replicas=self.rng.randint(0, 5),
                           sidecar=self.rng.random() < 0.3)
        self.live.append((namespace, name))

    def change(self) -> None:
        if len(self.live) < MAX_LIVE and (not self.live or self.rng.random() < 0.15):
            self.create()
        else:
            namespace, name = self.rng.choice(self.live)
            kind = self.rng.choices(['scale', 'image', 'status', 'label', 'delete', 'foreground'],
                                    weights=[30, 15, 30, 10, 10, 5])[0]
            if kind in ('delete', 'foreground'):
                self.live.remove((namespace, name))
                policy = 'Foreground' if kind == 'foreground' else None
                self.driver.delete(namespace, name, propagation=policy)
            else:
                actions: dict[str, Callable[[], object]] = {
                    'scale': lambda: self.driver.scale(namespace, name, self.rng.randint(0, 9)),
                    'image': lambda: self.driver.new_image(namespace, name),
                    'status': lambda: self.driver.roll_out(namespace, name),
                    'label': lambda: self.driver.patch(namespace, name, {'metadata': {'labels': {
                        'soak': str(self.rng.randint(0, 99))}}}),
                }
                actions[kind]()
        self.operations += 1

    def fault(self) -> None:
        """Arm one fault, unless the previous one has not fired yet (no pile-up of faults)."""
        faults = self.driver.faults
        if faults.cuts or faults.errors or faults.expirations or time.monotonic() < self.outage_until:
            return
        kind = self.rng.choice(['cut', 'expire', 'errors', 'throttle', 'outage', 'compact'])
        if kind == 'cut':
            faults.cut_watch(after=self.rng.randint(0, 5), how=self.rng.choice(list(Cut)))
        elif kind == 'expire':
            faults.expire_watch()
            faults.cut_watch(after=0)
        elif kind == 'errors':
            faults.answer(self.rng.choice([500, 503]), times=self.rng.randint(1, 6))
            faults.cut_watch(after=self.rng.randint(0, 2))
        elif kind == 'throttle':
            faults.answer(429, times=self.rng.randint(1, 3))
            faults.cut_watch(after=0)
        elif kind == 'outage':
            seconds = self.rng.uniform(0.2, 1.5)
            self.outage_until = time.monotonic() + seconds + 0.5
            self.driver.server.outage(seconds)
        elif kind == 'compact':
            self.driver.compact()
            faults.cut_watch(after=0)


def test_soak(driver: Driver, start: Start, request: pytest.FixtureRequest) -> None:
    seed = int(os.environ.get('DEPLOYWATCH_SOAK_SEED') or random.randrange(2**32))
    rng = random.Random(seed)
    soak = Soak(driver, rng)
    for _ in range(20):
        soak.create()
    operator = start('--all-namespaces', env={'DEPLOYWATCH_RESYNC_SECONDS': '1'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 20, what='the seed Deployments')

    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline and soak.operations < MAX_OPERATIONS:
        if rng.random() < FAULT_SHARE:
            soak.fault()
        else:
            soak.change()
        time.sleep(rng.uniform(0, 0.004))
    driver.faults.clear()

    problems = wait_until_consistent(operator, driver.truth, timeout=120)
    running = operator.process.poll() is None
    problems = problems or to_the_end(operator)  # every line, those printed after the match too
    figures: dict[str, object] = {
        'seed': seed, 'operations': soak.operations, 'faults injected': len(driver.faults.fired),
        'events compared': len(operator.events), 'objects created': soak.created,
        'inferred events': len(operator.matching(lambda e: 'inferred' in e)),
        'mismatches': len(problems),
    }
    request.config.stash.setdefault(SOAK_FIGURES, []).append(figures)
    assert problems == [], f'soak seed {seed} (replay: DEPLOYWATCH_SOAK_SEED={seed}): {problems[:20]}'
    assert running and 'Traceback' not in operator.stderr

