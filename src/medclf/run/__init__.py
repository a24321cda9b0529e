"""One run: its folder (medclf.run.folder), its lifecycle, the model families, selection,
outputs, prediction and export."""
