"""A reproducible, notebook-first companion to 'How Robust Are Energy-Based Models Trained With Equilibrium Propagation?' (Mansingh et al. 2024)

Modules:

- `eprobust.attacks`: Every model as a torchattacks classifier, honest attack gradients through the EP-CNN's dynamics (unrolled, full, implicit), the paper's attacks and the standard ones, and the attack stage.
- `eprobust.cluster`: The pipeline fanned out over a cluster: each stage split into independent jobs (one per model and seed for training, one per attack or corruption unit), run through [submitit](https://github.com/facebookincubator/submitit) on SLURM or as processes of this machine, all sharing one cache and one set of result tables.
- `eprobust.corruptions`: CIFAR-10-C and CIFAR-100-C: the 19 corruptions of Hendrycks & Dietterich (2019) regenerated with the CIFAR parameters of their `make_cifar_c.py`, seeded per image and vectorized across images, cached in the official layout, and loaded from official or regenerated folders alike.
- `eprobust.data`: CIFAR-10 and CIFAR-100 from the official python files or a PNG tree, cached as arrays; the paper's normalization and augmentation; deterministic subsets and batches.
- `eprobust.ep`: The EP-CNN: its energy Φ, the relaxation dynamics written out explicitly (synchronous, as in the paper, and even/odd), and the Equilibrium Propagation gradient estimators.
- `eprobust.plots`: Plots are functions of result tables: `plot_*(df) -> Figure`. The figures stage reads the tables of a preset and writes every figure and table into `figures/<preset>/`.
- `eprobust.train`: The BP-CNN baseline, one training loop for every model (checkpoint each epoch, resume, progress bar, metrics rows), and the training stage of the pipeline."""

__version__ = "0.0.1"
