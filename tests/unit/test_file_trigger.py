"""``on: file`` settings: validation with file and line, pattern/ignore matching, manifests."""

from __future__ import annotations

import textwrap
from pathlib import Path, PurePosixPath

import pytest

from connectors.file_batches import ManifestEntry, ManifestError, parse_manifest
from connectors.files import FileMatcher, FileTriggerSpec
from reactor.errors import SpecErrorGroup
from reactor.pipelines import Pipeline, load_pipeline


def load(tmp_path: Path, trigger: str) -> Pipeline:
    text = "name: p\ntriggers:\n  - on: file\n    path: ./in\n"
    text += textwrap.indent(textwrap.dedent(trigger).strip(), "    ") + "\n"
    text += "tasks:\n  - {id: a, shell: echo}\n"
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return load_pipeline(path, display="p.yaml")


def problems(tmp_path: Path, trigger: str) -> list[str]:
    with pytest.raises(SpecErrorGroup) as caught:
        load(tmp_path, trigger)
    return [str(p) for p in caught.value.problems]


def spec_of(pipeline: Pipeline) -> FileTriggerSpec:
    [trigger] = pipeline.triggers
    assert isinstance(trigger.spec, FileTriggerSpec)
    return trigger.spec


# Validation


def test_defaults_and_short_forms(tmp_path: Path) -> None:
    spec = spec_of(load(tmp_path, 'pattern: "*.csv"\nignore: "*.tmp"'))
    assert spec.pattern == ["*.csv"]
    assert spec.ignore == ["*.tmp"]
    assert spec.on_change == "ignore"
    assert spec.complete is None
    assert spec.event_filter("p/file").type == "reactor.file.arrived"


def test_a_batch_trigger_emits_batch_events(tmp_path: Path) -> None:
    spec = spec_of(load(tmp_path, "complete: {quiet: 30s}\non_change: retrigger"))
    assert spec.complete is not None
    assert spec.complete.quiet == 30.0
    assert spec.complete.rule == "quiet"
    assert spec.on_change == "retrigger"
    assert spec.event_filter("p/file").type == "reactor.file.batch"


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            "complete:\n  marker: _SUCCESS\n  count: 3",
            "p.yaml:5: triggers[0].complete: complete: needs exactly one of 'marker:', 'manifest:',"
            " 'count:' or 'quiet:'; found 'marker' and 'count'",
        ),
        (
            "complete: {}",
            "p.yaml:5: triggers[0].complete: complete: needs exactly one of 'marker:', 'manifest:',"
            " 'count:' or 'quiet:'",
        ),
        (
            "complete:\n  count: 0",
            "p.yaml:6: triggers[0].complete.count: Input should be greater than or equal to 1",
        ),
        (
            "complete:\n  quiet: soon",
            "p.yaml:6: triggers[0].complete.quiet: 'soon' is not a duration;"
            " write a number of seconds or 500ms, 10s, 5m, 1h, 1d",
        ),
        ("complete: {quiet: 0s}", "p.yaml:5: triggers[0].complete: quiet: must be longer than 0s"),
        (
            "complete:\n  marker: ../_SUCCESS",
            "p.yaml:6: triggers[0].complete.marker: marker: '../_SUCCESS' must be a file name"
            " inside the batch folder",
        ),
        (
            "complete:\n  manifest: /etc/manifest.json",
            "p.yaml:6: triggers[0].complete.manifest: manifest: '/etc/manifest.json' must be a"
            " file name inside the batch folder",
        ),
        (
            "complete:\n  when: done",
            "p.yaml:6: triggers[0].complete.when: unknown field",
        ),
        (
            "on_change: sometimes",
            "p.yaml:5: triggers[0].on_change: Input should be 'ignore' or 'retrigger',"
            " got 'sometimes'",
        ),
        (
            "pattern: []",
            "p.yaml:5: triggers[0].pattern: List should have at least 1 item after validation,"
            " not 0",
        ),
        (
            'ignore: ["*.tmp", ""]',
            "p.yaml:5: triggers[0].ignore[1]: String should have at least 1 character",
        ),
        ("rescan: 0", "p.yaml:5: triggers[0].rescan: rescan: must be longer than 0s"),
    ],
)
def test_bad_settings_are_reported_at_their_line(
    tmp_path: Path, trigger: str, expected: str
) -> None:
    assert problems(tmp_path, trigger) == [expected]


# Matching


def matcher(patterns: list[str], ignore: list[str] | None = None) -> FileMatcher:
    return FileMatcher(tuple(patterns), tuple(ignore or ()))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("orders.csv", True),
        ("orders.json", True),
        ("notes.txt", False),
        ("sub/orders.csv", True),
        ("skip-orders.csv", False),
        ("part.csv.tmp", False),
        ("archive/orders.csv", False),
        ("data/archive/orders.csv", False),
        ("drafts/old/x.csv", False),
        ("drafts/old/deeper/x.csv", False),
        ("drafts/x.csv", True),
        (".hidden.csv", False),
        (".cache/orders.csv", False),
    ],
)
def test_patterns_and_ignore(path: str, expected: bool) -> None:
    m = matcher(["*.csv", "*.json"], ["skip-*", "*.tmp", "archive", "drafts/old/"])
    assert m.matches(PurePosixPath(path)) is expected


def test_a_pattern_with_a_slash_matches_the_relative_path() -> None:
    m = matcher(["reports/*.csv"])
    assert m.matches(PurePosixPath("reports/a.csv"))
    assert not m.matches(PurePosixPath("a.csv"))
    assert not m.matches(PurePosixPath("other/a.csv"))


def test_hidden_files_match_only_a_pattern_that_starts_with_a_dot() -> None:
    assert matcher([".*.csv"]).matches(PurePosixPath(".hidden.csv"))
    assert not matcher(["*"]).matches(PurePosixPath(".hidden.csv"))
    assert matcher(["*", ".*"]).sees_hidden


# Manifests


def test_manifest_forms() -> None:
    assert parse_manifest('["a.csv", "b.csv"]', recursive=False) == [
        ManifestEntry("a.csv"),
        ManifestEntry("b.csv"),
    ]
    assert parse_manifest(
        '{"files": [{"name": "a.csv", "size": 3}, {"path": "sub/b.csv"}], "rows": 9}',
        recursive=True,
    ) == [ManifestEntry("a.csv", 3), ManifestEntry("sub/b.csv")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON (Expecting property name enclosed in double quotes"),
        ("[]", "the manifest lists no files"),
        ('{"files": []}', "the manifest lists no files"),
        ('{"names": ["a"]}', "a manifest object needs a 'files' list"),
        ('"a.csv"', "a manifest must be a list of file names or an object with 'files'"),
        ("[3]", "files[0]: expected a file name or an object with 'name'"),
        ('[""]', "files[0]: expected a file name or an object with 'name'"),
        ('[{"size": 3}]', "files[0]: an entry needs a 'name'"),
        ('[{"name": "a", "size": "big"}]', "files[0]: 'size' must be a number of bytes"),
        ('[{"name": "a", "size": -1}]', "files[0]: 'size' must be a number of bytes"),
        ('["a", "../b"]', "files[1]: '../b' is not a path inside the folder"),
        ('["/etc/passwd"]', "files[0]: '/etc/passwd' is not a path inside the folder"),
        ('["sub/a.csv"]', "files[0]: 'sub/a.csv' is in a subfolder; set recursive: true"),
        ('["a", "b", "a"]', "the manifest lists 'a' more than once"),
    ],
)
def test_bad_manifests_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, recursive=False)
    assert str(caught.value).startswith(message)
