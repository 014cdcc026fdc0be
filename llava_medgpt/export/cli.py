"""Export a MedGPT checkpoint to a format another stack loads without llava_medgpt.

    llava-medgpt-export --to transformers-internvl outputs/stage2 outputs/stage2-internvl

transformers-internvl: stock transformers' InternVLForConditionalGeneration + InternVLProcessor (no
trust_remote_code). The export refuses, naming the part, when something cannot map exactly; for CLIP and SigLIP
towers that includes the vision config, which transformers' InternVL reads as InternViT: --vision-config-override
writes the exact folder, loaded with from_pretrained(OUT, vision_config=...). docs/inference.md has the details.
"""

import argparse
import sys

TARGETS = ("transformers-internvl",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-medgpt-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--to", required=True, choices=TARGETS, dest="target")
    parser.add_argument("checkpoint", help="a MedGPT checkpoint folder (stage output)")
    parser.add_argument("output", help="folder to write (must not exist or be empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--vision-config-override", action="store_true",
                        help="write the exact folder although stock transformers then needs vision_config= passed "
                        "to from_pretrained (its InternVL config reads any vision tower as InternViT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .internvl import ExportRefused, export_internvl

    try:
        report = export_internvl(args.checkpoint, args.output, overwrite=args.overwrite,
                                 vision_config_override=args.vision_config_override)
    except (ExportRefused, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report.output} ({report.tensors} tensors; {report.permuted_channels} projector input channels "
          "moved by the pixel-shuffle permutation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
