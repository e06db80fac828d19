"""Experiments that reproduce the papers' figures. Import one module each, e.g.
``from ldjax.experiments import mnist_force``; ``ldjax reproduce`` runs them all.
"""
