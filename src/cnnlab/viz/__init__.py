"""Plots (training curves, confusion matrices), teaching visuals and the HTML report."""
