"""The budget-allocation study (second paper: Zhang, Kramer, Mazurowski, MIDL 2025).

For a budget of B annotated slices: which volumes (s of them), which slices inside each volume
(selection), whether to fill the gaps between annotated slices (interpolation), and a 2D or 3D
model. ``grid`` says which cells exist, ``selection`` picks slices, ``interpolation`` fills masks,
``volume3d`` trains the masked 3D U-Net, ``experiment`` runs one (B, s, seed, model) job,
``report`` builds the tables and figures, ``nnunet`` exports a sparse set for nnU-Net v2.
"""
