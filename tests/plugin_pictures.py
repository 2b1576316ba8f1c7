"""A tiny image experiment for the upload and download tests: it reads its picture, reports
the mean gray level (so a test can tell which pixels arrived) and offers it back as a PNG."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from pydantic import Field

from engine.core import Experiment, Formula, Params, Section, finish, react
from engine.images import gray_heatmap, image_axes, image_field, load_image, pack_images, to_display


class PictureParams(Params):
    image: str = image_field()
    size: int = Field(32, ge=8, le=128, description="Side of the square the picture becomes.")


def picture_figures(params: PictureParams) -> dict[str, go.Figure]:
    return {"picture": go.Figure(gray_heatmap(), layout=image_axes())}


def picture_run(params: PictureParams, ctx):
    image = load_image(params.image, params.size, ctx, dtype=torch.float64)
    pixels = to_display(image)
    yield react("picture", go.Figure(gray_heatmap(pixels, "picture"), layout=image_axes()))
    yield finish([], artifact=pack_images(picture=pixels), mean=float(pixels.mean()))


picture = Experiment(
    slug="picture", title="Picture (test plug-in)",
    section=Section("0.2", "Test plug-ins", chapter="0 Tests"),
    summary="Shows the chosen picture.",
    formulas=(Formula("identity", r"I(x, y)"),),
    Params=PictureParams, figures=picture_figures, run=picture_run,
    downloads=("picture",),
)
