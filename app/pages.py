"""The homepage: one card per served model, with a form that calls ``/predict``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, send_from_directory

from .models import describe_models
from .state import get_registry

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index() -> str:
    return render_template("index.html", models=describe_models(get_registry()))


@blueprint.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page links; an SVG serves them all."""
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
