"""``cnnlab calc``: output-size, parameter, MAC and receptive-field calculators.

Thin wrapper over :mod:`cnnlab.arithmetic`: it parses the numbers, calls the formulas and prints
each result next to the formula with the numbers plugged in, so a student can check a hand
calculation (seeds 001, 002 and 004 give the formulas).
"""

from __future__ import annotations

import argparse
import re

from cnnlab.arithmetic import (
    conv_macs,
    conv_output_size,
    conv_params,
    conv_transpose_output_size,
    effective_kernel,
    linear_params,
    parse_layers,
    pool_output_size,
    receptive_field,
    same_padding,
)


def _size(text: str) -> tuple[int, int]:
    """'32' -> (32, 32); '28x32' -> (28, 32) (height x width)."""
    m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 32 or 28x32, got {text!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "calc",
        help="convolution arithmetic: output size, parameters, MACs, receptive field",
        description="Output-size, parameter, MAC and receptive-field calculators, with the formula shown.",
    )
    sub = p.add_subparsers(dest="calc_what", metavar="WHAT", required=True)

    c = sub.add_parser("conv", help="a Conv2d layer: output size (and parameters/MACs with --cin/--cout)")
    c.add_argument("--in", dest="size", type=_size, required=True, help="input size, e.g. 32 or 28x32 (H x W)")
    c.add_argument("--k", type=int, required=True, help="kernel size")
    c.add_argument("--s", type=int, default=1, help="stride (default 1)")
    c.add_argument("--p", default="0", help="padding, or 'same' (default 0)")
    c.add_argument("--d", type=int, default=1, help="dilation (default 1)")
    c.add_argument("--cin", type=int, help="input channels")
    c.add_argument("--cout", type=int, help="output channels (filters)")
    c.add_argument("--groups", type=int, default=1, help="groups (in_ch for depthwise)")
    c.add_argument("--no-bias", action="store_true", help="the layer has no bias (e.g. before batch norm)")

    q = sub.add_parser("pool", help="a pooling layer: output size")
    q.add_argument("--in", dest="size", type=_size, required=True, help="input size, e.g. 32 or 28x32")
    q.add_argument("--k", type=int, required=True, help="window size")
    q.add_argument("--s", type=int, help="stride (default: the window size)")
    q.add_argument("--p", type=int, default=0, help="padding (default 0)")
    q.add_argument("--ceil", action="store_true", help="round up instead of down (ceil_mode)")

    t = sub.add_parser("transpose", help="a ConvTranspose2d layer: output size")
    t.add_argument("--in", dest="size", type=_size, required=True, help="input size")
    t.add_argument("--k", type=int, required=True, help="kernel size")
    t.add_argument("--s", type=int, default=1, help="stride")
    t.add_argument("--p", type=int, default=0, help="padding")
    t.add_argument("--op", type=int, default=0, help="output_padding")
    t.add_argument("--d", type=int, default=1, help="dilation")

    fc = sub.add_parser("linear", help="a fully connected layer: parameters")
    fc.add_argument("--in-features", "--in", dest="n_in", type=int, required=True, help="input features")
    fc.add_argument("--out-features", dest="n_out", type=int, required=True, help="output features")
    fc.add_argument("--no-bias", action="store_true")

    r = sub.add_parser(
        "rf",
        help="receptive field and jump of a stack of layers",
        description="Layers are comma-separated tokens: convK or poolK, optionally followed by sS (stride), "
        "dD (dilation) and pP (padding). conv defaults: stride 1, 'same' padding; pool defaults: stride K, "
        "padding 0. Example: conv3,conv3,pool2,conv3s2,conv3d2",
    )
    r.add_argument("--layers", required=True, help="e.g. 'conv3,pool2,conv3,pool2,conv3,pool2'")
    r.add_argument("--in", dest="size", type=_size, help="input size, to also show the feature-map size")
    p.set_defaults(func=run)


