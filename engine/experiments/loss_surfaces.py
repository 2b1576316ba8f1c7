r"""2-D loss surfaces for the optimizer race (1.3 Gradient-based learning), batched in torch.

Every surface gives :math:`h(\theta) - \min h` (the *gap*, computed so that it does not cancel
near the minimum) and its analytic gradient :math:`\nabla h`, both on any batch of points
``(..., 2)``, so that thousands of trajectories of several optimizers step together:

* ``quadratic``: :math:`h(\theta) = \tfrac12 (\theta - \theta^*)^\top A (\theta - \theta^*)`,
  :math:`A = R_\varphi \operatorname{diag}(\mu, L) R_\varphi^\top`: :math:`L`-smooth and
  :math:`\mu`-strongly convex, condition number :math:`\kappa = L/\mu`;
* ``noisy_quadratic``: least squares :math:`h(\theta) = \frac1{2s}\sum_i (x_i^\top\theta -
  y_i)^2` on data drawn so that :math:`\frac1s X^\top X = A` exactly: the same quadratic
  around the least-squares solution :math:`\hat\theta`, seen through minibatch gradients
  :math:`\frac1b\sum_{i \in B} \nabla h(\theta)(x_i, y_i)` (indices drawn with replacement);
* ``rosenbrock`` :math:`(1 - x)^2 + 100 (y - x^2)^2`, ``beale``, ``himmelblau`` (four minima)
  and ``saddle`` :math:`\tfrac12 x^2 + \tfrac14 (y^2 - 1)^2` (a strict saddle at the origin
  between two minima at :math:`(0, \pm 1)`): the classic non-convex test functions, none of
  them globally :math:`L`-smooth; :func:`smoothness_on_box` bounds :math:`\|\nabla^2 h\|_2` on
  a box instead.

References: Rosenbrock (1960); Beale (1958); Himmelblau, *Applied Nonlinear Programming* (1972);
Nesterov, *Introductory Lectures on Convex Optimization* (2004) §1.2.2 and §2.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacrev, vmap

DTYPE = torch.float64
SURFACES = ("quadratic", "noisy_quadratic", "rosenbrock", "beale", "himmelblau", "saddle")

# The view of each surface: (x_min, x_max, y_min, y_max).
BOXES = {
    "quadratic": (-5.0, 5.0, -5.0, 5.0),
    "noisy_quadratic": (-5.0, 5.0, -5.0, 5.0),
    "rosenbrock": (-2.0, 2.0, -1.0, 3.0),
    "beale": (-4.5, 4.5, -4.5, 4.5),
    "himmelblau": (-5.0, 5.0, -5.0, 5.0),
    "saddle": (-2.5, 2.5, -2.0, 2.0),
}

# Himmelblau's four minima (all with h = 0), to double precision.
HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)


def rotation(angle_deg: float, dtype=DTYPE, device=None) -> torch.Tensor:
    """The 2x2 rotation :math:`R_\\varphi` by ``angle_deg`` degrees."""
    phi = math.radians(angle_deg)
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=dtype, device=device)


def quadratic_hessian(mu: float, L: float, angle_deg: float, device=None) -> torch.Tensor:
    r""":math:`A = R_\varphi \operatorname{diag}(\mu, L) R_\varphi^\top` (2, 2)."""
    R = rotation(angle_deg, device=device)
    return R @ torch.diag(torch.tensor([mu, L], dtype=DTYPE, device=device)) @ R.T


@dataclass(frozen=True)
class LeastSquares:
    r"""Data (X, y) of a least-squares problem, :math:`h(\theta) = \frac1{2s}\|X\theta - y\|^2`.

    ``A`` is :math:`\frac1s X^\top X` and ``theta_hat`` the minimiser :math:`\hat\theta`.
    """

    X: torch.Tensor  # (s, 2)
    y: torch.Tensor  # (s,)
    A: torch.Tensor  # (2, 2)
    theta_hat: torch.Tensor  # (2,)

    @property
    def s(self) -> int:
        return self.X.shape[0]

    def per_sample_grads(self, theta: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla h[\theta](x_i, y_i) = x_i (x_i^\top\theta - y_i)` for every i, (s, 2)."""
        return self.X * (self.X @ theta - self.y)[:, None]

    def variance(self, theta: torch.Tensor) -> float:
        r"""The sheet's :math:`V[\theta](S) = \frac1s\sum_i\|\nabla h[\theta](S) -
        \nabla h[\theta](x_i, y_i)\|^2`."""
        g = self.per_sample_grads(theta)
        return float(((g - g.mean(dim=0)) ** 2).sum(dim=1).mean())

    def minibatch_grad(
        self, theta: torch.Tensor, batch: int, generator: torch.Generator
    ) -> torch.Tensor:
        r""":math:`\frac1b\sum_{i\in B}x_i(x_i^\top\theta - y_i)` with its own B per point of
        ``theta`` (..., 2): b indices drawn uniformly with replacement, so the estimate is
        unbiased with :math:`\mathbb E\|g_B - \nabla h\|^2 = V[\theta](S)/b`."""
        idx = torch.randint(
            self.s, (*theta.shape[:-1], batch), generator=generator, device=theta.device
        )
        Xb, yb = self.X[idx], self.y[idx]  # (..., b, 2), (..., b)
        residual = (Xb * theta[..., None, :]).sum(dim=-1) - yb  # (..., b)
        return (Xb * residual[..., None]).mean(dim=-2)


