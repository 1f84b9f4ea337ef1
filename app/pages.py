"""The homepage: one card per served model, with a form that calls ``/predict``."""

from __future__ import annotations

from flask import Blueprint, render_template

from .models import describe_models
from .state import get_registry

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index() -> str:
    return render_template("index.html", models=describe_models(get_registry()))
