"""Reference (real) images for the distribution metrics, and their cached features.

- ``spec``: what a reference is (folder, ``datasets`` split, ``.npz`` statistics, ADM reference batch)
  and its validation;
- ``adm``: ADM reference batches (guided-diffusion's evaluator layout): stored statistics or ``arr_0``;
- ``images``: reading, cropping and resizing reference images;
- ``cache``: features per (images' content, selection, preprocessing, extractor), computed once;
- ``npz``: FID statistics in the pytorch-fid / clean-fid layout (``mu``, ``sigma``);
- ``python -m evalrun.reference``: list the cache, export statistics.

Kept import-light: validating a config imports ``spec`` only.
"""