def least_squares(
    A: torch.Tensor, s: int, noise: float, generator: torch.Generator
) -> LeastSquares:
    r"""s points whose second-moment matrix is exactly A, labels :math:`y = X\theta^* + \sigma
    \varepsilon` with :math:`\theta^* = 0`.

    Draw Z (s, 2) Gaussian, whiten it (:math:`\frac1s Z^\top Z = I` exactly, via the symmetric
    inverse square root), and set :math:`X = Z A^{1/2}`, so :math:`\frac1s X^\top X = A`.
    """
    device = A.device
    Z = torch.randn(s, 2, generator=generator, dtype=DTYPE, device=device)
    evals, evecs = torch.linalg.eigh(Z.T @ Z / s)
    Z = Z @ (evecs @ torch.diag(evals.rsqrt()) @ evecs.T)
    evals, evecs = torch.linalg.eigh(A)
    X = Z @ (evecs @ torch.diag(evals.sqrt()) @ evecs.T)
    y = noise * torch.randn(s, generator=generator, dtype=DTYPE, device=device)
    A_data = X.T @ X / s
    theta_hat = torch.linalg.solve(A_data, X.T @ y / s)
    return LeastSquares(X=X, y=y, A=A_data, theta_hat=theta_hat)


@dataclass(frozen=True)
class Surface:
    r"""A 2-D loss surface: the gap :math:`h - \min h`, its gradient, where its minima are.

    ``gap`` and ``grad`` take points (..., 2) and return (...) and (..., 2). ``A`` is the
    (constant) Hessian of the quadratic surfaces, None for the others; ``data`` the
    least-squares problem of the noisy surface.
    """

    name: str
    title: str
    latex: str
    gap: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    minima: torch.Tensor  # (m, 2)
    box: tuple[float, float, float, float]
    A: torch.Tensor | None = None
    data: LeastSquares | None = None

    @property
    def mu(self) -> float | None:
        return None if self.A is None else float(torch.linalg.eigvalsh(self.A)[0])

    @property
    def L(self) -> float | None:
        return None if self.A is None else float(torch.linalg.eigvalsh(self.A)[-1])

    def distance(self, theta: torch.Tensor) -> torch.Tensor:
        """Distance from each point (..., 2) to the nearest minimum, (...)."""
        diff = theta[..., None, :] - self.minima  # (..., m, 2)
        return torch.linalg.vector_norm(diff, dim=-1).min(dim=-1).values

    def hessian_norm(self, theta: torch.Tensor) -> torch.Tensor:
        r""":math:`\|\nabla^2 h(\theta)\|_2` at each point (n, 2) via autograd, (n,).

        Reverse over reverse mode: torch.func.hessian's forward mode loads TorchScript
        decompositions, which warn on this torch.
        """
        H = vmap(jacrev(jacrev(lambda p: self.gap(p))))(theta)  # (n, 2, 2)
        a, b, c = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        return (a + c).abs() / 2 + torch.sqrt(((a - c) / 2) ** 2 + b**2)


