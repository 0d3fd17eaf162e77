"""The stage reference in docs/stages is generated from the stages and kept current."""

from conftest import REPO
from debian_forge import stages
from debian_forge.stage_docs import pages


def test_committed_stage_reference_is_current():
    """Regenerate with `python -m debian_forge.stage_docs docs/stages` when this fails."""
    for name, text in pages().items():
        path = REPO / "docs/stages" / name
        assert path.exists() and path.read_text() == text, f"docs/stages/{name} is stale"


def test_every_stage_documents_every_option():
    """Each stage has a summary, and every option a description (the schema is the doc)."""
    for stage in stages.stage_types().values():
        assert stage.summary, stage.name
        for option, schema in stage.options_schema().get("properties", {}).items():
            assert schema.get("description"), f"{stage.name}: option {option} has no description"
