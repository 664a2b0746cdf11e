"""The two conventions LFA curves are computed in, 'trained' and 'figure2', and what tells them apart.

Torch-free: the curves, Figure 2, the report and the workflow's rules all read them from here.
"""

#: The LFA conventions (:mod:`lfa.assessment.curves`), with a short title each.
CONVENTION_TITLES = {
    "trained": "losses as trained (natural logarithms)",
    "figure2": "convention of the published Figure 2 (base-10 logarithm values)",
}
CONVENTIONS = tuple(CONVENTION_TITLES)

CONVENTION_NOTE = (
    "Two conventions are computed for the LFA curves. 'trained' evaluates every loss exactly as the models "
    "are trained (natural logarithms). 'figure2' reproduces the published Figure 2: there the logarithms "
    "inside the loss values are base-10 logarithms while the derivative of a logarithm is kept as 1/q, so "
    "every gradient term that multiplies a logarithm uses its base-10 value, and the integral term "
    "L(ŷ) - L(1) uses base-10 values; besides, ASL is drawn without the margin inside its terms and with "
    "its negative-label term evaluated at own-label probability q - m. Losses without logarithms (ECE) "
    "have the same curves in both conventions; with logarithms the end points move, e.g. BCE ends at "
    "sigmoid(-1) ≈ 0.269 when trained but at sigmoid(-1/ln 10) ≈ 0.393 in the figure, and the ASL of the "
    "paper's tables ends at sigmoid(-0.95) ≈ 0.279 (LFA+/-) and sigmoid(-1.05) ≈ 0.259 (LFA-/+) when "
    "trained but at sigmoid(-1) ≈ 0.269 in the figure; F-ECE's LFA-/+ starts at 0.78 when trained but at "
    "0.25 in the figure. The ranking and shapes of the curves are similar; only 'trained' describes the "
    "gradients the models actually received."
)
