"""``rtseg data check ROOT [--dataset NAME] [--split S ...] [--workers N] [--decode-images] [--json]``.

Reads every label once (in parallel, with a progress bar) and prints, split by split, the
problems file by file, the class frequencies and the class weights training would use; exits
1 when there is an error (warnings alone exit 0).
"""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import print_json
from rtseg.data.check import CheckReport, SplitReport, check_dataset
from rtseg.data.layouts import LAYOUTS, open_dataset

SHOWN_PROBLEMS = 50  # per split in the text report; --json lists them all


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("data", help=help, description=help)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="check every image and label of a dataset, report file by file",
        description="Finds images without labels and labels without images, then reads every label once (in "
                    "parallel) to find unreadable files, label values outside the class set, labels of another "
                    "size than their image; prints class frequencies and the class weights training would use. "
                    "Exits 1 on an error.")
    check.add_argument("root", metavar="ROOT", help="dataset root (Cityscapes, CamVid or a folder dataset)")
    check.add_argument("--dataset", choices=tuple(LAYOUTS), help="the layout of ROOT (default: found)")
    check.add_argument("--annotation", choices=("fine", "coarse"), default="fine", help="Cityscapes only")
    check.add_argument("--split", action="append", default=[], metavar="SPLIT",
                       help="split to check (repeat for several; default: every split ROOT has)")
    check.add_argument("--workers", type=int, default=None,
                       help="reading processes (default: CPU count, at most 8; 0 = this process)")
    check.add_argument("--decode-images", action="store_true",
                       help="decode every image in full too (slower; finds any damage, not only truncation)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    layout = open_dataset(args.root, args.dataset, args.annotation)
    report = check_dataset(layout, args.split or None, workers=args.workers, progress=not args.json,
                           decode_images=args.decode_images)
    if args.json:
        print_json(report.as_dict())
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def format_report(report: CheckReport) -> str:
    names = report.dataset["class_names"]
    lines = [f"{report.dataset['name']} ({report.layout} layout) at {report.root}: {len(names)} classes"]
    for split in report.splits:
        lines += [""] + _split_lines(split, names)
    errors = sum(len(s.errors) for s in report.splits)
    lines += ["", f"{errors} error{'s' if errors != 1 else ''}: " + ("fix the files named above" if errors else "OK")]
    return "\n".join(lines)


def _split_lines(split: SplitReport, names: list[str]) -> list[str]:
    warnings = len(split.problems) - len(split.errors)
    sizes = ", ".join(f"{size} ({count})" for size, count in sorted(split.sizes.items(), key=lambda kv: -kv[1]))
    lines = [f"split {split.split}: {split.images} images, {split.labels} labels, {len(split.errors)} errors, "
             f"{warnings} warnings" + (f"; label sizes {sizes}" if sizes else "")]
    for problem in split.problems[:SHOWN_PROBLEMS]:
        lines.append(f"  {problem.severity}: {problem.message}")
    if len(split.problems) > SHOWN_PROBLEMS:
        lines.append(f"  ... {len(split.problems) - SHOWN_PROBLEMS} more (--json lists them all)")
    total = sum(split.pixels) + split.ignored_pixels
    if not total:
        return lines
    enet, median = split.weights("enet"), split.weights("median")
    width = max(12, *(len(n) for n in names)) + 2
    lines.append(f"  {'class':<{width}}{'pixels %':>9}{'images':>8}{'enet w':>9}{'median w':>10}")
    for c, name in enumerate(names):
        share = 100 * split.pixels[c] / total
        weights = f"{enet[c]:9.2f}{median[c]:10.2f}" if enet else f"{'-':>9}{'-':>10}"
        lines.append(f"  {name:<{width}}{share:9.2f}{split.images_with_class[c]:8d}{weights}")
    lines.append(f"  {'(ignored)':<{width}}{100 * split.ignored_pixels / total:9.2f}")
    return lines
