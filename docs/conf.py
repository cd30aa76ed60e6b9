"""Sphinx configuration of the nengo-jax documentation.

Build with ``python3 tools/dev.py docs`` (HTML with warnings as errors, then
every code block of the pages run by ``sphinx.ext.doctest``).
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# document (and run the doctests of) this checkout, whatever is installed
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "jax")
# the page examples run without a display
os.environ.setdefault("MPLBACKEND", "Agg")

import nengo_jax  # noqa: E402

project = "nengo-jax"
author = "the nengo-jax authors"
copyright = "nengo-jax authors; GPL-2.0"
release = nengo_jax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# `name` in docstrings links to the object when Sphinx knows it (ours), and is
# shown as code otherwise (Nengo's, Keras's: no intersphinx without network)
default_role = "py:obj"
add_module_names = False

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
# Keras and Nengo methods we override (callback hooks, `step`) would otherwise
# show their docstrings, which are not ours and not numpy style
autodoc_inherit_docstrings = False

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# Every code block of the pages runs under `sphinx-build -b doctest`; these
# imports are shared by all of them (as a reader's script would start).
doctest_global_setup = """
import os
import tempfile

import nengo
import nengo_jax
import keras
import numpy as np

nengo.rc["progress"]["progress_bar"] = "False"
"""
doctest_global_cleanup = ""

html_theme = "furo"
html_title = f"nengo-jax {release}"
