"""``rtseg export``: an ONNX file, checked by onnx.checker and against PyTorch in ONNX Runtime."""

from __future__ import annotations

import argparse

from rtseg.commands.common import add_model_arguments, size_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a model to ONNX (optionally int8), checked against PyTorch",
                            description="The graph takes 'image' (normalised, N x 3 x H x W) and returns "
                                        "'logits' and 'labels' (the argmax). The command fails when ONNX "
                                        "Runtime's argmax agrees with PyTorch's on less than 99.9%% of pixels.")
    parser.add_argument("--checkpoint", help="a checkpoint written by 'rtseg train' (else --model or "
                                             "--decoder/--encoder, with fresh weights)")
    add_model_arguments(parser, required=False)
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="file format (onnx)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the graph (default 1)")
    parser.add_argument("--dynamic", action="store_true",
                        help="free batch axis, and free height/width where the model allows it")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    parser.add_argument("--int8", action="store_true", help="int8 static quantization (QDQ, per-channel)")
    parser.add_argument("--calibration-data", metavar="ROOT",
                        help="Cityscapes-layout root (or image folder) for --int8 calibration; its val "
                             "split with labels also gives the mIoU change")
    parser.add_argument("--calibration-images", type=int, default=32, help="images to calibrate on (default 32)")
    parser.add_argument("--eval-images", type=int, default=50,
                        help="val images for the int8 mIoU check (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from rtseg.commands.common import build_model_from_args, model_name_from_args, print_json
    from rtseg.errors import RtsegError
    from rtseg.export import check_images, compare_with_torch, export_onnx, onnx_input_size, require_agreement
    from rtseg.inference.calibration import images_from_root, model_normalisation

    if args.batch < 1:
        raise RtsegError(f"--batch must be positive, got {args.batch}")
    if Path(args.output).suffix != ".onnx":
        raise RtsegError(f"--output {args.output} must end in .onnx")
    if args.int8 and not args.calibration_data:
        raise RtsegError("--int8 needs --calibration-data ROOT (static quantization calibrates on real images)")
    if args.calibration_data and not args.int8:
        raise RtsegError("--calibration-data is for --int8")
    if args.checkpoint:
        if model_name_from_args(args):
            raise RtsegError("give either --checkpoint or a model name, not both")
        from rtseg.export import load_model_for_export

        model, _ = load_model_for_export(args.checkpoint)
    else:
        if not model_name_from_args(args):
            raise RtsegError("no model given: use --checkpoint CKPT, --model NAME or --decoder D --encoder E")
        model = build_model_from_args(args)
    model.eval()
    output = Path(args.output)
    report = {"model": getattr(model, "name", type(model).__name__), "output": str(output),
              "size": f"{args.size[0]}x{args.size[1]}", "batch": args.batch}
    mean, std = model_normalisation(model)

    def log(message: str) -> None:
        if not args.json:
            print(message)

    # Real images, when there are some, show agreement where it matters; random ones otherwise.
    inputs = check_images(model, args.size, args.batch, count=2, root=args.calibration_data)
    if args.dynamic:  # the free batch axis must really be free
        inputs += check_images(model, args.size, args.batch + 1, count=1)
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.is_dir() else None,
                                     prefix=".rtseg-export-") as work:
        fp32_path = Path(work) / "model.onnx" if args.int8 else output
        export_onnx(model, fp32_path, args.size, args.batch, dynamic=args.dynamic, opset=args.opset,
                    argmax_first=not args.int8)  # a quantized graph is rewritten after quantization
        report["input_shape"] = ["?" if d is None else d for d in onnx_input_size(fp32_path)]
        log(f"exported {report['model']} -> {fp32_path if not args.int8 else 'fp32 graph'}: input image "
            f"{report['input_shape']}, outputs logits and labels; onnx.checker passed")
        agreement = compare_with_torch(model, fp32_path, inputs)
        report["fp32"] = agreement.as_dict()
        log(f"fp32 ONNX Runtime vs PyTorch on {agreement.images} images: max abs logit diff "
            f"{agreement.max_abs_diff:.3g}, argmax agreement {100 * agreement.argmax_agreement:.4f}%")
        require_agreement(agreement, "fp32 export")
        if args.int8:
            from rtseg.inference.quantize import quantize_int8

            calibration = images_from_root(args.calibration_data, args.size, args.calibration_images,
                                           mean, std, args.batch)
            quantize_int8(fp32_path, output, calibration)
            int8_agreement = compare_with_torch(model, output, inputs)
            report["int8"] = int8_agreement.as_dict()
            report["calibration_images"] = len(calibration) * args.batch
            log(f"int8 (QDQ, calibrated on {report['calibration_images']} images) vs PyTorch fp32: max abs "
                f"logit diff {int8_agreement.max_abs_diff:.3g}, argmax agreement "
                f"{100 * int8_agreement.argmax_agreement:.3f}%")
            report["miou"] = _miou_change(fp32_path, output, args, mean, std)
            if report["miou"]:
                m = report["miou"]
                log(f"mIoU on {m['images']} val images: fp32 {100 * m['fp32']:.2f}, int8 {100 * m['int8']:.2f} "
                    f"({100 * m['change']:+.2f} points)")
            else:
                log("no val labels under the calibration root: mIoU change not measured")
    log(f"wrote {output}")
    if args.json:
        print_json(report)
    return 0


def _miou_change(fp32_path, int8_path, args, mean, std) -> dict | None:
    from rtseg.export import evaluate_onnx

    if args.batch != 1 and not args.dynamic:
        return None  # the val images go one by one
    fp32 = evaluate_onnx(fp32_path, args.calibration_data, args.size, mean, std, args.eval_images)
    if fp32 is None or fp32["miou"] is None:
        return None
    int8 = evaluate_onnx(int8_path, args.calibration_data, args.size, mean, std, args.eval_images)
    return {"fp32": fp32["miou"], "int8": int8["miou"], "change": int8["miou"] - fp32["miou"],
            "images": fp32["images"]}