def _xy(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return theta[..., 0], theta[..., 1]


def _quadratic(A: torch.Tensor, center: torch.Tensor):
    # Written out elementwise: a (K, B, 2) @ (2, 2) matmul costs ~50x more on a CPU.
    a, b, c = float(A[0, 0]), float(A[0, 1]), float(A[1, 1])
    x_star, y_star = float(center[0]), float(center[1])

    def gap(theta):
        x, y = theta[..., 0] - x_star, theta[..., 1] - y_star
        return 0.5 * (a * x * x + 2 * b * x * y + c * y * y)

    def grad(theta):
        x, y = theta[..., 0] - x_star, theta[..., 1] - y_star
        return torch.stack([a * x + b * y, b * x + c * y], dim=-1)

    return gap, grad


def _rosenbrock_gap(theta):
    x, y = _xy(theta)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad(theta):
    x, y = _xy(theta)
    r = y - x**2
    return torch.stack([-2 * (1 - x) - 400 * x * r, 200 * r], dim=-1)


def _beale_terms(theta):
    x, y = _xy(theta)
    y2 = y * y
    return x, y, y2, 1.5 - x + x * y, 2.25 - x + x * y2, 2.625 - x + x * y2 * y


def _beale_gap(theta):
    *_, a1, a2, a3 = _beale_terms(theta)
    return a1**2 + a2**2 + a3**2


def _beale_grad(theta):
    x, y, y2, a1, a2, a3 = _beale_terms(theta)
    gx = 2 * (a1 * (y - 1) + a2 * (y2 - 1) + a3 * (y2 * y - 1))
    gy = 2 * x * (a1 + 2 * a2 * y + 3 * a3 * y2)
    return torch.stack([gx, gy], dim=-1)


def _himmelblau_gap(theta):
    x, y = _xy(theta)
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _himmelblau_grad(theta):
    x, y = _xy(theta)
    u, v = x**2 + y - 11, x + y**2 - 7
    return torch.stack([4 * x * u + 2 * v, 2 * u + 4 * y * v], dim=-1)


def _saddle_gap(theta):
    x, y = _xy(theta)
    return 0.5 * x**2 + 0.25 * (y**2 - 1) ** 2


def _saddle_grad(theta):
    x, y = _xy(theta)
    return torch.stack([x, y * (y**2 - 1)], dim=-1)


def make_surface(
    name: str,
    *,
    mu: float = 1.0,
    L: float = 10.0,
    angle_deg: float = 0.0,
    samples: int = 200,
    noise: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Surface:
    """Build a surface by name; ``mu``, ``L``, ``angle_deg`` shape the two quadratic ones.

    The least-squares data of ``noisy_quadratic`` is drawn from ``seed`` on the CPU (then moved
    to ``device``), so the surface, and its contour map, depend on the parameters alone.
    """
    device = torch.device(device)
    box = BOXES.get(name)
    if box is None:
        raise ValueError(f"surface must be one of {', '.join(SURFACES)}, got {name!r}")

    def tensor(points):
        return torch.tensor(points, dtype=DTYPE, device=device)

    if name == "quadratic":
        A = quadratic_hessian(mu, L, angle_deg, device)
        center = torch.zeros(2, dtype=DTYPE, device=device)
        gap, grad = _quadratic(A, center)
        latex = (
            r"h(\theta) = \tfrac12\,\theta^\top A\,\theta,\ A = R_\varphi\operatorname{diag}"
            r"(\mu, L)R_\varphi^\top"
        )
        return Surface(name, "Ill-conditioned quadratic", latex, gap, grad, center[None], box, A)
    if name == "noisy_quadratic":
        A = quadratic_hessian(mu, L, angle_deg)
        data = least_squares(A, samples, noise, torch.Generator().manual_seed(seed))
        data = LeastSquares(*(t.to(device) for t in (data.X, data.y, data.A, data.theta_hat)))
        gap, grad = _quadratic(data.A, data.theta_hat)
        latex = (
            r"h(\theta) = \frac1{2s}\sum_{i=1}^s (x_i^\top\theta - y_i)^2,\ "
            r"\tfrac1s X^\top X = A"
        )
        return Surface(
            name, "Least squares, minibatch gradients", latex, gap, grad,
            data.theta_hat[None], box, data.A, data,
        )
    if name == "rosenbrock":
        latex = r"h(x, y) = (1 - x)^2 + 100\,(y - x^2)^2"
        return Surface(
            name, "Rosenbrock", latex, _rosenbrock_gap, _rosenbrock_grad, tensor([[1.0, 1.0]]),
            box,
        )
    if name == "beale":
        latex = (
            r"h(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2"
        )
        return Surface(
            name, "Beale", latex, _beale_gap, _beale_grad, tensor([[3.0, 0.5]]), box
        )
    if name == "himmelblau":
        latex = r"h(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2"
        return Surface(
            name, "Himmelblau", latex, _himmelblau_gap, _himmelblau_grad,
            tensor(HIMMELBLAU_MINIMA), box,
        )
    latex = r"h(x, y) = \tfrac12 x^2 + \tfrac14 (y^2 - 1)^2"
    return Surface(
        name, "Saddle", latex, _saddle_gap, _saddle_grad, tensor([[0.0, -1.0], [0.0, 1.0]]), box
    )


def grid(box: tuple[float, float, float, float], n: int, device=None):
    """An n x n grid over ``box``: the axes (n,), (n,) and the points (n, n, 2), row = y."""
    x_min, x_max, y_min, y_max = box
    xs = torch.linspace(x_min, x_max, n, dtype=DTYPE, device=device)
    ys = torch.linspace(y_min, y_max, n, dtype=DTYPE, device=device)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([X, Y], dim=-1)


@dataclass(frozen=True)
class Smoothness:
    """An estimate of L = max ‖∇²h‖₂ on ``box``, a box that holds the sublevel set of the start."""

    L: float
    box: tuple[float, float, float, float]
    clipped: bool  # the sublevel set reached the edge of the searched region


SMOOTHNESS_GRID = 257
SMOOTHNESS_MARGIN = 1.05  # the grid maximum, plus 5 % for what lies between the grid nodes


def smoothness_on_box(surface: Surface, theta0: torch.Tensor) -> Smoothness:
    r"""L for the descent lemma of GD started at :math:`\theta_0` on a non-convex surface.

    GD with :math:`\eta = 1/L` never increases h while its steps stay where
    :math:`\|\nabla^2 h\|_2 \le L`, so it stays in the sublevel set
    :math:`\{h \le h(\theta_0)\}`. The box is the bounding box of that set (found on a grid over
    the view, three times enlarged, with :math:`\theta_0`), and L the largest Hessian norm on a
    grid of the box, plus 5 %. For the quadratics L is exact and the box is the view.
    """
    if surface.A is not None:
        return Smoothness(surface.L, surface.box, False)
    device = theta0.device
    x_min, x_max, y_min, y_max = surface.box
    x0, y0 = float(theta0[0]), float(theta0[1])
    x_min, x_max, y_min, y_max = min(x_min, x0), max(x_max, x0), min(y_min, y0), max(y_max, y0)
    w, h = x_max - x_min, y_max - y_min
    region = (x_min - w, x_max + w, y_min - h, y_max + h)
    xs, ys, points = grid(region, SMOOTHNESS_GRID, device)
    inside = surface.gap(points) <= surface.gap(theta0)  # (n, n)
    cols, rows = inside.any(dim=0), inside.any(dim=1)
    step_x, step_y = float(xs[1] - xs[0]), float(ys[1] - ys[0])
    box = (x0 - step_x, x0 + step_x, y0 - step_y, y0 + step_y)  # θ0 at a minimum: the set is θ0
    if bool(inside.any()):
        cx, cy = cols.nonzero()[:, 0], rows.nonzero()[:, 0]
        box = (
            min(float(xs[cx.min()]) - step_x, box[0]), max(float(xs[cx.max()]) + step_x, box[1]),
            min(float(ys[cy.min()]) - step_y, box[2]), max(float(ys[cy.max()]) + step_y, box[3]),
        )
    n = SMOOTHNESS_GRID - 1
    clipped = bool(cols[0] or cols[n] or rows[0] or rows[n])
    _, _, points = grid(box, SMOOTHNESS_GRID, device)
    L = float(surface.hessian_norm(points.reshape(-1, 2)).max()) * SMOOTHNESS_MARGIN
    return Smoothness(L, box, clipped)
