"""The size of a typical MODIFIED line in each output mode (documented in docs/recipes.md)."""
from deploywatch.base.settings import EVENT_TYPES
from deploywatch.model.tracker import Tracker
from deploywatch.output.jsonl import encode
from deploywatch.output.shaping import Shaper
from deploywatch.output.text import render
from deploywatch.testing import Store, factory, kinds


def measure() -> dict[str, int]:
    store = Store()
    store.create(kinds.NAMESPACES, '', factory.namespace('default'), manager='test')
    created = store.create(kinds.DEPLOYMENTS, 'default', factory.deployment('web', sidecar=True),
                           manager='kubectl-client-side-apply')
    scaled = store.patch(kinds.DEPLOYMENTS, 'default', 'web', {'spec': {'replicas': 3}},
                         'application/merge-patch+json', manager='kubectl')
    tracker = Tracker(redact=True)
    tracker.observe(None, created)
    event = tracker.observe('MODIFIED', scaled)
    assert event is not None
    full = Shaper(printed_types=EVENT_TYPES)
    no_old = Shaper(printed_types=EVENT_TYPES, include_old=False)
    summary = Shaper(printed_types=EVENT_TYPES, object_detail='summary')
    sizes = {}
    for name, shaper in [('SIZE_FULL', full), ('SIZE_NO_OLD', no_old), ('SIZE_SUMMARY', summary)]:
        shaped = shaper(event)
        assert shaped is not None
        sizes[name] = len(encode(shaped))
    sizes['SIZE_TEXT'] = len(render(event).encode()) + 1
    return sizes


if __name__ == '__main__':
    print(measure())
