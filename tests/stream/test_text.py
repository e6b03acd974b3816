"""Text format for people at a terminal: aligned lines, changes in short form, colour only on a TTY."""
import re
import unicodedata

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import OperatorProcess

ESCAPE = '\x1b['
CONTROLS = re.compile('[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]')


def _in_text(start_operator: StartOperator, namespace: str, *, tty: bool = False,
             **env: str) -> OperatorProcess:
    """The operator on ``namespace`` in the text format, its lines read (through a terminal with ``tty``)."""
    return start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_FORMAT': 'text', **env}, text=True,
                          tty=tty)


def _create_annotated(cluster: Cluster, namespace: str, annotations: dict[str, str], *, name: str = 'web',
                      image: str = 'nginx:1.25') -> None:
    body = deployment(name, namespace=namespace, image=image)
    body['metadata']['annotations'] = annotations
    cluster.create(body)


def test_text_lines_show_identity_replicas_images_and_changes(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace, replicas=1))
    operator = _in_text(start_operator, namespace)

    listed = operator.wait_for_line(f'{namespace}/web')
    cluster.patch(namespace, 'web', {'spec': {'replicas': 3}})
    scaled = operator.wait_for_line('spec.replicas 1→3')
    cluster.patch(namespace, 'web', {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'image': 'nginx:1.27'}]}}}})
    image = operator.wait_for_line('image nginx:1.25→1.27')
    cluster.finish_rollout(namespace, 'web')
    status = operator.wait_for_line('status.')
    cluster.delete(namespace, 'web')
    deleted = operator.wait_for_line('DELETED')

    header = ['TIME', '(UTC)', 'TYPE', 'NAMESPACE/NAME', 'READY', 'IMAGES', 'ROLLOUT', 'BY', 'CHANGES']
    assert operator.lines[0].split() == header
    # Emulated, no pod is ever ready; in a real cluster the pod of the one replica may be ready
    # (the stand-in kubelet takes about a second) before the listing, and still before the scale.
    ready = ['0'] if cluster.emulated else ['0', '1']
    assert listed.split()[1:5] in [['ADDED', f'{namespace}/web', f'{n}/1', 'nginx:1.25'] for n in ready]
    assert '(listed)' in listed
    assert scaled.split()[1:4] in [['MODIFIED', f'{namespace}/web', f'{n}/3'] for n in ready]
    assert 'nginx:1.27' in image.split()[4]
    assert status.split()[1] == 'MODIFIED'
    assert deleted.split()[1:3] == ['DELETED', f'{namespace}/web']
    # Aligned: the type column starts at the same offset on every line.
    assert {line.index(line.split()[1], 12) for line in operator.lines[1:]} == {14}
    assert not any(ESCAPE in line for line in operator.lines)  # a pipe gets no colour


@pytest.mark.parametrize(('no_color', 'coloured'), [(None, True), ('1', False)])
def test_colour_only_on_a_terminal_without_no_color(
        cluster: Cluster, start_operator: StartOperator, no_color: str | None, coloured: bool) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace))
    operator = _in_text(start_operator, namespace, tty=True, **({'NO_COLOR': no_color} if no_color else {}))

    line = operator.wait_for_line(f'{namespace}/web')

    assert (f'{ESCAPE}32mADDED{ESCAPE}0m' in line) is coloured
    assert (ESCAPE in line) is coloured


def test_a_hostile_annotation_and_image_cannot_forge_lines_or_colours_on_a_terminal(
        cluster: Cluster, start_operator: StartOperator) -> None:
    # A real API server accepts both: annotation values and images are free text.
    namespace = cluster.new_namespace()
    _create_annotated(cluster, namespace, {'note': 'calm'}, image='nginx:1.25\x1b[2J\nFORGED-IMAGE\u202e')
    operator = _in_text(start_operator, namespace, tty=True)

    added = operator.wait_for_line(f'{namespace}/web')
    cluster.patch(namespace, 'web', {'metadata': {'annotations': {
        'note': 'ok\nFORGED  DELETED\x1b[31m\x9b2J\u202e'}}})  # within the 40 characters shown
    modified = operator.wait_for_line('metadata.annotations.note')
    cluster.delete(namespace, 'web')
    operator.wait_for_line('DELETED')  # the last line: everything before it was read

    assert r'nginx:1.25\x1b[2J\nFORGED-IMAGE\u202e' in added
    assert r'calm→ok\nFORGED  DELETED\x1b[31m\x9b2J\u202e' in modified
    assert not any(line.startswith('FORGED') for line in operator.lines)
    for line in operator.lines[1:]:  # the header has no colour
        # deploywatch's own colour around the type, and nothing else a terminal would act on
        colours = re.findall(re.escape(ESCAPE) + '[0-9;]*m', line)
        assert len(colours) == 2 and line.count('\x1b') == 2, repr(line)
        assert not CONTROLS.search(re.sub(re.escape(ESCAPE) + '[0-9;]*m', '', line)), repr(line)


