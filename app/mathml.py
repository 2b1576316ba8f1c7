"""LaTeX to MathML for the pages, so the browser needs no math JavaScript.

``latex2mathml`` copies ``\\text{...}`` into the output unescaped (``\\text{<b>}`` yields a
``<b>`` element), so its output is parsed back as XML and only MathML elements with
presentation attributes survive. That makes the result safe to embed even when the LaTeX
comes from a request (see ``/mathml`` in app.pages). Anything that does not convert, or
converts into something else, is shown as the escaped LaTeX in a ``<code>`` element.
"""

from __future__ import annotations

from functools import lru_cache
from xml.etree import ElementTree

from latex2mathml.converter import convert
from markupsafe import Markup

MATHML_NS = "http://www.w3.org/1998/Math/MathML"

# Presentation MathML: everything latex2mathml emits, nothing that can load or run anything.
ELEMENTS = frozenset({
    "math", "maction", "maligngroup", "malignmark", "menclose", "merror", "mfenced", "mfrac",
    "mglyph", "mi", "mlabeledtr", "mlongdiv", "mmultiscripts", "mn", "mo", "mover", "mpadded",
    "mphantom", "mprescripts", "mroot", "mrow", "ms", "mscarries", "mscarry", "msgroup",
    "msline", "mspace", "msqrt", "msrow", "mstack", "mstyle", "msub", "msubsup", "msup",
    "mtable", "mtd", "mtext", "mtr", "munder", "munderover", "none", "semantics", "annotation",
})
ATTRIBUTES = frozenset({
    "accent", "accentunder", "align", "close", "columnalign", "columnlines", "columnspacing",
    "columnspan", "depth", "display", "displaystyle", "fence", "form", "frame", "height",
    "largeop", "linethickness", "lspace", "mathbackground", "mathcolor", "mathsize",
    "mathvariant", "maxsize", "minsize", "movablelimits", "notation", "open", "rowalign",
    "rowlines", "rowspacing", "rowspan", "rspace", "scriptlevel", "separator", "separators",
    "stretchy", "symmetric", "voffset", "width",
})


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _sanitised(mathml: str) -> str | None:
    """The MathML re-serialised with only allowed elements and attributes, or None."""
    try:
        root = ElementTree.fromstring(mathml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if not isinstance(element.tag, str) or _local(element.tag) not in ELEMENTS:
            return None
        element.tag = _local(element.tag)
        for name in list(element.attrib):
            if name not in ATTRIBUTES:
                del element.attrib[name]
    root.set("xmlns", MATHML_NS)
    return ElementTree.tostring(root, encoding="unicode")


@lru_cache(maxsize=1024)
def to_mathml(latex: str, display: bool = False) -> Markup:
    """``<math>`` markup for ``latex`` (block when ``display``), or the LaTeX as ``<code>``."""
    try:
        mathml = _sanitised(convert(latex, display="block" if display else "inline"))
    except Exception:  # latex2mathml raises many ad-hoc types; a page must still render
        mathml = None
    if mathml is None:
        return Markup('<code class="latex">{}</code>').format(latex)
    return Markup(mathml)
