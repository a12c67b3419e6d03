"""Tiny models and data for the tests, importable as ``tests.zoo:NAME`` by the CLI."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunepilot.tasks import SmallResNet, digits_datasets


def tiny_resnet() -> nn.Module:
    """The default task's residual architecture at width 8 (about 10k parameters)."""
    torch.manual_seed(0)
    return SmallResNet(width=8)


def digits_data():
    """The built-in digits splits."""
    return digits_datasets()


def small_digits_data():
    """A few hundred digits per split: enough to train and score, fast."""
    train, val, test = digits_datasets()
    return tuple(
        TensorDataset(split.tensors[0][:n], split.tensors[1][:n])
        for split, n in ((train, 400), (val, 150), (test, 150))
    )


def wrong_shape_data():
    """Datasets of 3x16x16 images: do not fit a model for 1x8x8 digits."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 16, 16, generator=generator)
    y = torch.randint(0, 10, (40,), generator=generator)
    return TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y)


def broken_factory() -> nn.Module:
    """A factory that fails, as a user's might."""
    raise RuntimeError("checkpoint server unreachable")


def not_a_model():
    """A factory that returns something other than a module."""
    return {"weights": [1, 2, 3]}


class _NoPrunable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)[:, :10]


def nothing_to_prune() -> nn.Module:
    """A model without a Conv or Linear layer: no prunable group."""
    return _NoPrunable()


def mlp_logsoftmax() -> nn.Module:
    """An MLP on flat inputs whose output comes from a LogSoftmax, not from the last Linear."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.LogSoftmax(dim=1))


class _GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.fc(torch.relu(self.grouped(x)).mean((2, 3)))


def grouped_net() -> nn.Module:
    """Depthwise and grouped (groups=4) convolutions."""
    torch.manual_seed(0)
    return _GroupedNet()


def _relabelled(transform):
    return tuple(
        TensorDataset(split.tensors[0][:200], transform(split.tensors[1][:200]))
        for split in digits_datasets()
    )


def float_label_data():
    """Labels stored as floats."""
    return _relabelled(lambda y: y.float())


def one_hot_label_data():
    """Labels one-hot encoded."""
    return _relabelled(lambda y: torch.nn.functional.one_hot(y, 10))


class _StringInputs(torch.utils.data.Dataset):
    def __init__(self, split) -> None:
        self.split = split

    def __len__(self) -> int:
        return 50

    def __getitem__(self, index: int):
        x, y = self.split[index]
        return str(x.tolist()), int(y)


def string_input_data():
    """Inputs as strings (text not yet tokenised)."""
    return tuple(_StringInputs(split) for split in digits_datasets())


def unlabelled_data():
    """Inputs without labels."""
    return tuple(TensorDataset(split.tensors[0][:100]) for split in digits_datasets())


def _with(name: str, change) -> tuple:
    """``small_digits_data`` with split ``name`` changed: ``change(inputs, labels) -> (inputs, labels)``."""
    splits = dict(zip(("train", "val", "test"), small_digits_data()))
    splits[name] = TensorDataset(*change(*(t.clone() for t in splits[name].tensors)))
    return tuple(splits.values())


def nan_input_data():
    """Every input NaN: the poisoned data set."""
    splits = small_digits_data()
    return tuple(TensorDataset(torch.full_like(s.tensors[0], float("nan")), s.tensors[1]) for s in splits)


def late_inf_data():
    """One infinite pixel in training sample 300 (past the first batches)."""
    return _with("train", lambda x, y: (x.index_put_((torch.tensor(300),), torch.tensor(float("inf"))), y))


def out_of_range_label_data():
    """Validation sample 100 labelled 12, for a model of 10 classes."""
    return _with("val", lambda x, y: (x, y.index_put_((torch.tensor(100),), torch.tensor(12))))


def tiny_train_data():
    """A training split of 10 samples."""
    return _with("train", lambda x, y: (x[:10], y[:10]))


def one_class_val_data():
    """A validation split whose labels are all 3."""
    return _with("val", lambda x, y: (x, torch.full_like(y, 3)))


def constant_metric(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """A metric that does not look at the outputs."""
    return 0.5


def slow_trial(model, data, policy, settings, **where):
    """``run_trial`` preceded by a pause, leaving a file named by this process while it runs.

    The folder comes from ``PRUNEPILOT_TEST_PIDS``; a test kills the process or removes its node.
    """
    import os
    import time
    from pathlib import Path

    import ray

    from prunepilot.trial import run_trial

    folder = Path(os.environ["PRUNEPILOT_TEST_PIDS"])
    marker = folder / f"{os.getpid()}.{ray.get_runtime_context().get_node_id()}"
    marker.write_text("running")
    time.sleep(float(os.environ.get("PRUNEPILOT_TEST_PAUSE", "2")))
    result = run_trial(model, data, policy, settings, **where)
    marker.unlink(missing_ok=True)
    return result


def failing_trial(model, data, policy, settings, **where):
    """A trial function that raises, as a broken user model might."""
    raise ValueError("bad batch norm")


def error_rate(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """A metric to minimise: the share of wrong top-1 predictions."""
    return float((outputs.argmax(dim=1) != labels).float().mean())


def broken_metric(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """A metric that fails on any input, as a user's might."""
    raise KeyError("labels must be one-hot")


