"""The worker creates Faust's own topics before Faust joins the group, declared as Faust would."""

from __future__ import annotations

from apex_stream.app import Pipeline
from apex_stream.settings import Settings


def test_faust_internal_topics_are_declared_as_faust_would() -> None:
    settings = Settings(topic_prefix="t.", app_id="apex-t")
    topics = {t.name: t for t in Pipeline(settings).internal_topics()}
    tables = ("market-state", "learner-state")
    changelogs = {f"apex-t-t.{table}-changelog" for table in tables}
    assert set(topics) == changelogs | {"apex-t-__assignor-__leader"}
    for name in changelogs:
        assert topics[name].topic_configs == {"cleanup.policy": "compact"}
    # global tables have one partition
    assert topics["apex-t-t.market-state-changelog"].num_partitions == 1
    assert topics["apex-t-t.learner-state-changelog"].num_partitions == 1
    assert topics["apex-t-__assignor-__leader"].num_partitions == 1
    assert topics["apex-t-__assignor-__leader"].topic_configs == {}
