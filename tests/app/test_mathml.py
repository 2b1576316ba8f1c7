"""app.mathml: LaTeX to sanitised MathML, with an escaped <code> fallback."""

import pytest
from markupsafe import Markup

from app.mathml import MATHML_NS, _sanitised, to_mathml


@pytest.mark.parametrize(("latex", "element"), [
    (r"f[w,b](x) = \operatorname{sign}(x^\top w + b)", "<msup>"),
    (r"t \le \frac{R^2}{\gamma^2}", "<mfrac>"),
    (r"\|w_t\| \le R\sqrt{t}", "<msqrt>"),
    (r"C(s,n) = 2\sum_{i=0}^{n-1}\binom{s-1}{i}", "<msubsup>"),
])
def test_formulas_become_mathml(latex, element):
    markup = to_mathml(latex)
    assert isinstance(markup, Markup)
    assert markup.startswith("<math") and markup.endswith("</math>")
    assert 'xmlns="http://www.w3.org/1998/Math/MathML"' in markup
    assert element in markup
    assert 'display="inline"' in markup


def test_display_math_is_a_block():
    assert 'display="block"' in to_mathml(r"x^2", display=True)


@pytest.mark.parametrize("latex", [r"\left( x", "x^", r"\begin{matrix} a", ""])
def test_bad_latex_falls_back_to_escaped_code(latex):
    markup = to_mathml(latex)
    assert markup == Markup('<code class="latex">{}</code>').format(latex)


def test_text_cannot_smuggle_html():
    # latex2mathml copies \text{} verbatim; what that lets through must not survive.
    for latex in (r"\text{<script>alert(1)</script>} + x", r'\text{<mi onclick="alert(1)">a</mi>}',
                  r"\text{<img src=x>} < 1"):
        markup = to_mathml(latex)
        assert "<script" not in markup and "<img" not in markup and "<mi onclick" not in markup


def test_sanitiser_keeps_mathml_and_drops_the_rest():
    kept = _sanitised(f'<math xmlns="{MATHML_NS}"><mi onclick="x" mathvariant="bold">a</mi></math>')
    assert kept == f'<math xmlns="{MATHML_NS}"><mi mathvariant="bold">a</mi></math>'
    assert _sanitised(f'<math xmlns="{MATHML_NS}"><mtext><img src="x"/></mtext></math>') is None
    assert _sanitised("<math><mtext>a & b</mtext></math>") is None  # not XML: fall back


def test_less_than_stays_escaped():
    assert "&lt;" in to_mathml(r"a < b")
