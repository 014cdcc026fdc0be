"""A small demo dataset for the tiny preset: real sample images shipped by pydicom and scikit-image, with captions
(stage 0), reports (stage 1), and VQA, text-only instructions and reasoning traces (stage 2).

Run as: python -m llava_medgpt.data.demo --output outputs/demo_data

Nothing is downloaded and nothing large is committed: the images are the sample files inside the installed
pydicom and scikit-image packages. DICOM files stay DICOM (the training image loader reads DICOM), centre-cropped
to a square; scikit-image arrays are written as PNG, cropped to a square and scaled to at most `max_side` pixels.
Square images of at most 336 px are one tile each, which keeps the tiny curriculum fast. Every text is written from what is known about the file (its DICOM header, the scikit-image
documentation), not invented findings.

Output layout (what data_recipes/demo_stage{0,1,2}.yaml read through ${DEMO_DATA}):

    images/*.dcm, images/*.png
    stage0/captions.jsonl    stage1/reports.jsonl   stage1/longitudinal.jsonl
    stage2/vqa.jsonl         stage2/text.jsonl      stage2/reasoning.jsonl
    lm_corpus.txt            what the tiny language model is pretrained on before stage 0 (one text per line)
    benchmarks/              a small held-out test set in two benchmarks' release layouts, for the eval harness
                             (`--data-dir benchmarks --tasks slake,medqa`): Slake1.0/test.json + imgs/xmlab*/
                             source.jpg (questions about the demo images, worded unlike the training VQA) and
                             MedQA/data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl (4-option
                             questions on the facts of the text instructions)
    COMPLETE                 written last
"""

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..benchmarks import ANSWER_WITH_LETTER
from ..constants import IMAGE_MARKER


@dataclass(frozen=True)
class DemoImage:
    file: str  # name under images/
    modality: str  # as a reader would say it
    short: str  # "axial CT slice"
    description: str  # one or two factual sentences
    region: str | None = None


# DICOM sample files of pydicom (uncompressed transfer syntaxes only, so no optional decoder is needed).
PYDICOM_FILES = {
    "CT_small.dcm": ("CT", "CT slice", "A small 128 x 128 pixel CT slice stored as 16-bit signed integers.", None),
    "MR_small.dcm": ("MR", "MR slice", "A small 64 x 64 pixel MR image stored as 16-bit integers.", None),
    "examples_overlay.dcm": (
        "MR", "abdominal MR image",
        "An MR image of the abdomen from a liver study; the series is labelled as showing a marked lesion.",
        "abdomen",
    ),
    "examples_palette.dcm": (
        "ultrasound", "ultrasound image", "An ultrasound image stored with a palette colour lookup table.", None,
    ),
    "examples_rgb_color.dcm": ("ultrasound", "colour ultrasound image", "An ultrasound image stored in RGB colour.",
                               None),
}

# scikit-image sample data (bundled with the package), with what its documentation says they show.
SKIMAGE_IMAGES = {
    "immunohistochemistry": (
        "histopathology", "immunohistochemistry slide",
        "Colonic glands stained by immunohistochemistry: DAB reveals the expression of the FHL2 protein and "
        "hematoxylin counterstains the rest of the tissue.",
        "colon",
    ),
    "cell": (
        "microscopy", "quantitative phase image of a cell",
        "A single cell floating in saline, imaged by quantitative phase imaging from a digital hologram; the cell "
        "has a higher phase value than the background.",
        None,
    ),
    "microaneurysms": (
        "fundus photography", "retinal fundus detail",
        "A grey-level detail of a retinal fundus photograph showing microaneurysms, small red dots along the vessels.",
        "retina",
    ),
    "retina": (
        "fundus photography", "retinal fundus photograph",
        "A colour photograph of a human retina: the optic disc and the retinal vessels branching from it are visible.",
        "retina",
    ),
    "shepp_logan_phantom": (
        "CT phantom", "Shepp-Logan phantom",
        "The Shepp-Logan phantom, a standard test image of ellipses that models a head section for CT reconstruction.",
        "head",
    ),
}

CAPTION_PROMPTS = (
    "Describe this image.",
    "Write a short caption for this medical image.",
)
REPORT_PROMPT = "Write the findings section of a report for this image."
LONGITUDINAL_PROMPT = "Compare the two images and describe what they show."


