"""The Flask app over the modeldeploy core (see docs/architecture.md)."""
