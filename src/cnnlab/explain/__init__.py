"""``cnnlab explain``: an offline web page that shows a trained network at work, unit by unit.

Like CNN Explainer (Wang et al., 2020, poloclub), but for the user's own run: every layer's
activation maps, and a click on any unit shows the arithmetic that made its value. The numbers
are computed server-side by torch forward hooks (:mod:`cnnlab.explain.hooks`), served as JSON by
:mod:`cnnlab.explain.app`, and drawn by one self-contained page (``static/explain.html``, plain JS).
"""
