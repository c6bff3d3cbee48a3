"""Every slip cnnlab found in the five seed documents, as one table: what the seed prints, the correct
value, why, a reference, and the commands that print the correction.

``docs/seed-errata.md`` is this table written out for people; ``tests/teach/test_errata.py`` runs every
row's commands and checks that each prints "the source prints X; the correct value is Y" (and that the
page lists the row). A command shows its rows with :func:`corrections_for` and the key it is called by
(``teach arch resnet``, ``calc rf --layers conv3,conv3,pool2 --in 28``, ``summary mnist_cnn --input
1x28x28``); ``cnnlab teach errata [SEED]`` prints the whole table. Rows whose command computes the
correction itself (the worked examples in :mod:`cnnlab.teach.conv` and :mod:`cnnlab.teach.numbers`) carry
the same printed/correct strings here, so the command prints each correction once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.files import atomic
from cnnlab.teach.base import correction


@dataclass(frozen=True)
class Erratum:
    """One slip: ``printed`` by seed ``seed`` in ``section``; ``correct`` ``because`` ...; shown by ``commands``."""

    seed: str
    section: str
    printed: str
    correct: str
    because: str
    reference: str = ""
    commands: tuple[str, ...] = ("teach errata",)

    @property
    def key(self) -> str:
        """The part of the sentence a test (and the de-duplication) looks for."""
        return f"the source prints {self.printed}; the correct value is {self.correct}"

    def sentence(self) -> str:
        """What a command prints (commands name examples by what they are, not by seed)."""
        ref = f" Reference: {self.reference}." if self.reference else ""
        return f"{correction(self.printed, self.correct, self.because)}{ref}"


def _e(seed, section, printed, correct, because, reference="", commands=()) -> Erratum:
    return Erratum(seed, section, printed, correct, because, reference, (*commands, "teach errata"))


GOODFELLOW = "Goodfellow, Bengio and Courville, Deep Learning (2016)"
RF_SEED_CNN = "calc rf --layers conv3,pool2,conv3,pool2,conv3,pool2 --in 32"

ERRATA: tuple[Erratum, ...] = (
    # --- worked examples (their teach command computes the correction itself) -------------------------
    _e(
        "002",
        "edge detection example",
        "[[0, 0, 270], [0, 0, 270], [0, 0, 270]]",
        "[[90, 90, 0], [180, 180, 0], [270, 270, 0]]",
        "the bright block starts in row 2, so each window row that reaches it adds 90 in the first two columns, "
        "and the last column's windows lie inside the flat bright block (response 0)",
        commands=("teach conv edge",),
    ),
    _e(
        "002",
        "max pooling example",
        "max pool [[3, 4], [8, 9]]",
        "[[6, 4], [8, 9]]",
        "the top-left window holds 1, 3, 5, 6 and its max is 6",
        commands=("teach pool mixed",),
    ),
    _e(
        "002",
        "global average pooling example",
        "global average 3.875",
        "3.9375",
        "the sixteen values add up to 63 and 63 / 16 = 3.9375",
        commands=("teach pool mixed",),
    ),
    _e(
        "002",
        "softmax example",
        "[0.76, 0.21, 0.03] for the logits [2.5, 1, 0.1]",
        "[0.76, 0.17, 0.07]",
        "e^2.5 = 12.1825, e^1 = 2.7183 and e^0.1 = 1.1052 add up to 16.0059, and each divided by that sum gives "
        "0.7611, 0.1698 and 0.0690",
        commands=("teach softmax",),
    ),
    _e(
        "004",
        "2.7.1 1x1 convolution",
        "820,000 weights for the direct 5x5x256x128 conv",
        "819,200",
        "5*5*256*128 = 819,200",
        commands=("teach onebyone",),
    ),
    _e(
        "004",
        "2.7.1 1x1 convolution",
        "102,400 for the 5x5 conv after the 1x1 and 118,784 in total",
        "204,800 and 221,184",
        "the 5x5 conv has 5*5*64*128 = 204,800 weights and the 1x1 adds 256*64 = 16,384; the "
        "saving is 3.70x, not the 6.9x the printed numbers imply",
        commands=("teach onebyone",),
    ),
    _e(
        "000",
        "receptive fields of the seed CNN",
        "receptive fields 3, 7, 15 after the three conv-pool blocks",
        "4, 10, 22",
        "a 2x2 pool adds (2 - 1) * jump to the field and doubles the jump, so the next 3x3 conv adds "
        "2 * jump; 3, 7, 15 treats each pool as doubling the field itself",
        commands=("teach rf", RF_SEED_CNN),
    ),
    _e(
        "000",
        "parameter count table",
        "about 1,276,734 parameters for seed_cnn (about 500 in batch norm)",
        "1,278,218 (1,984 in batch norm)",
        "besides the 448 of the three BatchNorm2d layers, the BatchNorm1d after "
        "the first two dense layers hold 2*(512 + 256) = 1,536",
        commands=("teach params", "summary seed_cnn --input 3x32x32"),
    ),
    _e(
        "000",
        "4. batch normalization formula",
        "BN(x) = gamma * (x - mu) / sqrt((var + eps) + beta)",
        "BN(x) = gamma * (x - mu) / sqrt(var + eps) + beta",
        "beta is a shift added after scaling; inside the root "
        "it would change the scale instead, and any beta below -(var + eps) would make the root undefined",
        "Ioffe and Szegedy, Batch Normalization (2015), Algorithm 1",
        ("teach batchnorm",),
    ),
    _e(
        "004",
        "2.2.1 batch norm at test time",
        "test-time mean and variance taken from the last training batch",
        "running averages over all batches",
        "one batch is a noisy estimate; torch keeps running = (1 - momentum) * running + momentum * batch",
        "torch.nn.BatchNorm2d documentation",
        ("teach batchnorm",),
    ),
    _e(
        "002",
        "dropout pseudo-code",
        "mask = (random() > keep_prob); output = input * mask / keep_prob",
        "mask = (random() < keep_prob)",
        "random() > keep_prob keeps a unit with probability 1 - keep_prob; with "
        "keep_prob = 0.8 it would keep 20 % of the units and scale them by 1/0.8, so the expected output would be "
        "0.25x the input instead of 1x",
        commands=("teach batchnorm",),
    ),
    _e(
        "004",
        "4.4 Adam, second moment",
        "v_t = beta2*v_(t-1) + (1 - beta1)*g_t^2",
        "v_t = beta2*v_(t-1) + (1 - beta2)*g_t^2",
        "the weight of the new squared gradient must be 1 - beta2 for v_t "
        "to be an average of g^2 (and for the bias correction 1 - beta2^t to undo its start at 0)",
        "Kingma and Ba, Adam (2015), Algorithm 1",
        ("teach optimizers --step",),
    ),
    _e(
        "004",
        "4.3 RMSProp, update",
        "RMSProp's update w_t = w_(t-1) - lr/(sqrt(v_t) + eps) * v_t",
        "w_t = w_(t-1) - lr/(sqrt(v_t) + eps) * g_t",
        "v_t >= 0 carries no sign, so stepping along it would move "
        "every weight the same way whatever the gradient says",
        "torch.optim.RMSprop documentation",
        ("teach optimizers --step",),
    ),
    _e(
        "002",
        "AlexNet conv1",
        "55x55x96 after conv1 on a 224x224 input without padding",
        "54",
        "floor((224 - 11) / 4) + 1 = 54; 55 needs padding 2 or a 227x227 input",
        commands=("teach arch alexnet", "calc conv --in 224 --k 11 --s 4"),
    ),
    _e(
        "002",
        "GoogLeNet",
        "about 7 million parameters, 20x fewer than AlexNet",
        "9.2x",
        "the zoo counts 61,100,840 / 6,624,904; even the rounded 60 M / 6.8 M is 8.8x",
        "Szegedy et al., Going Deeper with Convolutions (2015)",
        ("teach arch googlenet",),
    ),
    # --- shapes and counts of the seeds' own models -------------------------------------------------------
    _e(
        "002",
        "receptive field",
        "the receptive field doubles after a 2x2 pool (7 -> 14 after three 3x3 convs)",
        "7 -> 8",
        "the pool adds (2 - 1) * jump = 1; it is the jump that doubles, so every later layer grows the "
        "field twice as fast",
        commands=("calc rf --layers conv3,conv3,conv3,pool2",),
    ),
    _e(
        "001",
        "MNIST CNN code comment",
        "after two poolings the 28x28 image becomes 7x7",
        "14x14",
        "the model pools once: 28 -> conv 28 -> conv 28 -> pool 14, as its own fc1 (64 * 14 * 14 inputs) says",
        commands=("calc rf --layers conv3,conv3,pool2 --in 28", "summary mnist_cnn --input 1x28x28"),
    ),
    _e(
        "001",
        "analysis and comparison: parameter count",
        "the plain network has more parameters, the CNN fewer in its dense part",
        "PlainNN 535,818 and MNIST_CNN 1,625,866 (3.0x more)",
        "one pooling stage leaves 64 * 14 * 14 = 12,544 "
        "features, so the CNN's fc1 alone has 12,544 * 128 + 128 = 1,605,760 weights",
        commands=("summary mnist_cnn --input 1x28x28", "summary plain_mlp --input 1x28x28", "teach why-cnn"),
    ),
    _e(
        "001, 002, 004",
        "output size formula",
        "(W - F + 2P) / S + 1 without rounding",
        "floor((W - F + 2P) / S) + 1",
        "a window either fits or it does not: 32, k 3, s 2, p 0 gives 15, not 15.5",
        "torch.nn.Conv2d documentation",
        ("calc conv --in 32 --k 3 --s 2",),
    ),
    _e(
        "004",
        "1.6 pooling output size",
        "W_ocap = (W_oca F)/S + 1 (minus sign lost)",
        "floor((W - F) / S) + 1",
        "the window of size F starts at 0, S, 2S, ... as long as it fits inside W",
        "torch.nn.MaxPool2d documentation",
        ("calc pool --in 32 --k 2",),
    ),
    _e(
        "004",
        "2.1 min-max scaling",
        "x' = (x - x_min) / (x - x_max)",
        "x' = (x - x_min) / (x_max - x_min)",
        "the denominator is the range of the data; the printed one depends on x and is negative for every x "
        "below x_max; for 8-bit images x_min = 0 and x_max = 255 give x / 255",
    ),
    # --- training ---------------------------------------------------------------------------------------
    _e(
        "002",
        "weight initialisation, normal Xavier and normal He",
        "w ~ N(0, sqrt(2/(n_in + n_out)))",
        "std sqrt(2/(n_in + n_out)), variance 2/(n_in + n_out)",
        "in the usual N(mean, variance) notation the "
        "printed form would give std (2/(n_in + n_out))^(1/4); read the second argument as the standard deviation "
        "(likewise He: std sqrt(2/n_in))",
        "Glorot and Bengio (2010); torch.nn.init.xavier_normal_",
        ("teach init",),
    ),
    _e(
        "004",
        "3.4 gradient descent",
        "a common choice is to start with all weights at zero",
        "small random weights (He or Xavier)",
        "with every weight of a layer at zero all its units compute the same "
        "value and receive the same gradient, so they stay identical (the zero rows of the table: the gradient "
        "reaches no layer below the last)",
        f"{GOODFELLOW}, section 8.4",
        ("teach init",),
    ),
    _e(
        "000",
        "early stopping criterion",
        "stop if max(val_acc of the last 5 epochs) < best_val_acc - 5%",
        "stop when none of the last 5 epochs beat the best before them (patience 5)",
        "the printed rule never "
        "stops while the accuracy stays within 5 points of its best, which contradicts the seed's own "
        "'if no improvement for 5 epochs, stop'",
        "Prechelt, Early Stopping - But When? (1998)",
        ("teach diagnose",),
    ),
    _e(
        "001, 002",
        "L2 regularisation and weight decay",
        "Loss + lambda * sum(w^2) is weight_decay = lambda",
        "weight_decay = lambda adds lambda * w to the gradient, the gradient of (lambda/2) * sum(w^2)",
        "d/dw of lambda * w^2 is 2 * lambda * w, so the printed penalty decays twice as fast; and in Adam this "
        "penalty is divided by sqrt(v_hat) like the rest of the gradient, which AdamW's decoupled decay avoids",
        "torch.optim.SGD documentation; Loshchilov and Hutter, Decoupled Weight Decay Regularization (2019)",
        ("teach diagnose",),
    ),
    _e(
        "004",
        "4.3 RMSProp, key idea",
        "RMSProp keeps a moving average of past gradients",
        "a moving average of past squared gradients",
        "v_t averages g^2 (the formula under it says so); the step divides the gradient itself by sqrt(v_t)",
        "Hinton, Neural Networks for Machine Learning, lecture 6e",
        ("teach optimizers --step",),
    ),
    _e(
        "004",
        "3.3.1 local minima",
        "near a local minimum the gradient approaches zero (vanishing gradients)",
        "a small gradient near a minimum is expected, not vanishing gradients",
        "vanishing gradients are "
        "gradients that shrink as they are multiplied back through many layers, far from any minimum (see the "
        "sigmoid rows of the table)",
        f"{GOODFELLOW}, section 8.2.5",
        ("teach init",),
    ),
    # --- concepts -----------------------------------------------------------------------------------------
    _e(
        "000, 001",
        "key advantages / parameter sharing",
        "weight sharing gives translation invariance",
        "weight sharing gives translation equivariance",
        "shifting the input shifts a conv layer's output by the "
        "same amount (equivariance); only pooling and global pooling make the output approximately unchanged "
        "(invariance)",
        f"{GOODFELLOW}, section 9.2",
        ("teach why-cnn",),
    ),
    _e(
        "000",
        "7. evaluation metrics, precision",
        "precision measures the false positive rate",
        "1 - precision is the false discovery rate FP / (TP + FP)",
        "the false positive rate is FP / (FP + TN), a fraction of the true negatives, which precision never looks at",
        "Fawcett, An introduction to ROC analysis (2006)",
        ("teach roc",),
    ),
    _e(
        "003",
        "TensorFlow results, CIFAR-10",
        "recall 0.6439 with test accuracy 0.6336",
        "recall 0.6336",
        "on CIFAR-10's balanced test set (1,000 images a class) the mean recall is (sum of correct) / 10,000, "
        "which is the accuracy; 0.6439 is probably the precision, with the two columns swapped",
        commands=("teach metrics",),
    ),
    # --- history and architectures ------------------------------------------------------------------------
    _e(
        "002",
        "milestones table, EfficientNet-B7",
        "top-5 error 1.6%",
        "3.0% (top-5 accuracy 97.0%)",
        "the paper reports 84.3% top-1 and 97.0% top-5 accuracy on ImageNet",
        "Tan and Le, EfficientNet (2019), Table 2",
        ("teach arch efficientnet",),
    ),
    _e(
        "002",
        "EfficientNet",
        "10x fewer parameters than the previous best",
        "8.4x",
        "EfficientNet-B7 has 66 M parameters against GPipe's 557 M",
        "Tan and Le, EfficientNet (2019), abstract",
        ("teach arch efficientnet",),
    ),
    _e(
        "002",
        "ResNet",
        "the first network to exceed human-level performance on ImageNet",
        "PReLU-nets (4.94% top-5) and BN-Inception (4.82%) came before it, in early 2015",
        "both beat the 5.1% human estimate months before ResNet's 3.57%",
        "He et al., Delving Deep into Rectifiers (2015); Ioffe and Szegedy (2015)",
        ("teach arch resnet",),
    ),
    _e(
        "002",
        "ResNet, the degradation problem",
        "deeper plain networks do worse because gradients vanish or explode",
        "an optimisation difficulty, not vanishing gradients",
        "the plain networks of the ResNet paper "
        "use batch norm and their gradients have healthy norms, yet their training error is higher",
        "He et al., Deep Residual Learning (2016), section 4.1",
        ("teach arch resnet",),
    ),
    _e(
        "002",
        "ResNet, ensemble effect",
        "during training different paths are randomly selected",
        "every path is used in every step",
        "a plain ResNet trains all 2^n paths at once; dropping blocks at random "
        "is stochastic depth, a different method",
        "Veit et al. (2016); Huang et al., Stochastic Depth (2016)",
        ("teach arch resnet",),
    ),
    _e(
        "002",
        "AlexNet, data augmentation",
        "the effective dataset grows from 1.2M to 2.4M+ images",
        "2048x (224x224 crops of 256x256 images at 32 x 32 offsets, times 2 flips)",
        "32 * 32 * 2 = 2048",
        "Krizhevsky et al. (2012), section 4.1",
        ("teach arch alexnet",),
    ),
    _e(
        "002",
        "AlexNet results",
        "a 10.9% improvement",
        "10.9 percentage points (a 42% relative reduction)",
        "26.2% - 15.3% = 10.9 points, and 10.9 / 26.2 = 0.42",
        commands=("teach arch alexnet",),
    ),
    # --- the NumPy CNN report -----------------------------------------------------------------------------
    _e(
        "003",
        "MNIST and CIFAR-10 preprocessing",
        "labels from Keras are already one-hot encoded",
        "integer labels 0-9",
        "keras.datasets.*.load_data() returns integer class labels, which is exactly what "
        "the sparse categorical cross-entropy the report trains with expects",
        "Keras datasets documentation",
    ),
    _e(
        "003",
        "training time",
        "15 min per 1,000 CIFAR-10 images and 2 hours for the model",
        "about 12.5 hours for one epoch",
        "50,000 images / 1,000 * 15 min = 750 min; cnnlab's NumPy engine "
        "trains in batches with im2col instead of one image at a time",
    ),
)


def corrections_for(command: str, already: str = "") -> list[str]:
    """The correction sentences of every row shown by ``command`` that ``already`` does not contain."""
    return [e.sentence() for e in ERRATA if command in e.commands and e.key not in already]


def errata_text(seed: str | None = None) -> str:
    """The whole table (or one seed's rows) as one sentence a row."""
    rows = [e for e in ERRATA if seed is None or seed in e.seed.split(", ")]
    lines = [f"seed {e.seed}, {e.section}: {e.sentence()}" for e in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} slips; docs/seed-errata.md has the table."


def errata_markdown() -> str:
    """The table of docs/seed-errata.md (between its ``errata:start`` and ``errata:end`` markers)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| seed | section | the seed prints | correct value | because | reference | command |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in ERRATA:
        commands = ", ".join(f"`cnnlab {c}`" for c in e.commands)
        rows.append("| " + " | ".join(cell(x) for x in (e.seed, e.section, f"`{e.printed}`", e.correct, e.because,
                                                          e.reference or "—", commands)) + " |")  # fmt: skip
    return "\n".join(rows)


def write_markdown(path: str = "docs/seed-errata.md") -> None:
    """Replace the table between the markers of ``path`` by :func:`errata_markdown` (run from the repo root)."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    head, _, rest = text.partition("<!-- errata:start -->\n")
    _, _, tail = rest.partition("<!-- errata:end -->")
    atomic.write_text(p, f"{head}<!-- errata:start -->\n{errata_markdown()}\n<!-- errata:end -->{tail}")
