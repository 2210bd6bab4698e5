"""A bounded fuzz run in every `make test`: a few hundred mutations of files in every codec (fixed
seed), plus whatever `make fuzz` found, each read, decoded (in a decoder process, under its memory
and time limits) and turned into a mel. Every outcome must be a track or an error of a documented
kind that says something about the file: never an unexpected exception, a crash or a hang."""
from __future__ import annotations

import collections

import pytest

from tests.fuzzing import FINDINGS, mutations, write_seeds
from musicnn_beam.transforms.decoders import DecoderPool
from musicnn_beam.transforms.errors import KINDS
from musicnn_beam.transforms.extract import extract
from musicnn_beam.transforms.records import ErrorRecord, InputFile, TrackFeatures

pytestmark = pytest.mark.integration  # decoder processes

# Kinds that would mean the decoder, not the file, failed: a finding.
NOT_ALLOWED = {"DecoderError", "DecoderCrashed", "Timeout", "TooLarge"}
PER_SEED = 45  # x 7 codecs = 315 mutations


def test_mutated_files_give_a_track_or_a_documented_error(tmp_path, recipe):
    seeds = write_seeds(tmp_path / "seeds")
    cases = [(path.name, path.read_bytes()) for path in sorted(FINDINGS.glob("*")) if path.is_file()]
    cases += mutations(seeds, PER_SEED)
    folder = tmp_path / "mutated"
    folder.mkdir()
    pool = DecoderPool(2, memory_limit=1 << 30, stall_timeout_s=20)
    outcomes: collections.Counter[str] = collections.Counter()
    findings = []
    try:
        for name, data in cases:
            path = folder / name
            path.write_bytes(data)
            result = extract(InputFile(str(path)), recipe, pool, max_duration_s=600)
            if isinstance(result, TrackFeatures):
                outcomes["track"] += 1
                continue
            assert isinstance(result, ErrorRecord)
            outcomes[result.kind] += 1
            if result.kind not in KINDS or result.kind in NOT_ALLOWED:
                findings.append((name, result.kind, result.message))
    finally:
        pool.close()
    print(f"{len(cases)} fuzz cases: " + ", ".join(f"{k} {n}" for k, n in outcomes.most_common()))
    assert not findings, findings
    assert sum(outcomes.values()) == len(cases) >= 7 * PER_SEED
    assert outcomes["track"] and len(outcomes) > 3  # the mutations reach both outcomes, and many kinds
