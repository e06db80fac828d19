"""The application tier: the ``ldjax`` command and the HTML report, above the experiments."""
