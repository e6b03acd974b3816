"""settings.Settings: DEPLOYWATCH_* variables, validated before anything connects."""
import dataclasses

import pytest

from deploywatch.base.settings import Misconfigured, Settings, SettingsError

RESYNC = 'DEPLOYWATCH_RESYNC_SECONDS'
REDACT = 'DEPLOYWATCH_REDACT'


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.resync_seconds == 600.0
    assert settings.redact is True
    assert settings == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({'HOME': '/root', 'KOPF_RUN_NAMESPACE': 'x'}) == Settings()


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().redact = False  # type: ignore[misc]


@pytest.mark.parametrize(('text', 'seconds'), [
    ('0', 0.0), ('2.5', 2.5), ('600', 600.0), (' 30 ', 30.0), ('1e3', 1000.0), ('0.1', 0.1), ('-0', 0.0),
])
def test_valid_resync_seconds(text: str, seconds: float) -> None:
    assert Settings.from_env({RESYNC: text}).resync_seconds == seconds


@pytest.mark.parametrize('text', ['-1', '-0.5', 'abc', '1e999', '-1e999', 'nan', 'NaN', 'inf', '-inf',
                                  'infinity', '', '   ', '10s', '1,5',
                                  '0.001', '0.099', '1e-9', '5e-324'])  # below the 0.1 s floor
def test_invalid_resync_seconds_name_the_variable_and_what_it_accepts(text: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({RESYNC: text})
    message = str(raised.value)
    assert RESYNC in message
    assert repr(text) in message
    assert 'a finite number of seconds: 0 (resync off) or at least 0.1' in message
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize('text', ['true', 'TRUE', 'True', '1', 'yes', 'YES', 'on', 'On', ' true '])
def test_true_booleans(text: str) -> None:
    assert Settings.from_env({REDACT: text}).redact is True


@pytest.mark.parametrize('text', ['false', 'FALSE', 'False', '0', 'no', 'No', 'off', 'OFF', ' off\n'])
def test_false_booleans(text: str) -> None:
    assert Settings.from_env({REDACT: text}).redact is False


@pytest.mark.parametrize('text', ['', 'maybe', '2', 'y', 'n', 'enabled', 't', 'nope'])
def test_invalid_booleans_name_the_variable_and_what_it_accepts(text: str) -> None:
    with pytest.raises(SettingsError, match=REDACT) as raised:
        Settings.from_env({REDACT: text})
    assert 'true or false' in str(raised.value)


def test_both_variables_together() -> None:
    assert Settings.from_env({RESYNC: '0', REDACT: 'no'}) == Settings(resync_seconds=0.0, redact=False)


def test_unknown_variables_lists_only_prefixed_typos_sorted() -> None:
    environ = {
        RESYNC: '1', REDACT: 'true',
        'DEPLOYWATCH_RESYNC_SECOND': '1', 'DEPLOYWATCH_REDACTED': 'x', 'DEPLOYWATCH_': '',
        'deploywatch_redact': 'x', 'HOME': '/root', 'KOPF_X': '1', 'MY_DEPLOYWATCH_REDACT': 'x',
    }
    assert Settings.unknown_variables(environ) == ['DEPLOYWATCH_', 'DEPLOYWATCH_REDACTED',
                                                   'DEPLOYWATCH_RESYNC_SECOND']
    assert Settings.unknown_variables({RESYNC: '1', REDACT: 'true'}) == []
    assert Settings.unknown_variables({}) == []


@pytest.mark.parametrize(('name', 'value'), [
    (RESYNC, 'abc'), (RESYNC, '-1'), (REDACT, 'maybe'), (REDACT, 'two\nlines'), (RESYNC, '\udcff'),
])
def test_a_bad_value_is_misconfigured_in_one_line(name: str, value: str) -> None:
    """The line the lifecycle prints before exit 2 (tests/stream/test_cli.py runs that path)."""
    with pytest.raises(Misconfigured) as raised:
        Settings.from_env({name: value})
    line = str(raised.value)
    assert '\n' not in line and line.startswith(f'{name}=') and 'expected' in line


LABEL_SELECTOR = 'DEPLOYWATCH_LABEL_SELECTOR'


@pytest.mark.parametrize('text', ['app=web', ' tier in (front,back), !canary ', 'n>3', ''])
def test_a_valid_label_selector_is_kept_as_the_server_reads_it(text: str) -> None:
    assert Settings.from_env({LABEL_SELECTOR: text}).label_selector == text.strip()


@pytest.mark.parametrize(('text', 'reason'), [
    ('app=web_', "'web_'"),                     # the old check took any characters but !=,() and spaces
    ('k' * 64, 'at most 63'),
    ('example.com/a/b', "'example.com/a/b'"),
    ('replicas>few', 'integer'),
    ('app=web,', "after ','"),
])
def test_an_invalid_label_selector_says_why_in_the_one_line(text: str, reason: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({LABEL_SELECTOR: text})
    message = str(raised.value)
    assert message.startswith(f'{LABEL_SELECTOR}={text!r} is invalid')
    assert reason in message and 'expected a Kubernetes label selector' in message
    assert message.isprintable()
