"""Implementation of ldjax. Import public names from :mod:`ldjax`, not from here."""
