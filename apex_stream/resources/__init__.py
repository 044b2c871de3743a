"""Files apex-stream reads at run time, shipped inside the package so an installed wheel has
them: the topic declarations, the Alembic migrations and the Maven pom of the local broker's
jars. Each is a real path on disk (wheels install unpacked), which Alembic and Maven need.
In a checkout, topics/ and migrations/ here are links to the repository's top-level folders,
where users browse them; the wheel build follows the links."""

from pathlib import Path

HERE = Path(__file__).resolve().parent

#: one declarative JSON file per topic (the default of ``APEX_TOPICS_DIR``)
TOPICS = HERE / "topics"
#: Alembic's environment, configuration and versions
MIGRATIONS = HERE / "migrations"
#: fetches Apache Kafka's jars from Maven Central for `apex-stream up`
KAFKA_POM = HERE / "kafka-pom.xml"
