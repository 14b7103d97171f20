"""The public names of ``reactor`` are exactly those listed in ``__all__``."""

import reactor

EXPECTED = {
    "Action", "ActionError", "AdmissionError", "AsyncClient", "Client",
    "ClientError", "Clock", "ConnectorError", "EmitResult",
    "Event", "EventFilter", "ExpressionError", "FakeClock", "InvalidEvent", "ParamError",
    "Pipeline", "PostgresStore", "PublishResult", "Published", "Reactor", "ReactorError",
    "Registry", "RunObserver",
    "RunRecord", "Sensor", "SensorContext", "Settings", "SpecError", "SpecErrorGroup",
    "SqliteStore", "Store", "StoreError", "SystemClock", "TaskKind", "TaskRecord",
    "TaskRequest", "TaskSpec", "TaskTimeout", "TriggerKind", "TriggerSpec",
    "default_registry", "load_folder", "load_pipeline", "open_store",
}  # fmt: skip


def test_all_lists_the_public_names() -> None:
    assert set(reactor.__all__) == EXPECTED
    assert sorted(reactor.__all__) == reactor.__all__


def test_every_listed_name_exists() -> None:
    for name in reactor.__all__:
        assert getattr(reactor, name) is not None, name


def test_errors_share_one_root() -> None:
    for name in reactor.__all__:
        value = getattr(reactor, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, reactor.ReactorError), name