class _TokenNet(nn.Module):
    """Token ids -> embedding -> two 1-d convolutions -> class scores."""

    def __init__(self, vocab: int = 16, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.conv1 = nn.Conv1d(8, width, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean(dim=2))


def token_net() -> nn.Module:
    """A model whose inputs are int64 token ids (sequences of 12)."""
    torch.manual_seed(0)
    return _TokenNet()


def token_data():
    """Sequences of 12 token ids in [0, 16); the label is the most frequent token's id // 4."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (600, 12), generator=generator)
    labels = torch.mode(tokens // 4, dim=1).values
    return tuple(TensorDataset(tokens[a:b], labels[a:b]) for a, b in ((0, 400), (400, 500), (500, 600)))


def accuracy_share(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy written as a user's metric (maximised)."""
    return float((outputs.argmax(dim=1) == labels).float().mean())


class DictOutputNet(nn.Module):
    """``tiny_resnet`` returning a dict (as a Hugging Face model returns a ``ModelOutput``)."""

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net or tiny_resnet()

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values)
        return {"hidden": logits.detach() * 0, "scores": logits}


def dict_output_net() -> nn.Module:
    torch.manual_seed(0)
    return DictOutputNet()


class _DictSamples(torch.utils.data.Dataset):
    def __init__(self, split: TensorDataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        x, y = self.split[index]
        return {"pixel_values": x, "labels": y, "id": index}


def dict_batch_loaders(batch_size: int = 32):
    """(train, val, test) DataLoaders of the small digits whose batches are dicts."""
    return tuple(
        torch.utils.data.DataLoader(_DictSamples(split), batch_size=batch_size, shuffle=shuffle)
        for split, shuffle in zip(small_digits_data(), (True, False, False))
    )


#: (model, batch) pairs the recording loss was called with (its test reads them).
LOSS_CALLS: list[tuple[nn.Module, object]] = []


def recording_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Cross-entropy of ``DictOutputNet``'s scores, recording what it was called with."""
    LOSS_CALLS.append((model, batch))
    return nn.functional.cross_entropy(model(batch["pixel_values"])["scores"], batch["labels"])


def float_loss(model: nn.Module, batch: dict) -> float:
    """A loss that returns a plain number (refused: no gradients)."""
    return 1.0


class _SlowNet(nn.Module):
    """A tiny net whose forward pass sleeps (a tracing that runs away, in time)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.5)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def slow_net() -> nn.Module:
    return _SlowNet()


class _HungryNet(nn.Module):
    """A tiny net whose forward pass allocates 4 GiB (a tracing that runs away, in memory); use it
    only under a memory bound."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + torch.empty(2**30, dtype=torch.float32).fill_(0).sum()  # 4 GiB
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def hungry_net() -> nn.Module:
    return _HungryNet()


class _FixedWidthNet(nn.Module):
    """A net that reshapes its hidden layer by a fixed width: pruning that layer breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 32), nn.Linear(32, 16), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))
        return self.fc3(hidden.view(-1, 2, 8).mean(1))


def fixed_width_net() -> nn.Module:
    torch.manual_seed(0)
    return _FixedWidthNet()



class _CumMaxNet(nn.Module):
    """Runs in PyTorch, but ONNX has no ``cummax`` operator: no exporter can take it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(torch.cummax(hidden, dim=1).values)


def cummax_net() -> nn.Module:
    """A model for 1x8x8 digits that ONNX cannot export (``aten::cummax``)."""
    torch.manual_seed(0)
    return _CumMaxNet()


class _GroupedTransposeNet(nn.Module):
    """Exports to ONNX and runs in ONNX Runtime, but ONNX Runtime's static per-channel quantizer
    fails on a grouped transposed convolution with a bias (its per-channel scales follow the weight's
    second axis, out_channels / groups, while the bias has out_channels entries)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.up = nn.ConvTranspose2d(4, 4, 3, groups=2)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.up(torch.relu(self.squeeze(x))))
        return self.head(x.mean(dim=(2, 3)))


def grouped_transpose_net() -> nn.Module:
    """A model for 1x8x8 digits that ONNX Runtime cannot quantize to int8 (statically)."""
    torch.manual_seed(0)
    return _GroupedTransposeNet()


class UNet(nn.Module):
    """A two-level U-Net: per-pixel class scores ``(batch, classes, H, W)``, the decoder fed the
    encoder's features through a concatenated skip connection."""

    def __init__(self, classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.bottom = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1),
                                    nn.BatchNorm2d(2 * width), nn.ReLU())  # fmt: skip
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.decode = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.BatchNorm2d(width),
                                    nn.ReLU())  # fmt: skip
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.down(x)
        return self.head(self.decode(torch.cat([skip, self.up(self.bottom(skip))], dim=1)))