# Issue 20, text mode: what renders as nothing (or as blank) must not make two values look the same.
INVISIBLE = '\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u3164'


def test_invisible_characters_are_escaped_so_two_images_never_look_the_same(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    _create_annotated(cluster, namespace, {'note': 'ab'}, name='plain')
    cluster.create(deployment('lookalike', namespace=namespace, image='nginx:1.25\u200b'))
    operator = _in_text(start_operator, namespace)

    plain = operator.wait_for_line(f'{namespace}/plain ')
    lookalike = operator.wait_for_line(f'{namespace}/lookalike ')
    cluster.patch(namespace, 'plain', {'metadata': {'annotations': {'note': f'a{INVISIBLE}b'}}})
    modified = operator.wait_for_line('metadata.annotations.note')

    assert plain.split()[4] == 'nginx:1.25'
    assert lookalike.split()[4] == r'nginx:1.25\u200b'
    assert r'ab→a\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\xad\u3164b' in modified
    assert not any(char in line for line in operator.lines for char in INVISIBLE)


def _display_width(line: str) -> int:
    """Columns a terminal gives ``line`` (colour sequences take none, wide characters two)."""
    shown = re.sub(re.escape(ESCAPE) + '[0-9;]*m', '', line)
    return sum(1 + (unicodedata.east_asian_width(char) in 'WF') for char in shown)


ANNOTATIONS = 8  # changed at once: eight changes, far wider together than any terminal line
# Terminal widths: each fits the fixed columns, a rollout change (a real cluster's controller
# may add one to the same line) and at least one annotation change, never all eight.
WIDE, NARROW = 280, 220


def _annotated(cluster: Cluster, namespace: str) -> None:
    _create_annotated(cluster, namespace, {f'note-{index}': 'before-one' for index in range(ANNOTATIONS)})


def _change_every_annotation(cluster: Cluster, namespace: str, value: str) -> None:
    cluster.patch(namespace, 'web', {'metadata': {'annotations': {
        f'note-{index}': value for index in range(ANNOTATIONS)}}})


def test_on_a_terminal_each_line_fits_its_width_and_says_how_many_changes_it_cut(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    operator = _in_text(start_operator, namespace, tty=True)
    operator.resize(WIDE)  # before anything is printed: the namespace is still empty
    _annotated(cluster, namespace)
    operator.wait_for_line(f'{namespace}/web')
    _change_every_annotation(cluster, namespace, 'after-two-')
    wide = operator.wait_for_line('after-two-')
    operator.resize(NARROW)  # the window narrowed: the next line follows it
    _change_every_annotation(cluster, namespace, 'after-three')
    narrow = operator.wait_for_line('after-three')

    for line, columns in [*((line, WIDE) for line in operator.lines[:3]), (narrow, NARROW)]:
        assert _display_width(line) <= columns, (columns, line)
    fits = [(wide, WIDE, 'before-one→after-two-'), (narrow, NARROW, 'after-two-→after-three')]
    for line, columns, change in fits:
        shown = line.count('metadata.annotations.note-')
        cut = re.search(r'… \+(\d+)$', line)
        assert cut is not None, line
        assert shown >= 1 and shown + int(cut.group(1)) == ANNOTATIONS, line
        # Filled to its own width: the next change and the count would not have fitted. (Not a
        # count of changes shown: on a real cluster a line may carry a rollout change too.)
        unused = columns - _display_width(line)
        assert unused < len(f'  metadata.annotations.note-0 {change}  … +{ANNOTATIONS}'), (columns, line)


def test_piped_a_line_is_kept_whole(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    _annotated(cluster, namespace)
    operator = _in_text(start_operator, namespace, COLUMNS='80')
    operator.wait_for_line(f'{namespace}/web')
    _change_every_annotation(cluster, namespace, 'after-two-')

    line = operator.wait_for_line('after-two-')

    assert line.count('metadata.annotations.note-') == ANNOTATIONS, line
    assert '…' not in line and 'more' not in line
