"""Figures leave the user's matplotlib alone: a notebook's own figures still show after ours."""

import subprocess
import sys


def test_drawing_a_figure_keeps_the_backend_the_user_chose(tmp_path):
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import numpy as np, pandas as pd\n"
        "from microrep.analysis.plots import plot_pca_scatter\n"
        "plot_pca_scatter(np.random.default_rng(0).normal(size=(6, 2)), list('aabbcc'), [0.5, 0.2], "
        f"{str(tmp_path / 'pca.png')!r})\n"
        "print(matplotlib.get_backend())\n")
    backend = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert backend.stdout.strip() == "svg"
    assert (tmp_path / "pca.png").stat().st_size > 0
