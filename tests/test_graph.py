"""The Beam graph of a run (pipeline/graph.py), built and inspected, not run."""
from __future__ import annotations

import apache_beam as beam
import pytest

from musicnn_beam.models.registry import resolve_model
from musicnn_beam.pipeline.graph import TagCatalogue, TagSettings
from musicnn_beam.store.commit import CommitRun
from musicnn_beam.store.plan import RunFacts, StoreRun
from musicnn_beam.transforms.sources import InputSpec

pytestmark = pytest.mark.unit


def test_every_flatten_reads_its_inputs_with_one_coder():
    """Beam infers a coder per branch ((str, int) here, (str, float) there); a Flatten whose inputs
    differ decoded one branch's bytes with another's coder: at 30,000 inputs the run counts went
    wrong, and at 100,000 the join (a Flatten inside) lost files and the run ran out of memory."""
    p = beam.Pipeline()
    run = StoreRun(output="store", facts=RunFacts("R1", "msd-musicnn", "f", "s"), current_version=0, current_files=())
    _ = (p | beam.Create([InputSpec(pattern="x")])
         | TagCatalogue(TagSettings(model=resolve_model("msd-musicnn"), patch_hop=187), run) | CommitRun(run))
    flattens = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.Flatten):
                flattens[node.full_label] = {type(beam.coders.registry.get_coder(i.element_type)).__name__ + str(
                    beam.coders.registry.get_coder(i.element_type)) for i in node.inputs}

    p.visit(Visitor())
    assert {"TagCatalogue/AllErrors", "TagCatalogue/AllCurrent", "CommitRun/AllEntries",
            "TagCatalogue/Plan/JoinCurrent/CoGroupByKeyImpl/Flatten"} <= set(flattens), flattens
    assert all(len(coders) == 1 for coders in flattens.values()), flattens


def test_inference_accelerator_hint_lands_on_the_inference_stage_only():
    hint = "type:nvidia-l4;count:1;install-nvidia-driver"
    p = beam.Pipeline()
    run = StoreRun(output="store", facts=RunFacts("R1", "msd-musicnn", "f", "s"), current_version=0, current_files=())
    _ = p | beam.Create([InputSpec(pattern="x")]) | TagCatalogue(
        TagSettings(model=resolve_model("msd-musicnn"), patch_hop=187, inference_accelerator=hint), run)
    hinted = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            self.visit_transform(node)

        def visit_transform(self, node):
            accelerator = (node.resource_hints or {}).get("beam:resources:accelerator:v1")
            if accelerator:
                hinted[node.full_label] = accelerator

    p.visit(Visitor())
    assert hinted and all("/Infer" in label for label in hinted), hinted
    assert set(hinted.values()) == {hint.encode()}
