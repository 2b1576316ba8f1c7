"""The registry: every experiment of the playground, by slug, in cheat-sheet order."""

from engine.core import Experiment
from engine.experiments import (
    attention,
    cover,
    deblur,
    diffusion,
    filters,
    fourier,
    gelu,
    hopfield,
    optimizers,
    perceptron,
    positional_encoding,
    sensor,
    thresholding,
    vit_patches,
)

EXPERIMENTS: dict[str, Experiment] = {
    e.slug: e
    for e in (
        perceptron.experiment,
        cover.experiment,
        hopfield.experiment,
        optimizers.experiment,
        attention.experiment,
        positional_encoding.experiment,
        vit_patches.experiment,
        gelu.experiment,
        diffusion.experiment,
        sensor.experiment,
        thresholding.experiment,
        filters.experiment,
        fourier.experiment,
        deblur.experiment,
    )
}
