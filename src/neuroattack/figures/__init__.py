"""Figures drawn with seaborn; each returns the figure and the numbers it plots."""

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: the figure jobs have no display

from neuroattack.figures.coverage import amplified, figure2, figure4, main_estimate
from neuroattack.figures.depth import figure7
from neuroattack.figures.preference import figure3
from neuroattack.figures.screening import figure5
from neuroattack.figures.sensitivity import figure1, figure6, sensitivity_table
from neuroattack.figures.specificity import figure8

__all__ = [
    "amplified",
    "figure1",
    "figure2",
    "figure3",
    "figure4",
    "figure5",
    "figure6",
    "figure7",
    "figure8",
    "main_estimate",
    "sensitivity_table",
]
