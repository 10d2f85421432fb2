"""Recall and precision of ``losskit lint`` on public PyTorch repositories, checked by hand.

    python benchmarks/audit_lint_recall.py --root /path/to/checkouts

Sixteen public repositories (tutorial collections, GAN and VAE zoos, courses, notebooks) were
searched by hand (grep and reading) for the mistakes the rules target and their near variants:
BCELoss on sigmoid output (also at the end of a model's ``forward``, a VAE's ``decode``, an
element of the tuple a discriminator returns, a loss helper's parameter), softmax before
cross-entropy or NLLLoss, one-hot targets of a regression loss, deprecated ``size_average`` /
``reduce``, a loop without ``zero_grad``, loss tensors summed after ``backward()``,
``log(softmax)`` / ``log(sigmoid)`` by hand. :data:`REPOS` lists each repository at the commit
audited and every real mistake found, as ``(path, cell, line, code)`` (``cell`` 0 for a ``.py``
file; a count when one line holds several). The script lints each checkout and prints, per
repository, the real mistakes, how many the linter found, what it missed (file:line) and what it
reported that is not a real mistake (false positives); it also checks that every ``LK000`` is a
file or notebook cell that Python cannot compile. Results: ``benchmarks/results/audit_lint_recall.json``.

The checkouts are not part of losskit (nothing fetched is committed): clone each repository into
``--root`` as ``owner+name`` at the commit listed (``git clone https://github.com/<owner>/<name>
<root>/<owner>+<name> && git -C ... checkout <commit>``). With ``--mirrors DIR`` (git
directories without a work tree, as ``DIR/<owner>+<name>/repo``, or a ``.git`` inside it) the
script writes the missing checkouts itself: the ``.py`` and ``.ipynb`` files of the commit listed
(a blob the mirror does not hold -- a large notebook -- is named and skipped; the four such
notebooks of the snapshots the audit was made from are in :data:`NOT_AUDITED`, left out of the
counts also when a full clone has them). Copies under
``.ipynb_checkpoints`` are not counted (the linter skips them, as Jupyter's own backups).

Not counted, because no rule is meant to catch them (listed so the audit can be repeated):

* sigmoid output passed to ``CrossEntropyLoss`` (GunhoChoi/PyTorch-FastCampus
  ``09_GAN/2_InfoGAN/infogan_onlycat.ipynb`` cell 20 line 34, ``infogan_catcon.ipynb`` cell 20
  lines 38 and 75): LK101 is about softmax;
* the log of a hand-written sigmoid ``1 / (1 + exp(-z))`` (rasbt/deeplearning-models
  ``basic-ml/logistic-regression.ipynb`` cells 11 and 17): no rule recognises a hand-written
  sigmoid;
* ``-log(1 - softmax)`` of the class-distance-weighted CE loss (rasbt ``ordinal/polat2022*``):
  a published loss with no fused form.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from losskit.lint import lint_paths  # noqa: E402

Site = tuple  # (path, cell, line, code) or (path, cell, line, code, count)


@dataclass(frozen=True)
class Repo:
    name: str  # owner/name on GitHub
    commit: str
    mistakes: list[Site]
    #: why the linter misses a listed mistake (path:line -> reason), for the report
    why_missed: tuple[tuple[str, str], ...] = ()


REPOS: list[Repo] = [
    Repo(
        "AntixK/PyTorch-VAE",
        "a6896b944c918dd7030e7d795a8c13e5c6345ec7",
        [],
    ),
    Repo(
        "dragen1860/Deep-Learning-with-PyTorch-Tutorials",
        "7535c8fa04b69ac224189d201e1628282691e9a5",
        [
            ("lesson05-手写数字问题/mnist_train.py", 0, 82, "LK107"),
        ],
    ),
    Repo(
        "eriklindernoren/PyTorch-GAN",
        "36d3c77e5ff20ebe0aeefd322326a134a279b93e",
        [
            ("implementations/aae/aae.py", 0, 180, "LK103"),
            ("implementations/aae/aae.py", 0, 197, "LK103"),
            ("implementations/aae/aae.py", 0, 198, "LK103"),
            ("implementations/acgan/acgan.py", 0, 195, "LK101"),
            ("implementations/acgan/acgan.py", 0, 195, "LK103"),
            ("implementations/acgan/acgan.py", 0, 208, "LK101"),
            ("implementations/acgan/acgan.py", 0, 208, "LK103"),
            ("implementations/acgan/acgan.py", 0, 212, "LK101"),
            ("implementations/acgan/acgan.py", 0, 212, "LK103"),
            ("implementations/bgan/bgan.py", 0, 90, "LK113", 2),
            ("implementations/bgan/bgan.py", 0, 160, "LK103"),
            ("implementations/bgan/bgan.py", 0, 161, "LK103"),
            ("implementations/cluster_gan/clustergan.py", 0, 447, "LK103"),
            ("implementations/cluster_gan/clustergan.py", 0, 470, "LK103"),
            ("implementations/cluster_gan/clustergan.py", 0, 471, "LK103"),
            ("implementations/dcgan/dcgan.py", 0, 166, "LK103"),
            ("implementations/dcgan/dcgan.py", 0, 178, "LK103"),
            ("implementations/dcgan/dcgan.py", 0, 179, "LK103"),
            ("implementations/dragan/dragan.py", 0, 197, "LK103"),
            ("implementations/dragan/dragan.py", 0, 209, "LK103"),
            ("implementations/dragan/dragan.py", 0, 210, "LK103"),
            ("implementations/gan/gan.py", 0, 144, "LK103"),
            ("implementations/gan/gan.py", 0, 156, "LK103"),
            ("implementations/gan/gan.py", 0, 157, "LK103"),
            ("implementations/infogan/infogan.py", 0, 277, "LK101"),
            ("implementations/pixelda/pixelda.py", 0, 250, "LK101", 2),
            ("implementations/sgan/sgan.py", 0, 182, "LK103"),
            ("implementations/sgan/sgan.py", 0, 195, "LK101"),
            ("implementations/sgan/sgan.py", 0, 195, "LK103"),
            ("implementations/sgan/sgan.py", 0, 199, "LK101"),
            ("implementations/sgan/sgan.py", 0, 199, "LK103"),
            ("implementations/stargan/stargan.py", 0, 77, "LK108"),
        ],
    ),
    Repo(
        "GunhoChoi/PyTorch-FastCampus",
        "1e9ba63e9ccffa28637f9c441d6d5faf35696268",
        [
            ("05_RNN/0_Basic/Simple_Char_RNNcell.ipynb", 14, 12, "LK107"),
            ("05_RNN/1_LSTM/1_Char_LSTM.ipynb", 18, 14, "LK107"),
            ("08_Autoencoder/3_Variational_Autoencoder.ipynb", 14, 1, "LK108"),
            ("08_Autoencoder/3_Variational_Autoencoder.ipynb", 14, 4, "LK103"),
            ("08_Autoencoder/4-1_Convolutional_Variational_Autoencoder_Interpolation.ipynb", 14, 1, "LK108"),
            ("08_Autoencoder/4-1_Convolutional_Variational_Autoencoder_Interpolation.ipynb", 14, 4, "LK103"),
            ("08_Autoencoder/4_Convolutional_Variational_Autoencoder.ipynb", 14, 1, "LK108"),
            ("08_Autoencoder/4_Convolutional_Variational_Autoencoder.ipynb", 14, 4, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_catcon.ipynb", 20, 36, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_catcon.ipynb", 20, 37, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_catcon.ipynb", 20, 74, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_onlycat.ipynb", 20, 33, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_onlycat.ipynb", 20, 47, "LK103"),
            ("09_GAN/2_InfoGAN/infogan_onlycat.ipynb", 20, 48, "LK103"),
        ],
    ),
    Repo(
        "hunkim/PyTorchZeroToAll",
        "e5a260fac0b4ff1e2ec434fc6f0d962ac97fc289",
        [
            ("06_logistic_regression.py", 0, 44, "LK103"),
            ("07_diabets_logistic.py", 0, 50, "LK103"),
            ("08_2_dataset_loade_logistic.py", 0, 77, "LK103"),
            ("10_1_cnn_mnist.py", 0, 80, "LK108"),
            ("11_1_toy_inception_mnist.py", 0, 118, "LK108"),
        ],
    ),
    Repo(
        "L1aoXingyu/pytorch-beginner",
        "a57dd7ea35c9965a41f4963dee62d38884f92a65",
        [
            ("08-AutoEncoder/Variational_autoencoder.py", 0, 75, "LK108"),
            ("09-Generative Adversarial network/conv_gan.py", 0, 120, "LK103"),
            ("09-Generative Adversarial network/conv_gan.py", 0, 127, "LK103"),
            ("09-Generative Adversarial network/conv_gan.py", 0, 141, "LK103"),
            ("09-Generative Adversarial network/simple_Gan.py", 0, 90, "LK103"),
            ("09-Generative Adversarial network/simple_Gan.py", 0, 97, "LK103"),
            ("09-Generative Adversarial network/simple_Gan.py", 0, 111, "LK103"),
        ],
    ),
    Repo(
        "lyeoni/pytorch-mnist-GAN",
        "cc1ffdb3da2c594a8903e4833fbe66709c0c8dcd",
        [
            ("pytorch-mnist-GAN.ipynb", 8, 10, "LK103"),
            ("pytorch-mnist-GAN.ipynb", 8, 18, "LK103"),
            ("pytorch-mnist-GAN.ipynb", 9, 10, "LK103"),
        ],
    ),
    Repo(
        "MorvanZhou/PyTorch-Tutorial",
        "dbe154a9e56635e51c6b0c2ccea8ae36cfb585a7",
        [
            ("tutorial-contents-notebooks/406_GAN.ipynb", 7, 9, "LK113", 2),
            ("tutorial-contents-notebooks/406_GAN.ipynb", 7, 10, "LK113"),
            ("tutorial-contents-notebooks/406_GAN.ipynb", 8, 12, "LK113"),
            ("tutorial-contents-notebooks/406_GAN.ipynb", 8, 19, "LK113", 2),
            ("tutorial-contents/406_GAN.py", 0, 62, "LK113"),
            ("tutorial-contents/406_GAN.py", 0, 69, "LK113", 2),
            ("tutorial-contents/406_conditional_GAN.py", 0, 71, "LK113"),
            ("tutorial-contents/406_conditional_GAN.py", 0, 72, "LK113"),
        ],
    ),
    Repo(
        "mrdbourke/pytorch-deep-learning",
        "baa27b691617461c173ecf3439793cd8cde74e13",
        [
            ("03_pytorch_computer_vision.ipynb", 43, 24, "LK111"),
            ("03_pytorch_computer_vision.ipynb", 58, 18, "LK111"),
            ("docs/03_pytorch_computer_vision.ipynb", 43, 24, "LK111"),
            ("docs/03_pytorch_computer_vision.ipynb", 58, 17, "LK111"),
            ("extras/pytorch_most_common_errors.ipynb", 50, 20, "LK111"),
            ("extras/pytorch_most_common_errors.ipynb", 55, 20, "LK111"),
            ("extras/pytorch_most_common_errors.ipynb", 58, 24, "LK111"),
            ("extras/solutions/03_pytorch_computer_vision_exercise_solutions.ipynb", 38, 28, "LK111"),
            ("extras/solutions/03_pytorch_computer_vision_exercise_solutions.ipynb", 39, 29, "LK111"),
            ("extras/solutions/03_pytorch_computer_vision_exercise_solutions.ipynb", 59, 21, "LK111"),
            ("video_notebooks/03_pytorch_computer_vision_video.ipynb", 38, 24, "LK111"),
            ("video_notebooks/03_pytorch_computer_vision_video.ipynb", 51, 23, "LK111"),
        ],
    ),
    Repo(
        "omerbsezer/Fast-Pytorch",
        "6f60db9470dad61a22b0e00ae952e21861cca427",
        [
            ("Learning_Pytorch/ChatBot.ipynb", 39, 6, "LK113"),
            ("Learning_Pytorch/DCGAN.ipynb", 13, 27, "LK103"),
            ("Learning_Pytorch/DCGAN.ipynb", 13, 41, "LK103"),
            ("Learning_Pytorch/DCGAN.ipynb", 13, 58, "LK103"),
            ("Learning_Pytorch/MLP_1class_BinaryCrossEntropyLoss.ipynb", 17, 2, "LK108"),
            ("Learning_Pytorch/MLP_1class_BinaryCrossEntropyLoss.ipynb", 18, 8, "LK103"),
            ("Learning_Pytorch/MLP_1class_BinaryCrossEntropyLoss.ipynb", 19, 8, "LK103"),
        ],
    ),
    Repo(
        "pytorch/examples",
        "77f55b912142e11fcfdf5b530231fb9c52f181e8",
        [
            ("dcgan/main.py", 0, 235, "LK103"),
            ("dcgan/main.py", 0, 244, "LK103"),
            ("dcgan/main.py", 0, 256, "LK103"),
            ("distributed/rpc/batch/parameter_server.py", 0, 91, "LK107"),
            ("distributed/rpc/pipeline/main.py", 0, 242, "LK107"),
            ("distributed/tensor_parallelism/fsdp_tp_example.py", 0, 171, "LK110"),
            ("distributed/tensor_parallelism/sequence_parallel_example.py", 0, 106, "LK110"),
            ("distributed/tensor_parallelism/tensor_parallel_example.py", 0, 120, "LK110"),
            ("siamese_network/main.py", 0, 200, "LK103"),
            ("siamese_network/main.py", 0, 223, "LK103"),
            ("vae/main.py", 0, 81, "LK103"),
        ],
    ),
    Repo(
        "rasbt/deeplearning-models",
        "18e046926551378cd691fd871dda0f21dcd272ab",
        [
            ("pytorch_ipynb/autoencoder/ae-basic-with-rf.ipynb", 11, 10, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-basic.ipynb", 11, 10, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-cnn-cvae.ipynb", 12, 31, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-cnn-cvae_no-out-concat.ipynb", 12, 34, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-conv-var.ipynb", 12, 15, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-cvae.ipynb", 12, 18, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-cvae_no-out-concat.ipynb", 12, 21, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-deconv-nopool.ipynb", 12, 10, "LK103"),
            ("pytorch_ipynb/autoencoder/ae-var.ipynb", 12, 14, "LK103"),
            ("pytorch_ipynb/basic-ml/logistic-regression.ipynb", 25, 19, "LK103"),
            ("pytorch_ipynb/basic-ml/logistic-regression.ipynb", 25, 31, "LK103"),
            ("pytorch_ipynb/gan/dcgan-celeba.ipynb", 26, 25, "LK103"),
            ("pytorch_ipynb/gan/dcgan-celeba.ipynb", 26, 33, "LK103"),
            ("pytorch_ipynb/gan/dcgan-celeba.ipynb", 26, 49, "LK103"),
            ("pytorch_ipynb/gan/gan.ipynb", 14, 33, "LK103"),
            ("pytorch_ipynb/gan/gan.ipynb", 14, 44, "LK103"),
            ("pytorch_ipynb/gan/gan.ipynb", 14, 47, "LK103"),
            ("pytorch_ipynb/lightning/lightning-mlp-best-model.ipynb", 7, 30, "LK101"),
            ("pytorch_ipynb/lightning/lightning-mlp-best-model.ipynb", 7, 43, "LK101"),
            ("pytorch_ipynb/lightning/lightning-mlp-best-model.ipynb", 7, 56, "LK101"),
            ("pytorch_ipynb/lightning/lightning-mlp.ipynb", 6, 30, "LK101"),
            ("pytorch_ipynb/lightning/lightning-mlp.ipynb", 6, 43, "LK101"),
            ("pytorch_ipynb/lightning/lightning-mlp.ipynb", 6, 56, "LK101"),
            ("pytorch_ipynb/tricks/cyclical-learning-rate.ipynb", 39, 49, "LK111"),
            ("pytorch_ipynb/tricks/cyclical-learning-rate.ipynb", 43, 49, "LK111"),
            ("pytorch_ipynb/tricks/cyclical-learning-rate.ipynb", 46, 50, "LK111"),
        ],
    ),
    Repo(
        "sksq96/pytorch-vae",
        "14ce22796fe0ee5120f4f1cdb1dbaf515e72559d",
        [
            ("vae-cnn.ipynb", 12, 2, "LK103"),
            ("vae-cnn.ipynb", 12, 2, "LK108"),
            ("vae.ipynb", 11, 2, "LK103"),
            ("vae.ipynb", 11, 2, "LK108"),
        ],
    ),
    Repo(
        "udacity/deep-learning-v2-pytorch",
        "c9404fc86181fc3f0906b368697268257f348535",
        [
            ("sentiment-rnn/Sentiment_RNN_Solution.ipynb", 34, 37, "LK103"),
            ("sentiment-rnn/Sentiment_RNN_Solution.ipynb", 34, 59, "LK103"),
            ("sentiment-rnn/Sentiment_RNN_Solution.ipynb", 36, 24, "LK103"),
            ("word2vec-embeddings/Negative_Sampling_Exercise.ipynb", 25, 17, "LK113"),
            ("word2vec-embeddings/Negative_Sampling_Exercise.ipynb", 25, 21, "LK113"),
            ("word2vec-embeddings/Negative_Sampling_Solution.ipynb", 25, 17, "LK113"),
            ("word2vec-embeddings/Negative_Sampling_Solution.ipynb", 25, 21, "LK113"),
        ],
    ),
    Repo(
        "yunjey/pytorch-tutorial",
        "0500d3df5a2a8080ccfccbc00aca0eacc21818db",
        [
            ("tutorials/03-advanced/generative_adversarial_network/main.py", 0, 97, "LK103"),
            ("tutorials/03-advanced/generative_adversarial_network/main.py", 0, 105, "LK103"),
            ("tutorials/03-advanced/generative_adversarial_network/main.py", 0, 125, "LK103"),
            ("tutorials/03-advanced/variational_autoencoder/main.py", 0, 79, "LK103"),
            ("tutorials/03-advanced/variational_autoencoder/main.py", 0, 79, "LK108"),
        ],
    ),
    Repo(
        "znxlwm/pytorch-generative-model-collections",
        "0d183bb5ea2fbe069e1c6806c4a9a1fd8e81656f",
        [
            ("ACGAN.py", 0, 171, "LK103"),
            ("ACGAN.py", 0, 176, "LK103"),
            ("ACGAN.py", 0, 191, "LK103"),
            ("CGAN.py", 0, 164, "LK103"),
            ("CGAN.py", 0, 168, "LK103"),
            ("CGAN.py", 0, 181, "LK103"),
            ("DRAGAN.py", 0, 145, "LK103"),
            ("DRAGAN.py", 0, 149, "LK103"),
            ("DRAGAN.py", 0, 183, "LK103"),
            ("GAN.py", 0, 145, "LK103"),
            ("GAN.py", 0, 149, "LK103"),
            ("GAN.py", 0, 162, "LK103"),
            ("infoGAN.py", 0, 200, "LK103"),
            ("infoGAN.py", 0, 204, "LK103"),
            ("infoGAN.py", 0, 218, "LK103"),
        ],
    ),
]

#: large notebooks the audit was made without (not in the snapshots it read): left out of the
#: counts, also when a full clone has them
NOT_AUDITED = {
    "mrdbourke/pytorch-deep-learning": (
        "extras/solutions/07_pytorch_experiment_tracking_exercise_solutions.ipynb",
        "video_notebooks/07_pytorch_experiment_tracking_video.ipynb",
    ),
    "rasbt/deeplearning-models": ("pytorch_ipynb/gan/dcgan-cats-and-dogs.ipynb",),
    "udacity/deep-learning-v2-pytorch": ("cycle-gan/CycleGAN_Solution.ipynb",),
}

#: known misses, with the reason (printed in the report when they are still missed)
WHY_MISSED = {
    "implementations/cluster_gan/clustergan.py": "self.model gets nn.Sigmoid() only under `if not self.wass`; "
    "BCE runs only in the non-Wasserstein branch: path-sensitive, not followed",
    "vae-cnn.ipynb": "the notebook calls `vae(images)` but never assigns `vae` (its model is `model = VAE(...)`)",
}

_MAGIC = re.compile(r"^\s*([%!]|\w+\s*=\s*[%!]|[\w.]+\?{1,2}\s*$)")


def _expected(repo: Repo) -> Counter[tuple[str, int, int, str]]:
    out: Counter[tuple[str, int, int, str]] = Counter()
    for site in repo.mistakes:
        path, cell, line, code = site[:4]
        out[(path, cell, line, code)] += site[4] if len(site) > 4 else 1
    return out


def _compiles(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<audit>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _cell_compiles(path: Path, cell: int) -> bool:
    """Whether a notebook cell compiles once IPython's own syntax (magics, shell escapes) is taken
    out -- independently of the linter's reading of cells."""
    data = json.loads(path.read_text(encoding="utf-8"))
    src = data["cells"][cell - 1]["source"]
    text = "".join(src) if isinstance(src, list) else src
    lines = text.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        lines = lines[1:]
    lines = ["pass" if _MAGIC.match(ln) else ln for ln in lines]
    first = next((ln for ln in lines if ln.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    body = "\n".join(ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines)
    return _compiles(body)


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], input=stdin, capture_output=True, check=True
    ).stdout


