"""The registry: every experiment of the playground, by slug, in cheat-sheet order."""

from engine.core import Experiment
from engine.experiments import cover, hopfield, perceptron

EXPERIMENTS: dict[str, Experiment] = {
    e.slug: e
    for e in (
        perceptron.experiment,
        cover.experiment,
        hopfield.experiment,
    )
}
