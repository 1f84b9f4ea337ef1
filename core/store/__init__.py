"""Model artifacts: dill or save_pretrained exports in a local folder or a GCS bucket."""