def _run_conv(a) -> None:
    pad = same_padding(a.k, a.d) if str(a.p).lower() == "same" else int(a.p)
    k_eff = effective_kernel(a.k, a.d)
    outs = []
    for axis, n in zip(("H", "W"), a.size, strict=True):
        o = conv_output_size(n, a.k, a.s, pad, a.d)
        outs.append(o)
        dil = f" (k_eff = {a.d}*({a.k}-1)+1 = {k_eff})" if a.d != 1 else ""
        print(f"{axis}_out = floor(({n} + 2*{pad} - {k_eff}) / {a.s}) + 1 = {o}{dil}")
    print(f"output size: {outs[0]}x{outs[1]}" + (f"x{a.cout}" if a.cout else ""))
    if a.cin and a.cout:
        bias = not a.no_bias
        n = conv_params(a.cin, a.cout, a.k, bias=bias, groups=a.groups)
        grp = f"/{a.groups}" if a.groups != 1 else ""
        print(f"parameters = {a.k}*{a.k}*{a.cin}{grp}*{a.cout}" + (f" + {a.cout}" if bias else "") + f" = {n:,}")
        macs = conv_macs(a.cin, a.cout, a.k, outs[0], outs[1], a.groups)
        print(f"MACs = {outs[0]}*{outs[1]}*{a.cout} outputs * {a.k}*{a.k}*{a.cin}{grp} = {macs:,}")


def _run_pool(a) -> None:
    s = a.s or a.k
    rounding = "ceil" if a.ceil else "floor"
    outs = []
    for axis, n in zip(("H", "W"), a.size, strict=True):
        o = pool_output_size(n, a.k, s, a.p, ceil_mode=a.ceil)
        outs.append(o)
        print(f"{axis}_out = {rounding}(({n} + 2*{a.p} - {a.k}) / {s}) + 1 = {o}")
    print(f"output size: {outs[0]}x{outs[1]} (channels unchanged); parameters: 0")


def _run_transpose(a) -> None:
    for axis, n in zip(("H", "W"), a.size, strict=True):
        o = conv_transpose_output_size(n, a.k, a.s, a.p, a.op, a.d)
        print(f"{axis}_out = ({n}-1)*{a.s} - 2*{a.p} + {a.d}*({a.k}-1) + {a.op} + 1 = {o}")


def _run_rf(a) -> None:
    layers = parse_layers(a.layers)
    rfs = receptive_field([(L["kernel"], L["stride"], L["dilation"]) for L in layers])
    size = a.size[0] if a.size else None
    head = f"{'#':>2}  {'layer':<12}{'k':>3}{'s':>3}{'d':>3}{'p':>3}{'RF':>6}{'jump':>6}"
    print(head + (f"{'size':>6}" if size else ""))
    print(f"{'':>2}  {'input':<12}{'':>12}{1:>6}{1:>6}" + (f"{size:>6}" if size else ""))
    for i, (L, (rf, jump)) in enumerate(zip(layers, rfs, strict=True), 1):
        ksdp = "".join(f"{L[key]:>3}" for key in ("kernel", "stride", "dilation", "padding"))
        row = f"{i:>2}  {L['name']:<12}{ksdp}{rf:>6}{jump:>6}"
        if size:
            fn = conv_output_size if L["kind"] == "conv" else pool_output_size
            size = fn(size, L["kernel"], L["stride"], L["padding"], L["dilation"])
            row += f"{size:>6}"
        print(row)
    print("RF_out = RF_in + (k_eff - 1) * jump_in;  jump_out = jump_in * stride;  k_eff = d*(k-1) + 1")


def run(args: argparse.Namespace) -> int:
    what = args.calc_what
    if what == "linear":
        n = linear_params(args.n_in, args.n_out, bias=not args.no_bias)
        bias = "" if args.no_bias else f" + {args.n_out}"
        print(f"parameters = {args.n_in}*{args.n_out}{bias} = {n:,}; MACs = {args.n_in * args.n_out:,}")
        return 0
    {"conv": _run_conv, "pool": _run_pool, "transpose": _run_transpose, "rf": _run_rf}[what](args)
    _print_corrections(args)
    return 0


def _command_key(a: argparse.Namespace) -> str:
    """How docs/seed-errata.md names this calculation (``calc rf --layers conv3,conv3,pool2 --in 28``)."""
    size = "" if getattr(a, "size", None) is None else "x".join(dict.fromkeys(str(n) for n in a.size))
    if a.calc_what == "rf":
        return f"calc rf --layers {a.layers}" + (f" --in {size}" if size else "")
    if a.calc_what == "conv" and a.cin is None and a.cout is None and (a.d, a.groups) == (1, 1):
        return f"calc conv --in {size} --k {a.k} --s {a.s}" + (f" --p {a.p}" if a.p != "0" else "")
    if a.calc_what == "pool" and a.p == 0 and not a.ceil and a.s in (None, a.k):
        return f"calc pool --in {size} --k {a.k}"
    return ""


def _print_corrections(a: argparse.Namespace) -> None:
    """A seed's worked example recomputed here: say where the seed printed something else."""
    from cnnlab.teach.errata import corrections_for

    key = _command_key(a)
    lines = corrections_for(key) if key else []
    if lines:
        print("\n" + "\n".join(lines))