def _square_dicom(source: Path, dest: Path, max_side: int) -> None:
    """Copy a DICOM file, centre-cropped to a square (a square image is one 336-px tile, which keeps the tiny
    curriculum fast; a 4:3 image would become 12 tiles plus a thumbnail). Overlays are dropped: they would no
    longer line up with the cropped pixels."""
    import pydicom

    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array  # [rows, cols] or [rows, cols, 3]
    rows, cols = pixels.shape[:2]
    side = min(rows, cols, max_side)
    top, left = (rows - side) // 2, (cols - side) // 2
    pixels = np.ascontiguousarray(pixels[top : top + side, left : left + side])
    for tag in [tag for tag in ds.keys() if tag.group & 0xFF00 == 0x6000]:  # overlay planes (60xx)
        del ds[tag]
    ds.Rows, ds.Columns = side, side
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0  # pixels are interleaved (r, g, b) as numpy holds them
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(dest, enforce_file_format=True)


def _copy_dicoms(images_dir: Path, max_side: int) -> list[DemoImage]:
    import pydicom

    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    out = []
    for name, (modality, short, description, region) in PYDICOM_FILES.items():
        source = test_files / name
        if not source.is_file():
            raise FileNotFoundError(f"pydicom sample file {source} is missing (pydicom version without it?)")
        _square_dicom(source, images_dir / name, max_side)
        out.append(DemoImage(name, modality, short, description, region))
    return out


def _write_skimage(images_dir: Path, max_side: int) -> list[DemoImage]:
    import skimage.data

    out = []
    for name, (modality, short, description, region) in SKIMAGE_IMAGES.items():
        array = getattr(skimage.data, name)()
        if array.dtype != np.uint8:  # the phantom is float in [0, 1]
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        rows, cols = array.shape[:2]
        side = min(rows, cols)  # centre-cropped to a square: one tile (see _square_dicom)
        array = array[(rows - side) // 2 : (rows + side) // 2, (cols - side) // 2 : (cols + side) // 2]
        image = Image.fromarray(array)
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        file = f"{name}.png"
        image.save(images_dir / file)
        out.append(DemoImage(file, modality, short, description, region))
    return out


def _turns(human: str, gpt: str, reasoning: str | None = None) -> list[dict]:
    answer = {"from": "gpt", "value": gpt}
    if reasoning is not None:
        answer["reasoning"] = reasoning
    return [{"from": "human", "value": human}, answer]


def caption_records(images: list[DemoImage]) -> list[dict]:
    records = []
    for i, image in enumerate(images):
        for j, prompt in enumerate(CAPTION_PROMPTS):
            caption = image.description if j == 0 else f"{image.short.capitalize()} ({image.modality})."
            records.append({"id": f"demo_caption-{i}-{j}", "image": f"images/{image.file}",
                            "conversations": _turns(f"{IMAGE_MARKER}\n{prompt}", caption)})
    return records


def report_records(images: list[DemoImage]) -> list[dict]:
    records = []
    for i, image in enumerate(images):
        region = f" of the {image.region}" if image.region else ""
        report = (f"FINDINGS: {image.modality.capitalize()} image{region}. {image.description} "
                  f"IMPRESSION: {image.short.capitalize()}; demonstration data, not a clinical study.")
        records.append({"id": f"demo_report-{i}", "image": f"images/{image.file}",
                        "conversations": _turns(f"{IMAGE_MARKER}\n{REPORT_PROMPT}", report)})
    return records


def longitudinal_records(images: list[DemoImage]) -> list[dict]:
    """Two-image records (prior and current study), as the MIMIC-CXR longitudinal sets have."""
    records = []
    pairs = [(a, b) for a, b in zip(images, images[1:]) if a.modality == b.modality]
    for i, (prior, current) in enumerate(pairs):
        text = (f"Both are {prior.modality} images. Prior: {prior.short}. Current: {current.short}. "
                f"{current.description}")
        records.append({
            "id": f"demo_longitudinal-{i}",
            "image": [f"images/{prior.file}", f"images/{current.file}"],
            "conversations": _turns(f"Prior: {IMAGE_MARKER}\nCurrent: {IMAGE_MARKER}\n{LONGITUDINAL_PROMPT}", text),
        })
    return records


def vqa_records(images: list[DemoImage]) -> list[dict]:
    modalities = sorted({image.modality for image in images})
    records = []
    for i, image in enumerate(images):
        records.append({"id": f"demo_vqa-open-{i}", "image": f"images/{image.file}",
                        "conversations": _turns(f"{IMAGE_MARKER}\nWhat imaging modality is this?", image.modality)})
        options = [image.modality] + [m for m in modalities if m != image.modality][:3]
        shift = i % len(options)  # rotate so the right answer is not always "A"
        order = options[shift:] + options[:shift]
        letters = "ABCD"[: len(order)]
        choices = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, order))
        answer = letters[order.index(image.modality)]
        records.append({
            "id": f"demo_vqa-mcq-{i}", "image": f"images/{image.file}",
            "conversations": _turns(
                f"{IMAGE_MARKER}\nWhich modality produced this image?\n{choices}\n{ANSWER_WITH_LETTER}", answer),
        })
        asked = image.modality if i % 2 == 0 else options[1]  # a yes question for half the images, a no for the rest
        records.append({
            "id": f"demo_vqa-yesno-{i}", "image": f"images/{image.file}",
            "conversations": _turns(
                f"{IMAGE_MARKER}\nIs this a {asked} image?\n\nOptions:\nA. Yes\nB. No\n\n{ANSWER_WITH_LETTER}",
                "A" if asked == image.modality else "B"),
        })
    return records