def _checkout_from_mirror(repo: Repo, mirrors: Path, folder: Path) -> None:
    """Write the ``.py`` and ``.ipynb`` files of ``repo.commit`` from a git directory into ``folder``."""
    git_dir = mirrors / repo.name.replace("/", "+") / "repo"
    if (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    if not git_dir.is_dir():
        raise SystemExit(f"{git_dir}: no git directory of {repo.name}; fetch it, or clone it into --root")
    blobs = []
    for entry in _git(git_dir, "ls-tree", "-r", "-z", repo.commit).split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        name = path.decode()
        if kind == "blob" and mode != "120000" and name.endswith((".py", ".ipynb")):
            blobs.append((sha, name))
    # one `git cat-file --batch` for the whole tree: "<sha> blob <size>\n<bytes>\n", or "<sha> missing\n"
    out = _git(git_dir, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha, _ in blobs).encode())
    pos = 0
    for _, name in blobs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if header[-1] == b"missing":
            print(f"{repo.name}: {name} is not in the mirror (a large file); skipped")
            pos = end + 1
            continue
        size = int(header[2])
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(out[end + 1 : end + 1 + size])
        pos = end + 2 + size


def audit(root: Path, jobs: int, mirrors: Path | None = None) -> list[dict[str, object]]:
    rows = []
    for repo in REPOS:
        folder = root / repo.name.replace("/", "+")
        if not folder.is_dir() and mirrors is not None:
            _checkout_from_mirror(repo, mirrors, folder)
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no checkout; clone {repo.name} at {repo.commit} there (see --help)")
        result = lint_paths([str(folder)], jobs=jobs)
        reported: Counter[tuple[str, int, int, str]] = Counter()
        lk000_valid = []
        for f in result.findings:
            rel = Path(f.path).relative_to(folder).as_posix()
            if rel in NOT_AUDITED.get(repo.name, ()):
                continue
            if f.code == "LK000":
                file = Path(f.path)
                valid = (
                    _cell_compiles(file, f.cell)
                    if f.cell is not None
                    else file.suffix == ".py" and _compiles(file.read_text(encoding="utf-8", errors="replace"))
                )
                if valid:
                    lk000_valid.append(f"{rel}:{f.cell or ''}:{f.line}")
                continue
            reported[(rel, f.cell or 0, f.line, f.code)] += 1
        expected = _expected(repo)
        found = expected & reported
        missed = expected - reported
        false_positives = reported - expected
        rows.append(
            {
                "repo": repo.name,
                "commit": repo.commit,
                "files": result.files,
                "real": sum(expected.values()),
                "found": sum(found.values()),
                "missed": [
                    f"{p}{f' cell {c}' if c else ''}:{ln} {code} ({WHY_MISSED.get(p, 'not followed')})"
                    for (p, c, ln, code), n in sorted(missed.items())
                    for _ in range(n)
                ],
                "false_positives": [
                    f"{p}{f' cell {c}' if c else ''}:{ln} {code}"
                    for (p, c, ln, code), n in sorted(false_positives.items())
                    for _ in range(n)
                ],
                "lk000_on_valid_python": lk000_valid,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding the checkouts as owner+name")
    parser.add_argument(
        "--mirrors", type=Path, help="folder of git directories (owner+name/repo) to write missing checkouts from"
    )
    parser.add_argument("-j", "--jobs", type=int, default=2, help="lint processes (default 2)")
    args = parser.parse_args()
    rows = audit(args.root, args.jobs, args.mirrors)
    print(f"{'repository':<50} {'files':>6} {'real':>5} {'found':>6} {'missed':>7} {'false +':>8}")
    for r in rows:
        print(
            f"{r['repo']:<50} {r['files']:>6} {r['real']:>5} {r['found']:>6} {len(r['missed']):>7}"
            f" {len(r['false_positives']):>8}"
        )
    real = sum(int(r["real"]) for r in rows)
    found = sum(int(r["found"]) for r in rows)
    fp = sum(len(r["false_positives"]) for r in rows)
    lk000 = sum(len(r["lk000_on_valid_python"]) for r in rows)
    print(f"{'total':<50} {sum(int(r['files']) for r in rows):>6} {real:>5} {found:>6} {real - found:>7} {fp:>8}")
    recall = found / real if real else 1.0
    precision = found / (found + fp) if found + fp else 1.0
    print(f"recall {recall:.3f}   precision {precision:.3f}   LK000 on a file or cell Python compiles: {lk000}")
    for r in rows:
        for line in r["missed"]:
            print(f"missed   {r['repo']}: {line}")
        for line in r["false_positives"]:
            print(f"false +  {r['repo']}: {line}")
        for line in r["lk000_on_valid_python"]:
            print(f"LK000 on valid Python  {r['repo']}: {line}")
    out = ROOT / "benchmarks" / "results" / "audit_lint_recall.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"recall": recall, "precision": precision, "lk000_on_valid_python": lk000}
    out.write_text(json.dumps({"summary": summary, "repos": rows}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
