# Source of analysis/nback.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks nback

# %% [markdown]
# # n-back memory for a digit, with and without feedback
#
# As the original's `nback` notebook: 4 noise frames, a digit, then n noise frames; a linear readout of all hidden units at
# the last step names the digit. Full model vs feedback removed vs feedback shuffled. Two-proportion
# z-test with the pooled p(1 - p) (the original wrote p**(1 - p)).

# %% tags=["parameters"]
checkpoint = "model_checkpoints/RUN"
mnist_path = "auto"  # .npz with images/labels (or Keras x_train/y_train); "auto": a local MNIST if found
# ($MNIST_NPZ, ~/.keras/datasets/mnist.npz, data/mnist.npz), else as None; None: scikit-learn's 8x8 digits
max_digits = None  # use at most this many digits (None: all)
n_back_values = list(range(11))
shuffle_fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
shuffle_n_back = 5
shuffle_mass_preserving = False  # False: the original's shuffle over whole blocks; True: allowed entries only
epochs = 100
lr = 1e-4
seed = 0
output_dir = "figures/nback"

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import nback, plotting
from models.ablation import shuffle_feedback
from models.checkpoint import Checkpoint

model = Checkpoint(checkpoint).load()
images, labels, digit_source = nback.load_digit_images(mnist_path)
images, labels = images[:max_digits], labels[:max_digits]
frames = nback.digit_frames(images, model.frame_shape)
out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
summary = dict(checkpoint=checkpoint, digit_source=digit_source, n_digits=len(labels))
print(f"{len(labels)} digits: {digit_source}")

# %%
rows = []
for n_back in n_back_values:
    scores = nback.feedback_memory(model, frames, labels, n_back, seed=seed, epochs=epochs, lr=lr)
    rows.append(dict(n_back=n_back, full=scores["full"]["accuracy"], no_feedback=scores["no_feedback"]["accuracy"],
                     n_test=scores["full"]["n_test"], z=scores["z"], p=scores["p"]))
frame = pd.DataFrame(rows)
fig, ax = plotting.new_figure()
n_test = f"n={int(frame['n_test'].iloc[0])} test digits"
ax.plot(frame["n_back"], frame["full"], "o-", color=plotting.GROUP_COLOURS[0], label=f"full ({n_test})")
ax.plot(frame["n_back"], frame["no_feedback"], "s--", color="0.5", markerfacecolor="none",
        label=f"feedback removed ({n_test})")  # dashed, hollow: visible where it lies on the full curve
ax.axhline(1 / len(np.unique(labels)), color="k", linestyle=":", label="chance")
ax.set(xlabel="noise frames after the digit (n)", ylabel="readout accuracy (test)", title=digit_source, ylim=(0, 1.02))
ax.legend()
plotting.save_figure(fig, out, "nback_accuracy")
summary["nback"] = rows
frame

# %%
rows = []
for fraction in shuffle_fractions:
    shuffled = shuffle_feedback(model, fraction, seed, mass_preserving=shuffle_mass_preserving)
    score = nback.nback_accuracy(shuffled, frames, labels, shuffle_n_back, seed=seed, epochs=epochs, lr=lr)
    rows.append(dict(fraction_shuffled=fraction, accuracy=score["accuracy"], n_test=score["n_test"]))
frame = pd.DataFrame(rows)
fig, ax = plotting.new_figure()
ax.plot(100 * frame["fraction_shuffled"], frame["accuracy"], "o-", color="k",
        label=f"{shuffle_n_back}-back (n={int(frame['n_test'].iloc[0])} test digits)")
ax.axhline(1 / len(np.unique(labels)), color="k", linestyle=":", label="chance")
ax.set(xlabel="feedback weights shuffled (%)", ylabel=f"{shuffle_n_back}-back accuracy", title=digit_source,
       ylim=(0, 1.02))  # accuracy on its whole scale, so a drop near chance is not magnified
ax.legend()
plotting.save_figure(fig, out, "nback_shuffled_feedback")
summary["shuffled_feedback"] = rows
frame

# %%
print(plotting.save_summary(out, summary))