TEXT_INSTRUCTIONS = (
    ("What does a CT scanner measure?",
     "A CT scanner measures how much X-ray beams are attenuated along many directions through the body and "
     "reconstructs cross-sectional images from those measurements."),
    ("What is the difference between MRI and CT?",
     "CT uses X-rays and shows attenuation; MRI uses a strong magnetic field and radio waves and shows the signal "
     "of hydrogen nuclei, which gives better soft-tissue contrast without ionising radiation."),
    ("What is a DICOM file?",
     "DICOM is the standard file format and network protocol for medical images; a file holds the pixel data and "
     "a header describing the patient, the study and the acquisition."),
    ("What is hematoxylin used for in histology?",
     "Hematoxylin stains cell nuclei blue-purple, so tissue structure stays visible next to other stains."),
    ("What does a fundus photograph show?",
     "The back of the eye: the retina, the optic disc, the macula and the retinal blood vessels."),
    ("Why do radiologists compare a study with a prior one?",
     "To tell new findings from old ones and to judge whether a known finding has changed."),
)

REASONING_ITEMS = (
    ("A 16-bit CT image has pixel values from -1024 to 3071. Is this range consistent with Hounsfield units?",
     "Hounsfield units put air at -1000 and water at 0, and dense bone reaches several thousand. A stored range "
     "of -1024 to 3071 is exactly 4096 values, the usual 12-bit CT range.",
     "Yes. The range spans 4096 values from just below air to dense bone, the usual 12-bit CT range."),
    ("An image is 64 x 64 pixels and is shown at 336 x 336. By what factor is it enlarged?",
     "336 divided by 64 is 5.25, in both directions.",
     "It is enlarged 5.25 times in each direction."),
    ("Which stain in an IHC slide with DAB and hematoxylin shows the protein of interest?",
     "DAB gives a brown precipitate where the antibody binds; hematoxylin is the blue counterstain.",
     "DAB: the brown areas show where the protein is expressed."),
)


def text_records() -> list[dict]:
    return [{"id": f"demo_text-{i}", "conversations": _turns(q, a)} for i, (q, a) in enumerate(TEXT_INSTRUCTIONS)]


def reasoning_records() -> list[dict]:
    return [{"id": f"demo_reasoning-{i}", "conversations": _turns(q, a, reasoning=r)}
            for i, (q, r, a) in enumerate(REASONING_ITEMS)]


def language_model_corpus(images: list[DemoImage]) -> list[str]:
    """The texts the tiny language model is fit to before stage 0, a stand-in for a real LM's pretraining: it then
    knows how the demo images are described (as GPT-oss knows medical language), and stage 0 has to learn which
    description belongs to which image. The instruction and reasoning answers are left out: stage 2 teaches them."""
    texts = [image.description for image in images]
    texts += [f"{image.short.capitalize()} ({image.modality})." for image in images]
    return texts


