"""Seed 001's MNIST recipe, as its text describes it ("Practical Example with PyTorch ... Using MNIST").

torchvision's MNIST with ``ToTensor`` + ``Normalize((0.1307,), (0.3081,))``, DataLoaders of batch 64
with ``num_workers=2`` (shuffled for training), the seed's ``MNIST_CNN`` (two 3x3 convs 32 and 64,
one 2x2 max pool, fc 12,544 -> 128, dropout 0.25, fc 128 -> 10), cross-entropy, Adam at 1e-3, the
seed's training loop (loss read back every batch, printed every 100) and its evaluation function.
The seed trains for ``num_epochs = 10``; to time it to an accuracy, the test set is scored after
every epoch (with the seed's ``evaluate_model``) and training stops at the first epoch that reaches
``target``. Prints one JSON line per epoch: epoch, test accuracy, seconds since the process began.

torchvision reads the uncompressed IDX files (``ROOT/MNIST/raw/*-ubyte``); bench_mnist.py unpacks
the .gz files once into a temporary root, which is the seed's ``download=True`` step, not timed.

Run:  python benchmarks/mnist_seed001.py ROOT SEED [TARGET]
"""

import json
import sys
import time

T0 = time.time()

import torch  # noqa: E402 - the clock starts before the imports, as for the other two commands
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.optim as optim  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as transforms  # noqa: E402


class MNIST_CNN(nn.Module):  # noqa: N801 - the seed's name
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 14 * 14, 128)
        self.fc2 = nn.Linear(128, 10)
        self.dropout = nn.Dropout(0.25)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.pool(x)
        x = x.view(-1, 64 * 14 * 14)
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


def evaluate_model(model, testloader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in testloader:
            _, predicted = torch.max(model(images), 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return 100 * correct / total


def main() -> None:
    root, seed = sys.argv[1], int(sys.argv[2])
    target = float(sys.argv[3]) if len(sys.argv) > 3 else 99.0
    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    trainset = torchvision.datasets.MNIST(root=root, train=True, download=False, transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=64, shuffle=True, num_workers=2)
    testset = torchvision.datasets.MNIST(root=root, train=False, download=False, transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=64, shuffle=False, num_workers=2)
    cnn_net = MNIST_CNN()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(cnn_net.parameters(), lr=0.001)
    for epoch in range(10):  # the seed's num_epochs
        cnn_net.train()
        running_loss = 0.0
        for i, (inputs, labels) in enumerate(trainloader):
            optimizer.zero_grad()
            loss = criterion(cnn_net(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 100 == 99:
                print(f"Epoch [{epoch + 1}/10], Batch [{i + 1}], Loss: {running_loss / 100:.4f}", file=sys.stderr)
                running_loss = 0.0
        accuracy = evaluate_model(cnn_net, testloader)
        print(json.dumps({"epoch": epoch + 1, "accuracy": accuracy / 100, "seconds": time.time() - T0}), flush=True)
        if accuracy >= target:
            break


if __name__ == "__main__":
    main()
