"""Image-source converters (captions, image VQA, image reasoning) on fixtures in each source's published schema:
exact records, exact skip reasons with row numbers, embedded images written below the image root, and the
WebDataset (.tar) reader with unsafe members and incomplete samples."""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llava_medgpt.data.convert import convert_rows, convert_source
from llava_medgpt.rows import read_rows
from llava_medgpt.data.converters import CONVERTERS
from llava_medgpt.benchmarks import ANSWER_WITH_LETTER_AND_TEXT

FIX = Path(__file__).parent / "fixtures" / "sources"
DESCRIBE = "<image>\nDescribe the medical image."
CXR = "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"


def conv(*turns):
    return [{"from": t[0], "value": t[1]} if len(t) == 2 else {"from": t[0], "value": t[1], "reasoning": t[2]}
            for t in turns]


def convert_file(name, path, image_root=None):
    records, skipped = [], []
    for row_number, out, reason, _ in convert_rows(CONVERTERS[name], read_rows(path), image_root):
        records += out
        if reason is not None:
            skipped.append((row_number, reason))
    return records, skipped


def stored(source, data, suffix):
    """Where convert writes an embedded image: named by its content's SHA-256 below the source's folder."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{source}/{digest[:2]}/{digest[:40]}.{suffix}"


def png_bytes(color="blue", fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format=fmt)
    return buffer.getvalue()


CASES = {
    "pmc_oa": ("pmc_oa.jsonl", [
        {"id": "pmc_oa-PMC212319_Fig3_4", "image": "PMC212319_Fig3_4.jpg",
         "conversations": conv(("human", DESCRIBE),
                               ("gpt", "Real time image of the translocation of ARF1-GFP to the plasma membrane."))}],
        [(2, "missing field 'caption'")]),
    "rocov2": ("rocov2_train_captions.csv", [
        {"id": "rocov2-ROCOv2_2023_train_000001", "image": "ROCOv2_2023_train_000001.jpg",
         "conversations": conv(("human", DESCRIBE), ("gpt", "Head CT demonstrating left parotiditis."))},
        {"id": "rocov2-ROCOv2_2023_train_000002", "image": "ROCOv2_2023_train_000002.jpg",
         "conversations": conv(("human", DESCRIBE), ("gpt", "Acquired renal cysts in end-stage renal failure."))}],
        [(3, "missing field 'Caption'")]),
    "quilt_1m": ("quilt_1M_lookup.csv", [
        {"id": "quilt_1m-9kXmZ0WeXi0_image_2f5b", "image": "9kXmZ0WeXi0_image_2f5b.jpg",
         "conversations": conv(("human", DESCRIBE), ("gpt", "Sheets of atypical lymphocytes with scant cytoplasm."))}],
        [(2, "missing field 'caption'")]),
    "pubmedvision_alignment": ("pubmedvision_alignment.json", [
        {"id": "pubmedvision-Alignment_VQA_0", "image": ["images/PMC5_fig1.jpg", "images/PMC5_fig2.jpg"],
         "conversations": conv(("human", "<image>\n<image>\nDescribe the two CT slices."),
                               ("gpt", "Axial CT slices of the abdomen show a hypodense liver lesion."))}],
        [(2, "conversation does not end with an assistant turn")]),
    "quilt_vqa": ("quilt_instruct_107k.json", [
        {"id": "quilt_vqa-KJZm1orOvU_0", "image": "_KJZm1orOvU_roi_8f6e1ac2.jpg",
         "conversations": conv(("human", "What are the key features in this image?\n<image>"),
                               ("gpt", "The image shows a well-circumscribed nodule of spindle cells."),
                               ("human", "Is there necrosis?"), ("gpt", "No necrosis is visible."))}],
        [(2, "malformed conversation turn")]),
    "mimic_cxr_vqa": ("mimic_cxr_vqa_train.json", [
        {"id": "mimic_cxr_vqa-13280", "image": CXR,
         "conversations": conv(("human", ("<image>\nAre there signs of both pleural effusion and lung cancer in the "
                                          "left lower lung zone?")), ("gpt", "no"))},
        {"id": "mimic_cxr_vqa-13281", "image": CXR,
         "conversations": conv(("human", "<image>\nList all abnormalities in the right lung."), ("gpt", "none"))}],
        [(2, "split is not 'train'")]),
    "openmm_medical": ("OpenMMMedical.tsv", [
        {"id": "openmm_medical-17", "image": "Images/ACRIMA/Im002_ACRIMA.png",
         "conversations": conv(("human", "<image>\nWhat is the modality of this image?\nA. CT\nB. MRI\nC. X-ray\n"
                                + ANSWER_WITH_LETTER_AND_TEXT), ("gpt", "A. CT"))}],
        [(2, "answer matches no single option"), (3, "options are not lettered A, B, ... in order")]),
    "gmai_reasoning10k": ("gmai_reasoning10k.jsonl", [
        {"id": "gmai_reasoning10k-0", "image": "images/2d/cls/dermoscopy/ISIC_0024306.jpg",
         "conversations": conv(("human", ("<image>\nWhich diagnosis fits this dermoscopy image?\nA. Melanoma\n"
                                          "B. Melanocytic nevus\nC. Basal cell carcinoma\nD. Dermatofibroma")),
                               ("gpt", "B"))},
        {"id": "gmai_reasoning10k-1", "image": "images/2d/cls/x_ray/patient0412.png",
         "conversations": conv(("human", "<image>\nIs there evidence of pneumonia?\nA. Yes\nB. No"),
                               ("gpt", "A", "Consolidation in the right lower zone suggests pneumonia."))}],
        [(3, "missing field 'conversations'")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_on_published_schema(name):
    filename, expected_records, expected_skips = CASES[name]
    records, skipped = convert_file(name, FIX / filename)
    assert records == expected_records
    assert skipped == expected_skips


def test_image_root_checks_that_images_exist(tmp_path, capsys):
    root = FIX / "images" / "rocov2"
    report = convert_source("rocov2", FIX / "rocov2_train_captions.csv", tmp_path / "r.jsonl", image_root=root)
    assert report.records_written == 1
    assert report.skipped == [(2, "image not found under --image-root"), (3, "missing field 'Caption'")]
    missing = next(line.split(",")[0] for i, line in enumerate(
        (FIX / "rocov2_train_captions.csv").read_text().splitlines()) if i == 2)
    tried = str(root.resolve() / f"{missing}.jpg")
    assert report.details == {2: tried}
    # The path tried is in the summary and in the skipped-row log.
    assert f"image not found under --image-root  (rows 2; e.g. {tried})" in report.format()
    log = (tmp_path / "r.jsonl.skipped.tsv").read_text().splitlines()
    assert log[1] == f"2\timage not found under --image-root\t{tried}"


def test_image_symlink_leaving_the_root_is_skipped_naming_the_path(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "outside.jpg", tmp_path / "images" / "link.jpg")  # the record's path itself is clean
    (tmp_path / "pmc_oa.jsonl").write_text(json.dumps({"image": "link.jpg", "caption": "Escapes."}) + "\n")
    rows = convert_rows(CONVERTERS["pmc_oa"], read_rows(tmp_path / "pmc_oa.jsonl"), tmp_path / "images")
    assert [(n, reason, detail) for n, _, reason, detail in rows] == [
        (1, "image path leaves --image-root", f"'link.jpg' resolves outside {(tmp_path / 'images').resolve()}")]


def test_rocov2_hub_parquet_layout_writes_embedded_images(tmp_path):
    # eltorio/ROCOv2-radiology: image (Image struct), image_id, caption, cui (list of UMLS CUIs).
    png = png_bytes()
    table = pa.table({"image": [{"bytes": png, "path": "ROCOv2_2023_train_000007.jpg"}, {"bytes": png, "path": None}],
                      "image_id": ["ROCOv2_2023_train_000007", "ROCOv2_2023_train_000008"],
                      "caption": ["Chest radiograph showing a right pneumothorax.", None],
                      "cui": [["C0032326"], []]})
    pq.write_table(table, tmp_path / "train-00000-of-00027.parquet")
    records, skipped = convert_file("rocov2", tmp_path / "train-00000-of-00027.parquet", tmp_path / "images")
    assert records == [{"id": "rocov2-ROCOv2_2023_train_000007", "image": stored("rocov2", png, "png"),
                        "conversations": conv(("human", DESCRIBE),
                                              ("gpt", "Chest radiograph showing a right pneumothorax."))}]
    assert skipped == [(2, "missing field 'caption'")]
    # The skipped row carried the same image as the kept one: stored once, and its skip does not delete it.
    assert [p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*.png")] == [
        stored("rocov2", png, "png")]
    assert (tmp_path / "images" / stored("rocov2", png, "png")).read_bytes() == png


def test_medtrinity_embedded_images(tmp_path):
    # UCSC-VLAA/MedTrinity-25M config 25M_demo: image (Image struct), id, caption.
    jpg = png_bytes("red", "JPEG")
    table = pa.table({"image": [{"bytes": jpg, "path": None}, {"bytes": b"not an image", "path": None}],
                      "id": ["8031efe0-1b5c-11ef-8929-000066532cad", "8031f0a2-1b5c-11ef-8929-000066532cad"],
                      "caption": ["The image is a CT scan of the abdomen showing a hypodense lesion.", "x"]})
    pq.write_table(table, tmp_path / "train-00000.parquet")
    records, skipped = convert_file("medtrinity", tmp_path / "train-00000.parquet", tmp_path / "images")
    assert records == [{"id": "medtrinity-8031efe0-1b5c-11ef-8929-000066532cad", "image": stored("medtrinity", jpg, "jpeg"),
                        "conversations": conv(("human", DESCRIBE), ("gpt", ("The image is a CT scan of the abdomen "
                                                                            "showing a hypodense lesion.")))}]
    assert skipped == [(2, "embedded image cannot be decoded")]
    assert (tmp_path / "images" / stored("medtrinity", jpg, "jpeg")).read_bytes() == jpg
    # Without an image root the embedded image has nowhere to go: every row is skipped, none silently dropped.
    assert convert_file("medtrinity", tmp_path / "train-00000.parquet")[1] == [
        (1, "embedded image but no --image-root to write it to"),
        (2, "embedded image but no --image-root to write it to")]


def test_gemex_thinkvg_splits_trace_and_answer(tmp_path):
    # BoKelvin/GEMeX-ThinkVG data/train-00000-of-00001.parquet: image_path (MIMIC-CXR-JPG, leading slash),
    # question_type, question, response with the grounded trace and the answer in tags.
    table = pa.table({
        "image_path": ["/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"] * 3,
        "question_type": ["open_ended_questions", "single_choice_questions", "closed_ended_questions"],
        "question": ["Where is the opacity?", "Which finding is present?", "Is there cardiomegaly?"],
        "options": [[], ["Effusion", "Pneumothorax"], []],
        "response": [
            ("<think>The right lower zone [visual location: right lower lung ([120, 200, 180, 260])] is "
             "opacified.</think><answer>Right lower lobe</answer>"),
            ("<response><think>Blunted left costophrenic angle ([30, 210, 70, 250]).</think>"
             "<answer>A. Effusion</answer><location><ref>left costophrenic angle</ref>"
             "<box>[30, 210, 70, 250]</box></location></response>"),
            "<answer>No</answer>"]})
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    records, skipped = convert_file("gemex_thinkvg", tmp_path / "train-00000-of-00001.parquet")
    assert records == [
        {"id": "gemex_thinkvg-0", "image": CXR,
         "conversations": conv(("human", "<image>\nWhere is the opacity?"),
                               ("gpt", "Right lower lobe", ("The right lower zone [visual location: right lower lung "
                                                            "([120, 200, 180, 260])] is opacified.")))},
        {"id": "gemex_thinkvg-1", "image": CXR,
         "conversations": conv(("human", "<image>\nWhich finding is present?\nA. Effusion\nB. Pneumothorax"),
                               ("gpt", "A. Effusion", "Blunted left costophrenic angle ([30, 210, 70, 250])."))}]
    assert skipped == [(3, "no <think> trace in the response")]


def add_member(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_shard(path, samples):
    """samples: (name, bytes) members, or (name, None, kind, link) for links, written in order."""
    with tarfile.open(path, "w") as tar:
        for member in samples:
            add_member(tar, member[0], member[1] or b"", *member[2:])


def biomedica_json(label):
    # The metadata member of a BIOMEDICA sample (keys as serialised by minwoosun/biomedica-etl); caption is .txt.
    return json.dumps({"image_file_name": "fig1.jpg", "image_cluster_id": "c1", "image_hash": "h",
                       "image_label_id": "12", "image_panel_type": "Single panel", "image_panel_subtype": "single",
                       "image_primary_label": ["Clinical Imaging"], "image_secondary_label": [label],
                       "image_size": [4, 4], "image_set": [], "image_context": {},
                       "article_accession_id": "PMC1234", "article_title": "A case", "article_license": "CC BY",
                       "article_subject": ["Dermatology"]}).encode()


def test_biomedica_webdataset_shard(tmp_path):
    jpg_a, jpg_b, jpg_c = png_bytes("red", "JPEG"), png_bytes("green", "JPEG"), png_bytes("blue", "JPEG")
    shard = tmp_path / "shards" / "commercial" / "000000.tar"
    shard.parent.mkdir(parents=True)
    write_shard(shard, [
        ("0-PMC1234-0-fig1.jpg", jpg_a), ("0-PMC1234-0-fig1.json", biomedica_json("skin lesion")),
        ("0-PMC1234-0-fig1.txt", b"Dermoscopy of a pigmented lesion with an atypical network."),
        ("../x.jpg", jpg_b),  # tries to leave the archive: counted, never written
        ("0-PMC1234-1-fig2.jpg", jpg_b), ("0-PMC1234-1-fig2.json", biomedica_json("surgical procedure")),
        ("0-PMC5678-0-fig1.jpg", None, tarfile.SYMTYPE, "/etc/passwd"),  # link member: counted, never followed
        ("0-PMC5678-0-fig3.jpg", jpg_c), ("0-PMC5678-0-fig3.txt", b"Intraoperative view of the gallbladder."),
    ])
    out = tmp_path / "biomedica.jsonl"
    report = convert_source("biomedica", tmp_path / "shards", out, image_root=tmp_path / "images")
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id": "biomedica-0-PMC1234-0-fig1", "image": stored("biomedica", jpg_a, "jpeg"),
         "conversations": conv(("human", DESCRIBE), ("gpt", ("Dermoscopy of a pigmented lesion with an atypical "
                                                             "network.")))},
        {"id": "biomedica-0-PMC5678-0-fig3", "image": stored("biomedica", jpg_c, "jpeg"),
         "conversations": conv(("human", DESCRIBE), ("gpt", "Intraoperative view of the gallbladder."))}]
    assert (report.rows_read, report.records_written) == (5, 2)
    assert report.skipped == [(2, "unsafe tar member '../x.jpg' (path leaves the archive root)"),
                              (3, "missing field 'txt'"),
                              (4, "unsafe tar member '0-PMC5678-0-fig1.jpg' (link or special file)")]
    assert (tmp_path / "images" / stored("biomedica", jpg_a, "jpeg")).read_bytes() == jpg_a
    assert (tmp_path / "images" / stored("biomedica", jpg_c, "jpeg")).read_bytes() == jpg_c
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(["biomedica.jsonl", "biomedica.jsonl.skipped.tsv", "shards/commercial/000000.tar",
                              "images/" + stored("biomedica", jpg_a, "jpeg"),
                              "images/" + stored("biomedica", jpg_c, "jpeg")])


def test_shards_converted_in_separate_runs_keep_every_image(tmp_path):
    # Row numbers restart in every run; content-addressed names mean a second shard never overwrites the first's.
    jpg_a, jpg_b = png_bytes("red", "JPEG"), png_bytes("green", "JPEG")
    for name, key, jpg in [("000000.tar", "a", jpg_a), ("000001.tar", "b", jpg_b)]:
        write_shard(tmp_path / name, [(f"{key}.jpg", jpg), (f"{key}.txt", f"caption {key}".encode())])
        convert_source("biomedica", tmp_path / name, tmp_path / f"{key}.jsonl", image_root=tmp_path / "images")
    for key, jpg in [("a", jpg_a), ("b", jpg_b)]:
        record = json.loads((tmp_path / f"{key}.jsonl").read_text())
        assert record["image"] == stored("biomedica", jpg, "jpeg")
        assert (tmp_path / "images" / record["image"]).read_bytes() == jpg


def test_webdataset_rows_keep_metadata_and_shard_order(tmp_path):
    for name, key in [("000001.tar", "b"), ("000000.tar", "a")]:
        write_shard(tmp_path / name, [(f"{key}.jpg", b"\xff\xd8"), (f"{key}.json", biomedica_json("skin lesion")),
                                      (f"{key}.txt", b"caption " + key.encode())])
    write_shard(tmp_path / "000002.tar", [("c.json", b"{not json"), ("c.txt", b"x")])
    rows = list(read_rows(tmp_path))
    assert [r["__key__"] for r in rows[:2]] == ["a", "b"]  # shards in sorted name order
    assert rows[0]["txt"] == "caption a" and rows[0]["jpg"] == {"bytes": b"\xff\xd8", "path": "a.jpg"}
    assert rows[0]["json"]["image_secondary_label"] == ["skin lesion"] and rows[0]["__shard__"] == "000000.tar"
    assert rows[2].reason == "invalid JSON in member 'c.json'"


def test_a_run_that_fails_midway_leaves_no_manifest_and_no_image_behind(tmp_path):
    good = tmp_path / "shards" / "000000.tar"
    good.parent.mkdir(parents=True)
    write_shard(good, [("s0.jpg", png_bytes("red", "JPEG")), ("s0.txt", b"A red square.")])
    (tmp_path / "shards" / "000001.tar").write_bytes(b"not a tar archive" * 64)  # read after the good shard
    (tmp_path / "images").mkdir()
    with pytest.raises(tarfile.ReadError):
        convert_source("biomedica", tmp_path / "shards", tmp_path / "out" / "b.jsonl", image_root=tmp_path / "images")
    assert list((tmp_path / "images").rglob("*")) == []  # the image of the converted first sample is gone too
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
