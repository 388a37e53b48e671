"""Sphinx configuration: Markdown pages (MyST) plus API pages generated from the numpy docstrings."""

from __future__ import annotations

project = "nvalchemi_ase"
author = "nvalchemi_ase developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "autodoc.import_object"]
nitpicky = False
html_theme = "alabaster"
html_title = "nvalchemi_ase"
