"""Write the learning-path notebooks (``notebooks/*.ipynb``) from the cell lists below.

Each notebook follows one learn page: it computes the page's worked example with cnnlab's own
functions, then sets exercises. Some ask for a prediction before the cell that computes it; some
(:func:`code_exercise`) ask for code, graded by ``cnnlab.teach.exercises`` against the NumPy engine.
An exercise is a cell ``answer_N = None  # your value`` followed by a
cell that checks it against a value computed by cnnlab (it prints "not answered yet" while the
answer is None, "correct" or "not quite" otherwise), so a notebook runs top to bottom before and
after it is solved. The correct answers live in each notebook's metadata (``cnnlab.answers``) only
for the test, which runs every notebook with every answer filled in (the coding exercises' reference
solutions are in tests/teach/exercise_solutions.py, not in the notebooks).

Usage (from the repository root): ``python notebooks/build_notebooks.py``
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def check(n: int, expected: str, tol: str = "1e-6") -> str:
    """The cell that checks ``answer_n`` against ``expected`` (a Python expression)."""
    return (
        f"expected = {expected}\n"
        f"if answer_{n} is None:\n"
        f"    print('exercise {n}: not answered yet')\n"
        f"elif abs(float(answer_{n}) - float(expected)) <= {tol} * max(1.0, abs(float(expected))):\n"
        f"    print('exercise {n}: correct')\n"
        f"else:\n"
        f"    print('exercise {n}: not quite, try again')"
    )


def code_exercise(name: str, task: str, signature: str) -> list[tuple[str, str]]:
    """Three cells: the task, a stub the student replaces (first line ``# exercise: NAME``), and the grader,
    which runs the function on inputs of its own and compares it with the NumPy engine's reference
    (``cnnlab.teach.exercises``), so the expected numbers are never shown."""
    stub = f"# exercise: {name}\nimport numpy as np  # noqa: F401 (for your code)\n\n\n{signature}\n"
    stub += "    raise NotImplementedError  # your code here"
    grader = f"from cnnlab.teach.exercises import grade\n\ngrade({name!r}, {name})"
    return [("md", task), ("code", stub), ("code", grader)]


NOTEBOOKS: dict[str, dict] = {
    "00-why-cnns": {
        "answers": {"answer_1": 3.034, "answer_2": 0.0},
        "cells": [
            (
                "md",
                "# 0. Why convolutions?\nA dense network against a CNN on MNIST, and what a shift of the input "
                "does to each stage ([page 0](../docs/learn/00-why-cnns.md)).\n\n**Predict first (exercise 1).** "
                "The dense network is 784 -> 512 -> 256 -> 10; the CNN has two 3x3 convs (32, 64 filters), one 2x2 "
                "pool and a dense layer of 128. How many times as many parameters as the dense network has the "
                "CNN? Write your guess, then run the cells below.",
            ),
            ("code", "answer_1 = None  # your value"),
            (
                "code",
                "from cnnlab.teach.why_cnn import param_counts, shift_experiment\n"
                "counts = param_counts()\nfor name, c in counts.items():\n    print(name, c)",
            ),
            ("code", check(1, "counts['mnist_cnn']['total'] / counts['plain_mlp']['total']", tol="1e-3")),
            (
                "md",
                "**Predict first (exercise 2).** Shift the input by (3, 2) pixels, convolve, then shift the map "
                "back by (-3, -2). What is the largest difference from the map of the unshifted input?",
            ),
            ("code", "answer_2 = None  # your value"),
            (
                "code",
                "e = shift_experiment()\nfor stage, change in e['changes'].items():\n"
                "    print(f'{stage:<42} {change:.3g}')",
            ),
            ("code", check(2, "e['changes']['conv output, shifted back']")),
        ],
    },
    "21-diagnosing-training": {
        "answers": {"answer_1": 2.302585, "answer_2": 10, "answer_3": 0.4965},
        "cells": [
            (
                "md",
                "# 21. Diagnosing training\n[Page 21](../docs/learn/21-diagnosing-training.md): learning curves, "
                "early stopping, L1/L2, the initial loss and one batch overfitted, on small NumPy networks.\n\n"
                "**Predict first (exercise 1).** An untrained 10-class classifier with small logits: what "
                "cross-entropy do you expect on its first batch?",
            ),
            ("code", "answer_1 = None  # your value"),
            (
                "code",
                "from cnnlab.teach.diagnose import diagnose_example, diagnose_text, early_stop, sgd_step\n"
                "r = diagnose_example()\nprint(diagnose_text(r))",
            ),
            ("code", check(1, "r.values['ln_k']", tol="1e-3")),
            (
                "md",
                "**Exercise 2.** With patience 5, at which epoch does early stopping end this validation-loss "
                "curve? `[1.0, 0.8, 0.7, 0.72, 0.69, 0.71, 0.73, 0.74, 0.75, 0.76, 0.77, 0.78, 0.79, 0.8, 0.81, "
                "0.82, 0.83]` (epochs count from 1)",
            ),
            ("code", "answer_2 = None  # your value"),
            (
                "code",
                check(
                    2,
                    "early_stop([1.0, 0.8, 0.7, 0.72, 0.69, 0.71, 0.73, 0.74, 0.75, 0.76, 0.77, 0.78, 0.79, "
                    "0.8, 0.81, 0.82, 0.83])[1]",
                ),
            ),
            ("md", "**Exercise 3.** One SGD step from w = 0.5, gradient 0.3, lr 0.01 with torch's `weight_decay=0.1`?"),
            ("code", "answer_3 = None  # your value"),
            ("code", check(3, "sgd_step()['torch_weight_decay']")),
        ],
    },
    "22-roc-and-imbalance": {
        "answers": {"answer_1": 0.75, "answer_2": 0.01},
        "cells": [
            ("md", "# 22. ROC, AUC and imbalance\n[Page 22](../docs/learn/22-roc-and-imbalance.md)."),
            (
                "code",
                "import numpy as np\nfrom cnnlab.teach.roc import roc_example, roc_text, pairwise_auc, focal_loss\n"
                "r = roc_example()\nprint(roc_text(r))",
            ),
            (
                "md",
                "**Exercise 1.** Two positives score 0.9 and 0.4, two negatives 0.5 and 0.1. Count the "
                "(positive, negative) pairs in the right order: what is the AUC?",
            ),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "pairwise_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1]))")),
            (
                "md",
                "**Exercise 2.** With gamma = 2, what fraction of its cross-entropy does the focal loss keep "
                "for an example whose true class has probability 0.9?",
            ),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "focal_loss(0.9, 2.0) / focal_loss(0.9, 0.0)", tol="1e-6")),
        ],
    },
    "01-convolution": {
        "answers": {"answer_1": 180, "answer_2": 3, "answer_3": -6},
        "cells": [
            (
                "md",
                "# 1. Convolution\nThe worked example of [page 1](../docs/learn/01-convolution.md): a filter slides "
                "over an image; each output is the sum of the element-wise products under it.",
            ),
            (
                "code",
                "import numpy as np\nfrom cnnlab.teach.conv import BINARY_IMAGE, X_FILTER, EDGE_IMAGE, "
                "VERTICAL_EDGE, conv2d_steps\nfrom cnnlab.numpy_engine import reference as R\n"
                "r = conv2d_steps(BINARY_IMAGE, X_FILTER)\nprint(r['formula'])\nprint(r['output'])",
            ),
            (
                "code",
                "# the same map from the plain-loop reference, on a batch of one image with one filter\n"
                "x = np.array(BINARY_IMAGE, float)[None, None]\nw = np.array(X_FILTER, float)[None, None]\n"
                "assert (R.conv2d(x, w)[0, 0] == r['output']).all()\nR.conv2d(x, w)[0, 0]",
            ),
            (
                "md",
                "**Exercise 1.** The edge image has a dark region (10) and a bright block (100). Compute by hand "
                "the output at row 1, column 0 of the vertical-edge filter `[[-1,0,1]]*3` on it.",
            ),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "conv2d_steps(EDGE_IMAGE, VERTICAL_EDGE)['output'][1, 0]")),
            ("md", "**Exercise 2.** With padding 1 and stride 2, how many outputs does a 5-pixel row give?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "conv2d_steps(BINARY_IMAGE, X_FILTER, stride=2, padding=1)['output'].shape[1]")),
            (
                "md",
                "**Exercise 3.** Predict first: the kernel `[[1, 0, -1]] * 3` on the numbers 1..9 written row by "
                "row. What single number comes out?",
            ),
            ("code", "answer_3 = None  # your value"),
            (
                "code",
                "from cnnlab.teach.conv import LEFT_MINUS_RIGHT, NUMBERS\n\n"
                + check(3, "conv2d_steps(NUMBERS, LEFT_MINUS_RIGHT)['output'][0, 0]"),
            ),
            *code_exercise(
                "conv2d_forward",
                "**Exercise 4 (code).** Write the forward pass of a convolution layer: `x` is (B, C, H, W), `w` is "
                "(Co, C, k, k), `b` is (Co,); pad `x` with `padding` zeros on each side, slide every filter with "
                "`stride`, and return (B, Co, Ho, Wo). The next cell grades it against cnnlab's reference on "
                "inputs you do not see.",
                "def conv2d_forward(x, w, b, stride, padding):\n"
                "    # (B, C, H, W), (Co, C, k, k), (Co,) -> (B, Co, Ho, Wo)",
            ),
        ],
    },
    "04-pooling": {
        "answers": {"answer_1": 6, "answer_2": 3.9375},
        "cells": [
            ("md", "# 4. Pooling\nMax and average pooling of a 4x4 matrix ([page 4](../docs/learn/04-pooling.md))."),
            (
                "code",
                "from cnnlab.teach.conv import MIXED_POOL, pool2d\nimport numpy as np\n"
                "print(pool2d(MIXED_POOL, 2, mode='max'))\nprint(pool2d(MIXED_POOL, 2, mode='avg'))",
            ),
            ("md", "**Exercise 1.** What is the max of the top-left 2x2 window of the mixed matrix?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "pool2d(MIXED_POOL, 2, mode='max')[0, 0]")),
            ("md", "**Exercise 2.** What is its global average (the mean of all 16 values)?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "np.mean(MIXED_POOL)")),
            *code_exercise(
                "maxpool2d_backward",
                "**Exercise 3 (code).** Write the backward pass of k x k max pooling with stride k: given the "
                "upstream gradient `dy` (B, C, H/k, W/k) and the input `x` (B, C, H, W), return `dx` with the "
                "shape of `x`. Where does each window's gradient go?",
                "def maxpool2d_backward(dy, x, k):\n    # (B, C, H/k, W/k), (B, C, H, W) -> dx (B, C, H, W)",
            ),
        ],
    },
    "06-softmax-cross-entropy": {
        "answers": {"answer_1": 0.1698, "answer_2": 2.302585},
        "cells": [
            ("md", "# 6. Softmax and cross-entropy\n[Page 6](../docs/learn/06-softmax-cross-entropy.md)."),
            (
                "code",
                "from cnnlab.teach.numbers import softmax, cross_entropy\nimport numpy as np\n"
                "z = [2.5, 1.0, 0.1]\nprint(softmax(z))\nprint([cross_entropy(z, k) for k in range(3)])",
            ),
            ("md", "**Exercise 1.** The probability of class 1 for logits `[2.5, 1.0, 0.1]` (4 decimals)."),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "softmax([2.5, 1.0, 0.1])[1]", tol="1e-3")),
            ("md", "**Exercise 2.** The loss when the true class got probability 0.10."),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "-np.log(0.10)", tol="1e-4")),
            *code_exercise(
                "softmax_cross_entropy_grad",
                "**Exercise 3 (code).** Write the gradient of the mean cross-entropy of a batch with respect to "
                "its logits: `logits` is (N, K), `labels` (N,) integers. (Derive it first: what is "
                "d(-log softmax(z)_y)/dz_j?)",
                "def softmax_cross_entropy_grad(logits, labels):\n    # (N, K), (N,) -> d mean_loss / d logits (N, K)",
            ),
        ],
    },
    "07-backprop": {
        "answers": {"answer_1": 2.5, "answer_2": -0.5},
        "cells": [
            (
                "md",
                "# 7. Backpropagation by hand\nConv 3x3 then max pool 2x2 (stride 1) on the 5x5 example "
                "([backprop page](../docs/learn/backprop.md)).",
            ),
            (
                "code",
                "from cnnlab.teach.backprop import backprop_example, backprop_text\n"
                "r = backprop_example()\nprint(backprop_text(r))",
            ),
            ("md", "**Exercise 1.** The bias gradient `db` is the sum of `dL/dy`. What is it?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "r.values['db']")),
            ("md", "**Exercise 2.** `y[1,1]` wins two overlapping pooling windows. What gradient does it receive?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "r.values['dy'][1, 1]")),
        ],
    },
    "08-optimizers": {
        "answers": {"answer_1": 0.3, "answer_2": 0.03},
        "cells": [
            ("md", "# 8. One Adam step\n[Page 8](../docs/learn/08-optimizers.md): Adam's moments, step by step."),
            (
                "code",
                "from cnnlab.teach.adam import adam_steps, adam_steps_text\n"
                "r = adam_steps('quadratic')\nprint(adam_steps_text(r))",
            ),
            ("md", "**Exercise 1.** How far does Adam move each coordinate on its first step (lr 0.3)?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "abs(r.values['steps'][0]['step'][0])")),
            ("md", "**Exercise 2.** And with the slipped second moment `(1 - beta1) g^2`?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "abs(r.values['slipped_first_step'][0])")),
        ],
    },
    "02-output-size": {
        "answers": {"answer_1": 15, "answer_2": 22},
        "cells": [
            (
                "md",
                "# 2. Output size and receptive field\n[Page 2](../docs/learn/02-output-size.md): "
                "`out = floor((n + 2p - k) / s) + 1`; the receptive field grows by `(k - 1) * jump`.",
            ),
            (
                "code",
                "from cnnlab.arithmetic import conv_output_size\nfrom cnnlab.teach.rf import "
                "receptive_field_table, SEED_CNN_LAYERS\nprint(conv_output_size(32, 3, 1, 1))\n"
                "for row in receptive_field_table(SEED_CNN_LAYERS, 32):\n    print(row)",
            ),
            ("md", "**Exercise 1.** A 3x3 conv with stride 2 and no padding on a 32x32 input: output size?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "conv_output_size(32, 3, 2, 0)")),
            ("md", "**Exercise 2.** The receptive field after the third conv-pool block above?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "receptive_field_table(SEED_CNN_LAYERS, 32)[-1]['rf']")),
        ],
    },
    "03-parameters": {
        "answers": {"answer_1": 1792, "answer_2": 221184},
        "cells": [
            (
                "md",
                "# 3. Parameters\n[Page 3](../docs/learn/03-parameters.md): a conv layer has "
                "`(k*k*C_in + 1) * C_out` parameters.",
            ),
            (
                "code",
                "from cnnlab.arithmetic import conv_params\nfrom cnnlab.teach.numbers import "
                "bottleneck_costs\nprint(conv_params(1, 16, 3))\nprint(bottleneck_costs(32, 256, 64, 128, 5))",
            ),
            ("md", "**Exercise 1.** Parameters of a 3x3 conv from 3 to 64 channels, with bias?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "conv_params(3, 64, 3)")),
            ("md", "**Exercise 2.** Weights (no bias) of a 1x1 conv 256 -> 64 followed by a 5x5 conv 64 -> 128?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "bottleneck_costs(32, 256, 64, 128, 5)['bottleneck_params']")),
        ],
    },
    "05-activations": {
        "answers": {"answer_1": 0.25, "answer_2": 0.0},
        "cells": [
            ("md", "# 5. Activations\n[Page 5](../docs/learn/05-activations.md): each function and its derivative."),
            (
                "code",
                "import numpy as np\nfrom cnnlab.teach.activations import activation\n"
                "x = np.linspace(-4, 4, 9)\nfor name in ['relu', 'sigmoid', 'tanh', 'swish']:\n"
                "    f, df = activation(name)\n    print(name, np.round(f(x), 3), np.round(df(x), 3))",
            ),
            ("md", "**Exercise 1.** The largest value of sigmoid's derivative (why deep sigmoid nets vanish)?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "activation('sigmoid')[1](np.linspace(-5, 5, 1001)).max()", tol="1e-4")),
            ("md", "**Exercise 2.** ReLU's derivative at x = -2?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "activation('relu')[1](np.array(-2.0))")),
        ],
    },
    "09-batchnorm-dropout": {
        "answers": {"answer_1": 3.0, "answer_2": 2.0, "answer_4": 0.5},
        "cells": [
            ("md", "# 9. Batch norm and dropout\n[Page 9](../docs/learn/09-batchnorm-dropout.md)."),
            (
                "code",
                "from cnnlab.teach.numbers import batchnorm_example, batchnorm_text\n"
                "r = batchnorm_example()\nprint(batchnorm_text(r))",
            ),
            ("md", "**Exercise 1.** The batch mean of channel 0 (values 1, 2, 3, 6)?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "r.values['batch_mean'][0]")),
            ("md", "**Exercise 2.** With dropout p = 0.5, what does a kept unit of value 1 become?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "r.values['dropout_out'].max()")),
            *code_exercise(
                "batchnorm_forward",
                "**Exercise 3 (code).** Write batch norm's forward pass in training mode for a (N, C, H, W) "
                "input: normalise each channel with the mean and variance of the batch, then scale by `gamma` "
                "and shift by `beta` (both (C,)).",
                "def batchnorm_forward(x, gamma, beta, eps):\n    # (N, C, H, W), (C,), (C,) -> (N, C, H, W)",
            ),
            (
                "md",
                "**Exercise 4.** The original dropout does not scale during training. With p = 0.5, what does it "
                "output at test time for a unit whose input is 1?",
            ),
            ("code", "answer_4 = None  # your value"),
            ("code", check(4, "r.values['dropout_classic_eval'][0]")),
        ],
    },
    "16-metrics": {
        "answers": {"answer_1": 0.5, "answer_2": 0.75, "answer_3": 0.9467},
        "cells": [
            ("md", "# 16. Metrics by hand\n[Page 16](../docs/learn/16-metrics.md): twelve images, three classes."),
            (
                "code",
                "from cnnlab.teach.metrics import metrics_example, metrics_text\n"
                "r = metrics_example()\nprint(metrics_text(r))",
            ),
            ("md", "**Exercise 1.** Precision of dog: of the images called dog, the share that are dogs?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "r.values['metrics']['per_class'][1]['precision']")),
            ("md", "**Exercise 2.** Recall of dog: of the dogs, the share found?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "r.values['metrics']['per_class'][1]['recall']")),
            (
                "md",
                "**Exercise 3.** A 3-class confusion matrix has 45, 48 and 49 on its diagonal and 150 images in all "
                "(50 a class). Its accuracy? And before you compute it: what is its mean recall?",
            ),
            ("code", "answer_3 = None  # your value"),
            (
                "code",
                "from cnnlab.teach.metrics import seed_examples\n\n"
                + check(3, "seed_examples()['metrics']['accuracy']", tol="1e-4"),
            ),
        ],
    },
    "12-schedules": {
        "answers": {"answer_1": 0.01, "answer_2": 0.05},
        "cells": [
            (
                "md",
                "# 12. Learning-rate schedules\n[Page 12](../docs/learn/12-schedules.md): the engine's own "
                "schedules, LR 0.1, 30 epochs of 10 steps.",
            ),
            (
                "code",
                "from cnnlab.teach.schedules import schedule_curves\n"
                "curves = schedule_curves(['step', 'cosine'])\n"
                "print([round(lr, 4) for lr in curves['step']['lr'][::50]])\n"
                "print([round(lr, 4) for lr in curves['cosine']['lr'][::50]])",
            ),
            ("md", "**Exercise 1.** Step decay (x0.1 every 10 epochs): the LR at the start of epoch 10 (step 100)?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "curves['step']['lr'][100]")),
            ("md", "**Exercise 2.** Cosine from 0.1 to 0: the LR halfway (step 150)?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "curves['cosine']['lr'][150]", tol="1e-3")),
        ],
    },
    "13-initialisation": {
        "answers": {"answer_1": 0.08838834764831845, "answer_2": 0.0625},
        "cells": [
            (
                "md",
                "# 13. Initialisation\n[Page 13](../docs/learn/13-initialisation.md): the spread of activations "
                "layer by layer.",
            ),
            (
                "code",
                "import math\n\nfrom cnnlab.teach.initialisation import layer_statistics\n"
                "for scheme in ['normal 0.01', 'xavier_normal', 'he_normal']:\n"
                "    print(scheme, [round(s, 4) for s in layer_statistics(scheme, 'relu')['activation_std']])",
            ),
            ("md", "**Exercise 1.** He's std for a layer with 256 inputs, `sqrt(2 / fan_in)`?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "math.sqrt(2 / 256)", tol="1e-3")),
            ("md", "**Exercise 2.** Xavier's std for 256 inputs and 256 outputs, `sqrt(2 / (fan_in + fan_out))`?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "math.sqrt(2 / 512)", tol="1e-3")),
        ],
    },
    "14-architectures": {
        "answers": {"answer_1": 1769472, "answer_2": 9.2, "answer_3": 527.8},
        "cells": [
            (
                "md",
                "# 14. Architectures\n[Page 14](../docs/learn/14-architectures.md): the arithmetic behind each "
                "network, numbers from the zoo.",
            ),
            (
                "code",
                "from cnnlab.teach.arch import arch_example, arch_text\n"
                "vgg = arch_example('vgg')\nprint(arch_text(vgg))",
            ),
            ("md", "**Exercise 1.** Weights of three stacked 3x3 convs at C = 256 channels (27 C^2)?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "27 * 256**2")),
            (
                "md",
                "**Exercise 2.** How many times more parameters has AlexNet than GoogLeNet (1 decimal)? "
                "Hint: `arch_text(arch_example('googlenet'))`.",
            ),
            ("code", "answer_2 = None  # your value"),
            (
                "code",
                "from cnnlab.models import create_model\n\n"
                "ratio = sum(p.numel() for p in create_model('alexnet').parameters()) / "
                "sum(p.numel() for p in create_model('googlenet').parameters())\n" + check(2, "round(ratio, 1)"),
            ),
            (
                "md",
                "**Exercise 3.** VGG-16 on ImageNet has 138,357,544 parameters. How many MiB (2^20 bytes) do they "
                "take as 32-bit floats (1 decimal)? (Then compare with `arch_text(arch_example('vgg'))`.)",
            ),
            ("code", "answer_3 = None  # your value"),
            ("code", check(3, "round(138_357_544 * 4 / 2**20, 1)")),
        ],
    },
    "15-normalisation": {
        "answers": {"answer_1": 8, "answer_2": 4},
        "cells": [
            ("md", "# 15. Normalisation layers\n[Page 15](../docs/learn/15-normalisation.md)."),
            (
                "code",
                "from cnnlab.teach.norms import norms_example, norms_text\nr = norms_example()\nprint(norms_text(r))",
            ),
            ("md", "**Exercise 1.** How many sets of statistics does instance norm use on a (2, 4, 2, 2) tensor?"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "r.values['norms']['instance']['sets']")),
            ("md", "**Exercise 2.** And batch norm?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "r.values['norms']['batch']['sets']")),
        ],
    },
    "10-training": {
        "answers": {"answer_1": 9, "answer_2": 0.1321},
        "cells": [
            (
                "md",
                "# 10. Training a model\n[Page 10](../docs/learn/10-training.md): one short, real training run on "
                "the bundled MNIST sample (no download), small enough to finish in seconds: `fast_cnn` "
                "(about 29 k parameters), one epoch over a tenth of its training split: the sample has 6,000 training "
                "images, validation keeps 600 of them, and a tenth of the remaining 5,400 is 540 (the second cell "
                "counts them).",
            ),
            (
                "code",
                "import json\nimport math\nimport cnnlab\n\n"
                "overrides = {'data.train_fraction': 0.1, 'model.kwargs': {'widths': [16, 32, 64]}, "
                "'output.plots': False, 'output.progress': False, 'train.threads': 1, 'data.num_workers': 0}\n"
                "result = cnnlab.train(data='mnist-sample', model='fast_cnn', epochs=1, batch_size=64, out='runs', "
                "overrides=overrides)\n"
                "print(result.run_dir, result.metrics['accuracy'])",
            ),
            (
                "code",
                "# the run folder holds what produced it: config, split, per-epoch history, the model, test metrics\n"
                "print(sorted(p.name for p in result.run_dir.iterdir()))\n"
                "print(result.history[-1])\n"
                "data = json.loads((result.run_dir / 'data.json').read_text())\n"
                "n_train = sum(data['class_counts']['train'])\n"
                "print('train images', n_train, '| mean/std of the training split only:', data['mean'], data['std'])\n"
                "assert result.metrics['accuracy'] > 0.5  # one short epoch already beats chance (0.1) by far",
            ),
            (
                "md",
                "**Exercise 1.** The epoch above showed the network every training image once, in mini-batches of "
                "64. How many optimiser steps was that? (Hint: `n_train` and `math.ceil`.)",
            ),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "math.ceil(n_train / 64)")),
            (
                "md",
                "**Exercise 2.** Normalisation uses the training split's statistics only. What is the mean pixel "
                "value (on [0, 1]) of this run's training images (3 decimals)?",
            ),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "data['mean'][0]", tol="1e-3")),
        ],
    },
    "11-evaluation": {
        "answers": {"answer_1": 0.989, "answer_2": 0.97},
        "cells": [
            (
                "md",
                "# 11. Evaluating a model\n[Page 11](../docs/learn/11-evaluation.md) on `demo:mnist`, the model "
                "shipped with cnnlab (fast_cnn trained on all 60,000 MNIST training images by "
                "`scripts/train_demo_model.py`), scored on the 1,000 MNIST test images bundled with cnnlab.",
            ),
            (
                "code",
                "import numpy as np\nfrom cnnlab.runs.run import open_run\n"
                "from cnnlab.evaluation.metrics import confusion_matrix, per_class_scores, classification_metrics, "
                "format_report\n\n"
                "run = open_run('demo:mnist')\npreds = run.predictions()  # saved test predictions: (1000, 10) probs\n"
                "cm = confusion_matrix(preds.targets, preds.preds, 10)  # rows: true class, columns: predicted\n"
                "print(cm)\nprint(run.meta['demo']['test_full_mnist'])",
            ),
            (
                "code",
                "m = classification_metrics(preds.targets, preds.preds, preds.log_probs(), run.classes)\n"
                "print(format_report(m))\n"
                "assert m['accuracy'] == run.metrics()['accuracy']  # what `cnnlab evaluate demo:mnist` prints",
            ),
            ("md", "**Exercise 1.** Compute the accuracy from the confusion matrix `cm` alone (diagonal / total)."),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "np.trace(cm) / cm.sum()")),
            (
                "md",
                "**Exercise 2.** Precision of class 4: of all images the model called a 4, the share that are 4s "
                "(2 decimals; a column of `cm`).",
            ),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "per_class_scores(cm)['precision'][4]", tol="5e-3")),
        ],
    },
    "17-augmentation": {
        "answers": {"answer_1": 25, "answer_2": 64},
        "cells": [
            (
                "md",
                "# 17. Data augmentation\n[Page 17](../docs/learn/17-augmentation.md): random changes to each "
                "training batch, on the GPU or CPU, as `cnnlab train --augment NAME` applies them.",
            ),
            (
                "code",
                "import numpy as np\nimport torch\nfrom cnnlab.data.datasets import load_dataset\n"
                "from cnnlab.data.augment import AUGMENTATIONS, build_augment, random_crop, cutout\n\n"
                "ds = load_dataset('mnist-sample')\n"
                "x = torch.from_numpy(ds.train_images[:8]).permute(0, 3, 1, 2).float() / 255  # (8, 1, 28, 28)\n"
                "gen = torch.Generator().manual_seed(0)\n"
                "aug = build_augment('affine+erase', channels=1)\ny = aug(x, gen)\n"
                "print(AUGMENTATIONS.names())\nprint(x.shape, '->', y.shape, '| changed pixels:', "
                "float((y != x).float().mean()))\nassert y.shape == x.shape  # augmentation never changes the shape",
            ),
            (
                "md",
                "**Exercise 1.** The `crop` preset of MNIST pads by 2 pixels on each side and cuts a random 28x28 "
                "window back out. How many different windows (shifts) are possible?",
            ),
            ("code", "answer_1 = None  # your value"),
            (
                "code",
                "# count them: one white pixel in the middle, cropped 2,000 times; each shift moves it elsewhere\n"
                "dot = torch.zeros(2000, 1, 28, 28)\ndot[:, :, 14, 14] = 1\n"
                "seen = {tuple(np.argwhere(im[0].numpy())[0]) for im in random_crop(dot, gen, pad=2)}\n"
                + check(1, "len(seen)"),
            ),
            (
                "md",
                "**Exercise 2.** Cutout (size 8) sets an 8x8 square to zero, clipped at the border. At most how "
                "many pixels of an image does it erase?",
            ),
            ("code", "answer_2 = None  # your value"),
            (
                "code",
                "ones = torch.ones(500, 1, 28, 28)\nerased = (cutout(ones, gen, size=8) == 0).sum((1, 2, 3))\n"
                + check(2, "int(erased.max())"),
            ),
        ],
    },
    "18-transfer-learning": {
        "answers": {"answer_1": 5770, "answer_2": 24330},
        "cells": [
            (
                "md",
                "# 18. Transfer learning\n[Page 18](../docs/learn/18-transfer-learning.md): start from `demo:mnist` "
                "(trained on 60,000 MNIST digits) to learn a new, small task: scikit-learn's 8x8 digits, "
                "upsampled to 28x28 (blurrier, drawn differently), from only 324 training images and two "
                "short epochs. Feature extraction trains the new head only; the same model from scratch "
                "gets the same images and steps.",
            ),
            (
                "code",
                "import cnnlab\n"
                "from cnnlab.models import create_model\nfrom cnnlab.finetune.transfer import apply_strategy\n\n"
                "common = {'data.image_size': 28, 'data.train_fraction': 0.25, 'model.name': 'fast_cnn', "
                "'model.kwargs': {'widths': [16, 32, 64]}, 'output.plots': False, 'output.progress': False, "
                "'train.threads': 1, 'data.num_workers': 0}\n"
                "quiet = {'log': lambda line: None}\n"
                "transfer = cnnlab.train(data='digits', epochs=2, out='runs', overrides={**common, "
                "'model.pretrained': 'demo:mnist', 'model.finetune': 'feature_extraction'}, **quiet)\n"
                "scratch = cnnlab.train(data='digits', epochs=2, out='runs', overrides=common, **quiet)\n"
                "print('from demo:mnist', transfer.metrics['accuracy'], '| scratch', scratch.metrics['accuracy'])\n"
                "assert transfer.metrics['accuracy'] > scratch.metrics['accuracy']  # what MNIST taught carries over",
            ),
            (
                "md",
                "**Exercise 1.** Feature extraction freezes everything but the classifier. How many parameters "
                "does it train in fast_cnn 16-32-64 with 10 classes? (Hint: the last stage gives 64 channels of "
                "3x3, flattened into one linear layer.)",
            ),
            ("code", "answer_1 = None  # your value"),
            (
                "code",
                "def trainable(strategy, **kw):\n"
                "    model = create_model('fast_cnn', in_channels=1, input_size=28, widths=[16, 32, 64])\n"
                "    apply_strategy(model, strategy, **kw)\n"
                "    return sum(p.numel() for p in model.parameters() if p.requires_grad)\n\n"
                + check(1, "trainable('feature_extraction')"),
            ),
            (
                "md",
                "**Exercise 2.** `finetune_top` with one block also unfreezes the last conv block (a 3x3 conv "
                "32 -> 64 without bias, and its batch norm's scale and shift). How many parameters train now?",
            ),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "trainable('finetune_top', n_blocks=1)")),
        ],
    },
    "19-interpretation": {
        "answers": {"answer_1": 16, "answer_2": 11},
        "cells": [
            (
                "md",
                "# 19. Looking inside a trained network\n[Page 19](../docs/learn/19-interpretation.md) on "
                "`demo:mnist`: its first-layer filters, a saliency map and Grad-CAM for one bundled test "
                "digit, and its worst mistakes.",
            ),
            (
                "code",
                "import numpy as np\nimport torch\nfrom cnnlab.runs.run import open_run\n"
                "from cnnlab.viz.inspect import first_layer_filters, saliency, grad_cam, conv_layers\n"
                "from cnnlab.evaluation.interpret import interpret_run\n\n"
                "run = open_run('demo:mnist')\nmodel = run.load_model()\nexamples = run.examples('test')\n"
                "x = torch.from_numpy(examples.inputs([0]))  # (1, 1, 28, 28), normalised as in training\n"
                "sal, cls = saliency(model, x)\ncam, _ = grad_cam(model, x)\n"
                "print('predicted', cls, 'true', examples.labels[0], '| conv', [n for n, _ in conv_layers(model)])\n"
                "assert sal.shape == cam.shape == (28, 28) and cam.max() == 1.0 and cam.min() >= 0\n"
                "print('Grad-CAM peak at (row, col)', np.unravel_index(cam.argmax(), cam.shape))",
            ),
            (
                "code",
                "res = interpret_run('demo:mnist', top=5)  # also writes runs/demo-mnist/misclassified.csv here\n"
                "for r in res['worst']:\n"
                "    print(r['id'], 'true', r['true'], 'predicted', r['pred'], 'loss', round(r['loss'], 3))\n"
                "print(res['confused'][:3])",
            ),
            ("md", "**Exercise 1.** How many filters has the first conv layer? (`first_layer_filters(model).shape`)"),
            ("code", "answer_1 = None  # your value"),
            ("code", check(1, "first_layer_filters(model).shape[0]")),
            ("md", "**Exercise 2.** How many of the 1,000 bundled test images does `demo:mnist` get wrong?"),
            ("code", "answer_2 = None  # your value"),
            ("code", check(2, "res['num_wrong']")),
        ],
    },
}


def build(name: str, spec: dict) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["cnnlab"] = {"answers": spec["answers"]}
    for i, (kind, text) in enumerate(spec["cells"]):
        cell = nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
        cell.id = f"{name[:2]}-{i:03d}"  # stable ids: rebuilding an unchanged notebook changes nothing
        nb.cells.append(cell)
    return nb


def main() -> None:
    for name, spec in NOTEBOOKS.items():
        path = HERE / f"{name}.ipynb"
        nbformat.write(build(name, spec), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