# Held-out benchmark questions: none is worded like a training record. SLAKE's paper setting scores its CLOSED
# questions: two per image, one with the image's own modality (yes) and one with another (no).
SLAKE_QUESTION = "Was this picture acquired with {modality}?"
MEDQA_QUESTIONS = (  # (question, options A-D, answer letter), on the facts of TEXT_INSTRUCTIONS
    ("Which imaging technique forms images from the signal of hydrogen nuclei in a strong magnetic field?",
     ("CT", "MRI", "Ultrasound", "Fundus photography"), "B"),
    ("What does a CT scanner measure to reconstruct cross-sectional images?",
     ("The attenuation of X-ray beams", "The signal of hydrogen nuclei", "Reflected sound waves",
      "Light reflected by the retina"), "A"),
    ("Which stain colours cell nuclei blue-purple in histology?", ("Eosin", "DAB", "Hematoxylin", "Gram stain"), "C"),
    ("Which structure does a fundus photograph show?", ("The cornea", "The lens", "The iris", "The retina"), "D"),
    ("Which standard holds both the pixel data of a medical image and a header describing the study?",
     ("JPEG", "DICOM", "PNG", "TIFF"), "B"),
    ("What is the purpose of comparing a radiology study with the patient's earlier study?",
     ("To lower the radiation dose", "To speed up reconstruction",
      "To judge whether a known finding has changed", "To remove image noise"), "C"),
)


def write_benchmarks(output: Path, images_dir: Path, images: list[DemoImage]) -> dict[str, int]:
    """The demo test set in SLAKE's and MedQA's release layouts (read by the eval harness's own readers)."""
    from ..processing.image_io import load_image

    modalities = sorted({image.modality for image in images})
    slake_root = output / "Slake1.0"
    rows = []
    for i, image in enumerate(images):
        name = f"xmlab{i}/source.jpg"
        (slake_root / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        load_image(images_dir / image.file).save(slake_root / "imgs" / name, format="JPEG", quality=95)
        base = {"img_id": i, "img_name": name, "q_lang": "en", "location": image.region or "", "modality":
                image.modality, "content_type": "Modality", "base_type": "vqa"}
        other = modalities[(modalities.index(image.modality) + 1 + i) % len(modalities)]
        if other == image.modality:
            other = modalities[(modalities.index(image.modality) + 1) % len(modalities)]
        questions = [(image.modality, "Yes"), (other, "No")]
        for k, (asked, answer) in enumerate(questions if i % 2 == 0 else questions[::-1]):
            rows.append({**base, "qid": 2 * i + k, "question": SLAKE_QUESTION.format(modality=asked),
                         "answer": answer, "answer_type": "CLOSED"})
    (slake_root / "test.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")

    medqa = [{"question": question, "options": dict(zip("ABCD", options)), "answer_idx": answer,
              "answer": options["ABCD".index(answer)], "meta_info": "demo"}
             for question, options, answer in MEDQA_QUESTIONS]
    medqa_path = output / "MedQA" / "data_clean" / "questions" / "US" / "4_options" / "phrases_no_exclude_test.jsonl"
    return {"benchmarks/Slake1.0/test.json": len(rows),
            f"benchmarks/{medqa_path.relative_to(output).as_posix()}": _write_jsonl(medqa_path, medqa)}


def _write_jsonl(path: Path, records: list[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


def build_demo_dataset(output: str | os.PathLike, max_side: int = 336) -> dict[str, int]:
    """Write the demo dataset into `output`; returns records per manifest (relative path -> count)."""
    output = Path(output)
    (output / "COMPLETE").unlink(missing_ok=True)
    images_dir = output / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images = _copy_dicoms(images_dir, max_side) + _write_skimage(images_dir, max_side)
    counts = {
        "stage0/captions.jsonl": _write_jsonl(output / "stage0/captions.jsonl", caption_records(images)),
        "stage1/reports.jsonl": _write_jsonl(output / "stage1/reports.jsonl", report_records(images)),
        "stage1/longitudinal.jsonl": _write_jsonl(output / "stage1/longitudinal.jsonl",
                                                  longitudinal_records(images)),
        "stage2/vqa.jsonl": _write_jsonl(output / "stage2/vqa.jsonl", vqa_records(images)),
        "stage2/text.jsonl": _write_jsonl(output / "stage2/text.jsonl", text_records()),
        "stage2/reasoning.jsonl": _write_jsonl(output / "stage2/reasoning.jsonl", reasoning_records()),
    }
    corpus = language_model_corpus(images)
    (output / "lm_corpus.txt").write_text("".join(text + "\n" for text in corpus), encoding="utf-8")
    counts["lm_corpus.txt"] = len(corpus)
    counts.update(write_benchmarks(output / "benchmarks", images_dir, images))
    (output / "COMPLETE").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder to write (created if needed)")
    parser.add_argument("--max-side", type=int, default=336, help="scale larger scikit-image images down to this")
    args = parser.parse_args(argv)
    counts = build_demo_dataset(args.output, args.max_side)
    for manifest, n in counts.items():
        print(f"{n:5d}  {Path(args.output) / manifest}")


if __name__ == "__main__":
    main()