def squares_data(sizes: tuple[int, int, int] = (256, 96, 96), side: int = 16):
    """Noisy images holding a brighter square; the label of each pixel is whether it is the square's."""
    splits = []
    for seed, size in enumerate(sizes):
        generator = torch.Generator().manual_seed(seed)
        corners = torch.randint(0, side // 2, (size, 2), generator=generator)
        rows, cols = torch.arange(side)[:, None], torch.arange(side)[None, :]
        masks = torch.stack([((rows >= r) & (rows < r + side // 2) & (cols >= c) & (cols < c + side // 2))
                             for r, c in corners.tolist()]).long()  # fmt: skip
        images = masks[:, None].float() + 0.5 * torch.randn(size, 1, side, side, generator=generator)
        splits.append(torch.utils.data.TensorDataset(images, masks))
    return tuple(splits)


def pixel_loss(model: nn.Module, batch) -> torch.Tensor:
    """Per-pixel cross-entropy of a segmenter on ``(images, masks)`` batches."""
    images, masks = batch
    return nn.functional.cross_entropy(model(images), masks)


def mean_iou(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean intersection over union of the predicted and true classes, over the classes present."""
    predicted = outputs.argmax(1)
    scores = []
    for cls in labels.unique().tolist():
        union = ((predicted == cls) | (labels == cls)).sum()
        scores.append(float(((predicted == cls) & (labels == cls)).sum()) / float(union))
    return sum(scores) / len(scores)


class _FusedAttention(nn.Module):
    """timm's ``Attention``: one ``qkv`` Linear, reshaped into heads; ``layout`` ``"timm"`` reshapes
    them back to the input's width, ``"free"`` to whatever they hold (heads can go), ``"per_head"``
    reads each head's query, key and value side by side (GPT-NeoX's layout), ``"scaled"`` is timm's
    with a learned scale of each output channel (a forward prunepilot cannot rewrite)."""

    def __init__(self, dim: int, num_heads: int, layout: str = "timm") -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.layout = num_heads, dim // num_heads, layout
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm, self.k_norm = nn.Identity(), nn.Identity()
        self.attn_drop, self.proj, self.proj_drop = nn.Dropout(0.0), nn.Linear(dim, dim), nn.Dropout(0.0)
        if layout == "scaled":
            self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x)
        if self.layout == "per_head":
            qkv = qkv.reshape(batch, tokens, self.num_heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        else:
            qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        width = channels if self.layout in ("timm", "scaled") else -1
        x = self.proj_drop(self.proj(x.reshape(batch, tokens, width)))
        return x * self.gamma if self.layout == "scaled" else x


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, layout: str = "timm") -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _FusedAttention(dim, heads, layout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FusedQkvViT(nn.Module):
    """A timm-style ViT on 1x16x16 images: patch embedding, class token, fused-qkv blocks."""

    def __init__(
        self, dim: int = 32, depth: int = 2, heads: int = 4, batch_as_number: bool = False,
        layout: str = "timm",
    ) -> None:  # fmt: skip
        super().__init__()
        self.batch_as_number = batch_as_number  # len(x): a trace fixes the batch size
        self.patch_embed = nn.Conv2d(1, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, dim))
        self.blocks = nn.Sequential(*[_ViTBlock(dim, heads, layout) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        batch = len(x) if self.batch_as_number else x.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def fused_qkv_vit() -> nn.Module:
    torch.manual_seed(0)
    return FusedQkvViT()


def free_heads_vit() -> nn.Module:
    """The fused-qkv ViT reshaping its heads back with -1: its heads can be pruned."""
    torch.manual_seed(0)
    return FusedQkvViT(layout="free")


def scaled_qkv_vit() -> nn.Module:
    """The timm-style ViT whose attention scales its output channels: its heads stay tied."""
    torch.manual_seed(0)
    return FusedQkvViT(layout="scaled")


def per_head_qkv_vit() -> nn.Module:
    """The fused-qkv ViT reading its qkv head by head: a layout the heads' pruning must not misread."""
    torch.manual_seed(0)
    return FusedQkvViT(layout="per_head")


def fixed_batch_vit() -> nn.Module:
    torch.manual_seed(0)
    return FusedQkvViT(batch_as_number=True)


class _WindowAttention(nn.Module):
    """timm's Swin ``WindowAttention``: fused ``qkv`` and a relative-position bias table with one
    column a head, its heads reshaped back with -1."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale = heads, dim // heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(0.02 * torch.randn((2 * window - 1) ** 2, heads))
        grid = torch.arange(window)
        coords = torch.stack(torch.meshgrid(grid, grid, indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        index = relative[..., 0] * (2 * window - 1) + relative[..., 1]
        self.register_buffer("relative_position_index", index)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.view(tokens, tokens, -1).permute(2, 0, 1)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(windows, tokens, -1)
        return self.proj(x)


class _SwinBlock(nn.Module):
    """A Swin block on a (batch, height, width, channels) map: windowed attention (shifted by half
    a window when ``shift``), then an MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2 if shift else 0
        self.norm1, self.attn = nn.LayerNorm(dim), _WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        w = self.window
        shifted = torch.roll(self.norm1(x), (-self.shift, -self.shift), (1, 2))
        windows = shifted.view(batch, height // w, w, width // w, w, channels).permute(0, 1, 3, 2, 4, 5)
        out = self.attn(windows.reshape(-1, w * w, channels))
        out = out.view(batch, height // w, width // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
        out = torch.roll(out.reshape(batch, height, width, -1), (self.shift, self.shift), (1, 2))
        x = x + out
        return x + self.mlp(self.norm2(x))


class TimmSwin(nn.Module):
    """A timm-style Swin on 1x16x16 images: 2x2 patches, two stages of a plain and a shifted block
    with 2x2 windows, patch merging (four neighbours concatenated, then a Linear) between them."""

    def __init__(self, dim: int = 16, heads: int = 2, window: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, 2, 2)
        self.stage1 = nn.Sequential(*(_SwinBlock(dim, heads, window, s) for s in (False, True)))
        self.merge_norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)
        self.stage2 = nn.Sequential(*(_SwinBlock(2 * dim, 2 * heads, window, s) for s in (False, True)))
        self.norm, self.head = nn.LayerNorm(2 * dim), nn.Linear(2 * dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.patch_embed(x).permute(0, 2, 3, 1))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = self.stage2(self.reduction(self.merge_norm(x)))
        return self.head(self.norm(x).mean((1, 2)))


def timm_swin() -> nn.Module:
    torch.manual_seed(0)
    return TimmSwin()


def digits16_data():
    """The built-in digits at 16x16 (300 samples a split)."""
    splits = []
    for split in digits_datasets():
        images = nn.functional.interpolate(split.tensors[0][:300], size=16)
        splits.append(torch.utils.data.TensorDataset(images, split.tensors[1][:300]))
    return tuple(splits)



def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel shuffle: view, transpose, view."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    return torch.transpose(x, 1, 2).contiguous().view(batch, -1, height, width)


class _ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 unit: a split (stride 1) or two branches (stride 2), concatenated
    and shuffled (by view-transpose-view, or ``nn.ChannelShuffle``)."""

    def __init__(self, inp: int, oup: int, stride: int, module_shuffle: bool) -> None:
        super().__init__()
        self.stride, branch = stride, oup // 2
        self.shuffle = nn.ChannelShuffle(2) if module_shuffle else None
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(),
            )  # fmt: skip
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch, branch, 1, bias=False), nn.BatchNorm2d(branch),
            nn.ReLU(),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, passed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(passed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out) if self.shuffle is not None else _channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """A small ShuffleNetV2 on 1-channel images: two stages of a downsampling unit and a split unit."""

    def __init__(self, module_shuffle: bool = False, channels: tuple[int, ...] = (12, 24, 48, 96)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, channels[0], 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(channels[0]), nn.ReLU())  # fmt: skip
        stages, inp = [], channels[0]
        for oup in channels[1:-1]:
            stages.append(nn.Sequential(_ShuffleUnit(inp, oup, 2, module_shuffle),
                                        _ShuffleUnit(oup, oup, 1, module_shuffle)))  # fmt: skip
            inp = oup
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Sequential(nn.Conv2d(inp, channels[-1], 1, bias=False), nn.BatchNorm2d(channels[-1]),
                                   nn.ReLU())  # fmt: skip
        self.fc = nn.Linear(channels[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv5(self.stages(self.conv1(x))).mean([2, 3]))


def shufflenet_v2() -> nn.Module:
    torch.manual_seed(0)
    return ShuffleNetV2()


def shufflenet_v2_module_shuffle() -> nn.Module:
    torch.manual_seed(0)
    return ShuffleNetV2(module_shuffle=True)


class TorchVisionViT(nn.Module):
    """torchvision's ViT layout on 1x16x16 images: a class token and ``nn.TransformerEncoderLayer``
    blocks (``nn.MultiheadAttention``)."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(1, dim, 4, 4)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 17, dim))
        layer = lambda: nn.TransformerEncoderLayer(  # noqa: E731
            dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.Sequential(*[layer() for _ in range(depth)])
        self.ln, self.heads = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.heads(self.ln(self.layers(x))[:, 0])


def torchvision_vit() -> nn.Module:
    torch.manual_seed(0)
    return TorchVisionViT()


class _CSPBlock(nn.Module):
    """A YOLO-style cross-stage-partial block: half the channels through bottlenecks, concatenated
    with the other half, then fused."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.split_a, self.split_b = nn.Conv2d(channels, half, 1), nn.Conv2d(channels, half, 1)
        self.bottleneck = nn.Sequential(nn.Conv2d(half, half, 3, padding=1), nn.BatchNorm2d(half), nn.SiLU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * half, channels, 1), nn.BatchNorm2d(channels), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.split_a(x)
        return self.fuse(torch.cat([a + self.bottleneck(a), self.split_b(x)], dim=1))


class CSPDetector(nn.Module):
    """A YOLO-style detector on 1x16x16 images: a CSP backbone and heads at strides 2 and 4, whose
    per-cell scores (background or object) are concatenated: ``(batch, cells, 2)``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1), nn.BatchNorm2d(width), nn.SiLU())
        self.stage1 = _CSPBlock(width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.SiLU())
        self.stage2 = _CSPBlock(2 * width)
        self.head_fine, self.head_coarse = nn.Conv2d(width, 2, 1), nn.Conv2d(2 * width, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = self.stage1(self.stem(x))
        coarse = self.stage2(self.down(fine))
        scales = ((self.head_fine, fine), (self.head_coarse, coarse))
        return torch.cat([head(f).flatten(2).transpose(1, 2) for head, f in scales], dim=1)


def csp_detector() -> nn.Module:
    torch.manual_seed(0)
    return CSPDetector()


class DictDetector(CSPDetector):
    """:class:`CSPDetector` answering as detectors do: a dict of its heads' per-cell scores,
    ``{"fine": (batch, 64, 2), "coarse": (batch, 16, 2)}``."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fine = self.stage1(self.stem(x))
        coarse = self.stage2(self.down(fine))
        return {"fine": self.head_fine(fine).flatten(2).transpose(1, 2),
                "coarse": self.head_coarse(coarse).flatten(2).transpose(1, 2)}  # fmt: skip


def dict_detector() -> nn.Module:
    torch.manual_seed(0)
    return DictDetector()


def dict_cell_loss(model: nn.Module, batch) -> torch.Tensor:
    """Cross-entropy of every cell's scores, read from the dict."""
    images, cells = batch
    scores = model(images)
    return nn.functional.cross_entropy(torch.cat([scores["fine"], scores["coarse"]], 1).flatten(0, 1),
                                       cells.flatten())  # fmt: skip


def dict_cell_accuracy(outputs: dict, labels: torch.Tensor) -> float:
    """The share of cells classified right; refuses anything but the detector's dict."""
    if not isinstance(outputs, dict) or set(outputs) != {"fine", "coarse"}:
        raise TypeError(f"expected the detector's dict, got {type(outputs).__name__}")
    return cell_accuracy(torch.cat([outputs["fine"], outputs["coarse"]], 1), labels)


def cell_data(sizes: tuple[int, int, int] = (256, 96, 96)):
    """:func:`squares_data`'s images; labels: whether each cell of the detector's 8x8 and 4x4 grids
    lies mostly in the square (64 + 16 cells)."""
    splits = []
    for images, masks in (split.tensors for split in squares_data(sizes)):
        fine = nn.functional.avg_pool2d(masks[:, None].float(), 2).flatten(1) > 0.5
        coarse = nn.functional.avg_pool2d(masks[:, None].float(), 4).flatten(1) > 0.5
        splits.append(torch.utils.data.TensorDataset(images, torch.cat([fine, coarse], dim=1).long()))
    return tuple(splits)


def cell_loss(model: nn.Module, batch) -> torch.Tensor:
    """Cross-entropy of every cell's scores."""
    images, cells = batch
    return nn.functional.cross_entropy(model(images).flatten(0, 1), cells.flatten())


def cell_accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of cells classified right."""
    return float((outputs.argmax(-1) == labels).float().mean())


class TwoInputNet(nn.Module):
    """An image and a table of features, classified together."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.table = nn.Linear(5, 8)
        self.head = nn.Linear(16, 3)

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(image)).mean(dim=(2, 3))
        return self.head(torch.cat([pooled, torch.relu(self.table(table))], dim=1))


def two_input_net() -> nn.Module:
    torch.manual_seed(0)
    return TwoInputNet()


def two_input_data(sizes: tuple[int, int, int] = (256, 96, 96)):
    """(image, table, label) samples: the label counts which of the two is positive."""
    splits = []
    for seed, size in enumerate(sizes):
        generator = torch.Generator().manual_seed(seed)
        image = torch.randn(size, 1, 6, 6, generator=generator)
        table = torch.randn(size, 5, generator=generator)
        labels = (image.mean(dim=(1, 2, 3)) > 0).long() + (table[:, 0] > 0).long()
        splits.append(torch.utils.data.TensorDataset(image, table, labels))
    return tuple(splits)
