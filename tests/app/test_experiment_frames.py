"""Every built-in experiment's frames replay onto its own figures the way Plotly.js applies
them: known figure names, trace indices that exist, extends only of existing arrays."""

import json

import pytest

from app.encoding import dumps
from app.figures import FigureState
from app.workers import frame_message
from engine.core import RunContext
from engine.experiments import EXPERIMENTS


@pytest.mark.parametrize("slug", sorted(EXPERIMENTS))
def test_default_run_frames_apply_to_the_initial_figures(slug):
    experiment = EXPERIMENTS[slug]
    params = experiment.Params()
    state = FigureState(experiment.figures(params))
    for frame in experiment.run(params, RunContext(seed=params.seed, device="cpu")):
        message = frame_message(frame)
        if message["op"]:
            trace_count = len(state.figures[message["figure"]]["data"])
            assert all(0 <= i < trace_count for i in message["indices"] or [])
            state.apply(message["figure"], message["op"], message["update"],
                        message["indices"], message["max_points"])
        # Artifacts stay on the server (stored for queries); everything else goes out as JSON.
        assert isinstance(message.pop("artifact") or b"", bytes)
        json.loads(dumps(message))
